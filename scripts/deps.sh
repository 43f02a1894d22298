#!/usr/bin/env bash
# Installs what eventilator needs to build and test on Debian 12, from
# Debian's own packages. Runs as root (or through sudo when there is one).
set -euo pipefail
pkgs=(
  build-essential cmake pkg-config
  liblua5.4-dev lua5.4 lua-cjson libhiredis-dev libcurl4-openssl-dev libssl-dev
  lua-busted lua-check
  redis-server redis-sentinel redis-tools prometheus-alertmanager haproxy
  # watch.listen's HTTP server, and the Prometheus that scrapes it (spec/watch_prometheus_spec.lua)
  libmicrohttpd-dev prometheus
  python3 ca-certificates procps curl
  clang libfuzzer-14-dev bubblewrap
  # history --html is checked in a real browser (spec/history_spec.lua)
  chromium
  # the Debian package and its test (scripts/package.sh, scripts/package-test.sh)
  debhelper dpkg-dev fakeroot lintian scdoc man-db strace systemd mount
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${pkgs[@]}"
# The packaged services are not wanted running: tests start private ones.
for svc in redis-server redis-sentinel haproxy prometheus; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
# nor Prometheus at the next boot (it would hold :9090 and scrape itself)
$SUDO systemctl disable prometheus >/dev/null 2>&1 || $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
