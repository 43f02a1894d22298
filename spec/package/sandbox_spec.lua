-- The installed Debian package under Debian's sandboxed Sentinel: three
-- redis-sentinel processes run as `redis`, inside a mount namespace built
-- from /lib/systemd/system/redis-sentinel.service's own file-system rules
-- (spec/support/unitns.py: / read-only and noexec but the ExecPaths, only
-- the ReadWritePaths writable, a private /tmp), and call the installed
-- /usr/lib/eventilator/bin/eventilator and reconfigurator through a real
-- failover. Every system call of those processes is traced (strace -f) and
-- checked against the unit's filter, as systemd-analyze spells it out:
-- @system-service minus @privileged and @resources.
--
-- Needs root and the package installed: scripts/package-test.sh runs it
-- (it is not one of the CTest specs).
local procs = require("procs")
local constellation = require("constellation")

local UNIT = "/lib/systemd/system/redis-sentinel.service"
local BIN = "/usr/lib/eventilator/bin"
local STATE = "/var/lib/redis/eventilator"
local UNITNS = procs.src .. "/spec/support/unitns.py"

local function q(s) return procs.quote(s) end

-- Every group `systemd-analyze syscall-filter` knows: name -> list of
-- members (system calls and @groups).
local function syscall_groups()
  local out, rc = procs.sh("systemd-analyze syscall-filter 2>/dev/null")
  assert(rc == 0 and out ~= "", "systemd-analyze syscall-filter failed")
  local groups, cur = {}, nil
  for line in out:gmatch("[^\n]*") do
    local name = line:match("^(@[%w%-]+)%s*$")
    if name then
      cur = {}
      groups[name] = cur
    elseif cur then
      local item = line:match("^%s+([@%w_%-]+)%s*$") -- not the "# ..." lines
      if item then cur[#cur + 1] = item end
    end
  end
  return groups
end

local function expand(groups, name, acc)
  acc = acc or {}
  for _, item in ipairs(assert(groups[name], "no group " .. name)) do
    if item:sub(1, 1) == "@" then expand(groups, item, acc) else acc[item] = true end
  end
  return acc
end

-- The unit's SystemCallFilter=@system-service, then ~@privileged @resources.
local function allowed_syscalls()
  local g = syscall_groups()
  local allow = expand(g, "@system-service")
  for name in pairs(expand(g, "@privileged")) do allow[name] = nil end
  for name in pairs(expand(g, "@resources")) do allow[name] = nil end
  return allow
end

-- System calls in an `strace -f` file made once the sandbox is in place:
-- the first process is the sandbox helper (python), whose calls before its
-- execve of redis-sentinel set the sandbox up and are not counted; every
-- other process descends from that redis-sentinel. Returns name -> count,
-- name -> first line, the programs executed, and the lines that the unit's
-- RestrictAddressFamilies= or MemoryDenyWriteExecute= would refuse.
local FAMILIES = { AF_INET = true, AF_INET6 = true, AF_UNIX = true }
local function traced(path, marker)
  marker = marker or "/usr/bin/redis-sentinel"
  local calls, example, execs, refused = {}, {}, {}, {}
  local first, boxed = nil, false
  for line in io.lines(path) do
    local pid, rest = line:match("^(%d+)%s+(.*)$")
    if pid then
      first = first or pid
      local name = rest:match("^([%w_]+)%(") or rest:match("^<%.%.%. ([%w_]+) resumed>")
      if pid == first and not boxed then
        if name == "execve" and rest:sub(1, #marker + 9) == 'execve("' .. marker .. '"' then boxed = true end
      elseif name then
        calls[name] = (calls[name] or 0) + 1
        example[name] = example[name] or line
        local prog = name == "execve" and rest:match('^execve%("([^"]+)"')
        if prog then execs[prog] = (execs[prog] or 0) + 1 end
        local family = name == "socket" and rest:match("^socket%((AF_[%w_]+)")
        if family and not FAMILIES[family] then refused[#refused + 1] = line end
        if (name == "mmap" or name == "mprotect" or name == "pkey_mprotect")
          and rest:find("PROT_WRITE", 1, true) and rest:find("PROT_EXEC", 1, true) then
          refused[#refused + 1] = line
        end
      end
    end
  end
  assert(boxed, path .. ": no execve of " .. marker)
  return calls, example, execs, refused
end

-- Asserts the lines of one trace are inside the unit's rules; returns the
-- system calls seen (name -> true) and the number of programs executed.
local function check_trace(path, allow, marker, seen)
  local calls, example, execs, refused = traced(path, marker)
  assert.are.same({}, refused)
  local n = 0
  for prog, k in pairs(execs) do
    assert.matches("^/usr/lib/eventilator/", prog, "an exec outside /usr/lib/eventilator")
    n = n + k
  end
  local bad = {}
  for name, k in pairs(calls) do
    seen[name] = true
    if not allow[name] then bad[#bad + 1] = string.format("%s x%d: %s", name, k, example[name]) end
  end
  table.sort(bad)
  assert.are.same({}, bad)
  return n
end

-- The package's watch unit, when this build has watch mode.
local WATCH_UNIT = "/lib/systemd/system/eventilator-watch.service"
local function has_watch()
  local out = procs.sh("timeout 5 " .. q(BIN .. "/eventilator") .. " watch --help 2>&1 </dev/null")
  return not out:find("unknown subcommand", 1, true)
end

describe("the package under Debian's sandboxed redis-sentinel", function()
  local c, root, traces
  local watcher -- { trace, log } when watch mode runs beside the scripts

  setup(function()
    local _, rc = procs.sh("test $(id -u) = 0 && test -x " .. q(BIN .. "/eventilator") .. " && test -r " .. q(UNIT))
    assert(rc == 0, "needs root, the installed package and " .. UNIT)
    -- the sentinels' folders and the test config under /var/lib/redis, one
    -- of the unit's ReadWritePaths; the traces stay outside the sandbox
    root = procs.sh("mktemp -d /var/lib/redis/eventilator-pkgtest.XXXXXX"):gsub("%s+$", "")
    assert(root:match("^/var/lib/redis/eventilator%-pkgtest%."), root)
    os.execute("chown redis:redis " .. q(root))
    traces = procs.tmpdir()
    c = constellation.start{
      conf = root .. "/eventilator.conf",
      bin = BIN,
      sentinel_root = root,
      setup = function(cc)
        -- the packaged rules, and one that needs json: the full runtime and
        -- its C modules run in the sandbox too
        os.execute(string.format("mkdir %s && cp /etc/redis/eventilator.d/*.lua %s", q(root .. "/rules"),
          q(root .. "/rules")))
        procs.write(root .. "/rules/90-json.lua", [[
on("+switch-master", function(ev)
  log.info("switch %s", json.encode({ pod = ev.pod, port = ev.new_master.port }))
  return true
end)
]])
        -- what eventilator-rules(7) says a rule meets there: a read-only
        -- system, a /tmp of Sentinel's own, state_dir writable
        procs.write(root .. "/rules/95-sandbox.lua", [[
on("+switch-master", function()
  local f, err = io.open("/etc/eventilator-sandbox-probe", "w")
  log.info("sandbox: /etc %s", f and "written" or err)
  if f then f:close() end
  local t = io.open("/tmp/eventilator-sandbox-probe", "w")
  log.info("sandbox: /tmp %s", t and "written" or "not written")
  if t then t:close() end
  local s = io.open(config.state_dir .. "/sandbox-probe", "w")
  log.info("sandbox: state_dir %s", s and "written" or "not written")
  if s then s:close(); os.remove(config.state_dir .. "/sandbox-probe") end
  return true
end)
]])
        procs.write(root .. "/eventilator.conf", string.format([[
redis = { host = "127.0.0.1", port = %d, timeout = 2 }
warnings = { enabled = true }
log = { target = %q, level = "info" }
rules_dir = %q
]], cc.store.port, root .. "/eventilator.log", root .. "/rules"))
      end,
      sentinel_cmd = function(s, env)
        local i = s.dir:match("(%d+)$")
        return "sh -c " .. q(string.format(
          "chown -R redis:redis %s && exec strace -f -qq -o %s env %s /usr/bin/python3 %s %s -- /usr/bin/redis-sentinel %s",
          q(s.dir), q(traces .. "/sentinel-" .. i .. ".trace"), env, q(UNITNS), q(UNIT), q(s.conf)))
      end,
    }
    -- watch mode, under the package's own unit, hearing the same failover
    if has_watch() then
      -- with its HTTP server: the module it loads and the server's system calls are checked too
      watcher = { trace = traces .. "/watch.trace", log = traces .. "/watch.log" }
      procs.write(root .. "/watch.conf", string.format([[
redis = { host = "127.0.0.1", port = %d, timeout = 2 }
log = { target = "stderr", level = "info" }
rules_dir = %q
watch = { sentinels = { "127.0.0.1:%d" }, listen = "127.0.0.1:0" }
]], c.store.port, root .. "/rules", c.sentinels[1].port))
      watcher.pid = procs.spawn(string.format("strace -f -qq -o %s env EVENTILATOR_CONF=%s /usr/bin/python3 %s %s -- %s watch",
        q(watcher.trace), q(root .. "/watch.conf"), q(UNITNS), q(WATCH_UNIT), q(BIN .. "/eventilator")), watcher.log)
      procs.wait(function() return (procs.read(watcher.log) or ""):find("connected and subscribed", 1, true) ~= nil end,
        30, "the watcher to subscribe")
    end
  end)

  teardown(function()
    if watcher and watcher.rpid then procs.kill(watcher.rpid, "KILL") end
    if watcher then procs.kill(watcher.pid, "TERM") end
    if c then
      -- the sentinels themselves first: a TERM to their strace only detaches it
      local pids = {}
      for i in ipairs(c.sentinels) do
        pids[i] = tonumber((c:sentinel_cli(i, "info", "server") or ""):match("process_id:(%d+)"))
        procs.kill(pids[i], "TERM")
      end
      for _, pid in pairs(pids) do procs.exited(pid, 10) end
      c:stop()
    end
    if root then os.execute("rm -rf " .. q(root)) end
    procs.rmtree(traces)
  end)

  it("records a failover, with every call inside the unit's file-system rules, system call filter, address families and W^X", function()
    -- the sentinels really are sandboxed: as redis, / not writable
    local pid = c:sentinel_cli(1, "info", "server"):match("process_id:(%d+)")
    local status = procs.read("/proc/" .. pid .. "/status")
    assert.matches("\nUid:%s+" .. procs.sh("id -u redis"):gsub("%s+$", ""), status)
    local mounts = procs.read("/proc/" .. pid .. "/mounts")
    assert.matches("\n%S+ / %S+ ro,[^\n]*noexec", "\n" .. mounts)
    assert.matches(" /var/lib/redis %S+ rw,", mounts)
    assert.matches(" /usr/lib %S+ ro,", mounts)

    c:kill_master()
    c:wait_failover(60)
    local _, raised, zcard = c:settled(function() return c:store_cli("ZCARD", "failovers:pod1:log") end, 120)

    -- recorded: failover and warning metrics in the private store, once per failover (a loaded
    -- Sentinel may fail over a second time: c:did() counts from their logs)
    assert.are.equal(tostring(#c:did(raised).promoted), zcard)
    assert.are.equal("pod1", c:store_cli("SMEMBERS", "pods-with-failovers"))
    assert.is_true(tonumber(c:store_cli("HGET", "sentinel:warnings:aggregated", os.date("%Y"))) >= 2)
    local log = procs.read(root .. "/eventilator.log") or ""
    assert.matches("client%-reconfig pod=pod1 handlers=2 failed=0", log)
    assert.matches("%+odown pod=pod1", log)
    assert.matches('switch {"', log)
    assert.is_nil(log:match("[^\n]*failed=[1-9][^\n]*"), log)
    assert.matches("%+switch%-master pod=pod1 [^\n]*runtime=full", log)
    -- the sandbox a rule runs in (eventilator-rules(7)): /etc read-only, /tmp private
    assert.matches("sandbox: /etc /etc/eventilator%-sandbox%-probe: Read%-only file system", log)
    assert.matches("sandbox: /tmp written", log)
    assert.is_nil(procs.read("/tmp/eventilator-sandbox-probe"), "a file in the sandbox's /tmp is not the host's")
    assert.matches("sandbox: state_dir written", log)
    assert.is_nil(log:match("[^\n]*: error: [^\n]*"), log)
    -- the packaged state folder was written from inside the sandbox
    local _, rc = procs.sh("test -d " .. q(STATE .. "/rules-cache"))
    assert.are.equal(0, rc, "no rules cache in " .. STATE)

    local allow = allowed_syscalls()
    assert.is_true(allow.execve and allow.read and not allow.mount and not allow.setrlimit
      and not allow.setpriority and not allow.reboot, "filter parsed")
    local scripts, seen = 0, {}
    for i = 1, #c.sentinels do
      scripts = scripts + check_trace(traces .. "/sentinel-" .. i .. ".trace", allow, nil, seen)
    end
    assert.is_true(scripts >= 6, "scripts traced: " .. scripts)
    local names = {}
    for name in pairs(seen) do names[#names + 1] = name end
    table.sort(names)
    io.stderr:write(string.format("\n%d script runs traced; %d distinct system calls, all in the filter: %s\n",
      scripts, #names, table.concat(names, " ")))
  end)

  it("refuses what the unit refuses: programs outside the ExecPaths", function()
    local out, rc = procs.sh(string.format("/usr/bin/python3 %s %s -- /usr/bin/id 2>&1", q(UNITNS), q(UNIT)))
    assert.are_not.equal(0, rc)
    assert.matches("Permission denied", out)
    os.execute(string.format("cp %s %s && chown redis %s", q(BIN .. "/eventilator"), q(root .. "/copy"), q(root .. "/copy")))
    out, rc = procs.sh(string.format("/usr/bin/python3 %s %s -- %s --version 2>&1", q(UNITNS), q(UNIT), q(root .. "/copy")))
    assert.are_not.equal(0, rc)
    assert.matches("Permission denied", out)
    out, rc = procs.sh(string.format("/usr/bin/python3 %s %s -- %s --version 2>&1", q(UNITNS), q(UNIT),
      q(BIN .. "/eventilator")))
    assert.are.equal(0, rc, out)
  end)

  it("runs watch mode under its own unit's file-system rules and system call filter", function()
    if not watcher then
      pending("this build has no watch mode")
      return
    end
    -- the watcher is the first process of its trace (python, then exec)
    watcher.rpid = tonumber((procs.read(watcher.trace) or ""):match("^(%d+)"))
    assert.is_number(watcher.rpid, procs.read(watcher.log))
    procs.wait(function() return (procs.read(watcher.log) or ""):find("+switch-master", 1, true) ~= nil end, 30,
      "the watcher to hear +switch-master")
    local url = (procs.read(watcher.log) or ""):match("serving /metrics and /healthz on (http://%S+)")
    assert.is_string(url, procs.read(watcher.log))
    local metrics = procs.sh("env -u LD_PRELOAD curl -s --max-time 5 " .. q(url .. "/metrics"))
    assert.truthy(metrics:find('eventilator_events_heard_total{event="+switch-master"} ', 1, true), metrics)
    assert.truthy(metrics:find(string.format('eventilator_sentinel_up{sentinel="127.0.0.1:%d"} 1', c.sentinels[1].port),
      1, true), metrics)
    procs.kill(watcher.rpid, "TERM")
    procs.wait(function() return procs.read("/proc/" .. watcher.rpid .. "/stat") == nil end, 60, "the watcher to stop")
    watcher.rpid = nil
    local seen = {}
    local runs = check_trace(watcher.trace, allowed_syscalls(), BIN .. "/eventilator", seen)
    local names = {}
    for name in pairs(seen) do names[#names + 1] = name end
    table.sort(names)
    assert.is_true(#names > 0, "nothing traced")
    io.stderr:write(string.format("\nwatch mode: %d programs run, %d distinct system calls, all in the filter: %s\n",
      runs, #names, table.concat(names, " ")))
  end)
end)
