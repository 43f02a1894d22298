-- eventilator.flap: how often an instance goes down, kept in the Redis store
-- (config.redis), so that a node that keeps failing can be reported and
-- replaced once instead of on every +sdown. See docs/flap.md.
--
-- Each call is one EVAL: trimming, counting and the cooldown claim happen
-- atomically in Redis, so concurrent Sentinels never lose or double a count.
-- Memory is bounded: entries older than the window are trimmed, at most
-- MAX_ENTRIES are kept per instance, and every key expires on its own.
local M = {}

-- The settings this module reads (config.flap): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them).
--[==[settings
flap = {
  { "window", "integer", 600 },
  { "threshold", "integer", 3 },
  { "cooldown", "integer", 3600 },
  { "prefix", "string", "eventilator:flap" },
}
]==]

local settings = require("eventilator.settings")

M.MAX_ENTRIES = 1000

-- KEYS: times (zset), cooldown marker. ARGV: now, window, threshold,
-- cooldown, member, max entries. Returns { count, crossed (0/1) }.
local TRACK = [[
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - window))
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[6]) - 1)
redis.call('EXPIRE', KEYS[1], window)
local count = redis.call('ZCARD', KEYS[1])
local crossed = 0
if count >= tonumber(ARGV[3]) and redis.call('SET', KEYS[2], now, 'NX', 'EX', ARGV[4]) then
  crossed = 1
end
return { count, crossed }
]]

-- KEYS: counter. ARGV: max, period. Returns the count after this call, or
-- -1 (not counted) when max was already reached.
local LIMIT = [[
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return -1 end
n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return n
]]

local function posint(v, what, fname)
  v = math.tointeger(v)
  if not v or v <= 0 then error(string.format("%s: %s must be a positive integer", fname, what), 3) end
  return v
end

local function eval(script, keys, args, s)
  local client, err = require("eventilator.store").connect(s.redis)
  if not client then return nil, "flap: " .. tostring(err) end
  local cmd = { "EVAL", script, #keys }
  for _, k in ipairs(keys) do cmd[#cmd + 1] = k end
  for _, a in ipairs(args) do cmd[#cmd + 1] = a end
  local reply, rerr = client:call(table.unpack(cmd))
  client:close()
  if reply == nil then return nil, "flap: " .. tostring(rerr) end
  return reply
end

-- The instance an event is about: "<pod>:<ip:port>" (or the master's).
local function instance_key(ev)
  local i = type(ev.instance) == "table" and ev.instance or ev.master
  local name = type(i) == "table" and (i.name or (i.ip and (tostring(i.ip) .. ":" .. tostring(i.port))))
  if not name then return nil end
  return tostring(ev.pod or "-") .. ":" .. tostring(name)
end

-- track(ev [, opts]) -> count, crossed | nil, err
-- Records one down event of ev's instance at ev.time. count: events of that
-- instance within the last `window` seconds, this one included. crossed:
-- true when count reached `threshold` and the instance was not already
-- reported in the last `cooldown` seconds (then not again until it passes).
-- opts: window, threshold, cooldown, prefix (over config.flap), redis
-- (connect options over config.redis).
function M.track(ev, opts)
  if type(ev) ~= "table" then error("bad argument #1 to 'track' (event table expected)", 2) end
  local s = settings.get("flap", opts)
  local window = posint(s.window, "window", "flap.track")
  local threshold = posint(s.threshold, "threshold", "flap.track")
  local cooldown = posint(s.cooldown, "cooldown", "flap.track")
  local who = instance_key(ev)
  if not who then return nil, "flap: " .. tostring(ev.name) .. " names no instance" end
  local now = tonumber(ev.time) or os.time()
  local base = tostring(s.prefix or "eventilator:flap") .. ":" .. who
  -- A member unique to this call, so simultaneous reports all count.
  local member = string.format("%.6f:%s:%d", now, require("eventilator.dedupe").owner(), math.random(1 << 30))
  local reply, err = eval(TRACK, { base .. ":downs", base .. ":reported" },
    { string.format("%.6f", now), window, threshold, cooldown, member, M.MAX_ENTRIES }, s)
  if not reply then return nil, err end
  return reply[1], reply[2] == 1
end

-- limit(key, max, period [, opts]) -> true (go ahead) | false (max reached) | nil, err
-- At most `max` actions per `key` in a period of `period` seconds counted
-- from the first one: the guard of the replace-a-replica examples.
-- opts.redis: connect options over config.redis.
function M.limit(key, max, period, opts)
  if type(key) ~= "string" or key == "" then
    error("bad argument #1 to 'limit' (non-empty string expected)", 2)
  end
  max = math.tointeger(max)
  if not max or max < 0 then error("bad argument #2 to 'limit' (integer >= 0 expected)", 2) end
  period = posint(period, "period", "flap.limit")
  local s = settings.get("flap", opts)
  local counter = tostring(s.prefix or "eventilator:flap") .. ":limit:" .. key
  local reply, err = eval(LIMIT, { counter }, { max, period }, s)
  if not reply then return nil, err end
  return reply >= 0
end

return M
