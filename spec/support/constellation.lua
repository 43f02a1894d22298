-- A private Sentinel constellation for the end-to-end specs: one master and
-- two replicas (redis-server), three redis-sentinel processes monitoring
-- them as `pod1` with quorum 2 and the built eventilator/reconfigurator as
-- notification and client-reconfig scripts, plus a separate redis-server as
-- the metrics store. Everything listens on 127.0.0.1 only, on ports of its
-- own (procs.serve), and runs under `timeout` (procs.spawn), so nothing
-- outlives a dead spec by more than procs.LIFETIME.
--
--   local c = constellation.start{
--     conf = "/path/eventilator.conf",       -- EVENTILATOR_CONF for the sentinels
--     setup = function(c) ... end,           -- runs once c.store.port is known,
--                                            -- with the pod up, before any
--                                            -- sentinel starts
--   }
--   c:kill_master()          -- SIGKILL the current master, returns its port
--   c:wait_failover(30)      -- until every sentinel names a new master
--   c:wait_scripts_idle(60)  -- until SENTINEL PENDING-SCRIPTS is empty everywhere
--   c:settle(60)             -- ... and no Sentinel raised an event meanwhile
--   c:raised(name)           -- what the Sentinels logged: see "sentinel logs"
--   c:stop_sentinel(i) / c:start_sentinel(i [, extra conf lines])
--   c:stop()
--
-- More opts: masters (how many masters; the ones past pod1 are single
-- redis-servers named pod2, pod3, ...), scripts = false (no script lines in
-- sentinel.conf), sentinel_conf = function(i) return { lines } end (extra
-- lines for sentinel i, after the defaults, so they win).
local procs = require("procs")

local M = {}

local C = {}
C.__index = C

M.NAME = "pod1"

-- Parse the one-line-per-element output redis-cli gives when not on a tty
-- (an empty string is an empty line, so empty lines count).
local function lines(text)
  local t = {}
  if not text or text == "" then return t end
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

-- A flat "field\nvalue\n..." reply as a map.
local function fields(text)
  local t, l = {}, lines(text)
  for i = 1, #l - 1, 2 do t[l[i]] = l[i + 1] end
  return t
end
M.fields = fields

-- ---------------------------------------------------------------- nodes

-- A redis-server node: its own dir and config (node.extra: more lines), on a
-- port of its own the first time, restarted on that port (its config as the
-- server left it: Sentinel has it rewrite the config when it reconfigures it).
local function node_lines(node, port)
  local conf = {
    "port " .. port, "bind 127.0.0.1", "protected-mode no", "save \"\"", "appendonly no",
    "dir " .. node.dir, "daemonize no", "logfile " .. node.dir .. "/redis.log",
    "repl-diskless-sync yes", "repl-diskless-sync-delay 0",
  }
  for _, l in ipairs(node.extra or {}) do conf[#conf + 1] = l end
  return conf
end

local function node_start(node)
  -- node.rpid: the server's own pid (node.pid is `timeout`'s): SIGKILL has to reach it
  node.port, node.pid, node.rpid = procs.redis_serve(node.dir .. "/redis.conf", {
    port = node.port, out = node.dir .. "/stdout.log", log = node.dir .. "/redis.log",
    conf = not node.port and function(port) return node_lines(node, port) end or nil,
  })
  node.up = true
end

local function node_stop(node, sig)
  if not node.up then return end
  node.up = false
  procs.kill(node.rpid or node.pid, sig or "TERM")
  if not procs.exited(node.rpid, 5) then procs.kill(node.rpid, "KILL") end
  procs.halt(node.pid, "TERM", 5)
end

-- ---------------------------------------------------------------- start

