-- Real peers for the specs: servers on loopback ports of their own, a
-- private redis-server, temporary folders, one clock and one wait, and a
-- shell runner that reports the exit code. Every process started here runs
-- under `timeout`, so it stops by itself even when a spec dies before its
-- teardown.
local system = require("system")

local M = {}

-- Absolute, so a symlink or a `cd` elsewhere still finds them (plain
-- `busted` in the repo root sets neither variable).
local function absolute(p)
  if p:sub(1, 1) == "/" then return p end
  return (os.getenv("PWD") or ".") .. "/" .. p
end
M.build = absolute(os.getenv("EVENTILATOR_BUILD") or "build")
M.src = absolute(os.getenv("EVENTILATOR_SRC") or ".")
M.shared = M.src .. "/../shared"
M.LIFETIME = 900 -- seconds any helper process may live

function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Run a shell command; returns stdout, exit code.
function M.sh(cmd)
  local p = assert(io.popen(cmd .. "; echo \"::rc=$?\"", "r"))
  local out = p:read("a")
  p:close()
  local body, rc = out:match("^(.-)::rc=(%d+)%s*$")
  return body, tonumber(rc)
end

function M.tmpdir()
  local out = M.sh("mktemp -d /tmp/eventilator-spec.XXXXXX")
  return (out:gsub("%s+$", ""))
end

-- A rules folder (made if missing) holding the default rules as shipped,
-- plus the named files of examples/rules/ (each copied as its own name).
function M.shipped_rules(dir, ...)
  local ex = {}
  for i, name in ipairs({ ... }) do ex[i] = M.quote(M.src .. "/examples/rules/" .. name) end
  assert(os.execute(string.format("mkdir -p %s && cp %s/rules/*.lua %s %s/", M.quote(dir), M.quote(M.src),
    table.concat(ex, " "), M.quote(dir))))
  return dir
end

function M.rmtree(dir)
  if dir and dir:match("^/tmp/eventilator%-spec%.") then
    os.execute("rm -rf " .. M.quote(dir))
  end
end

function M.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The one clock for waits and elapsed times: CLOCK_MONOTONIC in seconds, to
-- the nanosecond, read without a fork (luasystem comes with busted). It is the
-- clock deadline.h compares against too; it never steps, as the wall clock can.
M.now = system.monotime

-- The wall clock (epoch seconds, sub-second), only to compare with the time
-- stamps of log lines; never for a duration.
M.wall = system.gettime

function M.sleep(s)
  system.sleep(s)
end

-- Poll until `ok()` is true or `timeout` seconds pass; raises on time-out.
function M.wait(ok, timeout, what)
  local deadline = M.now() + (timeout or 10)
  repeat
    if ok() then return true end
    M.sleep(0.05)
  until M.now() > deadline
  if ok() then return true end
  error(string.format("timed out after %g s waiting for %s", timeout or 10, what or "condition"), 2)
end

