-- /etc/redis/eventilator.d/60-alertmanager.lua
-- Alerts for an HA Alertmanager pair, with a severity that depends on what
-- went down: a master is critical, a replica or a Sentinel a warning.
--
-- eventilator.conf:
--   alertmanager = {
--     urls = { "http://alertmanager-1:9093", "http://alertmanager-2:9093" },
--     labels = { cluster = "prod-eu" },
--   }
local am = require("eventilator.alertmanager")

-- Every Sentinel reports these; post once, from whichever reports first.
on({ "+odown", "-odown", "+sdown", "-sdown" }, function(ev)
  local first, err = dedupe.once(ev)
  if first == nil then return nil, err end -- the store is down: let Sentinel retry
  if not first then return true end        -- another Sentinel posted it

  local severity = "warning"
  if ev.instance and ev.instance.type == "master" then severity = "critical" end
  local labels = { severity = severity }
  for k, v in pairs(config.alertmanager.labels) do labels[k] = v end

  if ev.name:sub(1, 1) == "+" then
    return am.fire(ev, { labels = labels })
  end
  return am.resolve(ev, { labels = labels })
end)

-- A failover: only the leader's client-reconfig call has role "leader".
on("client-reconfig", function(ev)
  if ev.role ~= "leader" then return true end
  return am.notify(ev, { labels = { severity = "info", cluster = config.alertmanager.labels.cluster } })
end)
