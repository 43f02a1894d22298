-- eventilator.cluster: watchers and workers that share events through a
-- Redis Stream in the store (contract section 16, docs/cluster.md). This
-- module is what both sides share: the settings, the keys, the scripts that
-- run in the store, and a connection that reconnects (following the store
-- through a failover, store.lua) after whatever broke it.
--
-- Keys, all beside the stream (<s> = cluster.stream):
--   <s>                   the stream: one entry per event, once across all watchers
--   <s>:seen:<identity>   the occurrences of an event identity appended lately (APPEND)
--   <s>:done:<entry id>   set: the handlers that succeeded on the entry, by rule file name and
--                         line ("20-page.lua:12"): every host runs the same rules, maybe from
--                         another rules_dir
--   <s>:dead              stream: entries set aside after max_deliveries, with the reason
--   <s>:order:<master>    list: the ids of the master's entries not yet acknowledged or set aside,
--                         in stream order (APPEND pushes, ACK and DEAD remove): a worker runs an
--                         entry only at its head, so a master's events run one at a time, in order
--   <s>:watchers          hash: watcher id -> "<store ms> <json>", each watcher's heartbeat
--   <s>:workers           hash: consumer name -> "<store ms> <json>", each worker's heartbeat
local M = {}

-- The settings this module reads (config.cluster): name, type, default. The host
-- checks and merges them, from the schema tools/derive.lua generates out of
-- this block at build time; a comment, so that loading the module costs
-- nothing for it (docs/config.md lists them). `optional`: the section is nil
-- (plain watch mode) until a file sets it; then it is merged with its defaults.
--[==[settings
cluster = {
  optional = true,
  { "stream", "string", "eventilator:events" },
  { "group", "string", "eventilator" },
  { "claim_after", "number", 30 },
  { "max_deliveries", "integer", 10 },
  { "maxlen", "integer", 100000 },
}
]==]

M.KEEP_SEEN = 3600      -- s: how long an identity's occurrences are remembered (APPEND)
M.MAX_OCCURRENCES = 32  -- per identity, the latest kept
M.DONE_TTL = 86400      -- s: a done set outlives any entry's retries
M.HEARTBEAT = 2         -- s between heartbeats
M.ALIVE = 10            -- s: a heartbeat older than this is a process gone

-- settings([opts]) -> the cluster settings, checked | nil, err (nil, nil: cluster is off)
function M.settings(opts)
  local loaded, cfg = pcall(require, "eventilator.config")
  if not loaded then return nil, nil end -- no config loaded (`history --file`): nothing of ours
  if cfg.cluster == nil and opts == nil then return nil, nil end
  local s = require("eventilator.settings").get("cluster", opts)
  local function bad(k, want)
    return nil, string.format("cluster.%s: expected %s, got %s", k, want, tostring(s[k]))
  end
  if type(s.stream) ~= "string" or s.stream == "" then return bad("stream", "a key name") end
  if type(s.group) ~= "string" or s.group == "" then return bad("group", "a group name") end
  if type(s.claim_after) ~= "number" or not (s.claim_after >= 0.1 and s.claim_after <= 86400) then
    return bad("claim_after", "seconds from 0.1 to 86400")
  end
  if math.tointeger(s.max_deliveries) == nil or s.max_deliveries < 1 then
    return bad("max_deliveries", "at least 1")
  end
  if math.tointeger(s.maxlen) == nil or s.maxlen < 1 then return bad("maxlen", "at least 1") end
  s.window = ((cfg.watch or {}).dedupe_window) or 5
  s.budget = cfg.budget or 45
  local k = s.stream
  s.keys = { stream = k, dead = k .. ":dead", seen = k .. ":seen:", done = k .. ":done:",
    watchers = k .. ":watchers", workers = k .. ":workers", order = k .. ":order:" }
  return s
end

-- This host's name, for watcher and worker ids.
function M.hostname()
  local f = io.open("/proc/sys/kernel/hostname")
  local h = f and f:read("l")
  if f then f:close() end
  return h or "localhost"
