-- Cluster mode (docs/cluster.md), measured, never asserted, against a
-- private store and a redis-server the watchers subscribe to as if it were
-- a Sentinel:
--   1. entries per second through the stream with 1 and with 3 workers, for
--      a handler that takes 50 ms (an HTTP request to a stand-in that
--      answers after 50 ms): N entries are appended at once to an idle
--      group, timed until the group has nothing left (lag and pending 0),
--      and set against the runs' own median time;
--   2. the latency the stream adds over plain watch mode: RATE events/s
--      PUBLISHed for 10 s, each carrying its publish time; the handler
--      writes ev.time (its start) minus it; plain watch mode, then a watcher
--      in cluster mode with its own worker (append, XREADGROUP, runner);
--   3. a worker's RSS after 100 000 entries (a handler that returns at once),
--      and its runner's, with the rate.
--   lua5.4 bench/cluster.lua [N] [ENTRIES]   (default N=300 for phase 1, ENTRIES=100000;
--                                             RATE=20; needs ./build)
--   MASTERS=k: phase 1's entries are about k masters in turn (a `master` field and
--   their order lists, as APPEND makes them): a master's entries run one at a time;
--   0 (the default): about none, in no order. PHASES=1 (or 12, 13, ...): only those.
package.path = "spec/support/?.lua;lua/?.lua;" .. package.path
package.cpath = (os.getenv("EVENTILATOR_BUILD") or "build") .. "/lib/eventilator/?.so;" .. package.cpath
local procs = require("procs")
local cl = require("cluster")
local redis = require("eventilator.redis")

local N = tonumber(arg[1]) or 300
local ENTRIES = tonumber(arg[2]) or 100000
local RATE = tonumber(os.getenv("RATE")) or 20
local MASTERS = tonumber(os.getenv("MASTERS")) or 0
local PHASES = os.getenv("PHASES") or "123"

local store = procs.start_redis()
local fake = procs.start_redis({ "client-output-buffer-limit pubsub 0 0 0" })
local procs_started = {}

local function config(cluster)
  return string.format([[
redis = { port = %d }
watch = { sentinels = { "127.0.0.1:%d" } }
%s
]], store.port, fake.port, cluster and "cluster = { claim_after = 30 }" or "")
end

