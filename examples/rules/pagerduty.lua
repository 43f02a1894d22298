-- /etc/redis/eventilator.d/60-pagerduty.lua
-- Page for the pods that matter at night, and only open a low-urgency
-- incident for the others.
--
-- eventilator.conf:
--   pagerduty = { routing_key = "R0UT1NGK3Y..." }
--   oncall    = { pods = { "sessions", "payments" } }
local pd = require("eventilator.pagerduty")

local paged = {}
for _, pod in ipairs(config.oncall and config.oncall.pods or {}) do paged[pod] = true end

on({ "+odown", "-failover-abort-no-good-slave" }, function(ev)
  local first, err = dedupe.once(ev)
  if first == nil then return nil, err end
  if not first then return true end -- another Sentinel triggered it
  return pd.trigger(ev, { severity = paged[ev.pod] and "critical" or "warning" })
end)

-- Resolving twice is harmless, but once is enough.
on({ "-odown", "+switch-master" }, function(ev)
  local first, err = dedupe.once(ev)
  if first == nil then return nil, err end
  if not first then return true end
  return pd.resolve(ev)
end)
