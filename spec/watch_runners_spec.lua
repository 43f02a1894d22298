-- Watch mode's runners (docs/watch.md, "How an event is handled"): one process handles up to
-- `watch.reuse` events. What a handler keeps in an upvalue carries on within
-- a runner and starts fresh with reuse = 1; a runner that dies mid-event
-- (killed, or stopped by its watchdog) fails that run, which is retried,
-- and later events still run; a reload reaches idle runners.
-- Against a plain redis-server named as a Sentinel, events PUBLISHed by hand.
-- Nothing here asserts a duration.
local procs = require("procs")
local watcher = require("watcher")

local function is(name, pod) return watcher.is(name, nil, pod) end

describe("watch mode's runners", function()
  local fx = watcher.on_redis()
  setup(fx.setup)
  teardown(fx.teardown)
  after_each(fx.after_each)
  local w
  local publish, go = fx.publish, fx.go

  local function start(watch, top)
    w = fx.start(watch, top)
    return w
  end

  it("refuses to start with a reuse below 1", function()
    start("reuse = 0")
    w:start()
    procs.wait(function() return w:exit_code() ~= nil end, 20, "the watcher to exit")
    assert.are.equal(2, w:exit_code())
    -- refused before the config's log is open: the line goes to stderr
    assert.matches("watch.reuse: expected an integer, at least 1", procs.read(w.dir .. "/watch.out"), 1, true)
  end)

  -- A handler that counts its calls in an upvalue; returns the lines "pod n" in arrival order.
  local function counting(reuse)
    start(string.format("concurrency = 1, reuse = %d", reuse))
    local seen = w.dir .. "/seen"
    w:rule("10-count.lua", string.format([[
local n = 0
on("+sdown", function(ev)
  n = n + 1
  local f = assert(io.open(%q, "a")); f:write(ev.pod, " ", n, "\n"); f:close()
  return true
end)
]], seen))
    w:record("20-record.lua", { "+sdown" })
    go()
    for i = 1, 3 do publish("+sdown", "master pod" .. i .. " 127.0.0.1 6379") end
    w:wait_handled(is("+sdown"), 3)
    local lines = {}
    for line in procs.read(seen):gmatch("[^\n]+") do lines[#lines + 1] = line end
    return lines
  end

  it("keeps a handler's upvalue from one event to the next within a runner", function()
    assert.are.same({ "pod1 1", "pod2 2", "pod3 3" }, counting(100))
    assert.are.equal(0, w:log_count("failed ("))
  end)

  it("starts every event from the loaded rules with reuse = 1", function()
    assert.are.same({ "pod1 1", "pod2 1", "pod3 1" }, counting(1))
  end)

  it("replaces a runner after `reuse` events: the count starts again", function()
    assert.are.same({ "pod1 1", "pod2 2", "pod3 1" }, counting(2))
  end)

  -- The first run of pod "die" ends its runner (how: `ending`); its retry and the later events run.
  local function dies(ending, top)
    start("concurrency = 1, reuse = 100", top)
    local marker = w.dir .. "/died"
    w:record("10-record.lua", { "+sdown" }, string.format([[
  if ev.pod == "die" and not io.open(%q) then
    assert(io.open(%q, "w")):close()
    %s
  end]], marker, marker, ending))
    go()
    publish("+sdown", "master die 127.0.0.1 6379")
    publish("+sdown", "master later1 127.0.0.1 6379")
    publish("+sdown", "master later2 127.0.0.1 6379")
    w:wait_log("+sdown pod=die done, run 2", 1, 40)
    w:wait_handled(is("+sdown", "later2"), 1, 20, "the later events")
    assert.are.equal(2, w:count(is("+sdown", "die")))
    assert.are.equal(1, w:count(is("+sdown", "later1")))
    assert.are.equal(1, w:log_count("ended during +sdown pod=die"))
    assert.are.equal(1, w:log_count("+sdown pod=die failed"))
    assert.is_nil(w:exit_code())
  end

  it("retries the event of a runner killed mid-event, and runs the later ones", function()
    dies("os.execute(\"kill -KILL $PPID\")") -- os.exit is refused to rules: the shell's parent is the runner
    assert.matches("pod=die failed %(signal 9%) on run 1; retried", w:logtext())
  end)

  it("retries the event of a runner its watchdog stopped, and runs the later ones", function()
    dies("os.execute(\"sleep 30\")", "budget = 1")
    assert.are.equal(1, w:log_count("time budget of 1 s exceeded, stopped by the watchdog"))
  end)

  it("runs the next event with the new rules after a SIGHUP while runners are idle", function()
    start("concurrency = 2, reuse = 100")
    w:version("v1")
    go()
    publish("+sdown", "master pod1 127.0.0.1 6379")
    publish("+sdown", "master pod2 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 2)
    procs.wait(function() return w:log_count("pod=pod2 done") + w:log_count("pod=pod1 done") >= 2 end, 20,
      "both runs answered")
    w:version("v2")
    w:signal("HUP")
    w:wait_log("config and rules reloaded", 1)
    publish("+sdown", "master pod3 127.0.0.1 6379")
    publish("+sdown", "master pod4 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 4)
    local v = procs.read(w.dir .. "/versions")
    assert.are.equal("v1\nv1\nv2\nv2\n", v)
    local runners = {}
    for pid in w:logtext():gmatch("runner=(%d+)") do runners[pid] = true end
    assert.is_not_nil(next(runners))
    assert.are.equal(0, w:stop(30))
    -- the watcher reaped its runners before it exited: none is left reading its pipe
    procs.wait(function()
      for pid in pairs(runners) do
        local f = io.open("/proc/" .. pid .. "/stat")
        local state = f and f:read("a"):match("^%d+ %b() (%a)")
        if f then f:close() end
        if state and state ~= "Z" then return false end
      end
      return true
    end, 10, "the runners to exit")
  end)
end)
