-- Sentinel's down/up and failover events as Alertmanager alerts
-- (docs/alertmanager.md): RedisMasterDown, RedisInstanceDown,
-- RedisFailoverAborted, RedisFailover. Every Sentinel posts; Alertmanager
-- merges identical alerts, so nothing here needs to act once.
if not config.alertmanager.enabled then return end

on({ "+odown", "-odown", "+sdown", "-sdown", "-failover-abort-no-good-slave", "+switch-master",
     "client-reconfig" }, function(ev)
  return require("eventilator.alertmanager").notify(ev)
end)
