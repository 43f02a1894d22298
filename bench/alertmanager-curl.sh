#!/bin/sh
# What an operator would otherwise write as Sentinel's notification script
# for Alertmanager: the same alert eventilator's alertmanager module sends
# for +odown, built in the shell and posted with curl. For bench/alertmanager.sh.
#   AM_URL=http://127.0.0.1:9093 sh alertmanager-curl.sh +odown "master pod1 127.0.0.1 6379 #quorum 2/3"
set -e
event=$1; text=$2
set -- $text
pod=$2 ip=$3 port=$4
now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
ends=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%S.000Z)
host=$(hostname -f 2>/dev/null || hostname)
body=$(printf '[{"labels":{"alertname":"RedisMasterDown","pod":"%s","instance":"%s:%s","role":"master"},"annotations":{"summary":"master %s (%s:%s) is objectively down","description":"The Sentinel on %s reported %s %s."},"startsAt":"%s","endsAt":"%s"}]' \
  "$pod" "$ip" "$port" "$pod" "$ip" "$port" "$host" "$event" "$text" "$now" "$ends")
curl -sf -o /dev/null --max-time 5 -X POST -H 'Content-Type: application/json' --data-binary "$body" "$AM_URL/api/v2/alerts"
