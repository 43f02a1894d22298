#!/usr/bin/env bash
# Start-up speed and memory, measured (never asserted): every figure the
# issues name, in one run, each command started N times interleaved with
# /bin/true so that machine load hits all of them alike.
#   bash bench/run.sh [N]        (default N=300; needs a build in ./build)
# EVENTILATOR_OLD=DIR adds an earlier version beside it, in the same run: DIR is
# that version's source tree (`git archive REV | tar -x -C DIR`), built in
# DIR/build, and its own default rules (DIR/rules) are what it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-300}
B=${EVENTILATOR_BUILD:-build}
[ -x "$B/bin/eventilator" ] || { cmake -S . -B "$B" >/dev/null && cmake --build "$B" -j"$(nproc)" >/dev/null; }
B=$(cd "$B" && pwd)
W=$(mktemp -d /tmp/eventilator-bench.XXXXXX)
cleanup() { [ -n "${RPID:-}" ] && kill "$RPID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
cc -O2 -o "$W/spawnbench" bench/spawnbench.c
# the failover record's network part alone (a floor: connect, one MULTI/EXEC), static like eventilator
cc -O2 -static -o "$W/roundtrip" bench/roundtrip.c 2>/dev/null || cc -O2 -o "$W/roundtrip" bench/roundtrip.c
# the start-up of any static glibc program (its CPU feature probe runs 43 cpuid
# instructions, each a trip to the hypervisor on a VM): the floor of every call
printf 'int main(void) { return 0; }\n' | cc -O2 -static -x c -o "$W/nop" - 2>/dev/null ||
  printf 'int main(void) { return 0; }\n' | cc -O2 -x c -o "$W/nop" -

# A private redis-server on a spare loopback port, for the rules that use one.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
timeout 900 redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" >/dev/null 2>&1 &
RPID=$!
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# 1. the shipped default rules, logging to a file
mkdir -p "$W/default" "$W/redis1" "$W/pipe"
cp rules/*.lua "$W/default/"
mkdir -p "$W/state"
printf 'log = { target = "%s/default.log" }\nrules_dir = "%s/default"\nredis = { port = %s }\nstate_dir = "%s/state"\n' "$W" "$W" "$PORT" "$W" > "$W/default.conf"
# 2. a rule doing one redis:call
cat > "$W/redis1/00-one-call.lua" <<'LUA'
on("+sdown", function(ev)
  local c, err = redis.connect()
  if not c then return nil, err end
  local ok, cerr = c:call("INCR", "bench:" .. ev.pod)
  c:close()
  return ok, cerr
end)
LUA
printf 'log = { target = "%s/redis1.log" }\nrules_dir = "%s/redis1"\nredis = { port = %s }\nstate_dir = "%s/state"\n' "$W" "$W" "$PORT" "$W" > "$W/redis1.conf"
# 3. 10 000 commands in one pipeline
cat > "$W/pipe/00-pipeline.lua" <<'LUA'
on("+sdown", function()
  local c, err = redis.connect()
  if not c then return nil, err end
  local cmds = {}
  for i = 1, 10000 do cmds[i] = { "SET", "bench:pipe:" .. i, i } end
  local replies, perr = c:pipeline(cmds)
  c:close()
  if not replies then return nil, perr end
  if replies.n ~= 10000 then return nil, "short reply" end
  return true
end)
LUA
printf 'log = { target = "%s/pipe.log" }\nrules_dir = "%s/pipe"\nredis = { port = %s }\n' "$W" "$W" "$PORT" > "$W/pipe.conf"

# 4. one file, an http handler for +odown and a redis handler for +sdown: an +sdown
#    call runs in the start-up binary (the handover is decided per handler)
mkdir -p "$W/mixed"
cat > "$W/mixed/00-mixed.lua" <<'LUA'
on("+odown", function(ev)
  return http.request{ method = "POST", url = "http://127.0.0.1:1/odown", body = ev.text }
end)
on("+sdown", function(ev)
  local c, err = redis.connect()
  if not c then return nil, err end
  local ok, cerr = c:call("INCR", "bench:mixed:" .. ev.pod)
  c:close()
  return ok, cerr
end)
LUA
printf 'log = { target = "%s/mixed.log" }\nrules_dir = "%s/mixed"\nredis = { port = %s }\nstate_dir = "%s/state"\n' "$W" "$W" "$PORT" "$W" > "$W/mixed.conf"

# 5. the same binary with Lua's plain allocator (no memory accounting), built aside
P=${EVENTILATOR_PLAIN_BUILD:-build-plain-alloc}
[ -f "$P/CMakeCache.txt" ] ||
  cmake -S . -B "$P" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS=-DEVL_PLAIN_ALLOC >/dev/null
cmake --build "$P" --target eventilator -j"$(nproc)" >/dev/null
P=$(cd "$P" && pwd)

# 6. the same binary with a clock read at the end of each phase of a call (src/core/phases.h), built aside
F=${EVENTILATOR_PHASES_BUILD:-build-phases}
[ -f "$F/CMakeCache.txt" ] ||
  cmake -S . -B "$F" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS=-DEVL_PHASES >/dev/null
cmake --build "$F" --target eventilator -j"$(nproc)" >/dev/null
F=$(cd "$F" && pwd)

# 7. an earlier version, with the default rules it shipped (EVENTILATOR_OLD)
O=${EVENTILATOR_OLD:-}
if [ -n "$O" ]; then
  [ -x "$O/build/bin/eventilator" ] || { echo "EVENTILATOR_OLD=$O: no $O/build/bin/eventilator" >&2; exit 2; }
  O=$(cd "$O" && pwd)
  OREV=$(basename "$O")
  mkdir -p "$W/old-default" "$W/old-state"
  cp "$O"/rules/*.lua "$W/old-default/"
  printf 'log = { target = "%s/old.log" }\nrules_dir = "%s/old-default"\nredis = { port = %s }\nstate_dir = "%s/old-state"\n' "$W" "$W" "$PORT" "$W" > "$W/old.conf"
  # this binary with that version's rules: what start-up costs apart from the rules added since
  mkdir -p "$W/this-state"
  printf 'log = { target = "%s/this-old-rules.log" }\nrules_dir = "%s/old-default"\nredis = { port = %s }\nstate_dir = "%s/this-state"\n' "$W" "$W" "$PORT" "$W" > "$W/this-old-rules.conf"
fi

EV=(+sdown "master pod1 127.0.0.1 6379")
RC=(pod1 leader start 10.0.0.1 6379 10.0.0.2 6380)
mk() { # label, conf, argv0, args...
  local label=$1 conf=$2; shift 2
  printf '%s\n' ":::" "$label" "EVENTILATOR_CONF=$conf" "$@"
}
mapfile -t cmds < <(
  mk "eventilator +sdown (default rules)" "$W/default.conf" "$B/bin/eventilator" "${EV[@]}"
  mk "one redis:call from a rule" "$W/redis1.conf" "$B/bin/eventilator" "${EV[@]}"
  mk "reconfigurator leader (metrics)" "$W/default.conf" "$B/bin/reconfigurator" "${RC[@]}"
  printf '%s\n' ":::" "floor: a static binary that does nothing" "$W/nop"
  printf '%s\n' ":::" "floor: bare MULTI/EXEC round trip" "$W/roundtrip" "$PORT"
  mk "mixed http+redis file, +sdown" "$W/mixed.conf" "$B/bin/eventilator" "${EV[@]}"
  mk "default rules, no memory accounting" "$W/default.conf" "$P/bin/eventilator" "${EV[@]}"
  if [ -n "$O" ]; then
    mk "$OREV: +sdown (its default rules)" "$W/old.conf" "$O/build/bin/eventilator" "${EV[@]}"
    mk "$OREV: reconfigurator leader" "$W/old.conf" "$O/build/bin/reconfigurator" "${RC[@]}"
    mk "this binary, $OREV's default rules" "$W/this-old-rules.conf" "$B/bin/eventilator" "${EV[@]}"
  fi
)
echo "== start-up: $N runs each, interleaved ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
"$W/spawnbench" "$N" "/bin/true" /bin/true "${cmds[@]}"
# Apart: its ten processes a run leave work behind (exits, redis-server's
# connections) that would land on whichever call ran next.
echo
echo "== the same failover record as a shell script, $((N / 10)) runs"
"$W/spawnbench" "$((N / 10))" "/bin/true" /bin/true ::: "reconfigurator leader (metrics)" "EVENTILATOR_CONF=$W/default.conf" "$B/bin/reconfigurator" "${RC[@]}" \
  ::: "shell script + redis-cli (same writes)" "REDIS_PORT=$PORT" /bin/sh "$PWD/bench/failover.sh" "${RC[@]}"

echo
echo "== 10 000 commands in one pipeline, inside a rule (handler time, 5 runs)"
for _ in 1 2 3 4 5; do
  EVENTILATOR_CONF="$W/pipe.conf" "$B/bin/eventilator" test --run "${EV[@]}" 2>/dev/null | grep -E '^  ok|FAILED' | sed 's/^ */  /'
done
echo
echo "== where a call's time goes: median microseconds per phase, $((N / 2)) calls each in a row"
mkdir -p "$W/phases-state"
sed "s#$W/state#$W/phases-state#" "$W/default.conf" > "$W/phases.conf"
for _ in $(seq "$((N / 2))"); do
  EVENTILATOR_PHASES="$W/phases-sdown" EVENTILATOR_CONF="$W/phases.conf" "$F/bin/eventilator" "${EV[@]}"
  EVENTILATOR_PHASES="$W/phases-failover" EVENTILATOR_CONF="$W/phases.conf" "$F/bin/reconfigurator" "${RC[@]}"
done
python3 - "$W/phases-sdown" "$W/phases-failover" <<'PY'
import statistics, sys
runs = [[dict(kv.split("=") for kv in line.split()) for line in open(f)][1:] for f in sys.argv[1:]]
names = list(runs[0][0])
print("%-16s %10s %10s" % ("phase", "+sdown", "failover"))
for n in names + ["total"]:
    col = lambda r: [sum(map(float, x.values())) if n == "total" else float(x[n]) for x in r]
    print("%-16s %10.1f %10.1f" % (n, statistics.median(col(runs[0])), statistics.median(col(runs[1]))))
PY
echo
echo "== memory accounting: instructions of one default-rules call (callgrind, 3 runs each)"
ir() { # binary [conf] -> instructions of one call
  EVENTILATOR_CONF="${2:-$W/default.conf}" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" "${EV[@]}" 2>&1 |
    sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
if command -v valgrind >/dev/null; then
  for _ in 1 2 3; do
    with=$(ir "$B/bin/eventilator") without=$(ir "$P/bin/eventilator")
    echo "with accounting $with, without $without: $(awk -v a="$with" -v b="$without" 'BEGIN { printf "%+.2f", (a - b) * 100 / b }') %"
  done
  if [ -n "$O" ]; then
    echo "$OREV with its default rules: $(ir "$O/build/bin/eventilator" "$W/old.conf");" \
      "this binary with them: $(ir "$B/bin/eventilator" "$W/this-old-rules.conf")"
  fi
else
  echo "valgrind not installed: skipped"
fi
echo
echo "== checks"
grep -c 'runtime=full' "$W/mixed.log" | sed 's/^/mixed-file +sdown calls handed to the full runtime (want 0): /' || true
grep -c 'pod=pod1 handlers=1 failed=0' "$W/default.log" | sed 's/^/default-rule calls logged ok: /'
[ -z "$O" ] || grep -c 'pod=pod1 handlers=1 failed=0' "$W/old.log" | sed "s/^/$OREV default-rule calls logged ok: /"
echo "failovers recorded in the store: $(redis-cli -p "$PORT" hget failovers:aggregated "$(date +%Y)")"
