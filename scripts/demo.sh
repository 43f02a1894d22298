#!/usr/bin/env bash
# The quick start: installs the Debian packages, builds eventilator into
# build/, starts a private Sentinel constellation on 127.0.0.1 (one master,
# two replicas, three sentinels watching it as "pod1", a separate Redis for
# the metrics), wires the built binaries in as notification-script and
# client-reconfig-script with the default rules, kills the master and shows
# what happened: every script run Sentinel made, what the rules did, and the
# failover metrics read back from Redis. Everything it starts runs under
# `timeout` and is stopped on exit; nothing is left running.
#
#   bash scripts/demo.sh            # DEMO_KEEP=1 keeps the temp folder
#   bash scripts/demo.sh --watch    # the same failover heard by `eventilator watch` instead:
#                                   # no scripts in sentinel.conf, every event once, NOTICE ones too
set -euo pipefail
WATCH=0
case "${1:-}" in
  --watch) WATCH=1 ;;
  "") ;;
  *) echo "usage: bash scripts/demo.sh [--watch]" >&2; exit 2 ;;
esac
T0=$(date +%s.%N)
cd "$(dirname "$0")/.."
ROOT=$(pwd)
POD=pod1
LIFETIME=300 # seconds any process started here may live

elapsed() { python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(date +%s.%N)"; }
say() { printf '%s\n' "$*"; }
die() { say "demo: $*" >&2; exit 1; }

# Poll "$@" every 0.1 s until it succeeds, for at most $1 seconds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -le "$deadline" ] || die "timed out after ${secs}s waiting for $what"
    sleep 0.1
  done
}

say "== dependencies"
bash scripts/deps.sh

say "== build (build/)"
TB=$(date +%s.%N)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" >build/demo-build.log 2>&1 \
  || { tail -30 build/demo-build.log >&2; die "build failed (build/demo-build.log)"; }
BIN="$ROOT/build/bin"
if [ ! -x "$BIN/eventilator" ] || [ ! -e "$BIN/reconfigurator" ]; then die "build did not produce $BIN/eventilator"; fi
say "   built in $(elapsed "$TB") s: $BIN/eventilator (+ reconfigurator, registrator)"

# ---------------------------------------------------------------- constellation
W=$(mktemp -d /tmp/eventilator-demo.XXXXXX)
WRAPPERS=()   # pids of the `timeout` wrappers
SERVERS=()    # pids of the redis-server / redis-sentinel processes
SPID=()       # SPID[i]: sentinel i as the records name it
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local p
  for p in "${WRAPPERS[@]}" "${SERVERS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local left=0
    for p in "${WRAPPERS[@]}" "${SERVERS[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
    [ $left = 0 ] && break
    sleep 0.1
  done
  for p in "${WRAPPERS[@]}" "${SERVERS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ "${DEMO_KEEP:-}" = 1 ] || [ $rc -ne 0 ]; then
    say "   (files kept in $W)"
  else
    rm -rf "$W"
  fi
  say "== stopped everything started here; wall time $(elapsed "$T0") s"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Seven distinct spare loopback ports, all bound at once so they differ.
read -r P1 P2 P3 S1 S2 S3 STORE < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(7)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')

# start DIR CMD...: run CMD under timeout in the background, output in DIR/stdout.log.
start() {
  local dir=$1; shift
  timeout "$LIFETIME" "$@" >"$dir/stdout.log" 2>&1 </dev/null &
  WRAPPERS+=($!)
  disown $! # no "Killed" notice from bash when the master is killed on purpose
}
ping_ok() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]; }
server_pid() { redis-cli -h 127.0.0.1 -p "$1" info server | tr -d '\r' | sed -n 's/^process_id://p'; }

redis_node() { # PORT DIR [config lines...]
  local port=$1 dir=$2; shift 2
  mkdir -p "$dir"
  {
    printf '%s\n' "port $port" "bind 127.0.0.1" "protected-mode no" 'save ""' "appendonly no" \
      "dir $dir" "daemonize no" "logfile $dir/redis.log" "repl-diskless-sync yes" "repl-diskless-sync-delay 0"
    for l in "$@"; do printf '%s\n' "$l"; done
  } >"$dir/redis.conf"
  start "$dir" redis-server "$dir/redis.conf"
  wait_for 10 "redis-server on $port" ping_ok "$port"
  SERVERS+=("$(server_pid "$port")")
}

say "== private constellation on 127.0.0.1 (temp folder $W)"
TS=$(date +%s.%N)
redis_node "$STORE" "$W/store"
redis_node "$P1" "$W/redis-1"
redis_node "$P2" "$W/redis-2" "replicaof 127.0.0.1 $P1"
redis_node "$P3" "$W/redis-3" "replicaof 127.0.0.1 $P1"

