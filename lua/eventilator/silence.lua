-- eventilator.silence: keep the receivers quiet during planned work on a pod
-- (`eventilator silence add --pod pod1 --for 30m --comment "..."`). See
-- docs/silences.md.
--
-- A silence names a pod and an event pattern (on()'s glob, "*" for every
-- event) and lives in the configured store (config.redis) until its end:
--
--   eventilator:silence:<id>     hash: id, pod, event, starts, ends (unix ms),
--                                author, comment; PEXPIREAT its end
--   eventilator:silences:<pod>   zset: id -> end, the pod's silences
--   eventilator:silences         zset: id -> end, all of them (for `list`)
--
-- Each index expires with its last silence, and ended members are trimmed
-- whenever a silence is added. Times are the store's clock (TIME in the
-- scripts), so Sentinel hosts whose clocks disagree still agree on whether a
-- silence is on.
--
-- The shipped receivers ask skip(name, ev) just before they send; reactions
-- never ask, because they must follow the master whatever the pager does.
-- A store that cannot answer means "not silenced": a page too many beats a
-- lost one.
local M = {}

M.KEY = "eventilator:silence:"  -- .. id
M.INDEX = "eventilator:silences" -- (.. ":" .. pod)

-- KEYS: silence, pod index, all index. ARGV: id, pod, event, ms, author,
-- comment. Returns { starts, ends } (unix ms), or an error when the id is taken.
local ADD = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('ERR silence id taken') end
local ends = string.format('%.0f', now + tonumber(ARGV[4]))
now = string.format('%.0f', now)
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'pod', ARGV[2], 'event', ARGV[3], 'starts', now, 'ends', ends,
  'author', ARGV[5], 'comment', ARGV[6])
redis.call('PEXPIREAT', KEYS[1], ends)
for i = 2, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  redis.call('ZADD', KEYS[i], ends, ARGV[1])
  local last = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[i], last[2])
end
return { now, ends }
]]

-- KEYS: an index. ARGV: the silence key prefix. Returns { now, { field,
-- value, ... } per silence on } in one round trip: the ids of the index
-- that end after now, and each one's hash.
local ACTIVE = [[
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local out = { now }
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  local h = redis.call('HGETALL', ARGV[1] .. id)
  if #h > 0 then out[#out + 1] = h end
end
return out
]]

-- KEYS: the silence. ARGV: the index prefix, id. Returns its hash (ended
-- now: gone, and out of both indexes), or an empty list when there is none.
local EXPIRE = [[
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return h end
local pod = redis.call('HGET', KEYS[1], 'pod')
redis.call('ZREM', ARGV[1] .. ':' .. pod, ARGV[2])
redis.call('ZREM', ARGV[1], ARGV[2])
redis.call('DEL', KEYS[1])
return h
]]

