-- eventilator.cluster_work: a worker (`eventilator work`, or the one a
-- watcher starts; docs/cluster.md). It reads entries of the stream as a
-- consumer of the group and runs each in its runner (src/watch/cluster.c): the
-- event path of watch mode, with ev.source = "cluster". Per entry:
--
-- - the handlers done by an earlier delivery (the set <stream>:done:<id>)
--   are skipped, and each handler that succeeds is added to it by the
--   runner before the next one starts;
-- - while it runs the worker keeps the entry its own (KEEP resets its idle
--   time), so it is taken over only when this worker is gone or cut off
--   for claim_after;
-- - all succeeded: XACK (and the done set goes); exit 2 (the event cannot be
--   parsed): set aside at once; a failure: retried by this worker with a
--   back-off, until the entry has been delivered max_deliveries times:
--   then set aside in <stream>:dead with the reason.
--
-- A master's entries run one at a time, in stream order, across all the
-- workers: an entry whose master's order list (<stream>:order:<master>) has
-- an earlier entry still pending waits here, held (its idle time reset, so
-- nobody takes it over) and asked about again with a back-off, while this
-- worker runs other masters' entries. The worker that acknowledges (or sets
-- aside) a master's entry is handed the next one (ACK, DEAD), whoever held
-- it, and runs it next. A worker that stops lets go of what it held.
--
-- Between entries: entries handed over or whose turn has come run first,
-- then entries idle past claim_after (a dead worker's, or a retry nobody came
-- back for) are taken over, then this worker's own retries when due, then
-- new entries (XREADGROUP, blocking a short while so that a signal is acted
-- on soon).
local cluster = require("eventilator.cluster")
local log = require("eventilator.log")

local M = {}

M.RETRY_FIRST = 1      -- s; doubles per delivery, at most RETRY_MAX and claim_after
M.RETRY_MAX = 60
M.KILL_MARGIN = 5      -- s past the budget: a run still going is killed (its watchdog fires at +2)
M.TIDY_EVERY = 60      -- s between removals of consumers long gone
M.GONE_AFTER = 3600    -- s: a consumer idle this long with nothing pending is removed from the group
M.TURN_FIRST = 0.05    -- s: an entry waiting for its master's turn is asked about again; doubles,
M.TURN_MAX = 1         -- at most this (the worker that finishes the earlier entry is handed it anyway)
M.WAITING_MAX = 1000   -- entries waiting here for their turn: beyond this no new ones are read
M.HOLD_BATCH = 500     -- ids per HOLD or RELEASE call

-- The store stopped answering (logged once), or answers again.
local function down(w, err)
  if not w.down then
    w.down = w.api.now()
    log.warn("cluster worker %s: the store does not answer (%s): waiting for it", w.me, tostring(err))
  end
  w.api.sleep(w.backoff)
  w.backoff = math.min(w.backoff * 2, 2)
end

local function up(w)
  if w.down then
    log.info("cluster worker %s: the store answers again after %.1f s", w.me, w.api.now() - w.down)
    w.down = nil
  end
  w.backoff = 0.1
end

local function ensure_group(w)
  local s = w.s
  local ok, err = w.conn:call("XGROUP", "CREATE", s.stream, s.group, "$", "MKSTREAM")
  if ok or tostring(err):find("BUSYGROUP", 1, true) then
    if ok then log.info("cluster worker %s: created group %s of %s", w.me, s.group, s.stream) end
    return true
  end
  down(w, err)
end

