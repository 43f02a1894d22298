-- A replica that goes down flap.threshold times within flap.window seconds is
-- flapping: report it and start a replacement (as swarm-replace-replica.lua
-- does), then leave it alone for flap.cooldown seconds (docs/flap.md).
-- config: flap = { window = 600, threshold = 3, cooldown = 3600 }
--         swarm = { image = "redis:7", max_per_hour = 3 }   -- docs/docker.md
--         slack = { webhook_url = "https://hooks.slack.com/services/..." }  -- optional
--         alertmanager = { urls = { "http://127.0.0.1:9093" } }           -- optional
local flap = require("eventilator.flap")
local docker = require("eventilator.docker")

on("+sdown", function(ev)
  if not ev.instance or ev.instance.type ~= "slave" then return true end
  local first, err = dedupe.once(ev, 30) -- one count per outage, not per Sentinel
  if first == nil then return nil, err end
  if not first then return true end
  local count, crossed = flap.track(ev)
  if not count then return nil, crossed end
  if not crossed then return true end

  local msg = string.format("replica %s of %s went down %d times in %d s: replacing it",
    ev.instance.name, ev.pod, count, config.flap.window)
  log.warn("%s", msg)
  if config.slack.webhook_url then
    local ok, serr = http.post_json(config.slack.webhook_url, { text = msg })
    if not ok then log.error("slack: %s", serr) end
  end
  if config.alertmanager and config.alertmanager.urls then
    local ok, aerr = http.post_json(config.alertmanager.urls[1] .. "/api/v2/alerts", { {
      labels = { alertname = "RedisReplicaFlapping", pod = ev.pod, instance = ev.instance.name },
      annotations = { summary = msg } } })
    if not ok then log.error("alertmanager: %s", aerr) end
  end
  return docker.replace_replica(ev)
end)
