-- Cluster mode (docs/cluster.md, contract section 16) on loopback: watchers
-- and workers sharing events through a Redis Stream in a private store. The
-- "Sentinel" is a plain redis-server the spec PUBLISHes events on, so every
-- event is known; spec/cluster_failover_spec.lua has the real Sentinels.
-- Each watcher and worker has a folder of its own (spec/support/cluster.lua),
-- as a process on a host of its own would. Nothing here asserts a duration
-- but the takeover's bound (claim_after + 2 s).
local procs = require("procs")
local standin = require("standin")
local cl = require("cluster")

local CLAIM_AFTER = 2

describe("cluster mode: watchers append, workers run", function()
  local store, fake, receiver, dir, rule
  local watchers, workers = {}, {}

  local function config(extra)
    return string.format([[
redis = { port = %d }
watch = { sentinels = { "127.0.0.1:%d" } }
cluster = { claim_after = %d, max_deliveries = 3 }
budget = 20
%s
]], store.port, fake.port, CLAIM_AFTER, extra or "")
  end

  local function publish(name, text) return procs.cli(fake.port, "publish", name, text) end
  local function xlen() return tonumber(procs.cli(store.port, "xlen", "eventilator:events")) end
  local function settled()
    local lag, pending = cl.backlog(store.port)
    return lag == 0 and pending == 0
  end

  setup(function()
    store = procs.start_redis({ "appendonly yes", "appendfsync everysec" })
    fake = procs.start_redis()
    receiver = standin.start()
    dir = procs.tmpdir()
    rule = cl.rule(receiver.url, dir, { "+odown", "+sdown" })
  end)

  teardown(function()
    cl.cleanup(watchers)
    cl.cleanup(workers)
    if receiver then receiver.stop() end
    if fake then fake.stop() end
    if store then store.stop() end
    procs.rmtree(dir)
  end)

  it("three watchers append each event once (a repeat by one Sentinel is a new one); a worker runs each", function()
    for i = 1, 3 do watchers[i] = cl.watcher(config(), rule) end
    for n = 1, 5 do publish("+odown", string.format("master pod%d 127.0.0.1 %d #quorum 2/2", n, 6000 + n)) end
    publish("+sdown", "slave 127.0.0.1:7001 127.0.0.1 7001 @ pod1 127.0.0.1 6001")
    publish("+sdown", "slave 127.0.0.1:7001 127.0.0.1 7001 @ pod1 127.0.0.1 6001")
    -- every watcher has handled all 7 (appended, or found there): the stream holds 7, not 21
    procs.wait(function()
      local st = cl.status(watchers[1])
      if not st or #st.watchers ~= 3 then return false end
      for _, w in ipairs(st.watchers) do
        if (w.appended or 0) + (w.merged or 0) < 7 then return false end
      end
      return true
    end, 30, "three watchers to hand on 7 events")
    assert.are.equal(7, xlen())
    local first = procs.cli(store.port, "xrange", "eventilator:events", "-", "+", "count", "1")
    assert.truthy(first:find("\nname\n+odown\ntext\nmaster pod1 127.0.0.1 6001 #quorum 2/2\nsentinel\n127.0.0.1:"
      .. fake.port .. "\ntime\n", 1, true), first)
    assert.truthy(first:find("\nid\n+odown master pod1 127.0.0.1 6001\n", 1, true), first)

    workers[1] = cl.worker(config(), rule)
    procs.wait(function() return #cl.inside(dir) >= 7 and settled() end, 30, "the worker to run 7 entries")
    local posted = cl.posted(receiver)
    for n = 1, 5 do assert.are.equal(1, posted[string.format("+odown master pod%d 127.0.0.1 %d", n, 6000 + n)]) end
    assert.are.equal(2, posted["+sdown slave 127.0.0.1:7001 127.0.0.1 7001 @ pod1"])
    for _, r in ipairs(receiver.requests()) do assert.are.equal("cluster", r.json.source) end
    local st, rc = cl.status(workers[1])
    assert.are.equal(0, rc)
    assert.are.same({ 7, 0, 0, 0 }, { st.entries, st.lag, st.pending, st.dead })
    assert.are.equal(1, #st.workers)
    assert.is_true(st.workers[1].alive)
  end)

  it("a worker killed inside a handler: its entry is taken over within claim_after + 2 s, the done handler skipped", function()
    workers[2] = cl.worker(config(), rule)
    workers[3] = cl.worker(config(), rule)
    receiver.clear()
    procs.write(dir .. "/hold", "")
    local id = "+odown master pod9 127.0.0.1 6009"
    publish("+odown", "master pod9 127.0.0.1 6009 #quorum 2/2")
    procs.wait(function() return cl.held(dir) ~= nil end, 30, "a worker inside the slow handler")
    local held = cl.held(dir)
    assert.are.equal(id, held.id)
    local killed = cl.uptime()
    procs.kill(held.pid, "KILL")
    procs.wait(function() return cl.finished(dir)[id] == 1 end, 30, "the entry taken over and finished")
    local again = cl.inside(dir)[9]
    assert.are.equal(id, again.id)
    assert.are_not.equal(held.pid, again.pid)
    assert.is_true(again.t - killed <= CLAIM_AFTER + 2, string.format("taken over %.2f s after the kill",
      again.t - killed))
    assert.are.same({ [id] = 1 }, cl.posted(receiver)) -- the handler that posted ran once, before the kill
    local taker
    for _, w in ipairs(workers) do
      if w.pid ~= held.pid and w:log_count("took over entry") > 0 then taker = w end
    end
    assert.truthy(taker, "a worker's log says it took the entry over")
    procs.wait(settled, 20, "nothing pending")
  end)

  it("a store killed and restarted (AOF everysec): what the watchers heard meanwhile is appended, and runs", function()
    receiver.clear()
    local before = xlen()
    publish("+odown", "master pod20 127.0.0.1 6020 #quorum 2/2")
    procs.wait(function() return xlen() == before + 1 end, 20, "pod20 in the stream")
    local rpid = procs.cli(store.port, "info", "server"):match("process_id:(%d+)")
    procs.kill(rpid, "KILL") -- within a second of the append: the AOF may not have it
    for n = 21, 23 do publish("+odown", string.format("master pod%d 127.0.0.1 %d #quorum 2/2", n, 6000 + n)) end
    procs.wait(function() return watchers[1]:log_count("cannot append to the store") > 0 end, 20,
      "a watcher to hold what it heard")
    store.pid = procs.spawn("redis-server " .. procs.quote(store.dir .. "/redis.conf"), store.dir .. "/redis.log")
    procs.wait(function()
      local posted = cl.posted(receiver)
      for n = 20, 23 do
        if not posted[string.format("+odown master pod%d 127.0.0.1 %d", n, 6000 + n)] then return false end
      end
      return true
    end, 60, "pod20..pod23 run")
    procs.wait(settled, 30, "nothing pending")
    for _, w in ipairs(watchers) do
      assert.is_true(w:log_count("the store answers again") >= 1, w:logtext())
    end
  end)

  it("SIGHUP: a watcher that works replaces its appender and worker; what it hears next runs", function()
    receiver.clear()
    local w = cl.watcher(config(), rule, "")
    watchers[#watchers + 1] = w
    w:wait_log("watch: cluster worker started", 1)
    w:signal("HUP")
    w:wait_log("watch: SIGHUP: config and rules reloaded", 1)
    w:wait_log("watch: cluster appender started", 2)
    w:wait_log("watch: cluster worker started", 2)
    w:wait_log("cluster appender: stopped", 1) -- the old one, at the end of its pipe
    w:wait_log("stopped: 0 entries run", 1)    -- the old worker, on SIGTERM
    publish("+odown", "master pod30 127.0.0.1 6030 #quorum 2/2")
    procs.wait(function() return cl.posted(receiver)["+odown master pod30 127.0.0.1 6030"] == 1 end, 30,
      "the event heard after the reload to run")
    procs.wait(settled, 20, "nothing pending")
    assert.are.equal(0, w:stop(30)) -- its worker keeps the rules of before the next case's reload
  end)

  it("a failing entry is retried with back-off, then set aside: status, history, sentinels status show it", function()
    receiver.clear()
    local failing = cl.rule(receiver.url, dir, { "+sdown" }):gsub("local id = dedupe.key%(ev%)",
      "local id = dedupe.key(ev)\n  if ev.text:find('failing') then return nil, 'failing on purpose' end")
    local alive = {}
    for _, w in ipairs(workers) do
      if w.pid and not w:exit_code() then alive[#alive + 1] = w end
    end
    for _, w in ipairs(alive) do
      w:rule("10-cluster.lua", failing)
      w:signal("HUP")
    end
    for _, w in ipairs(alive) do w:wait_log("work: SIGHUP: config and rules reloaded", 1) end
    publish("+sdown", "slave 127.0.0.1:7099 127.0.0.1 7099 @ failing 127.0.0.1 6099")
    procs.wait(function() return procs.cli(store.port, "xlen", "eventilator:events:dead") == "1" end, 60,
      "the entry set aside")
    local dead = procs.cli(store.port, "xrange", "eventilator:events:dead", "-", "+")
    assert.truthy(dead:find("\nreason\nfailed on delivery 3 of 3: [^\n]*failing on purpose"), dead)
    assert.truthy(dead:find("\ndeliveries\n3\n", 1, true), dead)
    -- the first handler succeeded on the first delivery, and no retry ran it again
    assert.are.same({ ["+sdown slave 127.0.0.1:7099 127.0.0.1 7099 @ failing"] = 1 }, cl.posted(receiver))
    local logs = ""
    for _, w in ipairs(workers) do logs = logs .. w:logtext() end
    assert.truthy(logs:find("failed on delivery 1 %(.-%); tried again in 1 s"), logs)
    local st, rc = cl.status(workers[1])
    assert.are.equal(1, rc)
    assert.are.equal(1, st.dead)
    local text, trc = cl.run(workers[1], "cluster status")
    assert.are.equal(1, trc)
    assert.truthy(text:find("dead entry %S+ of eventilator:events: %+sdown slave 127.0.0.1:7099"), text)
    local hist = cl.run(workers[1], "history")
    assert.truthy(hist:find("dead entry %S+ of eventilator:events: %+sdown"), hist)
    local sst, src = cl.run(workers[1], "sentinels status")
    assert.are.equal(1, src)
    assert.truthy(sst:find("dead entry %S+ of eventilator:events: %+sdown"), sst)
  end)

  it("check names a wrong cluster setting and a wrong redis.sentinel; watch and work refuse to start", function()
    local w = cl.new(config():gsub("claim_after = %d+", "claim_after = 0") .. 'redis.sentinel = { mastr = "store" }\n',
      rule)
    watchers[#watchers + 1] = w
    local out, rc = cl.run(w, "check")
    assert.are.equal(1, rc)
    assert.truthy(out:find("FAILED  config cluster.claim_after: expected seconds from 0.1 to 86400, got 0", 1, true), out)
    assert.truthy(out:find("FAILED  config redis.sentinel.mastr: unknown key", 1, true), out)
    for _, sub in ipairs({ "watch", "work" }) do
      local o, r = cl.run(w, sub)
      assert.are.equal(2, r, o)
      assert.truthy(o:find(sub .. ": cannot start: [^\n]*cluster.claim_after: expected seconds"), o) -- before its log opens
    end
  end)

  it("stops cleanly: watchers and workers exit 0 on SIGTERM", function()
    cl.stop_all({ watchers, workers })
  end)
end)