mkdir -p "$W/state"
cat >"$W/eventilator.conf" <<EOF
-- The demo's eventilator config: the default rules, metrics and warnings on.
-- (each sentinel points log.target at its own file with EVENTILATOR_LOG)
log = { target = "$W/eventilator.log", level = "info" }
rules_dir = "$ROOT/rules"
state_dir = "$W/state"
redis = { host = "127.0.0.1", port = $STORE, timeout = 1 }
metrics = { enabled = true }
warnings = { enabled = true }
record = "$W/calls.jsonl" -- every call, for: eventilator test --replay (docs/testing-rules.md)
watch = { sentinels = { "127.0.0.1:$S1" } } -- one seed: the watcher finds the other two
EOF

i=0
for port in $S1 $S2 $S3; do
  i=$((i + 1))
  d="$W/sentinel-$i"
  mkdir -p "$d"
  cat >"$d/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
protected-mode no
daemonize no
dir $d
logfile $d/sentinel.log
sentinel monitor $POD 127.0.0.1 $P1 2
sentinel down-after-milliseconds $POD 1000
sentinel failover-timeout $POD 15000
sentinel parallel-syncs $POD 1
sentinel deny-scripts-reconfig yes
EOF
  if [ "$WATCH" = 0 ]; then
    printf '%s\n' "sentinel notification-script $POD $BIN/eventilator" \
      "sentinel client-reconfig-script $POD $BIN/reconfigurator" >>"$d/sentinel.conf"
  fi
  # Sentinel passes its environment to the scripts: the config path, and a
  # log file per sentinel so the timeline can say who ran what.
  start "$d" env EVENTILATOR_CONF="$W/eventilator.conf" EVENTILATOR_LOG="$W/eventilator-s$i.log" \
    redis-sentinel "$d/sentinel.conf"
  wait_for 10 "sentinel on $port" ping_ok "$port"
  SERVERS+=("$(server_pid "$port")")
  SPID[$i]="pid:${SERVERS[-1]}" # what a script's record names its Sentinel by
done

# field PORT NAME: a field of SENTINEL MASTER pod1 on the sentinel at PORT.
field() {
  redis-cli -h 127.0.0.1 -p "$1" sentinel master "$POD" 2>/dev/null | paste - - | awk -F'\t' -v k="$2" '$1 == k { print $2 }'
}
ready() {
  local s
  for s in $S1 $S2 $S3; do
    [ "$(field "$s" num-other-sentinels)" = 2 ] && [ "$(field "$s" num-slaves)" = 2 ] \
      && [ "$(field "$s" flags)" = master ] || return 1
  done
}
wait_for 30 "the sentinels to find the replicas and each other" ready
say "   master 127.0.0.1:$P1, replicas :$P2 :$P3; sentinels s1 :$S1, s2 :$S2, s3 :$S3 (quorum 2,"
say "   down-after 1000 ms); metrics store 127.0.0.1:$STORE; up in $(elapsed "$TS") s"

if [ "$WATCH" = 1 ]; then
  say "== eventilator watch (no scripts in any sentinel.conf; seed s1, discovers s2 and s3)"
  mkdir -p "$W/watch"
  start "$W/watch" env EVENTILATOR_CONF="$W/eventilator.conf" "$BIN/eventilator" watch
  subscribed() { [ "$(grep -c 'connected and subscribed' "$W/eventilator.log" 2>/dev/null)" -ge 3 ]; }
  wait_for 20 "the watcher to subscribe to all three sentinels" subscribed
  grep -h -e 'watch: sentinel' "$W/eventilator.log" | sed 's/^[^ ]* [^ ]*: info: /   /'
fi

# ---------------------------------------------------------------- the failure
MASTER_PID=$(server_pid "$P1")
KILL_AT=$(date +%s.%N)
kill -KILL "$MASTER_PID"
say "== killed the master 127.0.0.1:$P1 (SIGKILL, pid $MASTER_PID) at $(date -d "@$KILL_AT" +%T.%3N)"

failed_over() {
  local s p
  for s in $S1 $S2 $S3; do
    p=$(field "$s" port)
    [ -n "$p" ] && [ "$p" != "$P1" ] && [ "$(field "$s" flags)" = master ] || return 1
  done
}
wait_for 40 "the failover" failed_over
NEW=$(field "$S1" port)
say "   failover over on all three sentinels $(elapsed "$KILL_AT") s after the kill: new master 127.0.0.1:$NEW"

