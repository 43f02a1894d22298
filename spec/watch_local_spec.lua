-- Watch mode (`eventilator watch`, docs/watch.md) against real peers, part 2 of 3:
-- a plain redis-server named as a Sentinel, on which the specs PUBLISH
-- events by hand, and a redis-sentinel that requires a password.
-- Handlers record what they saw (spec/support/watcher.lua). Nothing here asserts a duration.
local procs = require("procs")
local watcher = require("watcher")

local is = watcher.is

describe("watch mode, events published by hand on a redis-server named as a Sentinel", function()
  local fx = watcher.on_redis()
  setup(fx.setup)
  teardown(fx.teardown)
  after_each(fx.after_each)
  local w
  local publish, go = fx.publish, fx.go

  local function start(config)
    w = fx.start(config and config.watch, config and config.top)
    return w
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
    w:version("v1")
    go()
    publish("+sdown", "master pod1 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 1)
    w:rule("10-record.lua", "on(\"+sdown\", function(ev)\n  return true\n") -- broken
    w:signal("HUP")
    w:wait_log("reload refused", 1)
    publish("+sdown", "master pod1 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 2)
    w:version("v2")
    w:signal("HUP")
    w:wait_log("config and rules reloaded", 1)
    publish("+sdown", "master pod1 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 3)
    assert.are.equal("v1\nv1\nv2\n", procs.read(w.dir .. "/versions"))
  end)

  it("SIGHUP keeps the running set when a config section has an error, and says which", function()
    start()
    w:version("v1")
    go()
    -- a watcher reloads a whole set or none: the running one stays, as for a broken rule file
    w:config(string.format('watch = { sentinels = { "127.0.0.1:%d" } }\nslack = { enabeld = true }', fx.redis.port))
    w:version("v2")
    w:signal("HUP")
    w:wait_log("reload refused", 1)
    assert.are.equal(1, w:log_count("slack.enabeld: unknown key, did you mean `enabled`?"))
    publish("+sdown", "master pod1 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 1)
    assert.are.equal("v1\n", procs.read(w.dir .. "/versions"))
  end)

  it("runs a rule file's top-level code once per load, its handler once per event", function()
    start{ watch = "reuse = 1" } -- a fork per event; reuse > 1: spec/watch_runners_spec.lua
    local loads, seen = w.dir .. "/loads", w.dir .. "/seen"
    w:rule("10-count.lua", string.format([[
local g = assert(io.open(%q, "a")); g:write("load\n"); g:close()
local n = 0 -- reuse = 1: each run starts from the loaded file, so a handler's change is its own
on("+sdown", function(ev)
  n = n + 1
  local f = assert(io.open(%q, "a")); f:write(ev.pod, " ", n, "\n"); f:close()
  return true
end)
]], loads, seen))
    w:record("20-record.lua", { "+sdown" })
    go()
    for i = 1, 3 do publish("+sdown", "master pod" .. i .. " 127.0.0.1 6379") end
    w:wait_handled(is("+sdown"), 3)
    assert.are.equal("load\n", procs.read(loads))
    local runs = {}
    for line in procs.read(seen):gmatch("[^\n]+") do runs[#runs + 1] = line end
    table.sort(runs)
    assert.are.same({ "pod1 1", "pod2 1", "pod3 1" }, runs)
    w:signal("HUP")
    w:wait_log("config and rules reloaded", 1)
    publish("+sdown", "master pod4 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 4)
    assert.are.equal("load\nload\n", procs.read(loads))
  end)

  it("SIGTERM lets the running handler finish and exits 0", function()
    start{ top = "budget = 20" }
    local done, go_on = w.dir .. "/done", w.dir .. "/go-on"
    -- the handler runs until the spec has seen the watcher stopping (at most 15 s, within its budget)
    w:record("10-record.lua", { "+sdown" }, string.format([[
  local t = os.time()
  repeat
    local f = io.open(%q, "r")
    if f then f:close() break end
    os.execute("sleep 0.05")
  until os.time() - t > 15
  local g = assert(io.open(%q, "w")); g:close()]], go_on, done))
    go()
    publish("+sdown", "master pod1 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 1)
    w:signal("TERM")
    w:wait_log("watch: stopping", 1)
    assert.is_nil(procs.read(done))
    procs.write(go_on, "")
    assert.are.equal(0, w:stop(30))
    assert.is_not_nil(procs.read(done))
  end)
end)

describe("watch mode and a Sentinel that requires a password", function()
  local dir, port, pid, w

  setup(function()
    dir = procs.tmpdir()
    local path = dir .. "/sentinel.conf"
    port, pid = procs.redis_serve(path, { cmd = "redis-sentinel " .. procs.quote(path), out = dir .. "/sentinel.log",
      conf = function(p)
        return { "port " .. p, "bind 127.0.0.1", "daemonize no", "dir " .. dir, "requirepass s3cret" }
      end })
  end)

  teardown(function()
    procs.halt(pid)
    procs.rmtree(dir)
  end)

  after_each(function()
    if w then
      w:finish(30)
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
    -- two more tries (its backoff starts at 0.1 s), each one debug line
    w:wait_log("still no connection", 2)
    assert.are.equal(1, w:log_count("cannot connect"))
    assert.is_truthy(w:logtext():find("NOAUTH", 1, true))
    assert.is_nil(w:exit_code())
    assert.are.equal(0, w:log_count("connected and subscribed"))
  end)
end)

