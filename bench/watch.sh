#!/usr/bin/env bash
# Watch mode, measured (never asserted), against a real redis-server whose
# channels the watcher subscribes to as if it were a Sentinel:
#   1. intake with no handler matched: redis-benchmark PUBLISHes N events
#      (+sdown, a different master each time) on the real channel; the rate
#      is the watcher's own count over the time from its first to its last
#      message (so it is capped by what redis and the publisher deliver);
#   2. memory: the watcher's RSS after 10 000 and after 1 000 000 events;
#   3. latency from PUBLISH to handler start at 1 000 events/s with a
#      matching handler: the payload carries the publish time, the handler
#      writes ev.time (taken when the run hands ev to its handlers) minus it.
#   bash bench/watch.sh [N]      (default N=1000000; RATE=1000 for phase 3; REUSE=1000 is
#                                 watch.reuse, 1 for a fork per event; needs ./build)
# The failover comparison with script mode is bench/watch_failover.lua.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
B=${EVENTILATOR_BUILD:-build}
[ -x "$B/bin/eventilator" ] || { cmake -S . -B "$B" >/dev/null && cmake --build "$B" -j"$(nproc)" >/dev/null; }
B=$(cd "$B" && pwd)
W=$(mktemp -d /tmp/eventilator-bench.XXXXXX)
cleanup() {
  [ -n "${WPID:-}" ] && kill "$WPID" 2>/dev/null
  [ -n "${RPID:-}" ] && kill "$RPID" 2>/dev/null
  sleep 0.2
  rm -rf "$W"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# no output-buffer limit for subscribers: a slow watcher is measured, not disconnected
timeout 900 redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" \
  --client-output-buffer-limit "pubsub 0 0 0" >/dev/null 2>&1 &
RPID=$!
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

mkdir -p "$W/rules" "$W/state"
cat > "$W/eventilator.conf" <<EOF
log = { target = "$W/watch.log", level = "info" }
rules_dir = "$W/rules"
state_dir = "$W/state"
watch = { sentinels = { "127.0.0.1:$PORT" }, concurrency = 4, reuse = ${REUSE:-1000} }
EOF
cat > "$W/rules/10-bench.lua" <<LUA
-- matches only +bench: the +sdown flood of the intake phase matches nothing
on("+bench", function(ev)
  local f = assert(io.open("$W/latency", "a"))
  f:write(string.format("%.6f\n", ev.time - tonumber(ev.text)))
  f:close()
  return true
end)
LUA

# not under timeout(1): the signals below must reach the watcher itself
EVENTILATOR_CONF="$W/eventilator.conf" "$B/bin/eventilator" watch &
WPID=$!
for _ in $(seq 100); do grep -q "connected and subscribed" "$W/watch.log" 2>/dev/null && break; sleep 0.1; done

heard() { # ask for a stats line; print the last heard= count
  kill -USR1 "$WPID"
  sleep 0.2
  { grep -o 'stats heard=[0-9]*' "$W/watch.log" || true; } | tail -1 | cut -d= -f2
}
wait_heard() { # until the watcher has heard $1 events
  local n
  for _ in $(seq 3000); do
    n=$(heard)
    [ "${n:-0}" -ge "$1" ] && return 0
  done
  echo "bench: the watcher heard ${n:-0} of $1 events" >&2
  return 1
}
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$WPID/status"; }
cpu() { awk '{ print $14 + $15 }' "/proc/$WPID/stat"; } # utime + stime, clock ticks
ccpu() { # the runs' utime + stime: the reaped ones (the watcher's cutime + cstime) and the live runners
  { awk '{ print $16 + $17 }' "/proc/$WPID/stat"
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | sed 's/^.*) //' | awk -v p="$WPID" '$2 == p { print $12 + $13 }'
  } | awk '{ s += $1 } END { print s }'
}
now() { date +%s.%N; }
publish() { # publish $1 +sdown events, a different master each time
  redis-benchmark -h 127.0.0.1 -p "$PORT" -n "$1" -c 2 -P 200 -r 1000000 -q \
    publish +sdown "master m__rand_int__ 127.0.0.1 6379" >/dev/null
}

echo "== intake, no handler matched (real redis-server channel, PUBLISH by redis-benchmark)"
publish 10000
wait_heard 10000
R1=$(rss) C1=$(cpu) T1=$(now)
publish $((N - 10000))
wait_heard "$N"
R2=$(rss) C2=$(cpu) T2=$(now)
grep 'stats heard' "$W/watch.log" | tail -1 | sed 's/^.*watch: /   /'
python3 - "$((N - 10000))" "$C1" "$C2" "$T1" "$T2" "$(getconf CLK_TCK)" <<'PY'
import sys
n, c1, c2, t1, t2, hz = int(sys.argv[1]), *map(float, sys.argv[2:])
cpu = (c2 - c1) / hz
print("   %d events: %.2f s of the watcher's CPU (%s events per CPU-second), %.2f s wall (%.0f events/s,"
      " publisher and redis included)" % (n, cpu, "%.0f" % (n / cpu) if cpu > 0 else "n/a", t2 - t1, n / (t2 - t1)))
PY
echo "   RSS after 10 000 events: ${R1} kB; after $N: ${R2} kB ($(python3 -c "print('%+.1f%%' % (100.0 * ($R2 - $R1) / $R1))"))"

RATE=${RATE:-1000}
COUNT=$((RATE * 10))
echo "== latency, PUBLISH to handler start, $RATE events/s for 10 s, one matching handler, reuse ${REUSE:-1000} (load: $(cut -d' ' -f1 /proc/loadavg))"
C3=$(cpu) CC3=$(ccpu)
python3 - "$PORT" "$RATE" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
rate = int(sys.argv[2])
t0 = time.time()
for i in range(rate * 10):
    due = t0 + i / float(rate)
    while time.time() < due:
        time.sleep(max(0.0, due - time.time()) * 0.9)
    now = "%.6f" % time.time()
    s.sendall(b"*3\r\n$7\r\nPUBLISH\r\n$6\r\n+bench\r\n$%d\r\n%s\r\n" % (len(now), now.encode()))
s.settimeout(5)
got = 0
while got < rate * 10:  # one ":N\r\n" reply per PUBLISH
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk.count(b"\r\n")
PY
for _ in $(seq 600); do
  [ "$(wc -l < "$W/latency" 2>/dev/null || echo 0)" -ge "$COUNT" ] && break
  sleep 0.1
done
for _ in $(seq 600); do # every run answered or reaped: its CPU is counted
  kill -USR1 "$WPID"; sleep 0.2
  grep 'stats heard' "$W/watch.log" | tail -1 | grep -q 'waiting=0 running=0' && break
done
python3 - "$COUNT" "$C3" "$(cpu)" "$CC3" "$(ccpu)" "$(getconf CLK_TCK)" <<'PY'
import sys
n, c1, c2, k1, k2, hz = int(sys.argv[1]), *map(float, sys.argv[2:])
print("   CPU per event: %.2f ms in the watcher (intake, forks, answers), %.2f ms in the runners"
      % ((c2 - c1) / hz * 1e3 / n, (k2 - k1) / hz * 1e3 / n))
PY
python3 - "$W/latency" <<'PY'
import sys
v = sorted(float(l) * 1000 for l in open(sys.argv[1]) if l.strip())
if not v:
    sys.exit("bench: no handler ran")
pick = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print("   %d handler starts: median %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms"
      % (len(v), pick(0.5), pick(0.9), pick(0.99), v[-1]))
PY
kill -USR1 "$WPID"; sleep 0.2
grep 'stats heard' "$W/watch.log" | tail -1 | sed 's/^.*watch: /   /'
# the machine's own speed right now: a bare fork+exec+wait of /bin/true
python3 - <<'PY'
import subprocess, time
v = []
for _ in range(100):
    t = time.perf_counter()
    subprocess.run(["/bin/true"])
    v.append((time.perf_counter() - t) * 1000)
v.sort()
print("   for scale: /bin/true fork+exec+wait median %.2f ms, p99 %.2f ms right now" % (v[50], v[98]))
PY