-- A receiver that answers after 50 ms (spec/support/httpd.py's /delay/): the handler's 50 ms.
local receiver = require("standin").start()
local SLOW = string.format([[
on("+bench", function()
  local r, err = http.request{ url = %q, timeout = 5 }
  if not r then return nil, err end
  return r.status == 200 or nil, "status " .. tostring(r.status)
end)
]], receiver.url .. "/delay/0.05")
local FAST = 'on("+bench", function() return true end)\n'

local function latency_rule(path)
  return string.format([[
on("+bench", function(ev)
  local f = assert(io.open(%q, "a"))
  f:write(string.format("%%.6f\n", ev.time - tonumber(ev.text)))
  f:close()
  return true
end)
]], path)
end

local function start(sub, args, ready, rule, cluster)
  local w = cl.new(config(cluster), rule)
  local f = assert(io.open(w.conf, "a")) -- info, not the specs' debug: a line per entry costs
  f:write(string.format('log = { target = %q, level = "info" }\n', w.log))
  f:close()
  procs_started[#procs_started + 1] = w
  local pidfile, rcfile = w.dir .. "/proc.pid", w.dir .. "/proc.rc"
  w.rcfile = rcfile
  local inner = string.format("env EVENTILATOR_CONF=%s %s %s %s & echo $! > %s; wait $!; echo $? > %s",
    procs.quote(w.conf), procs.quote(procs.build .. "/bin/eventilator"), sub, args, procs.quote(pidfile),
    procs.quote(rcfile))
  procs.spawn("sh -c " .. procs.quote(inner), w.dir .. "/proc.out")
  procs.wait(function()
    w.pid = tonumber(procs.read(pidfile) or "")
    return w.pid ~= nil
  end, 10, sub .. " pid")
  w:wait_log(ready, 1, 30)
  return w
end

local function stop_all()
  cl.cleanup(procs_started)
  procs_started = {}
end

local function store_client()
  return assert(redis.connect{ port = store.port, timeout = 30 })
end

-- n entries of "+bench" at once, in scripts of 1000; with `masters`, about master m<i % masters>.
local APPEND = [[
local masters, from = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 3, #ARGV do
  local t = ARGV[i]
  if masters > 0 then
    local m = 'm' .. ((from + i) % masters)
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', 200000, '*', 'name', '+bench', 'text', t,
      'sentinel', '127.0.0.1:1', 'time', t, 'id', '+bench ' .. t, 'master', m)
    redis.call('RPUSH', KEYS[1] .. ':order:' .. m, id)
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', 200000, '*', 'name', '+bench', 'text', t,
      'sentinel', '127.0.0.1:1', 'time', t, 'id', '+bench ' .. t)
  end
end
return #ARGV - 2
]]
local function append(c, n, masters)
  local sent = 0
  while sent < n do
    local args = { masters or 0, sent }
    for i = 1, math.min(1000, n - sent) do
      args[#args + 1] = string.format("%.6f", os.time() + (sent + i) / 1e6)
    end
    assert(c:call("EVAL", APPEND, 1, "eventilator:events", table.unpack(args)))
    sent = sent + #args - 2
  end
end

local function drained()
  local lag, pending = cl.backlog(store.port)
  return lag == 0 and pending == 0
end

local function uptime() return cl.uptime() end

local function rss(pid)
  local s = procs.read("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function children(pid)
  local out = procs.sh("pgrep -P " .. pid .. " || true")
  local list = {}
  for p in out:gmatch("%d+") do list[#list + 1] = tonumber(p) end
  return list
end

-- ---------------------------------------------------------------- 1. throughput

-- The median of the runs' own time (their summary lines' ms=): what the handler took.
local function median_run(list)
  local v = {}
  for _, w in ipairs(list) do
    for ms in w:logtext():gmatch("%+bench pod=%- handlers=1 failed=0 [^\n]* ms=([%d.]+)") do
      v[#v + 1] = tonumber(ms)
    end
  end
  table.sort(v)
  return v[math.max(1, #v // 2)] or 0
end

local function throughput(workers)
  local c = store_client()
  c:call("DEL", "eventilator:events")
  c:call("XGROUP", "CREATE", "eventilator:events", "eventilator", "$", "MKSTREAM")
  local list = {}
  for i = 1, workers do list[i] = start("work", "", "cluster worker", SLOW, true) end
  local t0 = uptime()
  append(c, N, MASTERS)
  procs.wait(drained, 600, "the group to drain")
  local dt = uptime() - t0
  local run = median_run(list)
  io.stdout:write(string.format("   %d worker(s): %d entries in %.2f s: %.1f entries/s; a run takes %.1f ms "
    .. "(median), so at best %.1f/s: the stream costs %.1f ms an entry\n", workers, N, dt, N / dt, run,
    workers * 1000 / run, workers * dt * 1000 / N - run))
  c:close()
  stop_all()
end

if PHASES:find("1") then
  io.stdout:write(string.format("== entries/s through the stream, a 50 ms handler, %s (load: %s)\n",
    MASTERS > 0 and string.format("entries about %d masters in turn", MASTERS) or "entries about no master",
    procs.read("/proc/loadavg"):match("^%S+")))
  throughput(1)
  throughput(3)
end

-- ---------------------------------------------------------------- 2. latency

local function publish(rate, seconds)
  assert(os.execute(string.format([[python3 - %d %d %d <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
rate, secs = int(sys.argv[2]), int(sys.argv[3])
t0 = time.time()
for i in range(rate * secs):
    due = t0 + i / float(rate)
    while time.time() < due:
        time.sleep(max(0.0, due - time.time()) * 0.9)
    now = "%%.6f" %% time.time()
    s.sendall(b"*3\r\n$7\r\nPUBLISH\r\n$6\r\n+bench\r\n$%%d\r\n%%s\r\n" %% (len(now), now.encode()))
PY]], fake.port, rate, seconds)))
end

local function percentiles(path, n)
  procs.wait(function() return select(2, (procs.read(path) or ""):gsub("\n", "")) >= n end, 120,
    "handler starts")
  local v = {}
  for l in (procs.read(path) or ""):gmatch("[^\n]+") do v[#v + 1] = tonumber(l) * 1000 end
  table.sort(v)
  local function pick(q) return v[math.min(#v, math.floor(q * #v) + 1)] end
  return pick(0.5), pick(0.99), #v
end

local function latency(cluster)
  local dir = procs.tmpdir()
  local path = dir .. "/latency"
  local w = start("watch", "", cluster and "cluster worker" or "watch: started", latency_rule(path), cluster)
  w:wait_log("connected and subscribed", 1)
  publish(RATE, 10)
  local p50, p99, n = percentiles(path, RATE * 10)
  stop_all()
  procs.rmtree(dir)
  return p50, p99, n
end

if PHASES:find("2") then
  io.stdout:write(string.format("== PUBLISH to handler start, %d events/s for 10 s\n", RATE))
  local w50, w99, wn = latency(false)
  io.stdout:write(string.format("   plain watch mode: %d handler starts: median %.2f ms, p99 %.2f ms\n",
    wn, w50, w99))
  store_client():call("DEL", "eventilator:events")
  local c50, c99, cn = latency(true)
  io.stdout:write(string.format("   cluster mode (a watcher and its worker): %d: median %.2f ms, "
    .. "p99 %.2f ms\n", cn, c50, c99))
  io.stdout:write(string.format("   the stream adds: median %.2f ms, p99 %.2f ms\n", c50 - w50, c99 - w99))
end

-- ---------------------------------------------------------------- 3. memory

if PHASES:find("3") then
  io.stdout:write(string.format("== a worker after %d entries, a handler that returns at once\n", ENTRIES))
  local c = store_client()
  c:call("DEL", "eventilator:events")
  c:call("XGROUP", "CREATE", "eventilator:events", "eventilator", "$", "MKSTREAM")
  local w = start("work", "", "cluster worker", FAST, true)
  append(c, 1000)
  procs.wait(drained, 600, "the first 1000")
  local r1 = rss(w.pid)
  local t0 = uptime()
  append(c, ENTRIES - 1000)
  procs.wait(drained, 3600, "the group to drain")
  local dt = uptime() - t0
  local r2 = rss(w.pid)
  local runner = children(w.pid)[1]
  io.stdout:write(string.format("   %.0f entries/s; worker RSS %d kB after 1000 entries, %d kB after %d; "
    .. "runner %s kB\n", (ENTRIES - 1000) / dt, r1, r2, ENTRIES, runner and tostring(rss(runner)) or "?"))
  c:close()
  stop_all()
end

receiver.stop()
store.stop()
fake.stop()
