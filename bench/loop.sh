#!/usr/bin/env bash
# Record and replay, measured (never asserted):
# - what `record` adds to a call: the same call with record off and on,
#   started N times each, interleaved with /bin/true (bench/spawnbench.c);
# - how long `eventilator test --replay` takes for the shared 57-call corpus
#   without --run (the default rules), median of R runs.
#   bash bench/loop.sh [N] [R]        (default N=400, R=21; needs a build in ./build)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-400}
R=${2:-21}
B=${EVENTILATOR_BUILD:-build}
[ -x "$B/bin/eventilator" ] || { cmake -S . -B "$B" >/dev/null && cmake --build "$B" -j"$(nproc)" >/dev/null; }
B=$(cd "$B" && pwd)
CORPUS=${EVENTILATOR_CORPUS:-../shared/sentinel/corpus-failover.jsonl}
W=$(mktemp -d /tmp/eventilator-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
cc -O2 -o "$W/spawnbench" bench/spawnbench.c

mkdir -p "$W/rules" "$W/state"
cp rules/*.lua "$W/rules/"
base="log = { target = \"$W/calls.log\" }
rules_dir = \"$W/rules\"
state_dir = \"$W/state\"
metrics = { enabled = false }"
printf '%s\n' "$base" > "$W/off.conf"
printf '%s\nrecord = "%s/calls.jsonl"\n' "$base" "$W" > "$W/on.conf"
EV=(+sdown "master pod1 127.0.0.1 6379")
"$B/bin/eventilator" --version >/dev/null

echo "== record: $N calls each, interleaved ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
"$W/spawnbench" "$N" "/bin/true" /bin/true \
  ::: "eventilator +sdown, record off" "EVENTILATOR_CONF=$W/off.conf" "$B/bin/eventilator" "${EV[@]}" \
  ::: "eventilator +sdown, record on" "EVENTILATOR_CONF=$W/on.conf" "$B/bin/eventilator" "${EV[@]}"
echo "lines recorded: $(wc -l < "$W/calls.jsonl") (expected $N)"

if command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null; then
  echo
  echo "== record: instructions of one call (callgrind; wall time above is what counts, this is load-free)"
  for c in off on; do
    EVENTILATOR_CONF="$W/$c.conf" valgrind --tool=callgrind --callgrind-out-file="$W/cg.$c" \
      "$B/bin/eventilator" "${EV[@]}" >/dev/null 2>&1
  done
  off=$(callgrind_annotate "$W/cg.off" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  on=$(callgrind_annotate "$W/cg.on" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  rec=$(callgrind_annotate --inclusive=yes "$W/cg.on" | awk '/record.c:evl_record/ && !n++ { gsub(",", "", $1); print $1 }')
  awk -v off="$off" -v on="$on" -v rec="${rec:-0}" 'BEGIN {
    printf "record off %d, on %d instructions (+%.1f%%, the config line included); evl_record itself %d (%.2f%%)\n",
      off, on, (on - off) * 100 / off, rec, rec * 100 / off }'
fi

echo
echo "== replay: $(wc -l < "$CORPUS") corpus calls without --run, default rules, $R runs"
for _ in $(seq "$R"); do
  /usr/bin/time -f "%e %U %S" -o "$W/time" env EVENTILATOR_CONF="$W/off.conf" \
    "$B/bin/eventilator" test --replay "$CORPUS" >/dev/null 2>&1
  cat "$W/time"
done > "$W/times"
med() { sort -n | awk '{ a[NR] = $1 } END { printf "median %.0f ms (min %.0f, max %.0f)", a[int((NR + 1) / 2)], a[1], a[NR] }'; }
echo "wall: $(awk '{ print $1 * 1000 }' "$W/times" | med); CPU user+sys: $(awk '{ print ($2 + $3) * 1000 }' "$W/times" | med)"
if command -v valgrind >/dev/null; then
  EVENTILATOR_CONF="$W/off.conf" valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$W/cg.replay.%p" \
    "$B/bin/eventilator" test --replay "$CORPUS" >/dev/null 2>"$W/cg.replay.err" || true
  awk '/Collected/ { s += $4 } END { printf "instructions, both processes (start-up binary, then the full runtime): %d\n", s }' \
    "$W/cg.replay.err"
fi