-- The mark the runner makes after each handler that succeeds: its own connection, made in the runner.
-- A handler is named by its rule file's name and line (its id without the folder): every host has the
-- same rules, not always in the same rules_dir.
local function marker(s)
  local conn
  return function(id, delivery)
    conn = conn or cluster.connection()
    local key = s.keys.done .. delivery:sub(#s.stream + 2)
    local cmds = { { "SADD", key, id:match("[^/]*$") }, { "PEXPIRE", key, cluster.DONE_TTL * 1000 } }
    local r, err = conn:pipeline(cmds)
    if not r then r, err = conn:pipeline(cmds) end -- once more, on a new connection
    if not r then error(err, 0) end
  end
end

local function entry_of(id, fields, deliveries)
  return { id = id, fields = fields and cluster.fields(fields), deliveries = deliveries }
end

-- The order list of the entry's master; nil for an event of no master, or an entry appended before the lists.
local function order_key(w, e)
  local m = e.fields and e.fields.master
  if m and m ~= "" then return w.s.keys.order .. m end
end

-- The entry waits here for its turn.
local function wait_turn(w, e)
  log.debug("cluster worker %s: entry %s waits for an earlier entry of master %s", w.me, e.id,
    tostring(e.fields.master))
  w.waiting[#w.waiting + 1] = { e = e, key = order_key(w, e), delay = M.TURN_FIRST,
    due = w.api.now() + M.TURN_FIRST }
end

-- Forget the entries (ids: a set) waiting here or handed over: no longer this consumer's.
local function forget(w, ids)
  local keep = {}
  for _, x in ipairs(w.waiting) do
    if not ids[x.e.id] then keep[#keep + 1] = x end
  end
  w.waiting = keep
  keep = {}
  for _, e in ipairs(w.next) do
    if not ids[e.id] then keep[#keep + 1] = e end
  end
  w.next = keep
end

-- ACK's or DEAD's reply: the master's next entry handed to this worker runs next.
local function handed(w, r)
  if type(r) ~= "table" then return r end
  local e = entry_of(r[1], r[4], r[3])
  e.head = true
  forget(w, { [e.id] = true })
  w.next[#w.next + 1] = e
  if r[2] ~= w.me then log.debug("cluster worker %s: handed entry %s, held by %s", w.me, e.id, r[2]) end
  return 1
end

-- The ids of the entries waiting here, and of those handed over not yet run.
local function held_ids(w)
  local ids = {}
  for _, x in ipairs(w.waiting) do ids[#ids + 1] = x.e.id end
  for _, e in ipairs(w.next) do ids[#ids + 1] = e.id end
  return ids
end

-- They stay this worker's (HOLD: idle time reset); those that are not any more are forgotten.
local function hold(w)
  w.next_hold = w.api.now() + w.refresh
  local ids = held_ids(w)
  for i = 1, #ids, M.HOLD_BATCH do
    local args = { w.s.group, w.me }
    table.move(ids, i, math.min(i + M.HOLD_BATCH - 1, #ids), 3, args)
    local r = w.conn:eval("hold", { w.s.keys.stream }, args)
    if type(r) ~= "table" then return end -- the store does not answer: the next turn says so
    local gone = {}
    for _, id in ipairs(r) do gone[id] = true end
    forget(w, gone)
  end
end

-- Stopping or reloading: what waits here, or was handed over, is let go of (RELEASE), for any worker to
-- take over at once.
local function release(w)
  local ids = held_ids(w)
  local n = 0
  for i = 1, #ids, M.HOLD_BATCH do
    local args = { w.s.group, w.me, math.floor(w.s.claim_after * 1000) }
    table.move(ids, i, math.min(i + M.HOLD_BATCH - 1, #ids), 4, args)
    n = n + (tonumber(w.conn:eval("release", { w.s.keys.stream }, args)) or 0)
  end
  if n > 0 then
    log.info("cluster worker %s: let go of %d entr%s waiting for their turn: another worker takes them over",
      w.me, n, n == 1 and "y" or "ies")
  end
  w.waiting, w.next = {}, {}
end

-- The first entry waiting here of each master: only it is asked about (the others come after it).
local function firsts(w)
  local list, seen = {}, {}
  for _, x in ipairs(w.waiting) do
    if not seen[x.key] then
      seen[x.key] = true
      list[#list + 1] = x
    end
  end
  return list
end

-- The first entries of their masters that are due to be asked about again, in one round trip: those
-- whose turn it is go to w.next.
local function due_turns(w, now)
  local calls, which = {}, {}
  for _, x in ipairs(firsts(w)) do
    if x.due <= now then
      calls[#calls + 1] = { "order", { w.s.keys.stream, x.key }, { w.s.group, x.e.id, w.me } }
      which[#which + 1] = x
    end
  end
  if #calls == 0 then return end
  local r = w.conn:evals(calls) or {}
  local gone, turn = {}, {}
  for i, x in ipairs(which) do
    local v = r[i]
    if v == 1 then
      x.e.head = true
      turn[#turn + 1] = x.e
    end
    if v == 1 or v == 0 then
      gone[x.e.id] = true
    else -- an earlier one still pending, or no answer
      x.delay = math.min(x.delay * 2, w.turn_max)
      x.due = now + x.delay
    end
  end
  forget(w, gone) -- before the turns go to w.next, which forget clears of them too
  table.move(turn, 1, #turn, #w.next + 1, w.next)
end

-- May the entry run now (ORDER)? 1, -1 (wait), 0 (no longer this worker's), nil (the store does not answer).
local function its_turn(w, e)
  local key = order_key(w, e)
  if not key or e.head then return 1 end
  local r, err = w.conn:eval("order", { w.s.keys.stream, key }, { w.s.group, e.id, w.me })
  if r == nil then return down(w, err) end
  up(w)
  return r
end

-- An entry idle for min_idle s (of anyone's when id is ""), taken: entry | nil.
local function claim(w, id, min_idle)
  local r, err = w.conn:eval("claim", { w.s.keys.stream },
    { w.s.group, w.me, math.floor(min_idle * 1000), id })
  if r == nil then
    if tostring(err):find("NOGROUP", 1, true) then ensure_group(w) else down(w, err) end
    return nil
  end
  up(w)
  if type(r) ~= "table" or #r == 0 then return nil end
  local e = entry_of(r[1], r[5] or nil, r[4])
  if r[2] ~= w.me then
    w.st.claimed = w.st.claimed + 1
    log.info("cluster worker %s: took over entry %s from %s (idle %.1f s; delivery %d)", w.me, e.id, r[2],
      r[3] / 1000, e.deliveries)
  end
  return e
end

local function read_new(w, block)
  local s = w.s
  local r, err = w.conn:call("XREADGROUP", "GROUP", s.group, w.me, "COUNT", 1, "BLOCK",
    math.max(1, math.floor(block * 1000)), "STREAMS", s.stream, ">")
  if r == nil then
    if err == nil then -- nothing new
      up(w)
      return nil
    end
    if tostring(err):find("NOGROUP", 1, true) then ensure_group(w) else down(w, err) end
    return nil
  end
  up(w)
  local m = r[1] and r[1][2] and r[1][2][1]
  if m then return entry_of(m[1], m[2] or nil, 1) end
end

-- This worker's own retry that is due: taken again (a delivery more), if still idle since.
local function due_retry(w, now)
  for i, r in ipairs(w.retry) do
    if r.due <= now then
      table.remove(w.retry, i)
      local e = claim(w, r.id, r.delay)
      if e or w.down then return e end
      return nil -- taken over meanwhile, or gone: not ours any more
    end
  end
end

local function what(e)
  local f = e.fields or {}
  return string.format("%s (%s %s)", e.id, tostring(f.name), tostring(f.text))
end

-- Set aside in <stream>:dead, with why.
local function dead(w, e, why)
  local s = w.s
  local args = { s.group, e.id, w.me, s.maxlen, "entry", e.id, "reason", why, "deliveries", e.deliveries,
    "worker", w.me }
  local names = {}
  for k in pairs(e.fields or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    args[#args + 1] = k
    args[#args + 1] = e.fields[k]
  end
  local keys = { s.keys.stream, s.keys.dead, s.keys.done .. e.id, order_key(w, e) }
  local r, err = w.conn:eval("dead", keys, args)
  if r == nil then return down(w, err) end -- still pending: set aside when it is taken again
  handed(w, r)
  w.st.dead = w.st.dead + 1
  log.error("cluster worker %s: entry %s set aside in %s after %d deliveries: %s", w.me, what(e), s.keys.dead,
    e.deliveries, why)
end

-- All succeeded: acknowledged, if still ours; else kept to try again.
local function ack(w, e)
  local r, err = w.conn:eval("ack", { w.s.keys.stream, w.s.keys.done .. e.id, order_key(w, e) },
    { w.s.group, e.id, w.me })
  if r == nil then
    w.unacked[#w.unacked + 1] = e
    return down(w, err)
  end
  r = handed(w, r)
  if type(r) == "string" then
    log.warn("cluster worker %s: entry %s ran here while %s had taken it over (this worker could not reach "
      .. "the store for claim_after): its handlers may run twice", w.me, e.id, r)
  end
end

local function failed(w, e, why)
  local s = w.s
  w.st.failed = w.st.failed + 1
  if e.deliveries >= s.max_deliveries then
    return dead(w, e, string.format("failed on delivery %d of %d: %s", e.deliveries, s.max_deliveries, why))
  end
  local delay = math.min(M.RETRY_FIRST * 2 ^ (e.deliveries - 1), M.RETRY_MAX, s.claim_after)
  w.retry[#w.retry + 1] = { id = e.id, due = w.api.now() + delay, delay = delay }
  log.warn("cluster worker %s: entry %s failed on delivery %d (%s); tried again in %.0f s", w.me, what(e),
    e.deliveries, why, delay)
end

local function beat(w, running)
  local ok = cluster.beat(w.conn, w.s, "workers", w.me, { host = w.host, pid = w.api.pid, started = w.started,
    ran = w.st.ran, failed = w.st.failed, dead = w.st.dead, claimed = w.st.claimed, running = running,
    waiting = #w.waiting })
  w.next_beat = w.api.now() + cluster.HEARTBEAT
  return ok
end

-- Wait for the run: its code and failures, keeping the entry ours meanwhile.
local function wait(w, e)
  local api, s = w.api, w.s
  local refresh = w.refresh
  local kill_at = api.now() + s.budget + M.KILL_MARGIN
  local warned = false
  while true do
    local code, why = api.result(refresh)
    if code ~= nil then return code, why end
    if api.now() >= kill_at then
      api.kill()
      return false, string.format("still running %d s past its budget: killed", M.KILL_MARGIN)
    end
    local r = w.conn:eval("keep", { s.keys.stream }, { s.group, e.id, w.me })
    if type(r) == "string" and not warned then
      warned = true
      log.warn("cluster worker %s: entry %s, running here, was taken over by %s: its handlers may run twice",
        w.me, e.id, r)
    end
    if api.now() >= w.next_hold then hold(w) end
    if api.now() >= w.next_beat then beat(w, e.id) end
  end
end

local function handle(w, e)
  local s, f = w.s, e.fields
  if not f or not f.name then
    log.error("cluster worker %s: entry %s was trimmed from %s (maxlen %d) before it ran: its event is lost",
      w.me, e.id, s.stream, s.maxlen)
    return ack(w, e)
  end
  local turn = its_turn(w, e)
  if turn == nil or turn == -1 then return wait_turn(w, e) end -- no answer: asked again, as a wait
  if turn ~= 1 then return end -- acknowledged meanwhile, or another worker's now
  if e.deliveries > s.max_deliveries then
    return dead(w, e, string.format("delivered %d times (max_deliveries %d) and never finished: the workers "
      .. "running it died or were cut off", e.deliveries, s.max_deliveries))
  end
  local done = {}
  if e.deliveries > 1 then
    local d, err = w.conn:call("SMEMBERS", s.keys.done .. e.id)
    if not d then return down(w, err) end -- still ours, pending: taken again later
    for i, name in ipairs(d) do done[i] = w.rules_dir .. "/" .. name end -- the id this host's run gives it
  end
  local ok, err = w.api.run{ name = f.name, text = f.text or "", sentinel = f.sentinel,
    synthetic = f.synthetic == "1", delivery = s.stream .. ":" .. e.id, done = table.concat(done, "\n") }
  if not ok then return failed(w, e, err) end
  local code, why = wait(w, e)
  w.st.ran = w.st.ran + 1
  if code == 0 then return ack(w, e) end
  if code == 2 then return dead(w, e, "exit 2: the event cannot be parsed (" .. tostring(why) .. ")") end
  failed(w, e, code == false and why or (why ~= "" and why or ("exit " .. tostring(code))))
end

-- Consumers gone for GONE_AFTER with nothing pending leave the group, and their heartbeats go.
local function tidy(w)
  local s = w.s
  local list = w.conn:call("XINFO", "CONSUMERS", s.stream, s.group)
  for _, c in ipairs(type(list) == "table" and list or {}) do
    local info = cluster.fields(c)
    if info.name ~= w.me and info.pending == 0 and (tonumber(info.idle) or 0) > M.GONE_AFTER * 1000 then
      w.conn:call("XGROUP", "DELCONSUMER", s.stream, s.group, info.name)
      w.conn:call("HDEL", s.keys.workers, info.name)
    end
  end
end

-- One turn: what to run next, and run it.
local function turn(w)
  local api = w.api
  local now = api.now()
  if now >= w.next_beat then beat(w) end
  if #w.unacked > 0 then
    local list = w.unacked
    w.unacked = {}
    for _, e in ipairs(list) do ack(w, e) end
    return
  end
  if now >= w.next_tidy then
    tidy(w)
    w.next_tidy = now + M.TIDY_EVERY
  end
  if now >= w.next_hold then hold(w) end
  due_turns(w, now)
  local e = table.remove(w.next, 1)
  if not e and now >= w.next_claim then
    e = claim(w, "", w.s.claim_after)
    if not e then w.next_claim = now + w.tick end
  end
  e = e or due_retry(w, now)
  if not e then
    local wake = math.min(w.next_claim, w.next_beat, #w.waiting > 0 and w.next_hold or math.huge)
    for _, r in ipairs(w.retry) do wake = math.min(wake, r.due) end
    for _, x in ipairs(firsts(w)) do wake = math.min(wake, x.due) end
    local block = math.min(math.max(wake - now, 0.001), w.block)
    if #w.waiting < M.WAITING_MAX then
      e = read_new(w, block)
    else
      api.sleep(block) -- enough read ahead: what waits here runs first
    end
  end
  if e then handle(w, e) end
end

-- loop(api) -> exit code, or "reload" (SIGHUP: the host loads the new set and calls again)
function M.loop(api)
  local s, host, conn = cluster.start("worker")
  if not s then return 2 end
  local cfg = require("eventilator.config")
  local timeout = (cfg.redis or {}).timeout or 2
  local rules = os.getenv("EVENTILATOR_RULES") -- the folder rules.c loads from
  if not rules or rules == "" then rules = cfg.rules_dir end
  local w = { api = api, s = s, conn = conn, host = host, me = host .. ":" .. api.pid,
    rules_dir = rules, retry = {}, unacked = {}, st = { ran = 0, failed = 0, dead = 0, claimed = 0 },
    started = os.time(), backoff = 0.1, next_beat = 0, next_claim = 0, next_tidy = 0, next_hold = 0,
    tick = math.min(math.max(s.claim_after / 4, 0.2), 1), block = math.min(1, timeout / 2),
    waiting = {}, next = {}, refresh = math.min(math.max(s.claim_after / 3, 0.1), 10) }
  w.turn_max = math.min(M.TURN_MAX, w.refresh)
  api.on_done(marker(s))
  log.info("cluster worker %s: working %s as group %s (claim_after %g s, max_deliveries %d)", w.me, s.stream,
    s.group, s.claim_after, s.max_deliveries)
  ensure_group(w)
  while not api.stopping() do
    if api.reload() then
      release(w)
      w.conn:close()
      return "reload"
    end
    turn(w)
  end
  release(w)
  log.info("cluster worker %s: stopped: %d entries run, %d failed, %d set aside, %d taken over", w.me,
    w.st.ran, w.st.failed, w.st.dead, w.st.claimed)
  w.conn:close()
  return 0
end

return M