-- Whether the process is still there. A zombie counts as gone: in a container
-- whose pid 1 does not reap, an exited `timeout` stays a zombie and `kill -0`
-- still succeeds.
function M.alive(pid)
  if not pid then return false end
  local stat = M.read("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

-- Until the process has exited; false if it is still there after `timeout` s.
function M.exited(pid, timeout)
  return (pcall(M.wait, function() return not M.alive(pid) end, timeout, "pid " .. tostring(pid)))
end

-- Start a background process under `timeout`; returns its pid. Without
-- LD_PRELOAD: the sanitizer build preloads libasan for busted's lua5.4 only
-- (python3 hangs under it; sanitized binaries link it themselves).
function M.spawn(cmd, logfile)
  local out = M.sh(string.format("env -u LD_PRELOAD timeout %d %s >%s 2>&1 </dev/null & echo $!",
    M.LIFETIME, cmd, M.quote(logfile or "/dev/null")))
  return assert(tonumber(out), "spawn failed: " .. tostring(out))
end

function M.kill(pid, sig)
  if pid then os.execute(string.format("kill -%s %d 2>/dev/null", sig or "TERM", pid)) end
end

-- Stop a process M.spawn started and return once it has exited: `sig` (TERM),
-- then after `grace` seconds (5) SIGKILL to its process group (`timeout` leads
-- one: the command and what it started go too).
function M.halt(pid, sig, grace)
  if not M.alive(pid) then return end
  M.kill(pid, sig or "TERM")
  if M.exited(pid, grace or 5) then return end
  os.execute(string.format("kill -KILL -- -%d 2>/dev/null", pid))
  assert(M.exited(pid, 10), "pid " .. pid .. " still there after SIGKILL")
end

-- h.stop for a server started in a folder of its own (h.pid, h.dir): stop it
-- (M.halt, `grace` s before SIGKILL), then remove the folder, so that nothing
-- it still writes lands in a folder being removed. Once only.
function M.stopper(h, grace)
  return function()
    if not h.pid then return end
    local pid = h.pid
    h.pid = nil
    M.halt(pid, "TERM", grace)
    M.rmtree(h.dir)
  end
end

function M.cli(port, ...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = M.quote(a) end
  local out = M.sh(string.format("redis-cli -h 127.0.0.1 -p %d %s 2>&1", port, table.concat(args, " ")))
  return (out:gsub("%s+$", ""))
end

-- ---------------------------------------------------------------- ports

-- A port the kernel just handed out (bound to port 0, then released): free at
-- that moment, and any process may bind it next. Only M.serve uses it.
local function candidate()
  local out = M.sh([[env -u LD_PRELOAD python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])']])
  return assert(tonumber(out), "no free port: " .. tostring(out))
end

local function in_use(text)
  return text:lower():find("address already in use", 1, true) ~= nil
end

-- Start a server on a loopback port of its own and wait until it answers.
--   o.start(port) -> pid  starts it (M.spawn), configured for that port
--   o.up(port)            true once it answers; it must tell its own answer from
--                         another's (until ours gives up, another may hold the port)
--   o.log() -> text       where it says why it exited ("Address already in use")
--   o.port                this port only: a restart where its peers know it;
--                         tried again while the address is taken, for up to 10 s
--   o.what, o.timeout     its name in errors; seconds to wait for it (20)
--   o.more                how many more ports it listens on: start and up get
--                         them as a second argument, a list, and so does the caller
-- Ports come from the kernel; when another process binds one first, the server
-- reports the address in use and exits, and the next ports are tried. Returns
-- port, pid, the list of o.more ports.
function M.serve(o)
  local tries = o.port and 10 or 8
  local what = o.what or "server"
  for try = 1, tries do
    local port = o.port or candidate()
    local more = {}
    for i = 1, o.more or 0 do more[i] = candidate() end
    local before = o.log() or ""
    local pid = o.start(port, more)
    local up
    local ok, err = pcall(M.wait, function()
      up = o.up(port, more)
      return up or not M.alive(pid)
    end, o.timeout or 20, what .. " on port " .. port)
    local said = o.log() or ""
    if said:sub(1, #before) == before then said = said:sub(#before + 1) end -- a log it appends to
    if not ok then
      M.halt(pid)
      error(err .. "; it said:\n" .. said:sub(-3000), 2)
    end
    if up then return port, pid, more end
    if not in_use(said) then
      error(string.format("%s on port %d exited:\n%s", what, port, said:sub(-3000)), 2)
    end
    if o.port and try < tries then M.sleep(1) end
  end
  error(string.format("%s: the address stayed in use (%d tries)", what, tries), 2)
end

-- A stand-in that binds port 0 itself (the python3 ones in spec/support) and
-- writes the port it got to `ready` once it listens: start it with M.spawn and
-- give its pid here; returns the port.
function M.ready_port(pid, ready, what, log)
  local port
  M.wait(function()
    port = tonumber(M.read(ready) or "")
    if not port and not M.alive(pid) then
      error(string.format("%s exited:\n%s", what, log and M.read(log) or ""), 0)
    end
    return port ~= nil
  end, 30, what)
  return port
end

-- The processes holding closed_port's ports, each reading a pipe from us.
local holders = {}

-- A loopback port where nothing listens, and nothing can while this spec file
-- runs: a process holds it bound (127.0.0.1 and ::1) without listening, so a
-- connect there is refused. It ends with us: its stdin is a pipe from this
-- process (close-on-exec, so nothing we start keeps it open).
function M.closed_port()
  local file = os.tmpname()
  local code = [[
import errno, os, socket, sys
while True:
    v4 = socket.socket()
    v4.bind(("127.0.0.1", 0))
    port = v4.getsockname()[1]
    try:
        v6 = socket.socket(socket.AF_INET6)
        v6.bind(("::1", port))
        break
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            break  # no IPv6 loopback here: nothing can listen on ::1 either
        v4.close()
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(port))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
sys.stdin.read()
]]
  local pipe = assert(io.popen(string.format("exec env -u LD_PRELOAD python3 -c %s %s", M.quote(code),
    M.quote(file)), "w"))
  holders[#holders + 1] = pipe
  local port
  M.wait(function()
    port = tonumber(M.read(file) or "")
    return port ~= nil
  end, 30, "a closed port")
  os.remove(file)
  return port
end

-- ---------------------------------------------------------------- redis

-- `redis-cli` arguments that authenticate with the `requirepass` of `conf`
-- lines, or "".
local function auth_args(conf)
  for _, l in ipairs(conf or {}) do
    local pw = l:match("^requirepass%s+(%S+)")
    if pw then return " -a " .. M.quote(pw) .. " --no-auth-warning" end
  end
  return ""
end

-- The process id of the redis-server (or redis-sentinel) answering on `port`
-- if it is the one started with config file `conf` (INFO server names it), nil
-- otherwise. `auth`: redis-cli arguments, as auth_args gives.
function M.redis_pid(port, conf, auth)
  local out = M.sh(string.format("redis-cli -h 127.0.0.1 -p %d%s info server 2>/dev/null", port, auth or ""))
  if out:match("config_file:([^\r\n]*)") ~= conf then return nil end
  return tonumber(out:match("process_id:(%d+)"))
end

-- Start redis-server (or opts.cmd, a shell command that starts one with this
-- config file, such as a redis-sentinel) from config file `path`, and wait
-- until it answers (M.serve). opts.conf(port): its config lines for that port,
-- written to `path` for each port tried; without it, `path` is used as it is
-- and opts.port is the port (a restart). opts.out: its stdout and stderr;
-- opts.log: its `logfile`, if any; opts.auth: the password, if not in
-- opts.conf's lines. Returns port, pid (`timeout`'s) and the server's own pid.
function M.redis_serve(path, opts)
  local cmd = opts.cmd or ("redis-server " .. M.quote(path))
  local rpid, auth
  if opts.auth then auth = " -a " .. M.quote(opts.auth) .. " --no-auth-warning" end
  local port, pid = M.serve{
    port = not opts.conf and opts.port or nil, what = cmd, timeout = opts.timeout,
    start = function(p)
      if opts.conf then
        local lines = opts.conf(p)
        auth = auth or auth_args(lines)
        M.write(path, table.concat(lines, "\n") .. "\n")
      end
      return M.spawn(cmd, opts.out)
    end,
    up = function(p)
      rpid = M.redis_pid(p, path, auth)
      return rpid ~= nil
    end,
    log = function() return (opts.out and M.read(opts.out) or "") .. (opts.log and M.read(opts.log) or "") end,
  }
  return port, pid, rpid
end

-- A private redis-server on a spare loopback port. `extra` is a list of
-- config lines (for instance "requirepass s3cret"). Returns a handle with
-- port, dir, pid and stop().
function M.start_redis(extra)
  local dir = M.tmpdir()
  local function conf(port)
    local lines = {
      "port " .. port, "bind 127.0.0.1", "save \"\"", "appendonly no",
      "dir " .. dir, "daemonize no",
    }
    for _, l in ipairs(extra or {}) do lines[#lines + 1] = l end
    return lines
  end
  local port, pid = M.redis_serve(dir .. "/redis.conf", { conf = conf, out = dir .. "/redis.log" })
  local h = { port = port, dir = dir, pid = pid }
  h.stop = M.stopper(h)
  return h
end

return M
