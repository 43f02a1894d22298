-- Publish each pod's master in Consul KV, <consul.prefix>/<pod> = "ip:port",
-- for consul-template, a Consul watch or a DNS helper to follow (docs/consul.md).
-- Reconfigurator mode (client-reconfig-script) writes it from the leader too.
-- config: consul = { url = "http://127.0.0.1:8500", prefix = "redis", token = "..." }
local consul = require("eventilator.consul")

on({ "+switch-master", "client-reconfig" }, function(ev)
  if ev.name == "+switch-master" then
    -- every Sentinel reports the switch; one PUT is enough
    local first, err = dedupe.once(ev)
    if first == nil then return nil, err end
    if not first then return true end
  end
  return consul.put_master(ev) -- skips client-reconfig of observers
end)
