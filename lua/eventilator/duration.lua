-- eventilator.duration: the one parser of the command line's durations
-- (`history --since 2h`, `silence add --for 30m`), so every subcommand takes
-- the same forms: a whole number and a unit, `90s`, `30m`, `2h`, `1d`, or
-- several in a row, `1h30m`. A number alone is refused: `--for 30` is
-- as likely minutes as seconds.
local M = {}

local UNIT = { s = 1, m = 60, h = 3600, d = 86400 }

-- parse(text) -> seconds | nil, message
function M.parse(text)
  if type(text) ~= "string" or not text:find("^%d+[smhd]") then
    return nil, string.format("not a duration: %q (a number and a unit: 90s, 30m, 2h, 1d)", tostring(text))
  end
  local total, rest = 0, text
  while rest ~= "" do
    local n, unit, after = rest:match("^(%d+)([smhd])(.*)$")
    if not n or #n > 9 then
      return nil, string.format("not a duration: %q (a number and a unit: 90s, 30m, 2h, 1d)", text)
    end
    total, rest = total + tonumber(n) * UNIT[unit], after
  end
  return total
end

return M
