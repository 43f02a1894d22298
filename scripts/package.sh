#!/usr/bin/env bash
# Builds the Debian package: dist/eventilator_<version>_<arch>.deb, from the
# debian/ source package with dpkg-buildpackage -b, in a copy of the tree (so
# nothing is written beside the checkout), then runs lintian on it: errors
# fail the build; the warnings accepted are listed, with why, in
# debian/eventilator.lintian-overrides. Installs its build dependencies
# first (scripts/deps.sh, then whatever debian/control adds).
#
#   bash scripts/package.sh          # PACKAGE_KEEP=1 keeps the build folder
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash scripts/deps.sh

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
missing=$(dpkg-checkbuilddeps 2>&1 | sed -n 's/.*Unmet build dependencies: //p' | sed 's/([^)]*)//g' || true)
if [ -n "$missing" ]; then
  echo "package: installing build dependencies: $missing"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi

version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
cmake_version=$(sed -n 's/^project(eventilator VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
if [ "${version%%-*}" != "$cmake_version" ]; then
  echo "package: debian/changelog says $version, CMakeLists.txt says $cmake_version" >&2
  exit 1
fi

work=$(mktemp -d /tmp/eventilator-package.XXXXXX)
cleanup() { [ -n "${PACKAGE_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
src="$work/eventilator-$version"
mkdir -p "$src"
tar -c --exclude=./.git --exclude='./build*' --exclude=./dist --exclude='./_*' . | tar -x -C "$src"

echo "== dpkg-buildpackage ($work)"
# both cores; the tests run from scripts/test.sh, not in the package build
export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-parallel=$(nproc 2>/dev/null || echo 2) nocheck}"
(cd "$src" && dpkg-buildpackage -b -us -uc) >"$work/build.log" 2>&1 || {
  tail -40 "$work/build.log" >&2
  echo "package: dpkg-buildpackage failed (PACKAGE_KEEP=1 keeps $work/build.log)" >&2
  exit 1
}
deb="eventilator_${version}_${arch}.deb"
mkdir -p dist
cp "$work/$deb" "dist/$deb"

echo "== lintian"
lintian --fail-on error --info --display-info "dist/$deb" || {
  echo "package: lintian reports errors" >&2
  exit 1
}
echo "package: $ROOT/dist/$deb"
