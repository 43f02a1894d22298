-- Watch mode's /metrics, /healthz and systemd notifications (docs/watch.md
-- "Metrics and health", "systemd") on a real Sentinel constellation
-- (spec/support/constellation.lua, no scripts configured): /healthz is 503
-- until a Sentinel is subscribed and after they all go; READY=1 comes once
-- a Sentinel is subscribed, WATCHDOG=1 while the loop turns and not while
-- it is stopped (a fake $NOTIFY_SOCKET: spec/support/notifyd.py); the
-- counters through a real failover agree with what the Sentinels logged and
-- what the handlers recorded. Prometheus itself: watch_prometheus_spec.lua.
local procs = require("procs")
local constellation = require("constellation")
local watcher = require("watcher")
local scrape = require("scrape")

local is = watcher.is
local POD = constellation.NAME
local WATCHDOG = 1 -- s: WatchdogSec=, so a ping every 0.5 s
local RECORDED = { "+sdown", "+odown", "+switch-master", "+failover-end" }


describe("watch mode's metrics, health and notifications on a Sentinel constellation", function()
  local c, w, url
  local notify = {}

  -- What the service manager was told: { t, msg } per datagram, in order.
  local function told(plain)
    local out = {}
    for t, msg in (procs.read(notify.log) or ""):gmatch("([%d.]+) ([^\n]*)\n") do
      if not plain or msg:find(plain, 1, true) then out[#out + 1] = { t = tonumber(t), msg = msg } end
    end
    return out
  end

  local function up(m, i) return scrape.value(m, "eventilator_sentinel_up", { sentinel = c:sentinel_addr(i) }) end

  setup(function()
    w = watcher.new()
    notify.sock, notify.log = w.dir .. "/notify.sock", w.dir .. "/notify.log"
    notify.pid = procs.spawn(string.format("python3 %s %s %s", procs.quote(procs.src .. "/spec/support/notifyd.py"),
      procs.quote(notify.sock), procs.quote(notify.log)))
    procs.wait(function() return #told("listening") == 1 end, 10, "the notify socket")
    w.env = { NOTIFY_SOCKET = notify.sock, WATCHDOG_USEC = string.format("%d", WATCHDOG * 1000000) }
    -- the Sentinels start (each on a port of its own) and stop again: the watcher starts with none
    -- running, and the second case starts them again on their ports
    c = constellation.start{ scripts = false, conf = w.conf }
    for i = 1, #c.sentinels do c:stop_sentinel(i) end
    w:config(string.format('watch = { sentinels = { %q }, listen = "127.0.0.1:0", dedupe_window = 20 }',
      c:sentinel_addr(1)))
    w:record("10-record.lua", RECORDED)
    w:start()
    url = scrape.wait_url(w)
  end)

  teardown(function()
    if w then
      w:finish(60)
    end
    if c then c:stop() end
    procs.kill(notify.pid)
  end)

  it("answers 503 on /healthz and is not ready before any Sentinel is subscribed; the watchdog pings", function()
    local code, body = scrape.get(url .. "/healthz")
    assert.are.equal(503, code)
    assert.are.equal("no Sentinel subscribed\n", body)
    assert.are.equal(0, up(scrape.metrics(url), 1))
    procs.wait(function() return #told("WATCHDOG=1") >= 3 end, 20, "watchdog pings")
    assert.are.equal(0, #told("READY=1"))
    assert.are.equal(1, #told("STATUS=subscribed to 0 of 1 Sentinel(s)"))
  end)

  it("says READY=1 and answers 200 once a Sentinel is subscribed; each Sentinel is up", function()
    for i = 1, #c.sentinels do c:start_sentinel(i) end
    c:wait_ready(30)
    w:wait_log("connected and subscribed", 3, 30)
    procs.wait(function() return scrape.get(url .. "/healthz") == 200 end, 30, "/healthz 200")
    local ready = told("READY=1")
    assert.are.equal(1, #ready)
    assert.truthy(ready[1].msg:find("STATUS=subscribed to 1 of 1 Sentinel(s)", 1, true), ready[1].msg)
    procs.wait(function() return #told("STATUS=subscribed to 3 of 3 Sentinel(s)") == 1 end, 20, "status 3 of 3")
    local m = scrape.metrics(url)
    for i = 1, 3 do assert.are.equal(1, up(m, i), c:sentinel_addr(i)) end
  end)

  it("counts a real failover as the Sentinels raised it and the handlers ran it", function()
    local function heard(m, ev) return scrape.value(m, "eventilator_events_heard_total", { event = ev }) or 0 end
    -- a mark in each Sentinel's log and on its Pub/Sub: what it raises after the mark, the watcher
    -- hears after it heard the mark (it has heard nothing yet of this failover)
    for i = 1, #c.sentinels do c:mark(i, "eventilatormetrics") end
    local m0
    procs.wait(function()
      m0 = scrape.metrics(url)
      return heard(m0, "+set") >= #c.sentinels
    end, 30, "the marks heard")
    local function raised(ev)
      local n = 0
      for i = 1, #c.sentinels do
        local marked = false
        for _, e in ipairs(c:raised(nil, i)) do
          if e.name == "+set" and e.text:find(" rename-command eventilatormetrics ", 1, true) then
            marked = true
          elseif marked and e.name == ev then
            n = n + 1
          end
        end
      end
      return n
    end
    local t0 = procs.wall()
    local old = c:kill_master()
    local new = c:wait_failover(60)
    watcher.note("failover %d -> %d", old, new)
    w:wait_handled(is("+switch-master"), 1, 30, "+switch-master")
    w:wait_handled(is("+failover-end"), 1, 30, "+failover-end")
    -- heard: every report of every Sentinel. Sentinel logs an event before it publishes it, so the
    -- watcher has heard what the logs hold once it has heard at least as much, and never more.
    -- runs: one per record a handler wrote (no handler fails), once nothing waits or runs
    local m
    procs.wait(function()
      m = scrape.metrics(url)
      for _, ev in ipairs(RECORDED) do
        local ok = scrape.value(m, "eventilator_runs_total", { event = ev, outcome = "ok" }) or 0
        if ok ~= w:count(is(ev)) or heard(m, ev) - heard(m0, ev) < raised(ev) then return false end
      end
      return scrape.value(m, "eventilator_queue_depth") == 0 and scrape.value(m, "eventilator_running") == 0
    end, 60, "the runs and reports counted")
    local dups = 0
    for _, ev in ipairs(RECORDED) do
      assert.are.equal(raised(ev), heard(m, ev) - heard(m0, ev), ev)
      for _, o in ipairs({ "failed", "error", "killed" }) do
        assert.are.equal(0, scrape.value(m, "eventilator_runs_total", { event = ev, outcome = o }) or 0, ev .. " " .. o)
      end
      local ok = scrape.value(m, "eventilator_runs_total", { event = ev, outcome = "ok" }) or 0
      assert.are.equal(ok, scrape.value(m, "eventilator_handler_seconds_count", { event = ev }) or 0, ev)
      -- each report of a handled event either ran or was merged into one that did
      dups = dups + heard(m, ev) - ok
    end
    assert.is_true(raised("+switch-master") >= 1)
    assert.is_true(scrape.value(m, "eventilator_runs_total", { event = "+switch-master", outcome = "ok" }) >= 1)
    assert.are.equal(dups, scrape.value(m, "eventilator_duplicates_total"))
    local t = scrape.value(m, "eventilator_last_failover_timestamp_seconds", { master = POD })
    assert.is_true(t >= t0 and t <= procs.wall(), tostring(t))
    assert.are.equal(0, scrape.value(m, "eventilator_dropped_total"))
  end)

  it("answers 503 and shows each Sentinel down once they all go, and 200 when one is back", function()
    for i = 1, #c.sentinels do c:stop_sentinel(i) end
    procs.wait(function() return scrape.get(url .. "/healthz") == 503 end, 30, "/healthz 503")
    local m = scrape.metrics(url)
    for i = 1, 3 do assert.are.equal(0, up(m, i), c:sentinel_addr(i)) end
    procs.wait(function() return #told("STATUS=subscribed to 0 of 3 Sentinel(s)") == 1 end, 20, "status 0 of 3")
    c:start_sentinel(2)
    c:wait_sentinel(2)
    procs.wait(function() return scrape.get(url .. "/healthz") == 200 end, 30, "/healthz 200 again")
    m = scrape.metrics(url)
    assert.are.equal(1, up(m, 2))
    assert.are.equal(1, #told("READY=1")) -- ready once, not again
  end)

  it("stops the watchdog's pings while the loop is stopped, and pings again when it goes on", function()
    procs.wait(function() return #told("WATCHDOG=1") >= 3 end, 20, "watchdog pings")
    w:signal("STOP")
    procs.wait(function()
      local stat = procs.read("/proc/" .. w.pid .. "/stat") or ""
      return stat:match("^%d+ %b() (%a)") == "T"
    end, 10, "the watcher stopped")
    local stopped = procs.now() -- CLOCK_MONOTONIC, as the listener's time stamps
    -- four pings' time: the absence of pings is what is under test
    procs.wait(function() return procs.now() >= stopped + 4 * WATCHDOG / 2 end, 10, "the time of four pings")
    local resumed = procs.now()
    w:signal("CONT")
    procs.wait(function()
      local pings = told("WATCHDOG=1")
      return pings[#pings].t > resumed
    end, 10, "a ping after SIGCONT")
    for _, p in ipairs(told("WATCHDOG=1")) do
      -- (a ping sent just before the stop may be read a moment after it)
      assert.is_false(p.t > stopped + 0.25 and p.t < resumed, string.format("a ping at %.3f while stopped", p.t))
    end
    assert.are.equal(200, (scrape.get(url .. "/healthz")))
  end)
end)
