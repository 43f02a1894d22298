-- eventilator.history_view: `eventilator history` as text (the timeline the
-- demo shows: offset from the failover's first call, Sentinel, event, what
-- each handler did, retries and failures) and as JSON (contract section 15).
local failovers = require("eventilator.failovers")

local M = {}

local function list(t)
  return setmetatable(t or {}, require("eventilator.cli").array)
end

-- Seconds from the failover's start, to the millisecond a record keeps; or
-- nil (a line with no time).
local function offset(f, c)
  if not (math.type(c.time) and math.type(f.start)) then return nil end
  return math.floor((c.time - f.start) * 1000 + 0.5) / 1000
end

-- How long it took: to its end, or to its last call when no end was recorded.
function M.span(f)
  local last = math.type(f.ended) and f.ended or f.last_time
  return math.type(last) and math.type(f.start) and last - f.start or nil
end

-- One line on how it came out.
function M.result(f)
  local r
  if f.to then
    r = string.format("switched %s -> %s", f.from or "?", f.to)
  elseif f.ended_by == "-odown" or f.ended_by == "-sdown" then
    r = "no failover: the master is back (" .. f.ended_by .. ")"
  elseif f.ended_by then
    r = "ended (" .. f.ended_by .. "), no +switch-master recorded"
  else
    r = "no end recorded"
  end
  if f.aborted then r = r .. string.format("; %d attempt(s) aborted", f.aborted) end
  return r
end

-- A recorded string for a terminal: control bytes (an escape sequence in a
-- master's name) shown as "?".
local function plain(s)
  s = tostring(s)
  return s:find("%c") and (s:gsub("%c", "?")) or s
end

-- The event's text for people: a run ID cut to 8 hex digits, as the demo does.
local RUNID = string.rep("%x", 40)

local function readable(c)
  if not c.readable then
    local t = c.name .. " " .. c.text
    if t:find(RUNID) then t = t:gsub("(" .. RUNID:sub(1, 16) .. ")" .. RUNID:sub(17), "%1…") end
    c.readable = plain(t)
  end
  return c.readable
end

-- A rule's file:line as the timeline shows it, "00-log:2" (a few rules
-- recur in every call: each is worked out once).
local short_rules = {}
local function rule_name(rule)
  rule = tostring(rule)
  local short = short_rules[rule]
  if not short then
    local file, line = rule:match("^(.*):(%d+)$")
    file = (file or rule):match("([^/]*)$"):gsub("%.lua$", "")
    short = plain(line and (file .. ":" .. line) or file)
    short_rules[rule] = short
  end
  return short
end

