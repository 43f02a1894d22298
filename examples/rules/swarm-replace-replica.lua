-- When a replica goes down, start a replacement Redis as a replica of the
-- current master, in Docker (docs/docker.md): with swarm.service set, that
-- Swarm service is scaled up by one; otherwise a container of swarm.image runs
-- `redis-server --replicaof <master ip> <port>`. At most swarm.max_per_hour
-- replacements per pod and hour.
-- config: docker = { socket = "/var/run/docker.sock" }
--         swarm = { image = "redis:7", network = "redis-net", max_per_hour = 3 }
local docker = require("eventilator.docker")

on("+sdown", function(ev)
  if not ev.instance or ev.instance.type ~= "slave" then return true end
  -- Each Sentinel reports the replica down: act on the first report only.
  local first, err = dedupe.once(ev, 60)
  if first == nil then return nil, err end
  if not first then return true end
  log.info("replica %s of %s is down: starting a replacement", ev.instance.name, ev.pod)
  return docker.replace_replica(ev)
end)
