#!/usr/bin/env bash
# One Alertmanager post: eventilator (the default rule 50-alertmanager.lua,
# +odown -> RedisMasterDown) against a shell script doing the same post with
# curl (bench/alertmanager-curl.sh), both to a private Alertmanager on a
# spare loopback port. Measured, never asserted: N runs each, interleaved,
# median wall time and the ratio to the curl script.
#   bash bench/alertmanager.sh [N]        (default N=100; needs a build in ./build)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
B=${EVENTILATOR_BUILD:-build}
[ -x "$B/bin/eventilator" ] || { cmake -S . -B "$B" >/dev/null && cmake --build "$B" -j"$(nproc)" >/dev/null; }
B=$(cd "$B" && pwd)
W=$(mktemp -d /tmp/eventilator-bench.XXXXXX)
cleanup() { [ -n "${APID:-}" ] && kill "$APID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
cc -O2 -o "$W/spawnbench" bench/spawnbench.c

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'route:\n  receiver: "null"\n  group_wait: 1h\nreceivers:\n  - name: "null"\n' > "$W/am.yml"
timeout 900 prometheus-alertmanager --config.file="$W/am.yml" --storage.path="$W/am" \
  --web.listen-address="127.0.0.1:$PORT" --cluster.listen-address= --log.level=warn >"$W/am.log" 2>&1 &
APID=$!
AM="http://127.0.0.1:$PORT"
for _ in $(seq 100); do curl -sf -o /dev/null "$AM/-/ready" && break; sleep 0.1; done

mkdir -p "$W/rules" "$W/state"
cp rules/50-alertmanager.lua "$W/rules/"
printf 'log = { target = "%s/eventilator.log" }\nrules_dir = "%s/rules"\nstate_dir = "%s/state"\nalertmanager = { enabled = true, urls = { "%s" } }\n' \
  "$W" "$W" "$W" "$AM" > "$W/eventilator.conf"

EV=(+odown "master pod1 127.0.0.1 6379 #quorum 2/3")
echo "== one Alertmanager post: $N runs each, interleaved ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
"$W/spawnbench" "$N" "shell script + curl (same post)" "AM_URL=$AM" /bin/sh "$PWD/bench/alertmanager-curl.sh" "${EV[@]}" \
  ::: "eventilator +odown (50-alertmanager.lua)" "EVENTILATOR_CONF=$W/eventilator.conf" "$B/bin/eventilator" "${EV[@]}"
echo
echo "== checks"
grep -c 'pod=pod1 handlers=1 failed=0' "$W/eventilator.log" | sed 's/^/eventilator calls logged ok: /'
curl -sf "$AM/api/v2/alerts" | python3 -c 'import json,sys; a=json.load(sys.stdin); print("alerts active in Alertmanager:", len(a))'