end

-- start(role) -> settings, this host's name, a store connection | nil after logging why (the
-- caller exits 2): how the appender and the worker both begin.
function M.start(role)
  local s, err = M.settings()
  if not s then
    local why = err or "cluster = { ... } is not set in the config"
    require("eventilator.log").error("cluster %s: %s", role, why)
    return nil
  end
  return s, M.hostname(), M.connection()
end

-- { f1, v1, f2, v2, ... } -> { f1 = v1, ... }
function M.fields(flat)
  local t = {}
  if type(flat) ~= "table" then return t end
  for i = 1, #flat - 1, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- ---------------------------------------------------------------- scripts

M.scripts = {}

-- APPEND: the identity check and the XADD, atomic. KEYS: seen key, stream.
-- ARGV: watcher, seq, heard (unix s), window (s), keep (ms), maxlen,
-- synthetic ("1"/"0"), group, then the entry's field/value pairs.
-- The seen key lists the identity's occurrences, each with the watchers that
-- claimed it ({ t = heard, e = entry id, w = { [watcher] = seq } }). A claim
-- is: one this watcher made before (a re-offer after a reconnect: nothing
-- new); or another watcher's report of an occurrence heard within the
-- window (merged: that watcher has not claimed it yet); or a new occurrence:
-- appended. So a flap (the same watcher claiming the identity again) is a
-- new entry, as in plain watch mode, and three watchers make one. A
-- synthetic event (a watcher's reconstructed +switch-master) matches an
-- occurrence however old: the real one already ran. The stream is created
-- with its group, so no entry precedes the group. KEYS[3], when the event
-- is about a master, is that master's order list: the new entry's id is
-- pushed to it in the same step (trimmed to maxlen, as the stream; it
-- expires with the done sets, a day after the master's last event).
-- Returns { 1, id } (appended) or { 0, id } (the occurrence's entry).
M.scripts.append = [[
local occ = {}
local raw = redis.call('GET', KEYS[1])
if raw then occ = cjson.decode(raw) end
local w, seq, t, win = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local keep = tonumber(ARGV[5]) / 1000
for _, o in ipairs(occ) do
  if o.w[w] == seq then return { 0, o.e } end
end
local best, bd
for _, o in ipairs(occ) do
  local d = math.abs(o.t - t)
  if o.w[w] == nil and (ARGV[7] == '1' or d <= win) and (bd == nil or d < bd) then best, bd = o, d end
end
local id, new = nil, 0
if best then
  best.w[w] = seq
  id = best.e
else
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[8], '0', 'MKSTREAM')
  end
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', unpack(ARGV, 9))
  new = 1
  if KEYS[3] then
    redis.call('RPUSH', KEYS[3], id)
    redis.call('LTRIM', KEYS[3], -tonumber(ARGV[6]), -1)
    redis.call('PEXPIRE', KEYS[3], ]] .. M.DONE_TTL * 1000 .. [[)
  end
  local kept = {}
  for _, o in ipairs(occ) do
    if o.t >= t - keep then kept[#kept + 1] = o end
  end
  kept[#kept + 1] = { t = t, e = id, w = { [w] = seq } }
  while #kept > ]] .. M.MAX_OCCURRENCES .. [[ do table.remove(kept, 1) end
  occ = kept
end
redis.call('SET', KEYS[1], cjson.encode(occ), 'PX', ARGV[5])
return { new, id }
]]

-- CLAIM: take over one pending entry idle for min_idle ms. KEYS: stream.
-- ARGV: group, consumer, min_idle, id ('' = the first such entry of anyone's).
-- Returns {} (none), { id, owner, idle ms, deliveries } when the entry is
-- gone from the stream (trimmed: XCLAIM drops it from the pending list), or
-- { id, owner, idle ms, deliveries, fields } (deliveries counts this one).
M.scripts.claim = [[
local p
if ARGV[4] == '' then
  p = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', 1)[1]
else
  p = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], ARGV[4], ARGV[4], 1)[1]
end
if not p then return {} end
local e = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], p[1])[1]
if not e then return { p[1], p[2], p[3], p[4] + 1 } end
return { p[1], p[2], p[3], p[4] + 1, e[2] }
]]

-- KEEP: the entry is still running here: reset its idle time, so that no
-- worker takes it over (XCLAIM ... JUSTID counts no delivery), if it is
-- still this consumer's. KEYS: stream. ARGV: group, id, consumer. Returns
-- 1, 0 (nobody's), or the consumer that took it over.
M.scripts.keep = [[
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)[1]
if not p then return 0 end
if p[2] ~= ARGV[3] then return p[2] end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
]]

-- What ACK and DEAD do with the master's order list (KEYS[3] of ACK, KEYS[4]
-- of DEAD): the entry leaves it; when it was the head, the list's new head,
-- if pending (read by a worker that holds it back until its turn), is handed
-- to this consumer, which is free now (XCLAIM ... JUSTID: no delivery
-- counted), so the master's next event starts at once, whoever held it (a
-- worker that stops lets go of it again: RELEASE). Returns { id, holder,
-- deliveries, fields ({} when trimmed) } or nil.
local HAND = [[
local function leave(stream, group, me, id, list)
  if not list then return nil end
  local head = redis.call('LINDEX', list, 0) == id
  redis.call('LREM', list, 1, id)
  if not head then return nil end
  local n = redis.call('LINDEX', list, 0)
  if not n then return nil end
  local p = redis.call('XPENDING', stream, group, n, n, 1)[1]
  if not p then return nil end
  redis.call('XCLAIM', stream, group, me, 0, n, 'JUSTID')
  local e = redis.call('XRANGE', stream, n, n)[1]
  return { n, p[2], p[4], e and e[2] or {} }
end
]]

