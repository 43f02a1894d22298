-- Keep HAProxy in front of each pod's master (docs/haproxy.md, which says why health is forced up).
-- One server per pod ("backend/server"): on +switch-master it is repointed to the new
-- master, its health forced up and its sessions, still on the old master, shut down.
-- A backend alone ("backend"): its servers are matched by address. The one on the new
-- master is made ready and its health forced up first, so that the clients cut off next
-- reconnect to a server that is up; then the one on the old master is put in maint and
-- its sessions shut down.
-- config: haproxy = { socket = "/run/haproxy/admin.sock",
--                     backends = { mymaster = "redis/master", cache = "redis-cache" } }
local haproxy = require("eventilator.haproxy")

on("+switch-master", function(ev)
  local target = config.haproxy.backends[ev.pod]
  if not target then return true end -- a pod HAProxy does not serve
  -- Every Sentinel reports the switch, and each report is acted on: the first one moves
  -- HAProxy, the others find it done (no dedupe claim, which would outlive the switch and
  -- skip a failover back and forth between the same two nodes within its ttl).
  if target:find("/", 1, true) then return haproxy.repoint(ev) end

  local servers, serr = haproxy.servers(target)
  if not servers then return nil, serr end
  -- Every server at node's address: set to state, then handed to more.
  local function at(node, state, more)
    for _, s in ipairs(servers) do
      if s.addr == node.ip and s.port == node.port then
        local ok, e = haproxy.set_state(target, s.name, state)
        if ok then ok, e = more(s.name) end
        if not ok then return nil, e end
      end
    end
    return true
  end
  local ok, e = at(ev.new_master, "ready", function(n) return haproxy.set_health(target, n, "up") end)
  if not ok then return nil, e end
  ok, e = at(ev.old_master, "maint", function(n) return haproxy.shutdown_sessions(target, n) end)
  if not ok then return nil, e end
  log.info("haproxy: backend %s follows %s to %s:%d", target, ev.pod, ev.new_master.ip, ev.new_master.port)
  return true
end)
