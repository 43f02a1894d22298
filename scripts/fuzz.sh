#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang (build-fuzz/, apart from the gcc
# builds) and runs each for a fixed time: the event parser, the config
# loader (Lua and legacy TOML) and the Redis reply path. docs/fuzzing.md.
#
#   bash scripts/fuzz.sh [seconds per harness, default 20] [harness...]
#
# New interesting inputs stay in build-fuzz/fuzz/corpus/<harness>/, so a
# longer run later starts where this one stopped; a crash leaves its input
# in build-fuzz/fuzz/ (crash-*, leak-*, timeout-*) and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(event config redis_reply)

cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEVENTILATOR_FUZZ=ON -DEVENTILATOR_WERROR=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc 2>/dev/null || echo 2)" --target fuzzers >/dev/null

cd build-fuzz/fuzz
for h in "${harnesses[@]}"; do
  mkdir -p "corpus/$h"
  echo "== fuzz: $h for ${secs} s"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak or a cap that failed
  ./"fuzz_$h" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
    "corpus/$h" "seeds/$h" 2>"$h.log" || { tail -40 "$h.log"; echo "fuzz: $h FAILED"; exit 1; }
  grep -E '^(stat::number_of_executed_units|Done)' "$h.log" || true
done
