-- Keep HAProxy in front of each pod's master (docs/haproxy.md).
-- One server per pod ("backend/server"): on +switch-master it is repointed to
-- the new master and its sessions, still on the old one, are shut down.
-- A backend alone ("backend"): its servers are matched by address, the one on
-- the new master made ready and the one on the old master put in maint.
-- config: haproxy = { socket = "/run/haproxy/admin.sock",
--                     backends = { mymaster = "redis/master", cache = "redis-cache" } }
local haproxy = require("eventilator.haproxy")

on("+switch-master", function(ev)
  local target = config.haproxy.backends[ev.pod]
  if not target then return true end -- a pod HAProxy does not serve
  local first, err = dedupe.once(ev) -- every Sentinel reports the switch
  if first == nil then return nil, err end
  if not first then return true end
  if target:find("/", 1, true) then return haproxy.repoint(ev) end

  local servers, serr = haproxy.servers(target)
  if not servers then return nil, serr end
  local old, new = ev.old_master, ev.new_master
  for _, s in ipairs(servers) do
    if s.addr == new.ip and s.port == new.port then
      local ok, e = haproxy.set_state(target, s.name, "ready")
      if not ok then return nil, e end
    elseif s.addr == old.ip and s.port == old.port then
      local ok, e = haproxy.set_state(target, s.name, "maint")
      if ok then ok, e = haproxy.shutdown_sessions(target, s.name) end
      if not ok then return nil, e end
    end
  end
  log.info("haproxy: backend %s follows %s to %s:%d", target, ev.pod, new.ip, new.port)
  return true
end)
