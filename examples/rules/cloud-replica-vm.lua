-- When a replica goes down, order a Hetzner Cloud VM (POST /v1/servers) whose cloud-init
-- installs Redis as a replica of the current master. Guard as in swarm-replace-replica.lua:
-- once across Sentinels, at most hcloud.max_per_hour new VMs per pod and hour.
-- config: hcloud = { token = "...", server_type = "cx22", image = "debian-12",
--                    location = "fsn1", ssh_keys = { "ops" }, max_per_hour = 3 }
local flap = require("eventilator.flap")

local USER_DATA = [[
#cloud-config
packages: [redis-server]
runcmd:
  - sed -i 's/^bind .*/bind 0.0.0.0/' /etc/redis/redis.conf
  - echo 'replicaof %s %d' >> /etc/redis/redis.conf
  - systemctl restart redis-server
]]

on("+sdown", function(ev)
  if not ev.instance or ev.instance.type ~= "slave" then return true end
  local first, err = dedupe.once(ev, 60)
  if first == nil then return nil, err end
  if not first then return true end
  local c = config.hcloud
  local go, lerr = flap.limit("hcloud:" .. ev.pod, c.max_per_hour, 3600)
  if go == nil then return nil, lerr end
  if not go then
    log.warn("hcloud: %d new VMs for %s this hour; no more", c.max_per_hour, ev.pod)
    return true
  end
  local name = string.format("redis-%s-%d", ev.pod:gsub("[^%w-]", "-"), math.floor(ev.time))
  local res, herr = http.post_json(c.url .. "/servers", {
    name = name, server_type = c.server_type, image = c.image, location = c.location,
    ssh_keys = c.ssh_keys, labels = { role = "redis-replica", pod = ev.pod },
    user_data = USER_DATA:format(ev.master.ip, ev.master.port),
  }, { timeout = 20, headers = { Authorization = "Bearer " .. tostring(c.token) } })
  if not res then return nil, herr end
  if res.status ~= 201 then return nil, "hcloud: HTTP " .. res.status .. ": " .. res.body:sub(1, 200) end
  log.info("hcloud: ordered %s as a replica of %s:%d", name, ev.master.ip, ev.master.port)
  return true
end)
