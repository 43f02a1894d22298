-- Real peers for the specs: spare loopback ports, a private redis-server,
-- temporary folders, and a shell runner that reports the exit code. Every
-- process started here runs under `timeout`, so it stops by itself even when
-- a spec dies before its teardown.
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

-- A port the kernel just handed out and released: free unless raced.
function M.free_port()
  local out = M.sh([[python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])']])
  return assert(tonumber(out), "no free port: " .. tostring(out))
end

function M.sleep(s)
  os.execute("sleep " .. s)
end

-- Poll until `ok()` is true or `timeout` seconds pass.
function M.wait(ok, timeout, what)
  local deadline = os.time() + (timeout or 10)
  while os.time() <= deadline do
    if ok() then return true end
    M.sleep(0.05)
  end
  error("timed out waiting for " .. (what or "condition"))
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

function M.cli(port, ...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = M.quote(a) end
  local out = M.sh(string.format("redis-cli -h 127.0.0.1 -p %d %s 2>&1", port, table.concat(args, " ")))
  return (out:gsub("%s+$", ""))
end

-- A private redis-server on a spare loopback port. `extra` is a list of
-- config lines (for instance "requirepass s3cret"). Returns a handle with
-- port, dir, pid and stop().
function M.start_redis(extra)
  local dir = M.tmpdir()
  local port = M.free_port()
  local conf = {
    "port " .. port, "bind 127.0.0.1", "save \"\"", "appendonly no",
    "dir " .. dir, "daemonize no",
  }
  for _, l in ipairs(extra or {}) do conf[#conf + 1] = l end
  M.write(dir .. "/redis.conf", table.concat(conf, "\n") .. "\n")
  local pid = M.spawn("redis-server " .. M.quote(dir .. "/redis.conf"), dir .. "/redis.log")
  local auth = ""
  for _, l in ipairs(extra or {}) do
    local pw = l:match("^requirepass%s+(%S+)")
    if pw then auth = " -a " .. M.quote(pw) .. " --no-auth-warning" end
  end
  M.wait(function()
    local out = M.sh(string.format("redis-cli -p %d%s ping 2>/dev/null", port, auth))
    return out:match("PONG") ~= nil
  end, 10, "redis-server on " .. port)
  local h = { port = port, dir = dir, pid = pid }
  h.stop = M.stopper(h)
  return h
end

-- h.stop for a server started in a folder of its own (h.pid, h.dir): kill it,
-- give it `grace` seconds to go (default 0.1), remove the folder. Once only.
function M.stopper(h, grace)
  return function()
    if not h.pid then return end
    M.kill(h.pid)
    h.pid = nil
    M.sleep(grace or 0.1)
    M.rmtree(h.dir)
  end
end

return M
