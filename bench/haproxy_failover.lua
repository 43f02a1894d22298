-- How soon HAProxy routes clients to the new master after a failover, with
-- examples/rules/haproxy-follow-master.lua run by `eventilator watch`: "the
-- tool's own share" of issue 20, from the first +switch-master a Sentinel
-- published (as a subscriber to the Sentinels' Pub/Sub receives it, like
-- the watcher) to the first client connection through HAProxy's frontend
-- that the new master answers (bench/haproxy_probe.py, a new connection
-- every 2 ms: the figure is good to about 3 ms).
--
-- HAProxy has docs/haproxy.md's backend: one server for the pod, a role
-- check that only a master passes, at `inter 100ms` and then `inter 1s`.
-- Each round kills the master, waits until HAProxy's checks have its server
-- DOWN (the case the checks make slow: left to them, the server comes back
-- only after `rise` passes at the new address), then asks a Sentinel for the
-- failover (SENTINEL FAILOVER; the Sentinels' down-after is 60 s, so they
-- never fail over by themselves, or twice), then brings the old master back
-- as a replica for the next round.
--   lua5.4 bench/haproxy_failover.lua [ROUNDS]   (default 7 per setting; needs ./build)
local build = os.getenv("EVENTILATOR_BUILD") or "build"
package.path = "lua/?.lua;spec/support/?.lua;" .. package.path
package.cpath = build .. "/lib/eventilator/?.so;" .. package.cpath
local CFG = require("hostless")
local procs = require("procs")
local constellation = require("constellation")
local watcher = require("watcher")
local haproxy_proc = require("haproxy")
local haproxy = require("eventilator.haproxy")

local rounds = tonumber(arg[1]) or 7
local SETTINGS = { "check inter 100ms", "check inter 1s" }
if os.getenv("BENCH_CHECK") then SETTINGS = { os.getenv("BENCH_CHECK") } end

local function state(h)
  CFG.haproxy = { socket = h.socket }
  return haproxy_proc.by_name(assert(haproxy.servers("redis"))).master
end

