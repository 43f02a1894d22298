#!/usr/bin/env bash
# Runs every test: installs the Debian packages, builds twice (release, and
# ASan+UBSan), and runs CTest in both (C unit tests, busted specs against
# private redis-server / redis-sentinel and local stand-ins), then luacheck,
# then each libFuzzer harness for a short fixed time (clang, build-fuzz/), then the Debian
# package (scripts/package-test.sh: as root only).
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022 # the rule and config files the specs write must pass strict_modes (docs/rules.md)
# Debian's own tools first: the specs start Debian's python3, redis-server, haproxy...; a
# python3 shim ahead of /usr/bin on PATH would start slowly under the sanitizer's preload.
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
bash scripts/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)

echo "== build: release"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
echo "== build: asan+ubsan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEVENTILATOR_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"

echo "== luacheck"
luacheck --quiet --config .luacheckrc lua rules examples spec bench conf

echo "== rule specs (the shipped rules' own, as a user runs them)"
EVENTILATOR_LUA_DIR="$PWD/lua" build/bin/eventilator test --spec spec/rules
echo "== tests: release"
(cd build && ctest --output-on-failure)
echo "== tests: asan+ubsan"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure)
echo "== fuzz: each harness 20 s (longer runs: docs/fuzzing.md)"
bash scripts/fuzz.sh 20

echo "== package"
bash scripts/package-test.sh
