-- A real HAProxy (Debian's haproxy) for the specs, in the foreground under
-- procs.spawn: an admin socket (unix path, and a loopback TCP one), one TCP
-- frontend on a port of its own (procs.serve), and the backends given.
--
--   local h = haproxy.start{ backends = { redis = { master = 6379 } }, check = true }
--   h.socket, h.tcp_socket ("127.0.0.1:<port>"), h.frontend (port of `fe`,
--   whose default backend is opts.default or the first given), h.stop()
--
-- opts.check: true ("check inter 200 fall 1 rise 1") or a server's own
-- check words ("check inter 1s"); opts.role_check: the checks ask Redis for
-- its role and pass on a master only (docs/haproxy.md's backend).
local procs = require("procs")

local M = {}

-- eventilator.haproxy.servers(backend)'s list, keyed by server name.
function M.by_name(list)
  local t = {}
  for _, s in ipairs(list) do t[s.name] = s end
  return t
end

-- A backend's check that only a Redis master passes (a replica answers
-- role:slave and fails at the expect's timeout).
M.ROLE_CHECK = {
  "option tcp-check",
  "tcp-check connect",
  "tcp-check send info\\ replication\\r\\n",
  "tcp-check expect string role:master",
  "tcp-check send QUIT\\r\\n",
  "tcp-check expect string +OK",
}

function M.start(opts)
  local h = { dir = procs.tmpdir() }
  h.socket = h.dir .. "/admin.sock"
  h.cfg = h.dir .. "/haproxy.cfg"
  h.log = h.dir .. "/haproxy.log"
  local function config(frontend, admin_port)
    local cfg = {
      "global",
      "  stats socket " .. h.socket .. " level admin",
      "  stats socket ipv4@127.0.0.1:" .. admin_port .. " level admin",
      "  log stderr format raw local0 info",
      "defaults",
      "  mode tcp", "  log global",
      "  timeout connect 1s", "  timeout client 30s", "  timeout server 30s",
    }
    local names = {}
    for name in pairs(opts.backends) do names[#names + 1] = name end
    table.sort(names)
    cfg[#cfg + 1] = "frontend fe"
    cfg[#cfg + 1] = "  bind 127.0.0.1:" .. frontend
    cfg[#cfg + 1] = "  default_backend " .. (opts.default or names[1])
    local check = opts.check == true and " check inter 200 fall 1 rise 1" or opts.check and " " .. opts.check or ""
    for _, name in ipairs(names) do
      cfg[#cfg + 1] = "backend " .. name
      if opts.role_check then
        for _, l in ipairs(M.ROLE_CHECK) do cfg[#cfg + 1] = "  " .. l end
      end
      local servers = {}
      for s in pairs(opts.backends[name]) do servers[#servers + 1] = s end
      table.sort(servers)
      for _, s in ipairs(servers) do
        cfg[#cfg + 1] = string.format("  server %s 127.0.0.1:%d%s", s, opts.backends[name][s], check)
      end
    end
    return table.concat(cfg, "\n") .. "\n"
  end
  local more
  h.frontend, h.pid, more = procs.serve{
    what = "haproxy (log: " .. h.log .. ")", more = 1,
    start = function(frontend, ports)
      procs.write(h.cfg, config(frontend, ports[1]))
      -- helpers run without the sanitizer runtime the ASan build preloads into the specs
      return procs.spawn("env -u LD_PRELOAD haproxy -db -f " .. procs.quote(h.cfg), h.log)
    end,
    -- the admin socket is a file of ours: only our haproxy answers there, once every port is bound
    up = function()
      local out = procs.sh(string.format("echo 'show info' | env -u LD_PRELOAD timeout 5 python3 -c %s %s 2>/dev/null",
        procs.quote("import socket,sys;s=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1]);" ..
          "s.sendall(sys.stdin.buffer.read());print(s.recv(65536).decode())"), procs.quote(h.socket)))
      return out:find("Name: HAProxy", 1, true) ~= nil
    end,
    log = function() return procs.read(h.log) end,
  }
  h.admin_port = more[1]
  h.tcp_socket = "127.0.0.1:" .. h.admin_port
  h.stop = procs.stopper(h)
  return h
end

return M
