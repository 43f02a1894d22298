-- Record failed failovers and down/up warnings in Redis (docs/metrics.md).
if not config.warnings.enabled then return end

on({ "-failover-abort-no-good-slave", "-failover-abort-slave-timeout" }, function(ev)
  return require("eventilator.metrics").record_failure(ev)
end)

on({ "+sdown", "-sdown", "+odown", "-odown" }, function(ev)
  return require("eventilator.metrics").record_warning(ev)
end)
