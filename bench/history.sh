#!/usr/bin/env bash
# `eventilator history` on a 10 000-call recording, measured (never
# asserted; the issue's bar is under 1 s): bench/history_gen.lua writes the
# calls (failovers shaped like the shared corpus's, 8 masters, 3 Sentinels,
# a failed handler and its retry in every fifth), then history runs RUNS
# times over it as one file, and over the same calls split into one file
# per Sentinel host (three --file's, merged by time). Prints the median wall
# and CPU time of each.
#   bash bench/history.sh [N] [RUNS]     (default N=10000 calls, RUNS=9; needs ./build)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
RUNS=${2:-9}
B=${EVENTILATOR_BUILD:-build}
[ -x "$B/bin/eventilator" ] || { cmake -S . -B "$B" >/dev/null && cmake --build "$B" -j"$(nproc)" >/dev/null; }
B=$(cd "$B" && pwd)
W=$(mktemp -d /tmp/eventilator-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT

lua5.4 bench/history_gen.lua "$W/calls.jsonl" "$N"
for s in 4101 4102 4103; do grep "\"sentinel\":\"pid:$s\"" "$W/calls.jsonl" >"$W/host$s.jsonl"; done
printf 'state_dir = "%s/state"\nrules_dir = "%s/rules"\nlog = { target = "%s/log" }\n' "$W" "$W" "$W" >"$W/eventilator.conf"
export EVENTILATOR_CONF="$W/eventilator.conf"

# run NAME ARGS...: RUNS timed runs; prints the medians
run() {
  local name=$1; shift
  "$B/bin/eventilator" history "$@" >"$W/out" 2>"$W/err" || [ $? = 1 ] # once untimed: the page cache; 1: --failed found some
  local summary
  summary=$(tail -1 "$W/out")
  [ -s "$W/out" ] || summary=$(tail -1 "$W/err")
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %U %S" -a -o "$W/times.$name" "$B/bin/eventilator" history "$@" >/dev/null 2>&1 || true
  done
  python3 - "$W/times.$name" "$name" "$summary" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l[:1].isdigit()]
wall = statistics.median(r[0] for r in rows)
cpu = statistics.median(r[1] + r[2] for r in rows)
print("%-34s median %.2f s wall, %.2f s CPU over %d runs   (%s)" % (sys.argv[2], wall, cpu, len(rows), sys.argv[3]))
PY
}

echo "history over $(wc -l <"$W/calls.jsonl") recorded calls ($(du -h "$W/calls.jsonl" | cut -f1)), load $(cut -d' ' -f1-3 /proc/loadavg)"
run "one file" --file "$W/calls.jsonl"
run "one file, --json" --file "$W/calls.jsonl" --json
run "three hosts' files" --file "$W/host4101.jsonl" --file "$W/host4102.jsonl" --file "$W/host4103.jsonl"
run "one file, --failed" --file "$W/calls.jsonl" --failed
run "one file, --html" --file "$W/calls.jsonl" --html "$W/page.html"
