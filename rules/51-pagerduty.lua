-- Page through PagerDuty's Events API v2 (docs/pagerduty.md): a master
-- objectively down or a failover that found no replica triggers; -odown and
-- the completed failover resolve. The dedup_key makes the three Sentinels'
-- calls one incident.
if not config.pagerduty.enabled then return end

on({ "+odown", "-odown", "-failover-abort-no-good-slave", "+switch-master" }, function(ev)
  return require("eventilator.pagerduty").notify(ev)
end)
