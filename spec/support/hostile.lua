-- Peers for the specs of the Sentinel client under attack: the hostile fake
-- Sentinel (fakesentinel.py, told what to do wrong by its arguments), one
-- real redis-sentinel beside it (so what is real stays real), and the
-- measures those specs take: a monotonic clock and a process's RSS.
--
--   local f = hostile.fake{ "--coalesce", "+sdown=master pod1 127.0.0.1 6379" }
--   f.addr, f.port, f.cli("PUBLISH", ch, msg), f.commands(), f.stop()
--   local s = hostile.sentinel()   -- redis-sentinel monitoring pod1 (a redis-server), quorum 1
--   s.addr, s.cli(...), s.event()  -- s.event(): one real +set from it (SENTINEL SET pod1 quorum 1)
local procs = require("procs")

local M = {}

-- Seconds since boot (/proc/uptime: monotonic, 10 ms steps).
function M.now()
  return tonumber(procs.read("/proc/uptime"):match("^(%S+)"))
end

-- Resident memory of a process, in KiB (nil once it is gone).
function M.rss_kb(pid)
  local s = procs.read("/proc/" .. tostring(pid) .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- The fake, started with `args` (a list); it binds port 0 and says which.
function M.fake(args)
  local dir = procs.tmpdir()
  local words = {}
  for i, a in ipairs(args or {}) do words[i] = procs.quote(a) end
  local cmd = string.format("python3 %s --ready %s --log %s %s", procs.quote(procs.src .. "/spec/support/fakesentinel.py"),
    procs.quote(dir .. "/port"), procs.quote(dir .. "/commands.log"), table.concat(words, " "))
  local h = { dir = dir }
  h.pid = procs.spawn(cmd, dir .. "/out.log")
  procs.wait(function()
    h.port = tonumber(procs.read(dir .. "/port") or "")
    return h.port ~= nil
  end, 20, "the fake Sentinel's port")
  h.addr = "127.0.0.1:" .. h.port
  h.stop = procs.stopper(h)
  function h.cli(...) return procs.cli(h.port, ...) end
  -- The commands it was sent, one per line: "<conn> <words>".
  function h.commands() return procs.read(dir .. "/commands.log") or "" end
  return h
end

-- A real redis-sentinel watching one redis-server as pod1 (quorum 1).
function M.sentinel()
  local redis = procs.start_redis()
  local dir = procs.tmpdir()
  local h = { dir = dir, redis = redis }
  local conf = dir .. "/sentinel.conf"
  h.port, h.pid = procs.redis_serve(conf, {
    cmd = "redis-sentinel " .. procs.quote(conf), out = dir .. "/stdout.log", log = dir .. "/sentinel.log",
    conf = function(port)
      return { "port " .. port, "bind 127.0.0.1", "daemonize no", "dir " .. dir, "logfile " .. dir .. "/sentinel.log",
        "sentinel monitor pod1 127.0.0.1 " .. redis.port .. " 1" }
    end,
  })
  h.addr = "127.0.0.1:" .. h.port
  local stop = procs.stopper(h)
  function h.stop()
    stop()
    redis.stop()
  end
  function h.cli(...) return procs.cli(h.port, ...) end
  local q = 1
  function h.event()
    q = 3 - q -- 1, 2, 1, ...: every SET changes the value
    return h.cli("sentinel", "set", "pod1", "quorum", tostring(q))
  end
  return h
end

return M