-- One script on the store: reply | nil, err.
local function eval(script, keys, args)
  local client, err = require("eventilator.store").connect()
  if not client then return nil, err end
  local cmd = { "EVAL", script, #keys }
  for _, k in ipairs(keys) do cmd[#cmd + 1] = k end
  for _, a in ipairs(args) do cmd[#cmd + 1] = a end
  local reply, rerr = client:call(table.unpack(cmd))
  client:close()
  if reply == nil then return nil, rerr end
  return reply
end

-- A stored hash ({ field, value, ... }) as the silence table rules see;
-- times in unix seconds, as ev.time.
local function silence_of(flat)
  local h = {}
  for i = 1, #flat - 1, 2 do h[flat[i]] = flat[i + 1] end
  if not h.id or not h.pod or not tonumber(h.ends) then return nil end
  return { id = h.id, pod = h.pod, event = h.event or "*", author = h.author or "", comment = h.comment or "",
    starts = (tonumber(h.starts) or 0) / 1000, ends = tonumber(h.ends) / 1000 }
end

-- active([pod]) -> silences on now (ending first first), now | nil, err
-- The pod's silences, or every pod's without one.
function M.active(pod)
  local reply, err = eval(ACTIVE, { pod and (M.INDEX .. ":" .. pod) or M.INDEX }, { M.KEY })
  if not reply then return nil, err end
  if type(reply) ~= "table" or not tonumber(reply[1]) then
    return nil, "unexpected reply from the store: " .. tostring(reply)
  end
  local list = {}
  for i = 2, #reply do
    local s = type(reply[i]) == "table" and silence_of(reply[i])
    if s then list[#list + 1] = s end
  end
  table.sort(list, function(a, b)
    if a.ends ~= b.ends then return a.ends < b.ends end
    return a.id < b.id
  end)
  return list, tonumber(reply[1]) / 1000
end

-- What match() found for each event table: one store round trip per call,
-- however many receivers ask (and one log line when the store is down).
local seen = setmetatable({}, { __mode = "k" })

-- match(ev) -> the silence that matches ev (the one ending last), or nil.
-- nil also when the store cannot answer: that is logged, once per event.
function M.match(ev)
  if type(ev) ~= "table" then error("bad argument #1 to 'match' (event table expected)", 2) end
  if seen[ev] ~= nil then return seen[ev] or nil end
  if type(ev.pod) ~= "string" or ev.pod == "" then return nil end -- no pod: nothing to silence
  local list, err = M.active(ev.pod)
  local found = false
  if not list then
    require("eventilator.log").warn("silences: store unreachable (%s): not silenced", tostring(err))
  else
    local glob = require("eventilator.pattern").match
    for _, s in ipairs(list) do
      if s.pod == ev.pod and glob(s.event, tostring(ev.name)) then found = s end -- the last to end wins
    end
  end
  seen[ev] = found
  return found or nil
end

-- skip(receiver, ev) -> true when a silence matches ev: the receiver sends
-- nothing and reports success (Sentinel must not retry). Logged with the
-- silence, so the log says why nobody was paged.
function M.skip(receiver, ev)
  local s = M.match(ev)
  if not s then return false end
  require("eventilator.log").info("%s: %s %s silenced by %s (%s, by %s, until %s)", receiver,
    tostring(ev.name), ev.pod, s.id, s.comment, s.author, os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(s.ends)))
  return true
end

-- A fresh id: 8 hex digits, short enough to type into `silence expire`.
local function new_id()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(4)
  if f then f:close() end
  if not bytes or #bytes ~= 4 then
    return string.format("%08x", math.random(0, 0x7fffffff) * 2 + math.random(0, 1))
  end
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- add{ pod, event, seconds, comment, author } -> silence | nil, err
-- event: an on() pattern, default "*" (every event of the pod).
function M.add(o)
  if type(o) ~= "table" then error("bad argument #1 to 'add' (table expected)", 2) end
  for _, k in ipairs({ "pod", "comment" }) do
    if type(o[k]) ~= "string" or o[k] == "" then error("silence.add: " .. k .. " is required", 2) end
  end
  local secs = math.tointeger(o.seconds)
  if not secs or secs <= 0 then error("silence.add: seconds must be a positive integer", 2) end
  local event = o.event or "*"
  local id, reply, err
  for _ = 1, 3 do -- a taken id (2^32 of them) is drawn again
    id = new_id()
    reply, err = eval(ADD, { M.KEY .. id, M.INDEX .. ":" .. o.pod, M.INDEX },
      { id, o.pod, event, secs * 1000, o.author or "", o.comment })
    if reply or not tostring(err):find("id taken", 1, true) then break end
  end
  if not reply then return nil, err end
  return { id = id, pod = o.pod, event = event, author = o.author or "", comment = o.comment,
    starts = tonumber(reply[1]) / 1000, ends = tonumber(reply[2]) / 1000 }
end

-- expire(id) -> the silence, ended now | false (no such silence: ended,
-- or never added) | nil, err (the store)
function M.expire(id)
  if type(id) ~= "string" or id == "" then error("bad argument #1 to 'expire' (silence id expected)", 2) end
  local reply, err = eval(EXPIRE, { M.KEY .. id }, { M.INDEX, id })
  if not reply then return nil, err end
  return type(reply) == "table" and silence_of(reply) or false
end

return M
