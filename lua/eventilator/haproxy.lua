-- eventilator.haproxy: HAProxy's runtime API over its admin socket, so a
-- failover can repoint the frontend Redis clients talk to. See docs/haproxy.md.
--
-- Settings: config.haproxy (`socket`: a unix path or "host:port",
-- `backends`: { <pod> = "<backend>/<server>" }, `timeout`), with opts on top.
-- HAProxy's answer decides: anything but the reply a command gives on
-- success is nil, "haproxy: <command>: <HAProxy's text>".
local M = {}

local settings = require("eventilator.settings")

-- Where the socket is: a path (has a "/"), "host:port" or "[v6]:port".
local function address(sock)
  if type(sock) ~= "string" or sock == "" then return nil end
  if sock:find("/", 1, true) then return sock end
  local host, port = sock:match("^%[(.+)%]:(%d+)$")
  if not host then host, port = sock:match("^([^:]+):(%d+)$") end
  if not host then return nil end
  return host, tonumber(port)
end

-- command(cmd [, opts]) -> HAProxy's reply text | nil, err
-- One connection per command: the socket's non-interactive mode answers one
-- line and closes, which needs no framing.
function M.command(cmd, opts)
  if type(cmd) ~= "string" or cmd:find("[\r\n]") then
    error("bad argument #1 to 'command' (one line of text expected)", 2)
  end
  local s = settings.get("haproxy", opts)
  local host, port = address(s.socket)
  if not host then
    return nil, "haproxy: set haproxy.socket to a unix path or host:port (got " .. tostring(s.socket) .. ")"
  end
  local tcp = require("eventilator.tcp")
  local topts = { timeout = tonumber(s.timeout) or 2, connect_timeout = tonumber(s.timeout) or 2 }
  local c, err
  if port then c, err = tcp.connect(host, port, topts) else c, err = tcp.connect(host, topts) end
  if not c then return nil, "haproxy: " .. tostring(err) end
  local ok, serr = c:send(cmd .. "\n")
  if not ok then
    c:close()
    return nil, "haproxy: " .. cmd .. ": " .. tostring(serr)
  end
  local reply, rerr = c:receive("*a")
  c:close()
  if not reply then return nil, "haproxy: " .. cmd .. ": " .. tostring(rerr) end
  require("eventilator.log").debug("haproxy: %s -> %s", cmd, (reply:gsub("%s+$", "")))
  return reply
end

local function failed(cmd, reply)
  local text = reply:gsub("%s+$", ""):gsub("\n", " ")
  return nil, "haproxy: " .. cmd .. ": " .. (text ~= "" and text or "empty reply")
end

-- Commands that change state answer an empty line when they worked.
local function quiet(cmd, opts)
  local reply, err = M.command(cmd, opts)
  if not reply then return nil, err end
  if reply:match("%S") then return failed(cmd, reply) end
  return true
end

local function check_name(what, v, argn, fname)
  if type(v) ~= "string" or v == "" or v:find("[%s/]") then
    error(string.format("bad argument #%d to '%s' (%s name expected)", argn, fname, what), 3)
  end
end

-- set_server(backend, server, ip, port [, opts]) -> true, changed | nil, err
-- changed is false when the server was at ip:port already (HAProxy needed to
-- change neither): another Sentinel's report of the same switch got there first.
function M.set_server(backend, server, ip, port, opts)
  check_name("backend", backend, 1, "set_server")
  check_name("server", server, 2, "set_server")
  if type(ip) ~= "string" or ip == "" or ip:find("%s") then
    error("bad argument #3 to 'set_server' (address expected)", 2)
  end
  port = math.tointeger(tonumber(port))
  if not port or port < 1 or port > 65535 then
    error("bad argument #4 to 'set_server' (port expected)", 2)
  end
  local cmd = string.format("set server %s/%s addr %s port %d", backend, server, ip, port)
  local reply, err = M.command(cmd, opts)
  if not reply then return nil, err end
  -- HAProxy says what it did with the address and with the port, each "X changed from ..."
  -- or "no need to change the X": "no need to change the addr, port changed from '7000' to
  -- '7001' by 'stats socket command'". Anything else is a refusal.
  if not (reply:find("^IP changed") or reply:find("^no need to change")) then return failed(cmd, reply) end
  if reply:find("changed from", 1, true) then
    require("eventilator.log").info("haproxy: %s/%s now %s:%d", backend, server, ip, port)
    return true, true
  end
  require("eventilator.log").debug("haproxy: %s/%s at %s:%d already", backend, server, ip, port)
  return true, false
end

local STATES = { ready = true, maint = true, drain = true }

