-- watch.listen (docs/watch.md "Metrics and health") against a plain
-- redis-server named as the Sentinel, on which the spec PUBLISHes events by
-- hand: what /metrics says as events are heard and run, in the text format
-- (every line checked, spec/support/scrape.lua, and by promtool), label
-- values from the network escaped, the other paths and methods, the
-- address rebound on SIGHUP, a bind that fails, and runners that hold none
-- of the server's descriptors. The same on a real constellation, with
-- /healthz and systemd's notifications: watch_metrics_spec.lua.
local procs = require("procs")
local scrape = require("scrape")
local watcher = require("watcher")

local is = watcher.is

-- A port held by a listening python process until stop() (what makes a bind fail).
local function holder()
  local dir = procs.tmpdir()
  local h = { dir = dir }
  h.pid = procs.spawn(string.format([[python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
open("%s/port.tmp", "w").write(str(s.getsockname()[1])); __import__("os").rename("%s/port.tmp", "%s/port")
time.sleep(600)']], dir, dir, dir))
  procs.wait(function()
    h.port = tonumber(procs.read(dir .. "/port") or "")
    return h.port ~= nil
  end, 10, "the port holder")
  h.stop = procs.stopper(h)
  return h
end

-- Is nothing listening on the port (a bind with SO_REUSEADDR and a listen succeed)?
local function free(port)
  local _, rc = procs.sh(string.format([[env -u LD_PRELOAD python3 -c 'import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", %d)); s.listen(1)' 2>/dev/null]], port))
  return rc == 0
end

-- What a process holds open: the targets of /proc/<pid>/fd/*.
local function fds(pid)
  local out = procs.sh("ls -l /proc/" .. pid .. "/fd 2>/dev/null")
  local t = {}
  for target in out:gmatch("%-> ([^\n]+)") do t[#t + 1] = target end
  return t
end

describe("watch.listen on a Sentinel stand-in", function()
  local fx = watcher.on_redis()
  local w
  setup(fx.setup)
  teardown(fx.teardown)
  after_each(fx.after_each)

  local function start(watch, top)
    w = fx.start('listen = "127.0.0.1:0", ' .. (watch or ""), top)
    w:record("10-record.lua", { "+sdown", "+switch-master" })
    w:rule("20-fail.lua", 'on("+odown", function() return nil, "refused on purpose" end)\n')
    fx.go()
    return scrape.wait_url(w)
  end

  it("serves what it heard and ran, by event and outcome, in Prometheus's text format", function()
    local url = start("retries = 0")
    local m = scrape.metrics(url)
    assert.are.equal(1, scrape.value(m, "eventilator_sentinel_up", { sentinel = "127.0.0.1:" .. fx.redis.port }))
    assert.are.equal(0, #scrape.all(m, "eventilator_runs_total"))
    fx.publish("+sdown", "master pod1 127.0.0.1 6379")
    fx.publish("+sdown", "master pod2 127.0.0.1 6379")
    fx.publish("+odown", "master pod1 127.0.0.1 6379 #quorum 2/2")
    fx.publish("+tilt", "#tilt mode entered") -- heard, handled by no rule
    w:wait_handled(is("+sdown"), 2)
    procs.wait(function()
      m = scrape.metrics(url)
      return scrape.value(m, "eventilator_runs_total", { event = "+odown", outcome = "failed" }) == 1
        and scrape.value(m, "eventilator_runs_total", { event = "+sdown", outcome = "ok" }) == 2
    end, 20, "the runs counted")
    local v = function(name, labels) return scrape.value(m, name, labels) end
    assert.are.equal(2, v("eventilator_events_heard_total", { event = "+sdown" }))
    assert.are.equal(1, v("eventilator_events_heard_total", { event = "+odown" }))
    assert.are.equal(1, v("eventilator_events_heard_total", { event = "+tilt" }))
    for _, o in ipairs({ "failed", "error", "killed" }) do
      assert.are.equal(0, v("eventilator_runs_total", { event = "+sdown", outcome = o }))
    end
    assert.are.equal(0, v("eventilator_runs_total", { event = "+odown", outcome = "ok" }))
    assert.are.equal(0, #scrape.all(m, "eventilator_runs_total", { event = "+tilt" }))
    -- one observation per run, in its event's histogram
    assert.are.equal(2, v("eventilator_handler_seconds_count", { event = "+sdown" }))
    assert.are.equal(1, v("eventilator_handler_seconds_count", { event = "+odown" }))
    assert.are.equal(2, v("eventilator_handler_seconds_bucket", { event = "+sdown", le = "+Inf" }))
    assert.is_true(v("eventilator_handler_seconds_sum", { event = "+sdown" }) > 0)
    for _, name in ipairs({ "duplicates_total", "dropped_total", "unusable_total", "queue_depth", "running" }) do
      assert.are.equal(0, v("eventilator_" .. name), name)
    end
    assert.is_true(v("eventilator_runners") >= 1)
    -- and Prometheus's own linter agrees
    local _, body = scrape.get(url .. "/metrics")
    procs.write(w.dir .. "/metrics.txt", body)
    local out, rc = procs.sh("env -u LD_PRELOAD promtool check metrics < " .. procs.quote(w.dir .. "/metrics.txt") .. " 2>&1")
    assert.are.equal(0, rc, out)
  end)

  it("counts a run whose runner was killed mid-event as killed", function()
    w = fx.start('listen = "127.0.0.1:0", reuse = 100, retries = 0')
    w:record("10-record.lua", { "+sdown" }, 'os.execute("kill -KILL $PPID")')
    fx.go()
    local url = scrape.wait_url(w)
    fx.publish("+sdown", "master pod1 127.0.0.1 6379")
    w:wait_log("+sdown pod=pod1 failed (signal 9) on run 1; given up", 1, 30)
    local m = scrape.metrics(url)
    assert.are.equal(1, scrape.value(m, "eventilator_runs_total", { event = "+sdown", outcome = "killed" }))
    assert.are.equal(0, scrape.value(m, "eventilator_runs_total", { event = "+sdown", outcome = "ok" }))
  end)

  it("escapes label values that come from the network", function()
    local url = start("discover = true")
    -- (event names need no test: the parser takes only letters, digits and - _ . : after the sign)
    local master = 'we"ird\\pod'
    fx.publish("+switch-master", master .. " 127.0.0.1 6379 127.0.0.1 6380")
    -- a Sentinel another one announces: its address is what the message says
    fx.publish("+sentinel", 'sentinel 0123456789abcdef 10.9"9\\x 26379 @ pod1 127.0.0.1 6379')
    w:wait_handled(is("+switch-master"), 1)
    local m, body
    procs.wait(function()
      m, body = scrape.metrics(url)
      return scrape.value(m, "eventilator_events_heard_total", { event = "+sentinel" }) == 1
    end, 20, "the events heard")
    -- scrape.parse undid the escapes: the values are the bytes that came in
    assert.is_number(scrape.value(m, "eventilator_last_failover_timestamp_seconds", { master = master }))
    assert.are.equal(0, scrape.value(m, "eventilator_sentinel_up", { sentinel = '10.9"9\\x:26379' }))
    assert.truthy(body:find('master="we\\"ird\\\\pod"', 1, true), body)
    -- the time is the first report's: the same move reported again leaves it
    local t = scrape.value(m, "eventilator_last_failover_timestamp_seconds", { master = master })
    assert.is_true(math.abs(t - procs.wall()) < 60, tostring(t))
    fx.publish("+switch-master", master .. " 127.0.0.1 6379 127.0.0.1 6380")
    procs.wait(function()
      m = scrape.metrics(url)
      return scrape.value(m, "eventilator_events_heard_total", { event = "+switch-master" }) == 2
    end, 20, "the second report")
    assert.are.equal(t, scrape.value(m, "eventilator_last_failover_timestamp_seconds", { master = master }))
  end)

  it("answers ok on /healthz while subscribed, and 404 or 405 to anything else", function()
    local url = start()
    local code, body = scrape.get(url .. "/healthz")
    assert.are.equal(200, code)
    assert.are.equal("ok\n", body)
    assert.are.equal(404, (scrape.get(url .. "/nothing")))
    local out = procs.sh(string.format("env -u LD_PRELOAD curl -s -o /dev/null -w '%%{http_code}' -X POST -d x=1 %s",
      procs.quote(url .. "/metrics")))
    assert.are.equal("405", out)
  end)

  it("runs in one thread, and its runners hold none of the server's descriptors", function()
    local url = start("reuse = 100")
    fx.publish("+sdown", "master pod1 127.0.0.1 6379")
    w:wait_handled(is("+sdown"), 1)
    assert.are.equal(200, (scrape.get(url .. "/healthz")))
    assert.matches("Threads:%s+1\n", procs.read("/proc/" .. w.pid .. "/status"))
    local kids = procs.read("/proc/" .. w.pid .. "/task/" .. w.pid .. "/children") or ""
    local runner = tonumber(kids:match("%d+"))
    assert.is_number(runner, "an idle runner")
    local held = fds(runner)
    assert.is_true(#held > 0)
    for _, target in ipairs(held) do
      assert.is_nil(target:find("socket:", 1, true), target)
      assert.is_nil(target:find("eventpoll", 1, true), target)
    end
  end)

  it("rebinds a changed watch.listen on SIGHUP; one it cannot bind keeps the old one and says why", function()
    local url = start()
    local a = tonumber(url:match(":(%d+)$"))
    local taken = holder()
    local ok, err = pcall(function()
      -- a runner busy through the reloads was forked while the old address was served
      w:record("10-record.lua", { "+sdown" }, string.format([[
  while not io.open(%q) do os.execute("sleep 0.05") end]], w.dir .. "/go"))
      w:signal("HUP")
      w:wait_log("config and rules reloaded", 1)
      fx.publish("+sdown", "master pod1 127.0.0.1 6379")
      w:wait_log("watch: run +sdown pod=pod1", 1)
      w:config(string.format('watch = { sentinels = { "127.0.0.1:%d" }, listen = "127.0.0.1:%d" }',
        fx.redis.port, taken.port))
      w:signal("HUP")
      w:wait_log("config and rules reloaded", 2)
      assert.are.equal(1, w:log_count(string.format("listen 127.0.0.1:%d: bind: Address already in use; " ..
        "still serving %s; tried again every 10 s", taken.port, url)), w:logtext())
      assert.are.equal(200, (scrape.get(url .. "/healthz")))
      w:config(string.format('watch = { sentinels = { "127.0.0.1:%d" }, listen = "[::1]:0" }', fx.redis.port))
      w:signal("HUP")
      local new = scrape.wait_url(w, 2)
      assert.matches("^http://%[::1%]:%d+$", new)
      assert.are.equal(200, (scrape.get(new .. "/healthz")))
      assert.is_nil((scrape.get(url .. "/healthz", 2)))
      assert.is_true(free(a), "the old port is let go, by the watcher and by the runner forked before")
      procs.write(w.dir .. "/go", "")
      w:config(string.format('watch = { sentinels = { "127.0.0.1:%d" } }', fx.redis.port))
      w:signal("HUP")
      w:wait_log("watch: listen off: " .. new .. " no longer served", 1)
      assert.is_nil((scrape.get(new .. "/healthz", 2)))
    end)
    taken.stop()
    assert(ok, err)
  end)

  it("tries a port that is taken at start again, until it is free", function()
    local taken = holder()
    local ok, err = pcall(function()
      w = fx.start(string.format('listen = "127.0.0.1:%d"', taken.port))
      fx.go()
      w:wait_log(string.format("listen 127.0.0.1:%d: bind: Address already in use; no /metrics or /healthz " ..
        "until then; tried again every 10 s", taken.port), 1)
      taken.stop()
      local url = scrape.wait_url(w, 1, 30)
      assert.are.equal("http://127.0.0.1:" .. taken.port, url)
      assert.are.equal(200, (scrape.get(url .. "/healthz")))
      assert.are.equal(1, w:log_count("bind: Address already in use")) -- the retries are quiet
    end)
    taken.stop()
    assert(ok, err)
  end)

  it("refuses to start with a watch.listen that is not an address and a port", function()
    w = fx.start('listen = "localhost:9121"')
    w:start()
    procs.wait(function() return w:exit_code() ~= nil end, 20, "the watcher to exit")
    assert.are.equal(2, w:exit_code())
    assert.matches('watch.listen: expected an IP address and a port, such as "127.0.0.1:9121" or "%[::1%]:9121" ' ..
      '%(no host names%), got "localhost:9121"', procs.read(w.dir .. "/watch.out"))
  end)
end)
