-- Watch mode (`eventilator watch`, docs/watch.md) against real peers:
-- a Sentinel constellation on loopback (spec/support/constellation.lua, no
-- scripts configured), a password-protected redis-sentinel, one Sentinel
-- with 100 masters, and a plain redis-server named as a Sentinel, on which
-- the specs PUBLISH events by hand. Handlers record what they saw
-- (spec/support/watcher.lua). Nothing here asserts a duration.
local procs = require("procs")
local constellation = require("constellation")
local watcher = require("watcher")

local POD = constellation.NAME

local function note(fmt, ...)
  io.stderr:write("[watch] " .. string.format(fmt, ...) .. "\n")
end

local function is(name, typ)
  return function(r) return r.name == name and (typ == nil or r.type == typ) end
end

describe("watch mode on a Sentinel constellation", function()
  local c, w

  setup(function()
    w = watcher.new()
    c = constellation.start{ scripts = false, conf = w.conf }
    w:config(string.format("watch = { sentinels = { %q }, dedupe_window = 5 }", c:sentinel_addr(1)))
    w:record("10-record.lua", { "+sdown", "+odown", "+switch-master", "+failover-end", "+slave", "+sentinel" })
    w:start()
  end)

  teardown(function()
    if w then
      pcall(w.stop, w, 60)
      w:cleanup()
    end
    if c then c:stop() end
  end)

  it("is given one Sentinel and discovers the other two", function()
    w:wait_log("connected and subscribed", 3)
    for i = 2, 3 do
      assert.is_true(w:log_count("sentinel " .. c:sentinel_addr(i) .. ": connected and subscribed") == 1)
    end
  end)

  it("runs the handlers of +sdown master, +odown, +switch-master and +failover-end once each", function()
    local old = c:kill_master()
    local new = c:wait_failover(60)
    note("failover %d -> %d", old, new)
    w:wait_handled(is("+failover-end"), 1, 30, "+failover-end")
    w:wait_handled(is("+switch-master"), 1, 30, "+switch-master")
    w:wait_handled(is("+slave"), 1, 30, "+slave")
    procs.sleep(6) -- past the dedupe window: late reports would show up as second runs
    assert.are.equal(1, w:count(is("+sdown", "master")))
    assert.are.equal(1, w:count(is("+odown")))
    assert.are.equal(1, w:count(is("+switch-master")))
    assert.are.equal(1, w:count(is("+failover-end")))
    local known = {}
    for i = 1, #c.sentinels do known[c:sentinel_addr(i)] = true end
    for _, r in ipairs(w:handled()) do
      assert.are.equal("watch", r.source)
      assert.is_true(known[r.sentinel], r.sentinel)
      assert.are.equal(r.sentinel, r.sentinels[1])
      for _, s in ipairs(r.sentinels) do assert.is_true(known[s], s) end
      assert.is_false(r.synthetic)
    end
    local odown = w:handled()
    for _, r in ipairs(odown) do
      if r.name == "+switch-master" then
        assert.are.equal(string.format("%s 127.0.0.1 %d 127.0.0.1 %d", POD, old, new), r.text)
      end
    end
  end)

  it("hears +sentinel when a Sentinel joins, and watches the new one", function()
    local i = c:add_sentinel()
    w:wait_handled(is("+sentinel"), 1, 30, "+sentinel")
    w:wait_log("sentinel " .. c:sentinel_addr(i) .. ": connected and subscribed", 1, 30)
  end)

  it("still hears the others while one Sentinel is down, and resubscribes it when it is back", function()
    c:stop_sentinel(2)
    w:wait_log("sentinel " .. c:sentinel_addr(2) .. ": disconnected", 1)
    local replica = c:replica_port()
    c:kill_node(replica)
    local text = string.format("127.0.0.1:%d", replica)
    w:wait_handled(function(r) return r.name == "+sdown" and r.type == "slave" and r.text:find(text, 1, true) ~= nil end,
      1, 30, "+sdown of the killed replica")
    c:start_sentinel(2)
    c:wait_sentinel(2)
    w:wait_log("sentinel " .. c:sentinel_addr(2) .. ": connected and subscribed", 2, 30)
    c:start_node(replica)
  end)

  it("gives a master that moved while it was stopped one synthetic +switch-master, once across restarts", function()
    -- a replica the forced failover can promote
    procs.wait(function()
      local info = procs.cli(c.master_port, "info", "replication")
      return info:find("state=online", 1, true) ~= nil
    end, 60, "a replica online")
    assert.are.equal(0, w:stop())
    local from = c.master_port
    -- Sentinel refuses (NOGOODSLAVE) until it has seen the replica healthy for a while
    procs.wait(function() return c:sentinel_cli(1, "sentinel", "failover", POD) == "OK" end, 60, "SENTINEL FAILOVER")
    local new = c:wait_failover(60, from)
    note("forced failover %d -> %d while the watcher was stopped", from, new)
    os.remove(w.out)
    w:start()
    w:wait_log("a synthetic +switch-master", 1, 30)
    w:wait_handled(is("+switch-master"), 1, 30)
    procs.sleep(3)
    local sw = {}
    for _, r in ipairs(w:handled()) do
      if r.name == "+switch-master" then sw[#sw + 1] = r end
    end
    assert.are.equal(1, #sw)
    assert.is_true(sw[1].synthetic)
    assert.are.equal(string.format("%s 127.0.0.1 %d 127.0.0.1 %d", POD, from, new), sw[1].text)
    assert.are.equal(0, w:stop())
    local before = w:log_count("connected and subscribed")
    w:start()
    w:wait_log("connected and subscribed", before + #c.sentinels, 30)
    procs.sleep(2)
    assert.are.equal(1, w:count(is("+switch-master")))
    assert.are.equal(1, w:log_count("a synthetic +switch-master"))
  end)
end)

describe("watch mode, events published by hand on a redis-server named as a Sentinel", function()
  local redis, w

  setup(function()
    redis = procs.start_redis()
  end)

  teardown(function()
    if redis then redis.stop() end
  end)

  after_each(function()
    if w then
      pcall(w.stop, w, 60)
      w:cleanup()
      w = nil
    end
  end)

  local function start(config)
    w = watcher.new{ config = string.format("watch = { sentinels = { \"127.0.0.1:%d\" }, %s }\n%s", redis.port,
      config and config.watch or "", config and config.top or "") }
    return w
  end

  local function publish(name, text)
    return procs.cli(redis.port, "publish", name, text)
  end

  local function go()
    w:start()
    w:wait_log("connected and subscribed", 1)
  end

  it("logs one line per unusable message and keeps running", function()
    start()
    w:record("10-record.lua", { "*" })
    go()
    assert.is_true(w:log_count("SENTINEL MASTERS") >= 1) -- not a Sentinel: no reconciliation, said once
    publish("+sdown", "garbage")
    publish("+odown", "master pod1 127.0.0.1 notaport #quorum 2/3")
    publish("+switch-master", "pod1 127.0.0.1")
    publish("+sdown", "master pod1 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 1, 20)
    assert.are.equal(3, w:log_count("unusable message"))
    assert.is_nil(w:exit_code())
    assert.are.equal(1, #w:handled())
  end)

  it("keeps handling later events on time while a handler hangs", function()
    start{ watch = "retries = 0", top = "budget = 4" }
    w:record("10-record.lua", { "+sdown" }, [[
  if ev.pod == "hung" then os.execute("sleep 8") end]])
    go()
    publish("+sdown", "master hung 127.0.0.1 6379")
    w:wait_handled(function(r) return r.pod == "hung" end, 1, 20)
    for i = 1, 5 do publish("+sdown", string.format("master other%d 127.0.0.1 6379", i)) end
    w:wait_handled(function(r) return r.pod:match("^other") end, 5, 20, "later events")
    -- the hung run is still going: intake and the other runs never waited for it
    assert.are.equal(0, w:log_count("+sdown pod=hung done"))
    assert.are.equal(0, w:log_count("+sdown pod=hung failed"))
    w:wait_log("+sdown pod=hung failed", 1, 30) -- stopped at its budget, not retried (retries = 0)
  end)

  it("retries a handler that fails twice: it runs 3 times, the one beside it once", function()
    start()
    local count = w.dir .. "/count"
    w:rule("10-flaky.lua", string.format([[
on("+odown", function(ev)
  local f = io.open(%q, "r")
  local n = (f and tonumber(f:read("a")) or 0) + 1
  if f then f:close() end
  f = assert(io.open(%q, "w"))
  f:write(tostring(n))
  f:close()
  if n < 3 then return nil, "not yet (" .. n .. ")" end
  return true
end)
]], count, count))
    w:record("20-record.lua", { "+odown" })
    go()
    publish("+odown", "master pod1 127.0.0.1 6379 #quorum 2/2")
    w:wait_log("+odown pod=pod1 done, run 3", 1, 30)
    assert.are.equal("3", procs.read(count))
    assert.are.equal(1, w:count(is("+odown")))
    assert.are.equal(2, w:log_count("+odown pod=pod1 failed (exit 1)"))
  end)

  it("SIGHUP keeps the running rules when a file is broken, and picks up a fixed one", function()
    start()
    local function version(v)
      w:record("10-record.lua", { "+sdown" }, string.format([[
  local g = assert(io.open(%q, "a")); g:write(%q, "\n"); g:close()]], w.dir .. "/versions", v))
    end
    version("v1")
    go()
    publish("+sdown", "master pod1 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 1)
    w:rule("10-record.lua", "on(\"+sdown\", function(ev)\n  return true\n") -- broken
    w:signal("HUP")
    w:wait_log("reload refused", 1)
    publish("+sdown", "master pod1 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 2)
    version("v2")
    w:signal("HUP")
    w:wait_log("config and rules reloaded", 1)
    publish("+sdown", "master pod1 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 3)
    assert.are.equal("v1\nv1\nv2\n", procs.read(w.dir .. "/versions"))
  end)

  it("SIGTERM lets the running handler finish and exits 0", function()
    start{ top = "budget = 10" }
    local done = w.dir .. "/done"
    w:record("10-record.lua", { "+sdown" }, string.format([[
  os.execute("sleep 1")
  local g = assert(io.open(%q, "w")); g:close()]], done))
    go()
    publish("+sdown", "master pod1 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 1)
    assert.are.equal(0, w:stop(30))
    assert.is_not_nil(procs.read(done))
  end)
end)

describe("watch mode and a Sentinel that requires a password", function()
  local dir, port, pid, w

  setup(function()
    dir = procs.tmpdir()
    port = procs.free_port()
    procs.write(dir .. "/sentinel.conf", table.concat({
      "port " .. port, "bind 127.0.0.1", "daemonize no", "dir " .. dir, "requirepass s3cret",
    }, "\n") .. "\n")
    pid = procs.spawn("redis-sentinel " .. procs.quote(dir .. "/sentinel.conf"), dir .. "/sentinel.log")
    procs.wait(function()
      return procs.cli(port, "-a", "s3cret", "--no-auth-warning", "ping") == "PONG"
    end, 10, "sentinel with requirepass")
  end)

  teardown(function()
    procs.kill(pid)
    procs.rmtree(dir)
  end)

  after_each(function()
    if w then
      pcall(w.stop, w, 30)
      w:cleanup()
      w = nil
    end
  end)

  it("connects with it", function()
    w = watcher.new{ config = string.format("watch = { sentinels = { \"127.0.0.1:%d\" }, password = \"s3cret\" }", port) }
    w:start()
    w:wait_log("connected and subscribed", 1)
  end)

  it("is refused cleanly without it, once in the log, and keeps running", function()
    w = watcher.new{ config = string.format("watch = { sentinels = { \"127.0.0.1:%d\" } }", port) }
    w:start()
    w:wait_log("cannot connect", 1)
    procs.sleep(1.5)
    assert.are.equal(1, w:log_count("cannot connect"))
    assert.is_truthy(w:logtext():find("NOAUTH", 1, true))
    assert.is_nil(w:exit_code())
    assert.are.equal(0, w:log_count("connected and subscribed"))
  end)
end)

describe("watch mode at scale: one Sentinel, 100 masters, all down at once", function()
  local servers, dir, sport, spid, w = {}, nil, nil, nil, nil

  setup(function()
    dir = procs.tmpdir()
    for i = 1, 10 do servers[i] = procs.start_redis() end
    sport = procs.free_port()
    local conf = { "port " .. sport, "bind 127.0.0.1", "daemonize no", "dir " .. dir, "logfile " .. dir .. "/sentinel.log" }
    -- ten masters per redis-server: 100 masters, no replicas, quorum 1
    for m = 1, 100 do
      local name, p = string.format("m%03d", m), servers[(m - 1) % 10 + 1].port
      conf[#conf + 1] = string.format("sentinel monitor %s 127.0.0.1 %d 1", name, p)
      conf[#conf + 1] = string.format("sentinel down-after-milliseconds %s 1000", name)
      conf[#conf + 1] = string.format("sentinel failover-timeout %s 5000", name)
    end
    procs.write(dir .. "/sentinel.conf", table.concat(conf, "\n") .. "\n")
    spid = procs.spawn("redis-sentinel " .. procs.quote(dir .. "/sentinel.conf"), dir .. "/stdout.log")
    procs.wait(function() return procs.cli(sport, "ping") == "PONG" end, 10, "sentinel")
    procs.wait(function()
      local out = procs.cli(sport, "sentinel", "masters")
      local _, n = out:gsub("\nflags\nmaster\n", "")
      return n == 100
    end, 30, "100 masters up")
    w = watcher.new{ config = string.format("watch = { sentinels = { \"127.0.0.1:%d\" } }", sport) }
    w:record("10-record.lua", { "+sdown", "+odown" })
    w:start()
    w:wait_log("connected and subscribed", 1)
  end)

  teardown(function()
    if w then
      pcall(w.stop, w, 60)
      w:cleanup()
    end
    procs.kill(spid)
    for _, s in ipairs(servers) do s.stop() end
    procs.rmtree(dir)
  end)

  it("handles every +sdown and +odown exactly once, 100 each", function()
    local pids = {}
    for i, s in ipairs(servers) do
      pids[i] = procs.cli(s.port, "info", "server"):match("process_id:(%d+)") -- the server, not `timeout`
    end
    os.execute("kill -KILL " .. table.concat(pids, " ") .. " 2>/dev/null")
    w:wait_handled(is("+odown"), 100, 90, "100 +odown")
    w:wait_handled(is("+sdown"), 100, 30, "100 +sdown")
    procs.sleep(3)
    -- what the Sentinel published, from its log: on a loaded machine it can
    -- see a master come and go more than once, and each time is an event
    local slog = procs.read(dir .. "/sentinel.log") or ""
    local published = { ["+sdown"] = {}, ["+odown"] = {} }
    for name, m in slog:gmatch("([+]%a+) master (m%d+) ") do
      if published[name] then published[name][m] = (published[name][m] or 0) + 1 end
    end
    local seen = { ["+sdown"] = {}, ["+odown"] = {} }
    for _, r in ipairs(w:handled()) do
      seen[r.name][r.pod] = (seen[r.name][r.pod] or 0) + 1
    end
    for _, name in ipairs({ "+sdown", "+odown" }) do
      local n = 0
      for m, k in pairs(seen[name]) do
        n = n + 1
        assert.are.equal(published[name][m], k, name .. " " .. m .. ": handled as often as published")
        if k > 1 then note("%s %s: published and handled %d times", name, m, k) end
      end
      assert.are.equal(100, n, name)
    end
    local _, tries = slog:gsub("%+try%-failover", "")
    note("100 masters: %d +try-failover in the Sentinel's log meanwhile", tries)
  end)
end)
