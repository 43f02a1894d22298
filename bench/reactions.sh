#!/usr/bin/env bash
# What one call of each reaction costs, end to end (process start, config,
# rules, the module's round trips): N calls of the built eventilator with one
# example-style rule each, against a private redis-server and a real HAProxy
# on loopback; prints the median and 90th percentile of the `ms=` the program
# logs for itself, and the peak RSS of one call. Then how soon HAProxy routes
# clients to the new master through real failovers (FAILOVERS per setting,
# below).
#   bash bench/reactions.sh [N]          (build/ must be built)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}
BIN=${EVENTILATOR_BUILD:-build}/bin/eventilator
dir=$(mktemp -d /tmp/eventilator-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

rport=$(port); fport=$(port)
timeout 900 redis-server --port "$rport" --bind 127.0.0.1 --save '' >/dev/null 2>&1 </dev/null & pids+=($!)
cat >"$dir/haproxy.cfg" <<CFG
global
  stats socket $dir/admin.sock level admin
defaults
  mode tcp
  timeout connect 1s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:$fport
  default_backend redis
backend redis
  server master 127.0.0.1:$rport
CFG
timeout 900 haproxy -db -f "$dir/haproxy.cfg" >/dev/null 2>&1 </dev/null & pids+=($!)
for _ in $(seq 100); do [ -S "$dir/admin.sock" ] && redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

mkdir -p "$dir/rules"
cat >"$dir/eventilator.conf" <<CONF
log = { target = "$dir/log", level = "info" }
rules_dir = "$dir/rules"
state_dir = "$dir/state"
redis = { port = $rport }
haproxy = { socket = "$dir/admin.sock", backends = { pod1 = "redis/master" } }
flap = { threshold = 1000000 }
CONF

# run NAME RULE EVENT DESCRIPTION-WITH-%d: N calls, a distinct description each
run() {
  local name=$1 rule=$2 event=$3 desc=$4
  rm -f "$dir"/rules/*.lua "$dir/log"
  printf '%s\n' "$rule" >"$dir/rules/bench.lua"
  for i in $(seq "$N"); do
    # shellcheck disable=SC2059
    EVENTILATOR_CONF="$dir/eventilator.conf" "$BIN" "$event" "$(printf "$desc" $((10000 + i)))" || true
  done
  local rss
  # shellcheck disable=SC2059
  rss=$( { EVENTILATOR_CONF="$dir/eventilator.conf" /usr/bin/time -f %M "$BIN" "$event" \
    "$(printf "$desc" 9999)" ; } 2>&1 >/dev/null | tail -1)
  local ok
  ok=$(grep -c ' exit=0 ' "$dir/log" || true)
  grep -o ' ms=[0-9.]*' "$dir/log" | cut -d= -f2 | sort -n | awk -v n="$name" -v rss="$rss" -v ok="$ok" \
    '{ a[NR] = $1 } END { printf "%-34s calls=%d exit0=%d median=%.1f ms p90=%.1f ms peak_rss=%s KiB\n",
      n, NR, ok, a[int((NR + 1) / 2)], a[int(NR * 0.9)], rss }'
}

run "haproxy repoint (dedupe + 3 cmds)" '
on("+switch-master", function(ev)
  local first, err = dedupe.once(ev)
  if first == nil then return nil, err end
  if not first then return true end
  return require("eventilator.haproxy").repoint(ev)
end)' +switch-master "pod1 127.0.0.1 %d 127.0.0.1 $rport"

run "flap.track" '
on("+sdown", function(ev) local n, err = require("eventilator.flap").track(ev) return n, err end)' \
  +sdown "slave 127.0.0.1:%d 127.0.0.1 7000 @ pod1 127.0.0.1 $rport"

run "no matching rule (baseline)" 'on("+odown", function() return true end)' \
  +sdown "slave 127.0.0.1:%d 127.0.0.1 7000 @ pod1 127.0.0.1 $rport"

# HAProxy repointed through real failovers, in watch mode: from the first
# +switch-master a Sentinel publishes to the first client connection HAProxy
# routes to the new master (bench/haproxy_failover.lua: examples/rules/
# haproxy-follow-master.lua, docs/haproxy.md's role check at `inter 100ms`
# and at `inter 1s`, each failover asked for once the checks have the dead
# master DOWN). Issue 20 measured redishappy-haproxy, which rewrites
# HAProxy's config and reloads it, at 68 ms on this path, and this rule,
# when it only set the address and waited for the checks, at 160-190 ms
# (inter 100ms) and up to 2 s (inter 1s); the aim is half of redishappy's,
# 34 ms, in both settings. redishappy cannot be fetched here, so it is not
# run: 68 ms is the issue's figure.
# Measured here, 2 cores under other developers' builds (load 8-12), three
# runs of 7, 11 and 15 failovers per setting:
#   inter 100ms: median 6.6, 5.9, 8.5 ms; max 50.5, 33.0, 19.8 ms
#   inter 1s:    median 15.5, 6.1, 7.3 ms; max 19.6, 28.0, 25.2 ms
# The slow ones wait for a core: the rule's `set server ... addr` itself
# came 10-26 ms after the switch in most of them. The same bench with the
# rule before it forced health up: 171-187 ms (inter 100ms), 1775-1794 ms
# (inter 1s).
lua5.4 bench/haproxy_failover.lua "${FAILOVERS:-7}"