-- ORDER: may this consumer run the entry now? KEYS: stream, the entry's
-- master's order list. ARGV: group, id, consumer. The entry runs when it
-- heads the list, or is not in it (appended before the lists, or trimmed
-- from it: the list's head is later); a head that is no longer pending was
-- acknowledged without leaving the list (a worker of an earlier version, or
-- an entry trimmed from the stream) and is dropped from it. Resets the
-- entry's idle time (it stays this consumer's). Returns 1 (run it), -1 (an
-- earlier entry of its master is still pending: wait), 0 (no longer this
-- consumer's: acknowledged, or taken over or handed to another).
M.scripts.order = [[
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)[1]
if not p or p[2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local em, es = parse(ARGV[2])
for _ = 1, 100 do
  local h = redis.call('LINDEX', KEYS[2], 0)
  if not h or h == ARGV[2] then return 1 end
  local hm, hs = parse(h)
  if hm and em and (hm > em or (hm == em and hs > es)) then return 1 end
  -- an earlier entry: this one was read, so that one was too (a group reads in stream order)
  if hm and redis.call('XPENDING', KEYS[1], ARGV[1], h, h, 1)[1] then return -1 end
  redis.call('LPOP', KEYS[2])
end
return -1
]]

-- HOLD: entries held back here (waiting for their master's earlier ones)
-- stay this consumer's: their idle time reset, so no worker takes them over.
-- KEYS: stream. ARGV: group, consumer, ids. Returns the ids that are no
-- longer this consumer's (acknowledged, or handed to another).
M.scripts.hold = [[
local gone, claim = {}, { 'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0 }
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)[1]
  if p and p[2] == ARGV[2] then claim[#claim + 1] = ARGV[i] else gone[#gone + 1] = ARGV[i] end
end
if #claim > 5 then
  claim[#claim + 1] = 'JUSTID'
  redis.call(unpack(claim))
end
return gone
]]

-- RELEASE: a worker that stops or reloads lets go of the entries it held
-- back or was handed: idle for min_idle ms, so the next worker that looks
-- takes them over, and with one delivery less, so that takeover counts this
-- delivery, in which they did not run, once. KEYS: stream. ARGV: group,
-- consumer, min_idle, ids. Returns how many were still this consumer's.
M.scripts.release = [[
local n = 0
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)[1]
  if p and p[2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'RETRYCOUNT',
      math.max(p[4] - 1, 0), 'JUSTID')
    n = n + 1
  end
end
return n
]]

-- ACK: the entry is done, if it is still this consumer's. KEYS: stream, done
-- set[, the master's order list]. ARGV: group, id, consumer. Returns 1
-- (acked), 0 (nobody's: acked already, or trimmed), the consumer that took it
-- over meanwhile, or the master's next entry, handed to this consumer (HAND).
M.scripts.ack = HAND .. [[
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)[1]
if p and p[2] ~= ARGV[3] then return p[2] end
redis.call('DEL', KEYS[2])
if not p then
  return leave(KEYS[1], ARGV[1], ARGV[3], ARGV[2], KEYS[3]) or 0
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return leave(KEYS[1], ARGV[1], ARGV[3], ARGV[2], KEYS[3]) or 1
]]

-- DEAD: set the entry aside. KEYS: stream, dead stream, done set[, the
-- master's order list]. ARGV: group, id, consumer, maxlen, then field/value
-- pairs (the entry's, and why). Returns 1, 0 when it is no longer this
-- consumer's, or the master's next entry, handed to this consumer (HAND).
M.scripts.dead = HAND .. [[
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)[1]
if not p or p[2] ~= ARGV[3] then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[3])
return leave(KEYS[1], ARGV[1], ARGV[3], ARGV[2], KEYS[4]) or 1
]]

-- BEAT: a heartbeat in the store's clock. KEYS: the hash. ARGV: id, json.
M.scripts.beat = [[
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', ms) .. ' ' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], 7 * 86400000)
return 1
]]

-- ---------------------------------------------------------------- connection

local Conn = {}
Conn.__index = Conn

-- A connection to the store kept open across calls; any failure that ends
-- it (closed, a demoted master's READONLY, a restarting store's LOADING)
-- drops it, and the next call connects again through store.connect.
-- c.reconnected is true once a new connection follows a broken one (the
-- appender re-offers what it appended lately: a restart or failover may
-- have lost it).
function M.connection()
  return setmetatable({ client = nil, loaded = {}, broke = false, reconnected = false }, Conn)
end

local function ends_connection(err)
  err = tostring(err)
  return err:find("(client closed)", 1, true) or err:find(": READONLY", 1, true)
    or err:find(": LOADING", 1, true) or err:find(": MASTERDOWN", 1, true)
end

function Conn:get()
  if self.client then return self.client end
  local c, err = require("eventilator.store").connect()
  if not c then
    self.broke = true
    return nil, err
  end
  self.client, self.loaded = c, {}
  if self.broke then self.reconnected = true end
  self.broke = false
  return c
end

function Conn:drop()
  if self.client then self.client:close() end
  self.client, self.broke = nil, true
end

function Conn:call(...)
  local c, err = self:get()
  if not c then return nil, err end
  local r, e = c:call(...)
  if r == nil and e and ends_connection(e) then self:drop() end
  return r, e
end

-- pipeline(cmds) -> replies | nil, err: an error reply that ends the
-- connection fails the whole pipeline (the others are retried with it).
function Conn:pipeline(cmds)
  local c, err = self:get()
  if not c then return nil, err end
  local r, e = c:pipeline(cmds)
  if not r then
    self:drop()
    return nil, e
  end
  for i = 1, #cmds do
    if type(r[i]) == "table" and r[i].err and ends_connection(": " .. r[i].err) then
      self:drop()
      return nil, r[i].err
    end
  end
  return r
end

-- The SHA of a script, loaded once per connection.
function Conn:sha(name)
  if self.loaded[name] then return self.loaded[name] end
  local sha, err = self:call("SCRIPT", "LOAD", M.scripts[name])
  if not sha then return nil, err end
  self.loaded[name] = sha
  return sha
end

-- evals({ { name, keys, args }, ... }) -> replies (each a value or { err }) | nil, err
-- One round trip for all; a store that forgot its scripts (a restart
-- without a reconnect, SCRIPT FLUSH) loads them again once.
function Conn:evals(list)
  for attempt = 1, 2 do
    local cmds = {}
    for i, e in ipairs(list) do
      local sha, err = self:sha(e[1])
      if not sha then return nil, err end
      local cmd = { "EVALSHA", sha, #e[2] }
      for _, k in ipairs(e[2]) do cmd[#cmd + 1] = k end
      for _, a in ipairs(e[3]) do cmd[#cmd + 1] = a end
      cmds[i] = cmd
    end
    local r, err = self:pipeline(cmds)
    if not r then return nil, err end
    local noscript = false
    for i = 1, #list do
      local e = type(r[i]) == "table" and r[i].err
      if type(e) == "string" and e:find("^NOSCRIPT") then noscript = true end
    end
    if not noscript or attempt == 2 then return r end
    self.loaded = {}
  end
end

-- eval(name, keys, args) -> reply | nil, err
function Conn:eval(name, keys, args)
  local r, err = self:evals({ { name, keys, args } })
  if not r then return nil, err end
  if type(r[1]) == "table" and r[1].err then return nil, r[1].err end
  return r[1]
end

function Conn:close()
  if self.client then self.client:close() end
  self.client = nil
end

-- beat(conn, s, kind, id, info) -> true | nil, err: kind "watchers" or "workers".
function M.beat(conn, s, kind, id, info)
  return conn:eval("beat", { s.keys[kind] }, { id, require("cjson").encode(info) })
end

-- ---------------------------------------------------------------- dead entries

-- dead(limit) -> entries (newest first, at most limit, each its fields and
-- .entry_id), how many there are | nil, err. {}, 0 when cluster is off.
function M.dead(limit)
  local s, err = M.settings()
  if not s then
    if err then return nil, err end
    return {}, 0
  end
  local c, cerr = require("eventilator.store").connect()
  if not c then return nil, cerr end
  local r, perr = c:pipeline({ { "XLEN", s.keys.dead },
    { "XREVRANGE", s.keys.dead, "+", "-", "COUNT", limit } })
  c:close()
  if not r then return nil, perr end
  for i = 1, 2 do
    if type(r[i]) == "table" and r[i].err then return nil, r[i].err end
  end
  local list = {}
  for i, m in ipairs(r[2]) do
    list[i] = M.fields(m[2])
    list[i].dead_id = m[1]
  end
  return list, r[1], s
end

-- One line for a dead entry.
function M.dead_line(s, d)
  local t = tonumber(d.time)
  return string.format("dead entry %s of %s: %s %s (from %s%s): %s (%s deliveries, last by %s)",
    tostring(d.entry), s.stream, tostring(d.name), tostring(d.text), tostring(d.sentinel),
    t and os.date(", heard %Y-%m-%d %H:%M:%S", math.floor(t)) or "", tostring(d.reason),
    tostring(d.deliveries), tostring(d.worker))
end

-- dead_lines(limit) -> lines ("dead entry ..."; a last one when there are
-- more), or one line saying why they cannot be known. {} when cluster is off
-- or nothing is dead. For `history` and `sentinels status`.
function M.dead_lines(limit)
  local list, n, s = M.dead(limit or 20)
  if not list then return { "cluster: the dead entries cannot be read: " .. tostring(n) }, true end
  local out = {}
  for i, d in ipairs(list) do out[i] = M.dead_line(s, d) end
  if n > #list then out[#out + 1] = string.format("... %d more in %s", n - #list, s.keys.dead) end
  return out, n > 0
end

return M