-- constellation.new(opts) makes the folders and starts the metrics store and
-- the pod (so opts.setup sees every node's port); c:start() starts the
-- sentinels.
-- opts: conf (required: path of the eventilator config the scripts get),
--   bin (folder with eventilator/reconfigurator; default <build>/bin),
--   down_after (ms, 1000), failover_timeout (ms, 15000), quorum (2),
--   env (extra environment for the sentinels), script_retry_delay /
--   script_max_runtime (ms; applied with SENTINEL DEBUG once up),
--   sentinel_root (folder for the sentinels' folders; default the root),
--   sentinel_cmd (function(s, env) -> the shell command that starts
--   sentinel s with config s.conf and the environment words `env`).
function M.new(opts)
  opts = opts or {}
  assert(opts.conf, "constellation: opts.conf (the eventilator config path) is required")
  local root = procs.tmpdir()
  local extra = (opts.masters or 1) - 1
  local self = setmetatable({
    root = root, name = M.NAME, conf = opts.conf, opts = opts,
    bin = opts.bin or (procs.build .. "/bin"),
    down_after = opts.down_after or 1000,
    failover_timeout = opts.failover_timeout or 15000,
    quorum = opts.quorum or 2,
    nodes = {}, sentinels = {},
  }, C)
  if self.bin:sub(1, 1) ~= "/" then
    self.bin = procs.sh("pwd"):gsub("%s+$", "") .. "/" .. self.bin
  end
  for i = 1, 3 do
    self.nodes[i] = { dir = root .. "/redis-" .. i, role = i == 1 and "master" or "replica" }
    self.sentinels[i] = { dir = (opts.sentinel_root or root) .. "/sentinel-" .. i }
  end
  self.store = { dir = root .. "/store" }
  -- masters past the first: name, single node
  self.masters = { { name = self.name } }
  for i = 1, extra do
    local n = { dir = root .. "/master-" .. (i + 1), role = "master" }
    self.masters[i + 1] = { name = M.NAME:gsub("%d+$", "") .. (i + 1), node = n }
  end
  local dirs = { self.store.dir }
  for i = 2, #self.masters do dirs[#dirs + 1] = self.masters[i].node.dir end
  for i = 1, 3 do
    dirs[#dirs + 1] = self.nodes[i].dir
    dirs[#dirs + 1] = self.sentinels[i].dir
  end
  for i, d in ipairs(dirs) do dirs[i] = procs.quote(d) end
  os.execute("mkdir -p " .. table.concat(dirs, " "))
  local ok, err = pcall(function()
    node_start(self.store)
    -- the master first: the replicas' config names its port
    local master = self.nodes[1]
    node_start(master)
    for i = 2, #self.nodes do
      self.nodes[i].extra = { "replicaof 127.0.0.1 " .. master.port }
      node_start(self.nodes[i])
    end
    for i = 2, #self.masters do node_start(self.masters[i].node) end
    self.master_port = master.port
    self:wait_replication(20)
  end)
  if not ok then
    self:stop()
    error(err, 0)
  end
  return self
end

function C:start()
  for i, s in ipairs(self.sentinels) do
    s.conf = s.dir .. "/sentinel.conf"
    s.log = s.dir .. "/sentinel.log"
    s.lines = function(port)
      local conf = {
        "port " .. port, "bind 127.0.0.1", "protected-mode no", "daemonize no",
        "dir " .. s.dir, "logfile " .. s.log,
      }
      for k, m in ipairs(self.masters) do
        local mport = k == 1 and self.nodes[1].port or m.node.port
        local function add(fmt, ...) conf[#conf + 1] = string.format(fmt, ...) end
        add("sentinel monitor %s 127.0.0.1 %d %d", m.name, mport, self.quorum)
        add("sentinel down-after-milliseconds %s %d", m.name, self.down_after)
        add("sentinel failover-timeout %s %d", m.name, self.failover_timeout)
        add("sentinel parallel-syncs %s 1", m.name)
        if self.opts.scripts ~= false then
          add("sentinel notification-script %s %s/eventilator", m.name, self.bin)
          add("sentinel client-reconfig-script %s %s/reconfigurator", m.name, self.bin)
        end
      end
      conf[#conf + 1] = "sentinel deny-scripts-reconfig yes"
      for _, l in ipairs(self.opts.sentinel_conf and self.opts.sentinel_conf(i) or {}) do conf[#conf + 1] = l end
      return conf
    end
    self:start_sentinel(i)
  end
  if self.opts.script_retry_delay then self:debug("script-retry-delay", self.opts.script_retry_delay) end
  if self.opts.script_max_runtime then self:debug("script-max-runtime", self.opts.script_max_runtime) end
  self:wait_ready(30)
  return self
end

-- constellation.start(opts): new, opts.setup(c) if given, start.
function M.start(opts)
  local c = M.new(opts)
  local ok, err = pcall(function()
    if opts.setup then opts.setup(c) end
    c:start()
  end)
  if not ok then
    c:stop()
    error(err, 0)
  end
  return c
end

-- ---------------------------------------------------------------- waits

-- The master sees both replicas online and each replica's link is up.
function C:wait_replication(timeout)
  procs.wait(function()
    local info = procs.cli(self.master_port, "info", "replication")
    local _, online = info:gsub("state=online", "")
    if online < 2 then return false end
    for _, n in ipairs(self.nodes) do
      if n.port ~= self.master_port and n.up
        and not procs.cli(n.port, "info", "replication"):find("master_link_status:up", 1, true) then
        return false
      end
    end
    return true
  end, timeout or 20, "replication links")
end

-- Every sentinel knows the master, both replicas and the two other sentinels
-- (and every other master, with the two other sentinels).
function C:wait_ready(timeout)
  procs.wait(function()
    for i, s in ipairs(self.sentinels) do
      if s.up then
        local m = self:master_info(i)
        if m["num-other-sentinels"] ~= "2" or m["num-slaves"] ~= "2" or m.flags ~= "master" then
          return false
        end
        for k = 2, #self.masters do
          m = fields(self:sentinel_cli(i, "sentinel", "master", self.masters[k].name))
          if m["num-other-sentinels"] ~= "2" or m.flags ~= "master" then return false end
        end
      end
    end
    return true
  end, timeout or 30, "sentinels to discover the pod and each other")
end

-- SENTINEL MASTER pod1 on sentinel i, as a map of strings.
function C:master_info(i)
  return fields(self:sentinel_cli(i, "sentinel", "master", self.name))
end

-- "ip:port" the sentinel currently names as master (nil when unreachable).
function C:master_addr(i)
  local l = lines(self:sentinel_cli(i or 1, "sentinel", "get-master-addr-by-name", self.name))
  if #l ~= 2 or not tonumber(l[2]) then return nil end
  return l[1], tonumber(l[2])
end

-- Until the failover is over everywhere: every running sentinel names the
-- same master, other than the one at the call (or `from`), with no failover
-- in progress (so the leader is past +failover-end and +switch-master).
-- Returns the new port and the seconds it took.
function C:wait_failover(timeout, from)
  from = from or self.master_port
  local t0 = procs.now()
  local new
  procs.wait(function()
    local seen
    for i, s in ipairs(self.sentinels) do
      if s.up then
        local m = self:master_info(i)
        local port = tonumber(m.port)
        if not port or port == from or (seen and seen ~= port) or m.flags ~= "master" then return false end
        seen = port
      end
    end
    new = seen
    return new ~= nil
  end, timeout or 30, "failover of " .. self.name .. " away from port " .. tostring(from))
  self.master_port = new
  return new, procs.now() - t0
end

-- ---------------------------------------------------------------- sentinels

function C:sentinel_cli(i, ...)
  return procs.cli(self.sentinels[i].port, ...)
end

-- Start sentinel i and wait until it answers: the first time on a port of
-- its own, from s.lines(port); then again on that port, from its
-- sentinel.conf as it left it. `extra`: lines to add to the config (such as
-- the ones `eventilator sentinels register` prints).
function C:start_sentinel(i, extra)
  local s = self.sentinels[i]
  local conf
  if not s.port then
    conf = function(port)
      local conf_lines = s.lines(port)
      for _, l in ipairs(extra or {}) do conf_lines[#conf_lines + 1] = l end
      return conf_lines
    end
  elseif extra and #extra > 0 then
    procs.write(s.conf, (procs.read(s.conf) or "") .. table.concat(extra, "\n") .. "\n")
  end
  local env = { "EVENTILATOR_CONF=" .. procs.quote(self.conf) }
  for k, v in pairs(self.opts.env or {}) do env[#env + 1] = k .. "=" .. procs.quote(v) end
  local cmd = string.format("env %s redis-sentinel %s", table.concat(env, " "), procs.quote(s.conf))
  if self.opts.sentinel_cmd then cmd = self.opts.sentinel_cmd(s, table.concat(env, " ")) end
  s.port, s.pid, s.rpid = procs.redis_serve(s.conf, {
    cmd = cmd, conf = conf, port = s.port, out = s.dir .. "/stdout.log", log = s.log,
  })
  s.up = true
end

-- Until sentinel i answers (c:start_sentinel has waited already).
function C:wait_sentinel(i)
  local s = self.sentinels[i]
  procs.wait(function() return procs.cli(s.port, "ping") == "PONG" end, 10, "sentinel on " .. s.port)
  s.up = true
end

-- "127.0.0.1:port" of sentinel i.
function C:sentinel_addr(i)
  return "127.0.0.1:" .. self.sentinels[i].port
end

-- One more sentinel monitoring the pod (the others then report +sentinel);
-- started and answering; returns its index.
function C:add_sentinel()
  local i = #self.sentinels + 1
  local s = { dir = self.root .. "/sentinel-" .. i }
  s.conf, s.log = s.dir .. "/sentinel.conf", s.dir .. "/sentinel.log"
  os.execute("mkdir -p " .. procs.quote(s.dir))
  s.lines = function(port)
    return {
      "port " .. port, "bind 127.0.0.1", "protected-mode no", "daemonize no", "dir " .. s.dir, "logfile " .. s.log,
      string.format("sentinel monitor %s 127.0.0.1 %d %d", self.name, self.master_port, self.quorum),
      string.format("sentinel down-after-milliseconds %s %d", self.name, self.down_after),
      string.format("sentinel failover-timeout %s %d", self.name, self.failover_timeout),
    }
  end
  self.sentinels[i] = s
  self:start_sentinel(i)
  return i
end

-- Start the redis-server on `port` again (after kill_node).
function C:start_node(port)
  node_start(assert(self:node(port), "no node on port " .. tostring(port)))
end

-- Stop sentinel i (SIGTERM, then SIGKILL after 5 s) and wait until it is gone.
function C:stop_sentinel(i)
  local s = self.sentinels[i]
  s.up = false
  procs.halt(s.pid, "TERM", 5)
end

-- SENTINEL DEBUG <name> <value> on every sentinel.
function C:debug(name, value)
  for i = 1, #self.sentinels do
    local out = self:sentinel_cli(i, "sentinel", "debug", name, tostring(value))
    assert(out == "OK", string.format("SENTINEL DEBUG %s %s on sentinel %d: %s", name, value, i, out))
  end
end

-- SENTINEL PENDING-SCRIPTS of every sentinel: total number of jobs and a
-- list of { sentinel = i, text = raw reply } for the non-empty ones.
function C:pending_scripts()
  local total, raw = 0, {}
  for i, s in ipairs(self.sentinels) do
    if s.up then
      local out = self:sentinel_cli(i, "sentinel", "pending-scripts")
      local n = 0
      for _, l in ipairs(lines(out)) do
        if l == "retry-num" then n = n + 1 end
      end
      if n > 0 then raw[#raw + 1] = { sentinel = i, text = out } end
      total = total + n
    end
  end
  return total, raw
end

-- Until no sentinel has a script queued or running; returns the seconds it
-- took. Raises (with the queue) after `timeout`.
function C:wait_scripts_idle(timeout)
  local t0 = procs.now()
  local ok = pcall(procs.wait, function() return self:pending_scripts() == 0 end, timeout or 60)
  if not ok then
    local _, raw = self:pending_scripts()
    local parts = {}
    for _, r in ipairs(raw) do parts[#parts + 1] = "sentinel " .. r.sentinel .. ":\n" .. r.text end
    error("scripts still pending after " .. tostring(timeout or 60) .. " s:\n" .. table.concat(parts, "\n"), 2)
  end
  return procs.now() - t0
end

-- The sentinel log files, concatenated (each headed by its path), or the
-- one of sentinel i.
function C:sentinel_logs(i)
  if i then return procs.read(self.sentinels[i].log) or "" end
  local parts = {}
  for _, s in ipairs(self.sentinels) do
    parts[#parts + 1] = "==> " .. s.log .. "\n" .. (procs.read(s.log) or "")
  end
  return table.concat(parts, "\n")
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10,
                 Nov = 11, Dec = 12 }

-- The events Sentinel logged in `text` (a sentinel.log), in order: each
-- { t (epoch seconds), level ("#" warning, "*" notice, "-" verbose), name
-- ("+odown"), text ("master pod1 127.0.0.1 6379 #quorum 2/2") }. Sentinel
-- logs an event and publishes it in one go, and at `loglevel verbose` it logs
-- every event it publishes; at the default (notice), all but +/-role-change.
function M.events(text)
  local out = {}
  for line in (text or ""):gmatch("[^\n]+") do
    local d, mon, y, h, mi, sec, ms, level, name, rest =
      line:match("^%d+:X (%d+) (%a+) (%d+) (%d+):(%d+):(%d+)%.(%d+) (%S) ([+-][%w%-]+) ?(.*)$")
    if d and MONTHS[mon] then
      local t = os.time{ year = tonumber(y), month = MONTHS[mon], day = tonumber(d), hour = tonumber(h),
        min = tonumber(mi), sec = tonumber(sec) } + tonumber(ms) / 1000
      out[#out + 1] = { t = t, level = level, name = name, text = rest }
    end
  end
  return out
end

-- What sentinel i raised (every sentinel's, merged in time order, when i is
-- nil), each as M.events gives plus `sentinel` (its index); only `name`'s
-- events when given.
function C:raised(name, i)
  local out = {}
  for k, s in ipairs(self.sentinels) do
    if not i or i == k then
      for n, e in ipairs(M.events(procs.read(s.log))) do
        if not name or e.name == name then
          e.sentinel, e.n = k, n
          out[#out + 1] = e
        end
      end
    end
  end
  table.sort(out, function(a, b)
    if a.t ~= b.t then return a.t < b.t end
    if a.sentinel ~= b.sentinel then return a.sentinel < b.sentinel end
    return a.n < b.n
  end)
  return out
end

-- How many warnings (the events that run scripts) the running sentinels
-- have logged.
function C:warnings()
  local n = 0
  for _, s in ipairs(self.sentinels) do
    if s.up then
      for _, e in ipairs(M.events(procs.read(s.log))) do
        if e.level == "#" then n = n + 1 end
      end
    end
  end
  return n
end

-- Until nothing more is due from the Sentinels' scripts: none queued or
-- running anywhere (c:wait_scripts_idle), and no Sentinel raised a warning
-- while that was checked (it would have queued another). Returns the seconds
-- it took and c:warnings() then.
function C:settle(timeout)
  local t0 = procs.now()
  local deadline = t0 + (timeout or 60)
  while true do
    local before = self:warnings()
    self:wait_scripts_idle(math.max(1, deadline - procs.now()))
    if self:warnings() == before then return procs.now() - t0, before end
  end
end

-- observe() once nothing is due from the Sentinels' scripts (c:settle), then
-- what the Sentinels raised (c:raised()); again if a Sentinel raised a
-- warning before that was read: what observe saw is then the outcome of
-- exactly that list. Returns the seconds it took, the list, and what observe
-- returned.
function C:settled(observe, timeout)
  local t0 = procs.now()
  for _ = 1, 20 do
    local _, n = self:settle(timeout)
    local out = table.pack(observe())
    local raised = self:raised()
    if self:warnings() == n then return procs.now() - t0, raised, table.unpack(out, 1, out.n) end
  end
  error("the Sentinels kept raising warnings", 2)
end

-- What the Sentinels did, from their own logs (or from `raised`, a list
-- c:raised() or c:settled() gave): `promoted`, the port of each
-- replica promoted (one failover each, and the leader's client-reconfig call
-- made right after, +failover-state-reconf-slaves); `leaders` (how many such
-- calls); `observers`, the other Sentinels' calls (one after each
-- +config-update-from); `switches`, each +switch-master raised, by any
-- Sentinel; `odown`, each +odown.
function C:did(raised)
  local d = { promoted = {}, leaders = 0, observers = 0, switches = 0, odown = 0 }
  for _, e in ipairs(raised or self:raised()) do
    if e.name == "+promoted-slave" then
      d.promoted[#d.promoted + 1] = tonumber(e.text:match("^slave %S+ %S+ (%d+) "))
    elseif e.name == "+failover-state-reconf-slaves" then
      d.leaders = d.leaders + 1
    elseif e.name == "+config-update-from" then
      d.observers = d.observers + 1
    elseif e.name == "+switch-master" then
      d.switches = d.switches + 1
    elseif e.name == "+odown" then
      d.odown = d.odown + 1
    end
  end
  return d
end

-- Has sentinel i raise a +set now, with `tag` in it (SENTINEL SET <pod>
-- rename-command <tag> <tag>: a name Sentinel never sends, so nothing
-- changes): a mark in its log, and on its Pub/Sub after everything it
-- published before. Returns the event's description.
function C:mark(i, tag)
  local out = self:sentinel_cli(i, "sentinel", "set", self.name, "rename-command", tag, tag)
  assert(out == "OK", string.format("SENTINEL SET on sentinel %d: %s", i, out))
  local found
  procs.wait(function()
    for _, e in ipairs(self:raised("+set", i)) do
      if e.text:find(" rename-command " .. tag .. " " .. tag, 1, true) then found = e.text end
    end
    return found ~= nil
  end, 10, "+set " .. tag .. " in sentinel " .. i .. "'s log")
  return found
end

-- ---------------------------------------------------------------- faults

-- The node listening on `port`.
function C:node(port)
  for _, n in ipairs(self.nodes) do
    if n.port == port then return n end
  end
end

-- SIGKILL the redis-server on `port` (a crash, no shutdown); returns the
-- time it happened (procs.wall: to compare with the time of log lines).
function C:kill_node(port, sig)
  local n = assert(self:node(port), "no node on port " .. tostring(port))
  local t = procs.wall()
  node_stop(n, sig or "KILL")
  return t
end

-- Kill the current master; returns its port and the time of the kill.
function C:kill_master(sig)
  local port = self.master_port
  return port, self:kill_node(port, sig)
end

-- A replica of the current master (the first one found).
function C:replica_port()
  for _, n in ipairs(self.nodes) do
    if n.port ~= self.master_port and n.up then return n.port end
  end
end

-- redis-cli against the metrics store.
function C:store_cli(...)
  return procs.cli(self.store.port, ...)
end

function C:stop_store()
  node_stop(self.store, "TERM")
end

-- Start the store again on the same port (and the same, empty, dataset).
function C:start_store()
  node_start(self.store)
end

-- ---------------------------------------------------------------- stop

-- Sentinels first (no new script runs), then the pod and the store; then
-- the folders go.
function C:stop()
  if self.stopped then return end
  self.stopped = true
  for _, s in ipairs(self.sentinels) do procs.kill(s.pid, "TERM") end
  for _, s in ipairs(self.sentinels) do
    procs.halt(s.pid, "TERM", 5)
    s.up = false
  end
  for _, n in ipairs(self.nodes) do node_stop(n, "TERM") end
  for i = 2, #self.masters do node_stop(self.masters[i].node, "TERM") end
  node_stop(self.store, "TERM")
  if not self.opts.keep then procs.rmtree(self.root) end
end

-- ---------------------------------------------------------------- eventilator log

-- The summary lines (one per call) of an eventilator log, in order. Each is
-- { time (epoch seconds, float), pid, level, event, pod, exit, ms, line }
-- plus every other key=value of the line (handlers, failed, ...) as numbers.
local function epoch(iso)
  local y, mo, d, h, mi, sec = iso:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):([%d.]+)")
  if not y then return nil end
  local whole = math.floor(tonumber(sec))
  return os.time{ year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = tonumber(h),
    min = tonumber(mi), sec = whole } + (tonumber(sec) - whole)
end
M.epoch = epoch

function M.summaries(text)
  local out = {}
  for line in (text or ""):gmatch("[^\n]+") do
    local time, pid, level, event, pod, rest = line:match("^(%S+) %S-%[(%d+)%]: (%a+): (%S+) pod=(%S*) (.*)$")
    if rest and rest:find("exit=%d+") and rest:find("ms=[%d.]+") then
      local s = { time = epoch(time), pid = tonumber(pid), level = level, event = event, pod = pod, line = line }
      for k, v in rest:gmatch("([%w_]+)=(%S+)") do s[k] = tonumber(v) or v end
      out[#out + 1] = s
    end
  end
  return out
end

return M
