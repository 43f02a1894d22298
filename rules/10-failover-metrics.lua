-- Record each failover in Redis (docs/metrics.md). Every Sentinel calls the
-- reconfig script, but only the leader records, so a failover counts once.
if not config.metrics.enabled then return end

on("client-reconfig", function(ev)
  if ev.role ~= "leader" then return true end
  return require("eventilator.metrics").record_failover(ev)
end)