-- SENTINEL REPLICAS pod1 on sentinel i: one map per replica.
local function replicas(c, i)
  local out, cur, key = {}, nil, nil
  for l in (c:sentinel_cli(i, "sentinel", "replicas", c.name) .. "\n"):gmatch("([^\n]*)\n") do
    if key then
      cur[key], key = l, nil
    elseif l == "name" then
      cur = {}
      out[#out + 1] = cur
      key = "name"
    elseif cur then
      key = l
    end
  end
  return out
end

-- Ready for the next failover: both replicas linked to the master, seen
-- so by every Sentinel, and HAProxy routing to the master. The rule's
-- dedupe claims go: with three nodes, a failover soon repeats an earlier
-- one's old and new master, the same event identity, whose claim would
-- hold for dedupe's ttl (300 s) and keep the rule from acting.
local function settle(c, h)
  c:store_cli("flushall")
  c:wait_replication(60)
  procs.wait(function()
    for i = 1, #c.sentinels do
      local good = 0
      for _, r in ipairs(replicas(c, i)) do
        if r.flags == "slave" and r["master-link-status"] == "ok" then good = good + 1 end
      end
      if good < 2 then return false end
    end
    return true
  end, 60, "every Sentinel to see two good replicas")
  procs.wait(function()
    local info = procs.cli(h.frontend, "info", "server")
    return info:match("tcp_port:(%d+)") == tostring(c.master_port) and state(h).op_state == 2
  end, 30, "HAProxy to route to the master")
end

-- The old master back, as a replica of the new one.
local function rejoin(c, port, master)
  local node = c:node(port)
  local conf = procs.read(node.dir .. "/redis.conf"):gsub("replicaof [^\n]*\n", "")
  procs.write(node.dir .. "/redis.conf", conf .. string.format("replicaof 127.0.0.1 %d\n", master))
  c:start_node(port)
end

local function probe_lines(path)
  local out = {}
  for l in (procs.read(path) or ""):gmatch("[^\n]+") do
    local kind, t, a, b = l:match("^(%S+) (%S+) (%S+) ?(.*)$")
    if kind then out[#out + 1] = { kind = kind, t = tonumber(t), a = a, b = b } end
  end
  return out
end

-- The first +switch-master to `new` after line `from`, and the first
-- answer from `new` as master (its line: the probe's gap before it).
local function times(path, from, new)
  local switched, routed
  local lines = probe_lines(path)
  new = tostring(new)
  for i = from + 1, #lines do
    local l = lines[i]
    if l.kind == "switch" and not switched and l.b:match("(%d+)$") == new then switched = l.t end
    if l.kind == "route" and not routed and l.a == new and l.b:match("^master ") then routed = l end
  end
  return switched, routed
end

-- When the watcher's rule set the address (its log line past byte `from`, to the ms).
local function repointed(w, from, new)
  for line in w:logtext():sub(from + 1):gmatch("[^\n]+") do
    if line:find("haproxy: redis/master now 127.0.0.1:" .. new, 1, true) then
      return constellation.epoch(line:match("^(%S+)"))
    end
  end
end

local function round(c, h, w, probe, n)
  settle(c, h)
  local from, logged = #probe_lines(probe), #w:logtext()
  local old = c:kill_master()
  procs.wait(function() return state(h).op_state == 0 end, 30, "HAProxy's check to find the master dead")
  local s = (n - 1) % #c.sentinels + 1
  procs.wait(function() return c:sentinel_cli(s, "sentinel", "failover", c.name) == "OK" end, 30,
    "SENTINEL FAILOVER to start")
  local new = c:wait_failover(90, old)
  local switched, routed
  procs.wait(function()
    switched, routed = times(probe, from, new)
    return switched and routed
  end, 60, "the frontend to answer from the new master")
  local set = repointed(w, logged, new)
  rejoin(c, old, new)
  local opened, before = routed.b:match("^master (%S+) (%S+)")
  return { share = (routed.t - switched) * 1000, set = set and (set - switched) * 1000,
           gap = (tonumber(opened) - math.max(tonumber(before), switched)) * 1000 }
end

local function setting(c, check)
  local h = haproxy_proc.start({ backends = { redis = { master = c.master_port } }, check = check,
                                 role_check = true })
  local w = watcher.new()
  local sentinels, ports = {}, {}
  for i, s in ipairs(c.sentinels) do
    sentinels[i] = string.format("%q", c:sentinel_addr(i))
    ports[i] = "--sentinel " .. s.port
  end
  procs.write(w.conf, table.concat({
    string.format("log = { target = %q, level = \"info\" }", w.log),
    string.format("rules_dir = %q\nstate_dir = %q", w.rules, w.state),
    string.format("redis = { port = %d, timeout = 1 }", c.store.port),
    string.format("haproxy = { socket = %q, backends = { %s = \"redis/master\" } }", h.socket, c.name),
    string.format("watch = { sentinels = { %s } }", table.concat(sentinels, ", ")),
  }, "\n") .. "\n")
  w:rule("haproxy-follow-master.lua", procs.read(procs.src .. "/examples/rules/haproxy-follow-master.lua"))
  local probe = w.dir .. "/probe.out"
  local ppid
  local results = {}
  local ok, err = pcall(function()
    w:start()
    w:wait_log("connected and subscribed", #c.sentinels)
    ppid = procs.spawn(string.format("python3 %s --frontend %d %s",
      procs.quote(procs.src .. "/bench/haproxy_probe.py"), h.frontend, table.concat(ports, " ")), probe)
    procs.wait(function()
      local n = 0
      for _, l in ipairs(probe_lines(probe)) do if l.kind == "subscribed" then n = n + 1 end end
      return n == #c.sentinels
    end, 20, "the probe to subscribe")
    for n = 1, rounds do
      local r = round(c, h, w, probe, n)
      results[n] = r
      io.stdout:write(string.format("%s, failover %d: routed to the new master %.1f ms after "
        .. "+switch-master (set server ... addr at %s ms; the probe's last gap %.1f ms)\n", check, n, r.share,
        r.set and string.format("%.0f", r.set) or "?", r.gap))
      io.stdout:flush()
    end
  end)
  procs.kill(ppid)
  if not ok then
    io.stderr:write("[bench] haproxy log:\n" .. (procs.read(h.log) or ""):sub(-3000) .. "\n[bench] probe:\n"
      .. (procs.read(probe) or ""):sub(-2000) .. "\n[bench] watcher log:\n" .. w:logtext():sub(-3000) .. "\n")
  end
  pcall(w.stop, w, 30)
  w:cleanup()
  h.stop()
  if not ok then error(err, 0) end
  return results
end

local c = constellation.new{ conf = "/dev/null", scripts = false, down_after = 60000 }
local summary = {}
local ok, err = pcall(function()
  c:start()
  for _, check in ipairs(SETTINGS) do
    local v = {}
    for i, r in ipairs(setting(c, check)) do v[i] = r.share end
    table.sort(v)
    summary[#summary + 1] = string.format("%s: median %.1f ms, max %.1f ms over %d failovers", check,
      v[(#v + 1) // 2], v[#v], #v)
  end
end)
c:stop()
if not ok then error(err, 0) end
io.stdout:write("+switch-master to the first client routed to the new master (watch mode):\n  "
  .. table.concat(summary, "\n  ") .. "\n")
