-- A private Sentinel constellation for the end-to-end specs: one master and
-- two replicas (redis-server), three redis-sentinel processes monitoring
-- them as `pod1` with quorum 2 and the built eventilator/reconfigurator as
-- notification and client-reconfig scripts, plus a separate redis-server as
-- the metrics store. Everything listens on 127.0.0.1 only, on spare ports,
-- and runs under `timeout` (procs.spawn), so nothing outlives a dead spec
-- by more than procs.LIFETIME.
--
--   local c = constellation.start{
--     conf = "/path/eventilator.conf",       -- EVENTILATOR_CONF for the sentinels
--     setup = function(c) ... end,           -- runs once c.store.port is known,
--                                            -- before any sentinel starts
--   }
--   c:kill_master()          -- SIGKILL the current master, returns its port
--   c:wait_failover(30)      -- until every sentinel names a new master
--   c:wait_scripts_idle(60)  -- until SENTINEL PENDING-SCRIPTS is empty everywhere
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

-- Wall-clock seconds with sub-second precision.
function M.now()
  local out = procs.sh("date +%s.%N")
  return tonumber((out:gsub("%s+$", "")))
end

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

-- A zombie counts as gone: in a container whose pid 1 does not reap, an
-- exited `timeout` stays a zombie and `kill -0` still succeeds.
local function alive(pid)
  if not pid then return false end
  local stat = procs.read("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

-- Ports handed out by the kernel, distinct among themselves.
local function ports(n)
  local seen, out = {}, {}
  while #out < n do
    local p = procs.free_port()
    if not seen[p] then
      seen[p] = true
      out[#out + 1] = p
    end
  end
  return out
end

-- ---------------------------------------------------------------- nodes

-- A redis-server node: its own dir and config, restartable on its port.
local function node_conf(node, extra)
  local conf = {
    "port " .. node.port, "bind 127.0.0.1", "protected-mode no", "save \"\"", "appendonly no",
    "dir " .. node.dir, "daemonize no", "logfile " .. node.dir .. "/redis.log",
    "repl-diskless-sync yes", "repl-diskless-sync-delay 0",
  }
  for _, l in ipairs(extra or {}) do conf[#conf + 1] = l end
  procs.write(node.dir .. "/redis.conf", table.concat(conf, "\n") .. "\n")
end

local function node_start(node)
  node.pid = procs.spawn("redis-server " .. procs.quote(node.dir .. "/redis.conf"), node.dir .. "/stdout.log")
  procs.wait(function()
    return procs.cli(node.port, "ping") == "PONG"
  end, 10, "redis-server on " .. node.port)
  -- The server's own pid (node.pid is `timeout`): SIGKILL has to reach it.
  node.rpid = tonumber(procs.cli(node.port, "info", "server"):match("process_id:(%d+)"))
  node.up = true
end

local function node_stop(node, sig)
  if not node.up then return end
  node.up = false
  procs.kill(node.rpid or node.pid, sig or "TERM")
  local deadline = os.time() + 5
  while (alive(node.rpid) or alive(node.pid)) and os.time() <= deadline do procs.sleep(0.05) end
  if alive(node.rpid) then procs.kill(node.rpid, "KILL") end
  if alive(node.pid) then procs.kill(node.pid, "KILL") end
end

-- ---------------------------------------------------------------- start

-- constellation.new(opts) allocates ports and folders and starts the
-- metrics store; c:start() starts the pod and the sentinels.
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
  local p = ports(7 + extra)
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
    self.nodes[i] = { port = p[i], dir = root .. "/redis-" .. i, role = i == 1 and "master" or "replica" }
    self.sentinels[i] = { port = p[3 + i], dir = (opts.sentinel_root or root) .. "/sentinel-" .. i }
  end
  self.store = { port = p[7], dir = root .. "/store" }
  -- masters past the first: name, single node
  self.masters = { { name = self.name } }
  for i = 1, extra do
    local n = { port = p[7 + i], dir = root .. "/master-" .. (i + 1), role = "master" }
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
  node_conf(self.store)
  node_start(self.store)
  return self
end

function C:start()
  local master = self.nodes[1]
  for i, n in ipairs(self.nodes) do
    node_conf(n, i > 1 and { "replicaof 127.0.0.1 " .. master.port } or nil)
  end
  for _, n in ipairs(self.nodes) do node_start(n) end
  for i = 2, #self.masters do
    node_conf(self.masters[i].node)
    node_start(self.masters[i].node)
  end
  self.master_port = master.port
  self:wait_replication(20)

  for i, s in ipairs(self.sentinels) do
    s.conf = s.dir .. "/sentinel.conf"
    s.log = s.dir .. "/sentinel.log"
    local conf = {
      "port " .. s.port, "bind 127.0.0.1", "protected-mode no", "daemonize no",
      "dir " .. s.dir, "logfile " .. s.log,
    }
    for k, m in ipairs(self.masters) do
      local port = k == 1 and master.port or m.node.port
      local function add(fmt, ...) conf[#conf + 1] = string.format(fmt, ...) end
      add("sentinel monitor %s 127.0.0.1 %d %d", m.name, port, self.quorum)
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
    procs.write(s.conf, table.concat(conf, "\n") .. "\n")
    self:start_sentinel(i)
  end
  for i = 1, #self.sentinels do self:wait_sentinel(i) end
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
  local t0 = M.now()
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
  return new, M.now() - t0
end

-- ---------------------------------------------------------------- sentinels

function C:sentinel_cli(i, ...)
  return procs.cli(self.sentinels[i].port, ...)
end

-- Start sentinel i from its sentinel.conf, after appending `extra` lines
-- (sentinel.conf lines, such as the ones `eventilator sentinels register`
-- prints). Returns at once; c:wait_sentinel(i) waits for it to answer.
function C:start_sentinel(i, extra)
  local s = self.sentinels[i]
  if extra and #extra > 0 then
    procs.write(s.conf, (procs.read(s.conf) or "") .. table.concat(extra, "\n") .. "\n")
  end
  local env = { "EVENTILATOR_CONF=" .. procs.quote(self.conf) }
  for k, v in pairs(self.opts.env or {}) do env[#env + 1] = k .. "=" .. procs.quote(v) end
  local cmd = string.format("env %s redis-sentinel %s", table.concat(env, " "), procs.quote(s.conf))
  if self.opts.sentinel_cmd then cmd = self.opts.sentinel_cmd(s, table.concat(env, " ")) end
  s.pid = procs.spawn(cmd, s.dir .. "/stdout.log")
end

function C:wait_sentinel(i)
  local s = self.sentinels[i]
  procs.wait(function() return procs.cli(s.port, "ping") == "PONG" end, 10, "sentinel on " .. s.port)
  s.up = true
end

-- Stop sentinel i (SIGTERM, then SIGKILL after 5 s).
-- "127.0.0.1:port" of sentinel i.
function C:sentinel_addr(i)
  return "127.0.0.1:" .. self.sentinels[i].port
end

-- One more sentinel monitoring the pod (the others then report +sentinel);
-- started and answering; returns its index.
function C:add_sentinel()
  local i = #self.sentinels + 1
  local s = { port = procs.free_port(), dir = self.root .. "/sentinel-" .. i }
  s.conf, s.log = s.dir .. "/sentinel.conf", s.dir .. "/sentinel.log"
  os.execute("mkdir -p " .. procs.quote(s.dir))
  procs.write(s.conf, table.concat({
    "port " .. s.port, "bind 127.0.0.1", "protected-mode no", "daemonize no", "dir " .. s.dir, "logfile " .. s.log,
    string.format("sentinel monitor %s 127.0.0.1 %d %d", self.name, self.master_port, self.quorum),
    string.format("sentinel down-after-milliseconds %s %d", self.name, self.down_after),
    string.format("sentinel failover-timeout %s %d", self.name, self.failover_timeout),
  }, "\n") .. "\n")
  self.sentinels[i] = s
  self:start_sentinel(i)
  self:wait_sentinel(i)
  return i
end

-- Start the redis-server on `port` again (after kill_node).
function C:start_node(port)
  node_start(assert(self:node(port), "no node on port " .. tostring(port)))
end

function C:stop_sentinel(i)
  local s = self.sentinels[i]
  s.up = false
  procs.kill(s.pid, "TERM")
  local deadline = os.time() + 5
  while alive(s.pid) and os.time() <= deadline do procs.sleep(0.05) end
  if alive(s.pid) then procs.kill(s.pid, "KILL") end
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
  local t0 = M.now()
  local ok = pcall(procs.wait, function() return self:pending_scripts() == 0 end, timeout or 60)
  if not ok then
    local _, raw = self:pending_scripts()
    local parts = {}
    for _, r in ipairs(raw) do parts[#parts + 1] = "sentinel " .. r.sentinel .. ":\n" .. r.text end
    error("scripts still pending after " .. tostring(timeout or 60) .. " s:\n" .. table.concat(parts, "\n"), 2)
  end
  return M.now() - t0
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

-- ---------------------------------------------------------------- faults

-- The node listening on `port`.
function C:node(port)
  for _, n in ipairs(self.nodes) do
    if n.port == port then return n end
  end
end

-- SIGKILL the redis-server on `port` (a crash, no shutdown); returns the
-- time it happened.
function C:kill_node(port, sig)
  local n = assert(self:node(port), "no node on port " .. tostring(port))
  local t = M.now()
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
  for _, s in ipairs(self.sentinels) do
    if s.pid then
      procs.kill(s.pid, "TERM")
    end
  end
  local deadline = os.time() + 5
  for _, s in ipairs(self.sentinels) do
    while alive(s.pid) and os.time() <= deadline do procs.sleep(0.05) end
    if alive(s.pid) then procs.kill(s.pid, "KILL") end
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
