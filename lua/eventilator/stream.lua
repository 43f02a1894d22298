-- eventilator.stream: every event into a Redis Stream, so any number of
-- consumers (consumer groups on other hosts) can react to it without the
-- Sentinels knowing them. See docs/stream.md.
--
--   XADD <key> MAXLEN ~ <maxlen> * name .. pod .. text .. host .. time .. json ..
--
-- in one round trip, to stream.redis when set, else to config.redis.
local M = {}

-- The settings this module reads (config.stream): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them).
--[==[settings
stream = {
  { "enabled", "boolean", false },
  { "key", "string", "eventilator:events" },
  { "maxlen", "integer", 100000 },
  { "redis", "table" }, -- {} (the default) or nil: config.redis
}
]==]

-- stream.fields(ev) -> the XADD field/value list
function M.fields(ev)
  local words = require("eventilator.words")
  local rec = words.record(ev)
  return {
    "name", tostring(ev.name),
    "pod", ev.pod and tostring(ev.pod) or "",
    "text", ev.text or table.concat(ev.args or {}, " "),
    "host", tostring(rec.host or ""),
    "time", string.format("%.3f", ev.time or os.time()),
    "json", require("cjson").encode(rec),
  }
end

local function connect(s)
  local store = require("eventilator.store")
  if type(s.redis) == "table" and next(s.redis) then
    -- a store of its own: nothing of config.redis but the timeout
    local o = { timeout = (require("eventilator.config").redis or {}).timeout }
    for k, v in pairs(s.redis) do o[k] = v end
    return require("eventilator.redis").connect(o)
  end
  return store.connect()
end

-- stream.add(ev [, opts]) -> true | nil, err
function M.add(ev, opts)
  if type(ev) ~= "table" then error("stream.add: ev must be a table", 2) end
  local s = require("eventilator.settings").get("stream", opts)
  local cmd = { "XADD", s.key, "MAXLEN", "~", tostring(s.maxlen), "*" }
  for _, v in ipairs(M.fields(ev)) do cmd[#cmd + 1] = v end
  local c, err = connect(s)
  if not c then return nil, "stream: " .. tostring(err) end
  local id, xerr = c:call(table.unpack(cmd))
  c:close()
  if not id then return nil, "stream: XADD " .. tostring(s.key) .. ": " .. tostring(xerr) end
  return true
end

return M
