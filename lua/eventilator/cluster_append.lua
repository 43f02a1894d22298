-- eventilator.cluster_append: the watcher's appender (docs/cluster.md). It
-- runs in a fork of the watcher (src/watch/sink.c, src/watch/cluster.c) and
-- appends the events the watcher heard to the stream, each through the
-- store's APPEND script (eventilator.cluster): the identity check and the
-- XADD in one step, so three watchers hearing one event append it once.
--
-- While the store does not answer, the events read stay here and no more are
-- read: the pipe fills, then the watcher's queue (watch.queue, its fair drops
-- and their log line), and the log says so once. Once it answers again they
-- are appended, in order. A new connection after a broken one first offers
-- again what was appended in the KEEP seconds before the break: a store
-- restarted from its AOF (everysec) or a replica promoted in a failover may
-- not have it, and the script makes the offer a no-op where it does.
local cluster = require("eventilator.cluster")
local log = require("eventilator.log")

local M = {}

M.KEEP = 10    -- s: appended events kept for a re-offer after a reconnect
M.GRACE = 10   -- s: after the watcher's end, how long held events wait for the store
M.BATCH = 512  -- events per round trip

-- The APPEND call for one event: { name, keys, args }. An event about a
-- master names it in the entry (`master`) and goes to its order list too.
local function call_of(s, me, e)
  local args = { e.watcher, e.seq, e.time, s.window, cluster.KEEP_SEEN * 1000, s.maxlen,
    e.synthetic and "1" or "0", s.group,
    "name", e.name, "text", e.text, "sentinel", e.sentinel, "time", e.time, "id", e.id, "watcher", me }
  if e.synthetic then
    args[#args + 1] = "synthetic"
    args[#args + 1] = "1"
  end
  local keys = { s.keys.seen .. e.id, s.keys.stream }
  local master = e.pod ~= "" and e.pod or nil -- as event.c parsed it (src/watch/sink.c)
  if master then
    args[#args + 1] = "master"
    args[#args + 1] = master
    keys[3] = s.keys.order .. master
  end
  return { "append", keys, args }
end

-- Append the first n events of held, in one round trip: true | nil, err.
local function append(a, n)
  local calls = {}
  for i = 1, n do calls[i] = call_of(a.s, a.me, a.held[i]) end
  local r, err = a.conn:evals(calls)
  if not r then return nil, err end
  for i = 1, n do
    local x = r[i]
    if type(x) ~= "table" or x.err then
      return nil, "APPEND: " .. tostring(type(x) == "table" and x.err or x) -- all again: each is idempotent
    end
    if x[1] == 1 then a.appended = a.appended + 1 else a.merged = a.merged + 1 end
  end
  return true
end

-- A new connection after a broken one: what was appended lately goes first, again.
local function reoffer(a, now)
  a.conn.reconnected = false
  local again = {}
  for _, r in ipairs(a.recent) do
    if now - r.at < cluster.KEEP_SEEN / 2 then again[#again + 1] = r.e end -- its claim is still in the store
  end
  local n = #again
  if n == 0 then return end
  for _, e in ipairs(a.held) do again[#again + 1] = e end
  a.held, a.recent = again, {}
  log.info("cluster appender: reconnected to the store: %d event(s) appended in the %d s before the break "
    .. "offered again (a store restarted or failed over may have lost them; the store keeps one of each)",
    n, M.KEEP)
end

-- Drop from recent what the store has had for KEEP s while answering.
local function prune(a, now)
  local keep = {}
  for _, r in ipairs(a.recent) do
    if r.at >= now - M.KEEP then keep[#keep + 1] = r end
  end
  a.recent = keep
end

-- One attempt at the held events: true when they are in; false after a failure (logged once).
local function flush(a)
  if a.conn.broke and #a.held == 0 and not a.conn:get() then return false end -- only to re-offer
  local now = a.api.now()
  if a.conn.reconnected then reoffer(a, now) end
  if #a.held == 0 then return true end
  local n = math.min(#a.held, M.BATCH)
  local ok, err = append(a, n)
  now = a.api.now()
  if not ok then
    if not a.down then
      a.down = now
      log.warn("cluster appender: cannot append to the store (%s): %d event(s) held here, and the "
        .. "watcher's queue (watch.queue) keeps what follows, until the store answers", tostring(err),
        #a.held)
    end
    return false
  end
  for i = 1, n do a.recent[#a.recent + 1] = { e = a.held[i], at = now } end
  a.held = table.move(a.held, n + 1, #a.held, 1, {})
  if a.down then
    log.info("cluster appender: the store answers again after %.1f s: held events appended", now - a.down)
    a.down = nil
  end
  prune(a, now)
  return true
end

local function beat(a)
  local ok = cluster.beat(a.conn, a.s, "watchers", a.me, { host = a.host, pid = a.api.watcher_pid,
    started = a.started, appended = a.appended, merged = a.merged, held = #a.held })
  if ok and not a.down then prune(a, a.api.now()) end
end

-- loop(api) -> exit code: until the watcher closes the pipe and what it sent is in the store
-- (or GRACE s have passed since without the store).
function M.loop(api)
  local s, host, conn = cluster.start("appender")
  if not s then return 2 end
  local a = { api = api, s = s, conn = conn, host = host, me = host .. ":" .. api.watcher_pid,
    held = {}, recent = {}, appended = 0, merged = 0, started = os.time() }
  local eof_at, backoff, next_beat = nil, 0.1, 0
  while true do
    local now = api.now()
    if #a.held == 0 then
      if eof_at then break end
      local got = api.read(math.max(0, math.min(1, next_beat - now)))
      if got == nil then eof_at = api.now() else a.held = got end
    end
    -- a reconnect (a heartbeat's, maybe) re-offers what was appended lately, new events or not: a
    -- failed-over store may have lost the last of them, and nothing else would bring them back
    if #a.held > 0 or a.conn.reconnected or (a.conn.broke and #a.recent > 0) then
      if not eof_at and a.down and api.hangup() then eof_at = api.now() end -- the watcher went meanwhile
      if flush(a) then
        backoff = 0.1
      elseif eof_at and api.now() - eof_at > M.GRACE then
        log.error("cluster appender: the watcher has stopped and the store has not answered for %d s: %d "
          .. "event(s), and what the pipe still held, not appended by this watcher (the other watchers "
          .. "append what they heard)", M.GRACE, #a.held)
        break
      else
        api.sleep(backoff)
        backoff = math.min(backoff * 2, 2)
      end
    end
    if api.now() >= next_beat then
      beat(a)
      next_beat = api.now() + cluster.HEARTBEAT
    end
  end
  log.info("cluster appender: stopped: %d event(s) appended, %d already there (another watcher's)",
    a.appended, a.merged)
  a.conn:close()
  return 0
end

return M