-- What the handlers did, in one column: "00-log:3 ok 0.1 ms, ...".
local function did(c)
  local parts = {}
  if c.handlers == nil then
    parts[#parts + 1] = "handlers not recorded"
  elseif #c.handlers == 0 then
    parts[#parts + 1] = "no handler"
  end
  for _, h in ipairs(c.handlers or {}) do
    local out = h.outcome == "failed" and "FAILED" or plain(h.outcome)
    parts[#parts + 1] = string.format("%s %s%s", rule_name(h.rule), out,
      math.type(h.ms) and string.format(" %.1f ms", h.ms) or "")
  end
  if c.exit and c.exit ~= 0 then
    parts[#parts + 1] = c.exit == 1 and "exit 1: Sentinel retries" or ("exit " .. c.exit)
  end
  return (c.retry and "RETRY: " or "") .. table.concat(parts, ", ")
end

local function plural(n, one, many)
  return string.format("%d %s", n, n == 1 and one or (many or one .. "s"))
end

-- When it started, how long it took, how it came out, who led; then the counts.
local function header(w, f)
  local s = M.span(f)
  w:write(plain(f.pod), ": ",
    math.type(f.start) and os.date("%Y-%m-%d %H:%M:%S", math.floor(f.start)) or "(no times recorded)",
    s and string.format(", %.1f s", s) or "", "; ", plain(M.result(f)),
    f.leader and ("; leader " .. plain(f.leader)) or "", "\n")
  w:write(string.format("  %s from %s (%s); %d failed, %s\n", plural(#f.calls, "call"),
    plural(#f.sentinels, "Sentinel"), plain(table.concat(f.sentinels, ", ")), f.failed,
    plural(f.retries, "retry", "retries")))
end

-- One line a call (offset, Sentinel, event, what its handlers did), and a
-- line under it for each failed handler's error.
local function timeline(w, f)
  local sw, tw = 1, 20
  for _, c in ipairs(f.calls) do
    sw = math.max(sw, utf8.len(plain(c.sentinel or "-")) or 0)
    tw = math.max(tw, utf8.len(readable(c)) or 0)
  end
  tw = math.min(tw, 64)
  local row = "  %8s  %-" .. sw .. "s  %s%s  %s\n"
  for _, c in ipairs(f.calls) do
    local off = offset(f, c)
    local text = readable(c)
    local n = utf8.len(text) or #text
    if n > tw then
      text = text:sub(1, (utf8.offset(text, tw) or tw) - 1) .. "…"
      n = tw
    end
    w:write(string.format(row, off and string.format("%+.2fs", off) or "?", plain(c.sentinel or "-"), text,
      string.rep(" ", tw - n), did(c)))
    for _, h in ipairs(c.handlers or {}) do
      if h.outcome == "failed" then
        w:write(string.format("  %8s  %s  %s: %s\n", "", string.rep(" ", sw), rule_name(h.rule),
          plain((tostring(h.error or "failed"):gsub("\n.*", "")))))
      end
    end
  end
end

-- text(w, shown, info): each failover as a timeline, then a summary line.
-- info: outside, outside_failed, bad, total, filtered.
function M.text(w, shown, info)
  for i, f in ipairs(shown) do
    if i > 1 then w:write("\n") end
    header(w, f)
    timeline(w, f)
  end
  if #shown > 0 then w:write("\n") end
  w:write("= ", plural(#shown, "failover"), info.filtered and string.format(" shown of %d", info.total) or "")
  if info.outside > 0 then
    w:write(string.format("; %s outside any failover (%d failed)", plural(info.outside, "call"),
      info.outside_failed))
  end
  if info.bad > 0 then w:write(string.format("; %s skipped", plural(info.bad, "bad line"))) end
  w:write("\n")
end

-- One event as one line of JSON (cjson: the house encoder, sorted and
-- indented, takes most of a second over 10 000 calls).
local function event_json(f, c)
  local cjson = require("cjson")
  local e = cjson.encode({ offset = offset(f, c), time = c.time, sentinel = c.sentinel, name = c.name,
                           text = c.text, exit = c.exit, retry = c.retry, status = failovers.status(c) })
  if c.handlers then
    local hs = {}
    for k, h in ipairs(c.handlers) do
      hs[k] = cjson.encode({ rule = h.rule, outcome = h.outcome, ms = h.ms, error = h.error })
    end
    e = '{"handlers":[' .. table.concat(hs, ",") .. "]," .. e:sub(2)
  end
  return (e:gsub("\\/", "/"))
end

-- The JSON of contract section 15: an array of failovers, each with its
-- events, an event a line.
function M.json(shown)
  local encode = require("eventilator.cli").encode
  local out = {}
  for i, f in ipairs(shown) do
    local phases = {}
    for name, c in pairs(f.phases) do phases[name] = offset(f, c) end
    local head = encode({ pod = f.pod, start = f.start, ["end"] = math.type(f.ended) and f.ended or nil,
      ended_by = f.ended_by, result = M.result(f), leader = f.leader, from = f.from, to = f.to,
      sentinels = list(f.sentinels), failed = f.failed, retries = f.retries, phases = phases }, "  ")
    local events = {}
    for j, c in ipairs(f.calls) do events[j] = "      " .. event_json(f, c) end
    -- the head's closing "\n  }" gives way to the events
    out[i] = "  " .. head:sub(1, -5) .. ',\n    "events": [\n' .. table.concat(events, ",\n")
      .. "\n    ]\n  }"
  end
  return #out == 0 and "[]" or "[\n" .. table.concat(out, ",\n") .. "\n]"
end

return M