# Settle: the old master, now listed as a replica, goes +sdown on every
# sentinel; then Sentinel has nothing more to run.
old_sdown_everywhere() {
  local i
  for i in 1 2 3; do grep -q "+sdown slave 127.0.0.1:$P1 " "$W/sentinel-$i/sentinel.log" || return 1; done
}
no_pending() {
  local s
  for s in $S1 $S2 $S3; do [ -z "$(redis-cli -h 127.0.0.1 -p "$s" sentinel pending-scripts)" ] || return 1; done
}
wait_for 20 "the old master's +sdown on every sentinel" old_sdown_everywhere
wait_for 30 "Sentinel's script queue to drain" no_pending
sleep 0.3
if [ "$WATCH" = 1 ]; then
  sleep 1 # the last runs finish
  say ""
  say "== what eventilator watch ran: eventilator history, every event once, by the Sentinel that reported"
  say "   it first (NOTICE-level ones too, +slave, +slave-reconf-*, ...: a script never sees those)"
  EVENTILATOR_CONF="$W/eventilator.conf" "$BIN/eventilator" history | sed 's/^./  &/'
  say "   what the watcher said after the kill:"
  python3 - "$KILL_AT" "$W/eventilator.log" <<'PY'
import datetime, re, sys
kill, path = float(sys.argv[1]), sys.argv[2]
line_re = re.compile(r"^(\S+) \S+?\[(\d+)\]: (\w+): watch: (.*)$")
said = 0
for line in open(path, encoding="utf-8", errors="replace"):
    m = line_re.match(line.rstrip("\n"))
    if m and ("sentinel" in m.group(4) or "synthetic" in m.group(4) or "queue" in m.group(4)):
        t = datetime.datetime.fromisoformat(m.group(1)).timestamp()
        if t >= kill:
            print(f"  {t - kill:+6.2f}s  watcher: {m.group(4)}")
            said += 1
if not said:
    print("  nothing: every Sentinel stayed subscribed, no queue overflowed")
PY
  say ""
  say "   log: $W/eventilator.log (DEMO_KEEP=1 keeps it). Failover metrics come from the client-reconfig"
  say "   script, which watch mode does not replace: keep reconfigurator wired in for them (docs/watch.md)."
  exit 0
fi

# ---------------------------------------------------------------- what happened
say ""
say "== what eventilator did: eventilator history, from the calls it recorded (docs/history.md)"
say "   time from the failover's first event; Sentinels by pid: s1 ${SPID[1]}, s2 ${SPID[2]}, s3 ${SPID[3]}"
EVENTILATOR_CONF="$W/eventilator.conf" "$BIN/eventilator" history | sed 's/^./  &/'
EVENTILATOR_CONF="$W/eventilator.conf" "$BIN/eventilator" history --html "$W/history.html" 2>/dev/null
say "   the same as a page, a lane per Sentinel: $W/history.html (eventilator history --html)"

say ""
say "== failover metrics read back from the metrics store (redis-cli -p $STORE)"
store() { redis-cli -h 127.0.0.1 -p "$STORE" "$@"; }
hash_line() { store hgetall "$1" | paste -sd' ' | awk '{ for (i = 1; i < NF; i += 2) printf "%s%s=%s", (i > 1 ? "  " : ""), $i, $(i+1); print "" }'; }
show() { printf '  %-44s %s\n' "$1" "$2"; }
show "failovers:$POD:log (ZRANGE, member@time)" "$(store zrange "failovers:$POD:log" 0 -1 | paste -sd' ')"
show "pods-with-failovers" "$(store smembers pods-with-failovers | paste -sd' ')"
show "failovers:aggregated (per window)" "$(hash_line failovers:aggregated)"
show "failovers:success:$POD:counters" "$(hash_line "failovers:success:$POD:counters")"
show "pods-with-warnings" "$(store smembers pods-with-warnings | paste -sd' ')"
for ev in +sdown +odown -odown -sdown; do
  c=$(store hget "sentinel:warnings:$ev:$POD:counters" "$(date +%Y)")
  show "sentinel:warnings:$ev:$POD:counters" "${c:-0} this year"
done
show "sentinel:warnings:aggregated" "$(hash_line sentinel:warnings:aggregated)"
show "keys in the store" "$(store dbsize)"
grep -h -e "-script-error" -e "-script-timeout" "$W"/sentinel-*/sentinel.log | sed 's/^/  sentinel: /' || true
say ""
say "   logs: $W/eventilator-s{1,2,3}.log, $W/sentinel-{1,2,3}/sentinel.log (DEMO_KEEP=1 keeps them)"
say "   every call recorded: $W/calls.jsonl ($(wc -l <"$W/calls.jsonl") lines); replay it: EVENTILATOR_CONF=$W/eventilator.conf build/bin/eventilator test --replay $W/calls.jsonl"
