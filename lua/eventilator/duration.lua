-- eventilator.duration: the spans people type on the command line
-- (`silence add --for 30m`, `history --since 2h`), in one place so that
-- every subcommand reads "90s", "30m", "2h", "1d" and "1h30m" alike.
--
-- A bare number is refused: "30" could mean seconds or minutes, and a
-- silence of 30 seconds where 30 minutes were meant pages someone.
local M = {}

local UNIT = { s = 1, m = 60, h = 3600, d = 86400, w = 604800 }

-- parse(text) -> seconds (integer > 0) | nil, err
-- One or more <digits><unit> groups, units s, m, h, d, w: "90s", "1h30m".
function M.parse(text)
  if type(text) ~= "string" or text == "" then return nil, "a duration is required (30m, 2h, 1d)" end
  local total, rest = 0, text
  while rest ~= "" do
    local n, unit, more = rest:match("^(%d+)(%a)(.*)$")
    if not n or not UNIT[unit] then
      return nil, string.format("%q is not a duration: write a number and a unit s, m, h, d or w "
        .. "(90s, 30m, 2h, 1d, 1h30m)", text)
    end
    n = math.tointeger(tonumber(n))
    if not n or n > 1e9 then return nil, string.format("%q is too long", text) end
    total, rest = total + n * UNIT[unit], more
  end
  if total <= 0 then return nil, string.format("%q is no time at all", text) end
  return total
end

-- format(seconds) -> the largest two units: "1h30m", "2d3h", "45s"; "0s" for <= 0.
function M.format(seconds)
  local s = math.floor(tonumber(seconds) or 0)
  if s <= 0 then return "0s" end
  local parts = {}
  for _, u in ipairs({ { "d", 86400 }, { "h", 3600 }, { "m", 60 }, { "s", 1 } }) do
    if s >= u[2] and #parts < 2 then
      parts[#parts + 1] = (s // u[2]) .. u[1]
      s = s % u[2]
    elseif #parts > 0 then
      break -- only adjacent units: "1d5s" reads as a typo, say "1d"
    end
  end
  return table.concat(parts)
end

return M