-- set_state(backend, server, "ready"|"maint"|"drain" [, opts]) -> true | nil, err
function M.set_state(backend, server, state, opts)
  check_name("backend", backend, 1, "set_state")
  check_name("server", server, 2, "set_state")
  if not STATES[state] then
    error("bad argument #3 to 'set_state' ('ready', 'maint' or 'drain' expected)", 2)
  end
  return quiet(string.format("set server %s/%s state %s", backend, server, state), opts)
end

local HEALTH = { up = true, stopping = true, down = true }

-- set_health(backend, server, "up"|"stopping"|"down" [, opts]) -> true | nil, err
-- Forces the verdict of the server's health checks, as if they had just
-- passed (or failed): "up" routes to it at once instead of after `rise`
-- passing checks; its checks then go on and decide as usual. A server
-- without checks takes it too (HAProxy answers nothing; "down" keeps it
-- down until "up"); one in maintenance stays there; one that tracks another
-- is refused ("cannot change health on a tracking server.").
function M.set_health(backend, server, health, opts)
  check_name("backend", backend, 1, "set_health")
  check_name("server", server, 2, "set_health")
  if not HEALTH[health] then
    error("bad argument #3 to 'set_health' ('up', 'stopping' or 'down' expected)", 2)
  end
  return quiet(string.format("set server %s/%s health %s", backend, server, health), opts)
end

-- shutdown_sessions(backend, server [, opts]) -> true | nil, err
-- Closes every session on that server: clients reconnect through HAProxy.
function M.shutdown_sessions(backend, server, opts)
  check_name("backend", backend, 1, "shutdown_sessions")
  check_name("server", server, 2, "shutdown_sessions")
  return quiet(string.format("shutdown sessions server %s/%s", backend, server), opts)
end

-- servers(backend [, opts]) -> { { name =, addr =, port =, op_state =, admin_state =,
-- ... every column of `show servers state`, prefix srv_ dropped }, ... } | nil, err
-- Numeric columns are numbers; "-" is nil.
function M.servers(backend, opts)
  check_name("backend", backend, 1, "servers")
  local cmd = "show servers state " .. backend
  local reply, err = M.command(cmd, opts)
  if not reply then return nil, err end
  local lines = {}
  for l in reply:gmatch("[^\n]+") do lines[#lines + 1] = l end
  if lines[1] ~= "1" or not (lines[2] or ""):find("^# ") then return failed(cmd, reply) end
  local cols = {}
  for c in lines[2]:sub(3):gmatch("%S+") do cols[#cols + 1] = (c:gsub("^srv_", "")) end
  local out = {}
  for i = 3, #lines do
    local row, n = {}, 0
    for v in lines[i]:gmatch("%S+") do
      n = n + 1
      if cols[n] and v ~= "-" then row[cols[n]] = math.tointeger(tonumber(v)) or v end
    end
    row.addr = row.addr and tostring(row.addr)
    out[#out + 1] = row
  end
  return out
end

-- repoint(ev [, opts]) -> true | nil, err. Safe to repeat: every Sentinel
-- reports a switch, and only the report that moves the server cuts its sessions.
-- For +switch-master (or client-reconfig): the server named for ev.pod in
-- `backends` ("backend/server") is set to the new master and its health
-- forced up, then its sessions (still connected to the old master) are shut
-- down so clients reconnect. The checks had marked the server down at the
-- old master; left to them, it would stay down for `rise` checks at the new
-- address (2 s with `check inter 1s`). The new master passes them, so they
-- keep it up from there. Health first, so the clients cut off reconnect to
-- a server that is up.
function M.repoint(ev, opts)
  if type(ev) ~= "table" then error("bad argument #1 to 'repoint' (event table expected)", 2) end
  local s = settings.get("haproxy", opts)
  local target = type(s.backends) == "table" and s.backends[ev.pod]
  if not target then return nil, "haproxy: no haproxy.backends entry for pod " .. tostring(ev.pod) end
  local backend, server = tostring(target):match("^([^/%s]+)/([^/%s]+)$")
  if not backend then
    return nil, "haproxy: backends." .. tostring(ev.pod) .. ": expected \"backend/server\""
  end
  local new = ev.new_master
  if type(new) ~= "table" or not new.ip then
    return nil, "haproxy: " .. tostring(ev.name) .. " names no new master"
  end
  local ok, changed = M.set_server(backend, server, new.ip, new.port, opts)
  if not ok then return nil, changed end
  -- Health up every time (a retry after a failure between the two steps must
  -- still route); the sessions only when this report moved the server: those
  -- left after that are already on the new master.
  local err
  ok, err = M.set_health(backend, server, "up", opts)
  if ok and changed then ok, err = M.shutdown_sessions(backend, server, opts) end
  return ok, err
end

return M
