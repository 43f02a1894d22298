-- Cluster mode on real Sentinels (docs/cluster.md, contract section 16):
-- three Sentinels monitoring 30 masters and the store itself (a master with
-- a replica, AOF everysec, monitored as "store": every eventilator process
-- finds it through redis.sentinel); three watchers (`watch --no-work`) and
-- three workers (`work`), each in a folder of its own (spec/support/cluster.lua).
--
-- 1. All 30 masters fail at once. While the burst is handled, a watcher and
--    the worker inside the slow handler are killed (SIGKILL): every event
--    the Sentinels raised runs its handlers exactly once, counted at the
--    receiver and by the slow handler's own line, and the killed worker's
--    entry is taken over within claim_after + 2 s.
-- 2. The 29 single masters back, then down again; mid-burst the store is
--    killed and started again from its AOF: no event raised is lost.
-- 3. The same, and mid-burst the store fails over (SENTINEL FAILOVER): the
--    processes follow it, and no event raised is lost.
--
-- What the Sentinels raised is read from their own logs (on a loaded machine
-- they may flap or fail over twice: each raise is an event, counted by the
-- documented dedupe). Nothing waits for "nothing more happens": each wait is
-- for what the logs say is owed to have run.
local procs = require("procs")
local standin = require("standin")
local constellation = require("constellation")
local watcher = require("watcher")
local cl = require("cluster")

local CLAIM_AFTER = 3
local MASTERS = 30
local WINDOW = 5 -- watch.dedupe_window's default

local function note(fmt, ...) io.stderr:write("[cluster] " .. string.format(fmt, ...) .. "\n") end

