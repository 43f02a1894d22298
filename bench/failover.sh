#!/bin/sh
# The shell-script way to record a failover (what eventilator replaces):
# the same writes as eventilator.metrics.record_failover, in one MULTI/EXEC
# through one redis-cli. Called like the client-reconfig-script:
#   failover.sh <master> <role> <state> <from-ip> <from-port> <to-ip> <to-port>
# REDIS_PORT picks the store (default 6379).
[ "$#" -eq 7 ] || exit 2
[ "$2" = leader ] || exit 0
pod=$1 ip=$6 port=$7
ts=$(date +%s)
set -- $(date -d "@$ts" '+%Y %-m %-d %-H %-M')
windows="$1 $1:$2 $1:$2:$3 $1:$2:$3:$4 $1:$2:$3:$4:$5"
day="$1:$2:$3"
{
  echo MULTI
  echo "SADD pods-with-failovers $pod"
  echo "SADD failovers:$pod:timestamps $ts"
  echo "ZADD failovers:$pod:log $ts $ip:$port@$ts"
  for w in $windows; do
    echo "HINCRBY failovers:aggregated $w 1"
    echo "HINCRBY failovers:success:$pod:counters $w 1"
    echo "SADD failovers:$w $pod"
    echo "ZADD failovers:aggregated-by-time:$w $ts $pod"
  done
  echo "SADD pods-with-failovers:$day $pod"
  echo "EXPIRE pods-with-failovers:$day 5184000"
  echo EXEC
} | redis-cli -p "${REDIS_PORT:-6379}" >/dev/null
