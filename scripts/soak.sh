#!/usr/bin/env bash
# Runs the specs that start several processes (real Sentinels, redis-server,
# HAProxy, Alertmanager, the stand-ins) N times each, with a CPU hog on every
# core: the load of a shared CI machine, under which a spec that races fails.
# Prints a pass/fail count per spec and exits 1 on any failure; the output of
# every failed run is kept, and its folder printed.
#
#   bash scripts/soak.sh [N] [SPEC...]     N: runs per spec (10); SPEC: names such
#                                          as watch_spec (default: the list below)
#   SOAK_BUILD=build-asan bash scripts/soak.sh 3   the sanitizer build instead of build/
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-10}
shift $(($# > 0 ? 1 : 0))
build=${SOAK_BUILD:-build}

if [ $# -gt 0 ]; then
  specs=("$@")
else
  # the ones named in issue 18, then the others that start servers of their own;
  # spec/watch*_spec.lua picks up every watch spec, new ones included
  specs=(retry_spec trust_spec e2e_spec)
  for f in spec/watch*_spec.lua; do specs+=("$(basename "$f" .lua)"); done
  specs+=(docker_spec sentinels_spec haproxy_failover_spec receivers_e2e_spec loop_failover_spec
    sentinels_doctor_spec installed_spec alertmanager_spec haproxy_spec dedupe_spec redis_spec tcp_spec http_spec
    dedupe_failover_spec sentinels_hostile_spec silence_e2e_spec history_spec flap_spec
    cluster_spec cluster_order_spec cluster_failover_spec)
fi

# Built if needed: configured once, then brought up to date (a no-op when it is).
if [ ! -f "$build/CMakeCache.txt" ]; then
  case "$build" in
    *asan*) cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DEVENTILATOR_SANITIZE=ON >/dev/null ;;
    *) cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null ;;
  esac
fi
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" >/dev/null

# The same runtime options as scripts/test.sh gives the sanitizer build.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

logs=${SOAK_DIR:-$(mktemp -d /tmp/eventilator-soak.XXXXXX)}
mkdir -p "$logs"

# One busy loop per core, for as long as the soak runs (and not a moment
# longer: killed on any exit, Ctrl-C included).
hogs=()
stop_hogs() {
  if [ ${#hogs[@]} -gt 0 ]; then kill "${hogs[@]}" 2>/dev/null || true; fi
}
trap stop_hogs EXIT
trap 'exit 130' INT TERM
for _ in $(seq "$(nproc 2>/dev/null || echo 2)"); do
  yes >/dev/null &
  hogs+=($!)
done

declare -A pass fail
for s in "${specs[@]}"; do pass[$s]=0 fail[$s]=0; done

# Round after round, each spec once a round: every spec sees the hog and
# the others' leftovers alike.
for round in $(seq "$n"); do
  for s in "${specs[@]}"; do
    log="$logs/$s.$round.log"
    start=$SECONDS
    # --no-tests=error: a misspelt spec name is a failure, not a pass
    if (cd "$build" && ctest -R "^${s}\$" --no-tests=error --output-on-failure) >"$log" 2>&1; then
      pass[$s]=$((pass[$s] + 1))
      rm -f "$log"
      echo "[$round/$n] $s: pass ($((SECONDS - start)) s)"
    else
      fail[$s]=$((fail[$s] + 1))
      echo "[$round/$n] $s: FAIL ($((SECONDS - start)) s): $log"
    fi
  done
done

echo "== soak: $n run(s) per spec, a CPU hog on each of $(nproc 2>/dev/null || echo 2) core(s), build $build"
failed=0
for s in "${specs[@]}"; do
  printf '%-28s %3d pass %3d fail\n' "$s" "${pass[$s]}" "${fail[$s]}"
  failed=$((failed + fail[$s]))
done
if [ "$failed" -gt 0 ]; then
  echo "== $failed failed run(s); their output: $logs"
  exit 1
fi
rmdir "$logs" 2>/dev/null || true
echo "== no failures"