describe("cluster mode on real Sentinels: 30 masters down at once", function()
  local c, receiver, dir, replica, rule, config
  local watchers, workers = {}, {}

  -- "ip:port" of the store's master, as Sentinel 1 names it.
  local function store_port()
    local out = c:sentinel_cli(1, "sentinel", "get-master-addr-by-name", "store")
    return tonumber(out:match("\n(%d+)$"))
  end

  local function xlen() return tonumber(procs.cli(store_port(), "xlen", "eventilator:events")) or 0 end

  -- The single masters (pod2..pod30) up again on their ports, and every Sentinel sees them so.
  local function masters_back()
    for k = 2, MASTERS do
      local n = c.masters[k].node
      local _
      _, n.pid, n.rpid = procs.redis_serve(n.dir .. "/redis.conf", { port = n.port, out = n.dir .. "/stdout.log",
        log = n.dir .. "/redis.log" })
      n.up = true
    end
    procs.wait(function()
      for i = 1, 3 do
        local out = c:sentinel_cli(i, "sentinel", "masters")
        local _, up = out:gsub("\nflags\nmaster\n", "")
        if up < MASTERS + 1 then return false end -- the 30 and the store
      end
      return true
    end, 60, "the Sentinels to see the masters back")
  end

  -- What the Sentinels raised since `t0` (procs.wall) that the rule runs on: c:raised()'s events.
  local function raised_since(t0)
    local out = {}
    for _, e in ipairs(c:raised()) do
      if e.t >= t0 and (e.name == "+odown" or e.name == "+switch-master") then out[#out + 1] = e end
    end
    return out
  end

  -- Until a Sentinel has logged the first +sdown of a master since `t0`.
  local function burst_begun(t0)
    procs.wait(function()
      for _, e in ipairs(c:raised("+sdown")) do
        if e.t >= t0 and e.text:find("^master pod") then return true end
      end
      return false
    end, 60, "the burst's first +sdown")
  end

  -- SIGKILL the masters from pod<from> to pod30; returns the +odown each must raise.
  local function kill_masters(from)
    local pids, owed = {}, {}
    for k = from, MASTERS do
      local n = k == 1 and c:node(c.master_port) or c.masters[k].node
      pids[#pids + 1] = n.rpid
      n.up = false
      owed[#owed + 1] = string.format("+odown master pod%d 127.0.0.1 %d", k, n.port)
    end
    os.execute("kill -KILL " .. table.concat(pids, " ") .. " 2>/dev/null")
    return owed
  end

  -- Until the events `expected` (identities, or patterns with a leading "^") are raised, and
  -- every event raised since `t0` has run as often as owed (at least once with `at_least`),
  -- finished too, and nothing waits in the stream. Returns raised, posted, owed.
  local function all_run(t0, expected, timeout, at_least)
    local raised, posted, owed, why
    local ok = pcall(procs.wait, function()
      posted = cl.posted(receiver) -- before the logs: a raise after this read cannot be counted on one side only
      local finished = cl.finished(dir)
      raised = raised_since(t0)
      owed = watcher.owed(raised, WINDOW)
      for _, want in ipairs(expected) do
        local found = owed[want] ~= nil
        for id in pairs(want:sub(1, 1) == "^" and owed or {}) do found = found or id:find(want) ~= nil end
        if not found then
          why = "not raised yet: " .. want
          return false
        end
      end
      for id, range in pairs(owed) do
        local n, f = posted[id] or 0, finished[id] or 0
        -- exactly: as often as owed, each run to its end; at least: a run at least, one to its end
        if n < range[1] or (not at_least and (n > range[2] or f ~= n)) or f < range[1] then
          why = string.format("%s: owed %d..%d, posted %d, finished %d", id, range[1], range[2], n, f)
          return false
        end
      end
      local lag, pending = cl.backlog(store_port())
      why = string.format("the stream's backlog: lag %s, pending %s", tostring(lag), tostring(pending))
      return lag == 0 and pending == 0
    end, timeout)
    assert(ok, "not all run: " .. tostring(why))
    return raised, posted, owed
  end

  setup(function()
    dir = procs.tmpdir()
    receiver = standin.start()
    procs.write(dir .. "/sentinels.conf", "")
    local sport
    c = constellation.start{ conf = dir .. "/sentinels.conf", masters = MASTERS, scripts = false,
      keep = os.getenv("EVENTILATOR_SPEC_KEEP") ~= nil,
      setup = function(k)
        sport = k.store.port
        k:store_cli("config", "set", "appendonly", "yes")
        k:store_cli("config", "set", "appendfsync", "everysec")
        k:store_cli("config", "rewrite") -- a restart reads the AOF
        replica = procs.start_redis({ "replicaof 127.0.0.1 " .. sport, "appendonly yes", "appendfsync everysec" })
      end,
      sentinel_conf = function()
        return { "sentinel monitor store 127.0.0.1 " .. sport .. " 2",
          "sentinel down-after-milliseconds store 5000", "sentinel failover-timeout store 10000" }
      end }
    local addrs = {}
    for i = 1, 3 do addrs[i] = string.format("%q", c:sentinel_addr(i)) end
    addrs = table.concat(addrs, ", ")
    config = string.format([[
redis = { sentinel = { master = "store", addrs = { %s } } }
watch = { sentinels = { %s } }
cluster = { claim_after = %d }
budget = 20
]], addrs, addrs, CLAIM_AFTER)
    rule = cl.rule(receiver.url, dir, { "+odown", "+switch-master" })
    for i = 1, 3 do watchers[i] = cl.watcher(config, rule) end
    for i = 1, 3 do workers[i] = cl.worker(config, rule) end
  end)

  teardown(function()
    cl.cleanup(watchers)
    cl.cleanup(workers)
    if receiver then receiver.stop() end
    if c then c:stop() end
    if replica then replica.stop() end
    if os.getenv("EVENTILATOR_SPEC_KEEP") then note("kept %s and %s", c and c.root or "?", dir) else procs.rmtree(dir) end
  end)

  it("runs each raised event once, through a watcher and a worker killed mid-burst", function()
    local t0 = procs.wall()
    procs.write(dir .. "/hold", "")
    local expected = kill_masters(1)
    procs.wait(function() return cl.held(dir) ~= nil end, 60, "a worker inside the slow handler")
    local held = cl.held(dir)
    procs.kill(watchers[1].pid, "KILL")
    local killed = cl.uptime()
    procs.kill(held.pid, "KILL")
    note("killed watcher %d and worker %d (inside the slow handler of %s)", watchers[1].pid, held.pid, held.id)
    c:wait_failover(60)
    expected[#expected + 1] = "^%+switch%-master pod1 "
    local raised, posted, owed = all_run(t0, expected, 120)
    local again
    for _, e in ipairs(cl.inside(dir)) do
      if e.id == held.id and e.pid ~= held.pid then again = again or e end
    end
    assert.truthy(again, "the held entry ran again")
    assert.is_true(again.t - killed <= CLAIM_AFTER + 2, string.format("taken over %.2f s after the kill",
      again.t - killed))
    local n, odown = 0, 0
    for id in pairs(owed) do
      n = n + 1
      if id:find("^%+odown") then odown = odown + 1 end
    end
    assert.is_true(odown >= MASTERS, "every master's +odown raised: " .. odown)
    for id, k in pairs(posted) do assert.truthy(owed[id], id .. " posted " .. k .. " times, never raised") end
    note("%d reports raised, %d events, each run as owed (the one held run again %.1f s after the kill)", #raised,
      n, again.t - killed)
  end)

  it("loses no event raised while the store is killed and restarted from its AOF", function()
    masters_back()
    receiver.clear()
    os.remove(dir .. "/finished")
    local before = xlen()
    local t0 = procs.wall()
    local expected = kill_masters(2)
    burst_begun(t0)
    local port = store_port()
    local n = c.store.port == port and c.store or nil
    assert.truthy(n, "the store's master is the node started first")
    local appended = xlen() - before
    procs.kill(n.rpid, "KILL")
    n.up = false
    note("store killed with %d entries of the burst appended", appended)
    c:start_store()
    local raised, posted = all_run(t0, expected, 120, true)
    local twice = 0
    for _, k in pairs(posted) do if k > 1 then twice = twice + 1 end end
    note("%d reports raised; every event run; %d run twice (their done marks or ack were in the second the AOF lost)",
      #raised, twice)
  end)

  it("loses no event raised while the store fails over", function()
    masters_back()
    receiver.clear()
    os.remove(dir .. "/finished")
    local old = store_port()
    procs.wait(function()
      return procs.cli(replica.port, "info", "replication"):find("master_link_status:up", 1, true) ~= nil
    end, 30, "the store's replica in sync")
    local t0 = procs.wall()
    local expected = kill_masters(2)
    burst_begun(t0)
    assert.are.equal("OK", c:sentinel_cli(1, "sentinel", "failover", "store"))
    procs.wait(function() return store_port() ~= old end, 60, "the store to fail over")
    expected[#expected + 1] = "^%+switch%-master store "
    local raised, posted = all_run(t0, expected, 120, true)
    assert.are.equal(replica.port, store_port())
    local switched = false
    for id in pairs(posted) do
      if id:find("^%+switch%-master store ") then switched = true end
    end
    assert.is_true(switched, "the store's own +switch-master ran, from the new master's stream")
    local appenders = 0
    for _, w in ipairs(watchers) do
      if w:log_count("reconnected to the store") > 0 then appenders = appenders + 1 end
    end
    note("%d reports raised, every event run; %d appender(s) offered their last appends again", #raised, appenders)
  end)
end)
