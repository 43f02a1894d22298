-- /etc/redis/eventilator.d/60-stream.lua
-- Failover events, once each, into a stream on the ops Redis, where the
-- consumer groups of our tooling read them (docs/stream.md).
--
-- eventilator.conf:
--   stream = { key = "ops:redis-failovers", maxlen = 10000,
--              redis = { host = "10.0.0.40", port = 6379, password = "..." } }
local stream = require("eventilator.stream")

on({ "+odown", "-odown", "+try-failover", "+promoted-slave", "+switch-master",
     "-failover-abort-*", "+failover-end" }, function(ev)
  local first, err = dedupe.once(ev)
  if first == nil then return nil, err end
  if not first then return true end -- another Sentinel added it
  return stream.add(ev)
end)
