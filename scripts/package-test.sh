#!/usr/bin/env bash
# Tests the Debian package on this machine, as root: builds it
# (scripts/package.sh), installs it with dpkg -i, checks what it installed,
# runs a loopback failover through it under the redis-sentinel unit's
# sandbox (spec/package/sandbox_spec.lua), checks that a call there without
# a syslog daemon logs to /var/log/redis/eventilator.log, upgrades it (twice:
# the next version with the same files, then one that changes a rule) over an edited
# and a deleted rule file, removes and purges it with a sentinel.conf that still
# names its scripts (each must print the lines that must go), and checks that only what policy keeps is
# left after a remove and nothing after a purge. It leaves the machine as it
# found it: the package is purged at the end (also when a step fails), and a
# state folder and a log file that were there before are put back.
#
#   bash scripts/package-test.sh     # skipped (exit 0) when not root
#   PACKAGE_TEST_DEB=dist/eventilator_0.1.0_amd64.deb bash scripts/package-test.sh   # test that .deb, no build
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PKG=eventilator
STATE=/var/lib/redis/eventilator
MARK=/run/eventilator-package-test   # "this test installed the package"
LOG=/var/log/redis/eventilator.log   # the log's fallback file (no syslog daemon)
SCONF=/etc/redis/sentinel-eventilator-pkgtest.conf   # a sentinel.conf naming the scripts

say() { printf '%s\n' "$*"; }
stage() { say "== $* (at ${SECONDS} s)"; }
die() { say "package-test: FAILED: $*" >&2; exit 1; }
check() { local what=$1; shift; if "$@"; then say "   ok: $what"; else die "$what"; fi; }
status() { dpkg-query -W -f='${db:Status-Abbrev}' "$PKG" 2>/dev/null | tr -d ' ' || true; }

if [ "$(id -u)" -ne 0 ]; then
  say "package-test: skipped: installing a package needs root"
  exit 0
fi

# A run that was killed leaves the package installed and the mark: finish it.
if [ -n "$(status)" ] && [ "$(status)" != "un" ]; then
  if [ -e "$MARK" ]; then
    dpkg --purge "$PKG" >/dev/null
  else
    die "the $PKG package is installed here and not by this test; remove it first"
  fi
fi

WORK=$(mktemp -d /tmp/eventilator-pkgtest.XXXXXX)
SAVED=""
LOGSAVED=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  rm -f "$SCONF"
  if [ -n "$(status)" ] && [ "$(status)" != "un" ]; then dpkg --purge "$PKG" >/dev/null 2>&1 || true; fi
  rm -f "$MARK"
  if [ -n "$SAVED" ] && [ -e "$SAVED" ]; then rm -rf "$STATE"; mv "$SAVED" "$STATE"; fi
  rm -f "$LOG"
  if [ -n "$LOGSAVED" ] && [ -e "$LOGSAVED" ]; then mv "$LOGSAVED" "$LOG"; fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

# What the package may touch, as a listing (paths, owners, modes, link targets).
snapshot() {
  {
    getent passwd redis || true
    for p in /etc/redis /var/lib/redis /usr/lib/eventilator /usr/share/eventilator /usr/share/doc/$PKG \
             /usr/bin/eventilator /lib/systemd/system/eventilator-watch.service /etc/systemd/system \
             /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked; do
      [ -e "$p" ] || [ -L "$p" ] || continue
      find "$p" -not -path "${SAVED:-/nonexistent}*" -printf '%p %u:%g %m %l\n'
    done
    ls /usr/share/man/man1/eventilator* /usr/share/man/man5/eventilator* /usr/share/man/man7/eventilator* 2>/dev/null || true
  } | sort
}

if [ -n "${PACKAGE_TEST_DEB:-}" ]; then
  DEB=$PACKAGE_TEST_DEB
else
  stage "build"
  bash scripts/package.sh
  DEB=$(ls -t dist/${PKG}_*.deb | head -1)
fi
VERSION=$(dpkg-deb -f "$DEB" Version)
# a state folder left by a run of a built binary as root: put aside, put back
if [ -e "$STATE" ]; then
  SAVED=$(mktemp -u /var/lib/redis/eventilator.saved.XXXXXX)
  mv "$STATE" "$SAVED"
fi
[ ! -e "$SCONF" ] || die "$SCONF is there already; this test makes and removes it"
# the fallback log, when a host without syslog has one already: put aside, put back
if [ -e "$LOG" ]; then
  LOGSAVED=$(mktemp -u /var/log/redis/eventilator.log.saved.XXXXXX)
  mv "$LOG" "$LOGSAVED"
fi
snapshot >"$WORK/before"
grep -q '^/etc/redis ' "$WORK/before" || die "the snapshot lists nothing"

stage "install $DEB"
touch "$MARK"
dpkg -i "$DEB" >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; die "dpkg -i"; }
check "eventilator --version" bash -c "eventilator --version | grep -q '^eventilator ${VERSION%%-*} '"
for n in eventilator reconfigurator registrator; do
  check "/usr/lib/eventilator/bin/$n" test -x /usr/lib/eventilator/bin/$n
done
check "the full runtime" test -x /usr/lib/eventilator/libexec/eventilator/eventilator-full
check "the C modules" test -f /usr/lib/eventilator/lib/eventilator/eventilator/redis.so
check "the watcher's HTTP server module" test -f /usr/lib/eventilator/lib/eventilator/watch-httpd.so
check "Depends: the module's libmicrohttpd" bash -c "dpkg-deb -f '$DEB' Depends | grep -q 'libmicrohttpd'"
check "/usr/bin/eventilator is a link" test -L /usr/bin/eventilator
check "share/ beside bin/ is /usr/share" test "$(readlink -f /usr/lib/eventilator/share/eventilator)" = /usr/share/eventilator
check "state folder redis:redis 0700" test "$(stat -c '%U:%G %a' $STATE)" = "redis:redis 700"
# as Sentinel's user, with the packaged defaults: no config file, the shipped rules
NRULES=$(ls rules/*.lua | wc -l)
check "check with the packaged defaults" bash -c \
  "setpriv --reuid=redis --regid=redis --clear-groups eventilator check >'$WORK/check.out' 2>&1 \
   && grep -q 'built-in defaults' '$WORK/check.out' && grep -q '^$NRULES rule file(s), 0 failed' '$WORK/check.out'"
check "test prints ev as JSON" bash -c \
  "setpriv --reuid=redis --regid=redis --clear-groups eventilator test +sdown 'master pod1 10.0.0.1 6379' | grep -q '\"name\": \"+sdown\"'"
if grep -qs '^path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg.d/*; then
  # a slim image: dpkg drops every man page it installs; check the package holds them
  for page in man1/eventilator.1 man5/eventilator.conf.5 man7/eventilator-rules.7; do
    check "$page.gz in the package (this dpkg excludes /usr/share/man)" bash -c \
      "dpkg-deb -c '$DEB' | grep ' ./usr/share/man/$page.gz\$' >/dev/null"
  done
else
  for page in "1 eventilator" "5 eventilator.conf" "7 eventilator-rules"; do
    # shellcheck disable=SC2086
    check "man -w $page" man -w $page
  done
fi
check "README.Debian" bash -c "ls /usr/share/doc/$PKG/README.Debian* >/dev/null"
dpkg-query -W -f='${Conffiles}\n' "$PKG" | awk 'NF {print $1}' | sort >"$WORK/conffiles"
# every default rule and config example of the tree, and nothing else
expected=$( (for f in conf/*.example; do echo "/etc/redis/${f#conf/}"; done
             for f in rules/*.lua; do echo "/etc/redis/eventilator.d/${f#rules/}"; done
             echo /etc/logrotate.d/eventilator) | sort | tr '\n' ' ' | sed 's/ $//')
check "conffiles: the default rules, the config examples and the log's rotation" test "$(tr '\n' ' ' <"$WORK/conffiles" | sed 's/ $//')" = "$expected"

stage "eventilator-watch.service"
UNIT=/lib/systemd/system/eventilator-watch.service
check "installed" test -f $UNIT
check "disabled" bash -c "! ls /etc/systemd/system/*.wants/eventilator-watch.service 2>/dev/null | grep -q ."
check "Type=notify with the watchdog" bash -c "grep -qx Type=notify $UNIT && grep -qx NotifyAccess=main $UNIT && grep -q '^WatchdogSec=' $UNIT"
check "systemd-analyze verify" bash -c "systemd-analyze verify $UNIT >'$WORK/verify' 2>&1 && ! grep -q . '$WORK/verify' || { cat '$WORK/verify'; false; }"
check "sandboxed at least as tightly as redis-sentinel.service" /usr/bin/python3 - "$UNIT" /lib/systemd/system/redis-sentinel.service <<'EOF'
import sys
def unit(path):
    """[Service] settings: name -> list of values, "~ x" spelt "~x"."""
    d, section = {}, None
    for line in open(path):
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and line[0] not in "#;" and "=" in line:
            k, v = line.split("=", 1)
            d.setdefault(k, []).append(" ".join(v.replace("~ ", "~").split()))
    return d
watch, sentinel = unit(sys.argv[1]), unit(sys.argv[2])
paths = lambda vals: {p.lstrip("-") for v in vals for p in v.split()}
not_sandbox = ("ExecStart", "Type", "PIDFile", "TimeoutStopSec", "Restart", "RuntimeDirectory",
               "RuntimeDirectoryMode", "LimitNOFILE")
bad = []
for k, vals in sentinel.items():
    if k in not_sandbox or (k == "ReadWriteDirectories" and "ReadWritePaths" in sentinel):
        continue
    if k in ("ReadWritePaths", "ReadWriteDirectories"):
        mine = paths(watch.get("ReadWritePaths", []) + watch.get("ReadWriteDirectories", []))
        theirs = paths(sentinel.get("ReadWritePaths", []) + sentinel.get("ReadWriteDirectories", []))
        if not all(any(m == t or m.startswith(t + "/") for t in theirs) for m in mine):
            bad.append("writable paths wider than Sentinel's: %s" % sorted(mine))
    elif k == "ExecPaths":
        if not paths(watch.get(k, [])) <= paths(vals):
            bad.append("ExecPaths wider than Sentinel's: %s" % watch.get(k))
    elif k == "UMask":
        if int(vals[-1], 8) & ~int(watch.get(k, ["0"])[-1], 8):
            bad.append("UMask %s looser than Sentinel's %s" % (watch.get(k), vals))
    elif watch.get(k) != vals:
        bad.append("%s=%s, Sentinel's unit has %s" % (k, watch.get(k), vals))
if watch.get("Restart") != ["on-failure"]:
    bad.append("Restart=on-failure")
if not any("kill -HUP $MAINPID" in v for v in watch.get("ExecReload", [])):
    bad.append("ExecReload sending HUP")
if bad:
    print("\n".join(bad))
    sys.exit(1)
EOF

stage "a failover under the sentinel unit's sandbox"
EVENTILATOR_SRC="$ROOT" EVENTILATOR_BUILD="$ROOT/build" \
  lua5.4 "$(command -v busted)" --helper=spec/support/helper.lua -o utfTerminal spec/package/sandbox_spec.lua

stage "the log without a syslog daemon, under the sentinel unit's sandbox"
# as Sentinel runs a call: its unit's file-system rules, as redis; no syslog
# socket (whatever this machine has), so the lines go to the fallback file
rm -f "$LOG"
EVENTILATOR_SYSLOG_SOCKET=/run/eventilator-pkgtest-no-syslog /usr/bin/python3 spec/support/unitns.py \
  /lib/systemd/system/redis-sentinel.service -- /usr/lib/eventilator/bin/eventilator +sdown \
  'master pod1 127.0.0.1 6379' >"$WORK/sandboxed-call.out" 2>&1 || true
check "a call's lines in $LOG" grep -q 'eventilator\[[0-9]*\]: [a-z]*: +sdown pod=pod1 ' "$LOG"
check "$LOG is redis's to append to (its folder's owner and group)" \
  test "$(stat -c '%U:%G %a' "$LOG")" = "redis:$(stat -c %G /var/log/redis) 640"
if command -v logrotate >/dev/null; then
  check "logrotate takes /etc/logrotate.d/eventilator" logrotate -d /etc/logrotate.d/eventilator
fi

stage "upgrade over edited rules"
echo '-- edited by the operator' >>/etc/redis/eventilator.d/00-log.lua
rm /etc/redis/eventilator.d/30-slack.lua
edited=$(md5sum /etc/redis/eventilator.d/00-log.lua)
# the next version: the same files, and one where the shipped 00-log.lua changed too
dpkg-deb -R "$DEB" "$WORK/next"
sed -i "s/^Version: .*/Version: ${VERSION}+t1/" "$WORK/next/DEBIAN/control"
dpkg-deb -b --root-owner-group "$WORK/next" "$WORK/next.deb" >/dev/null
dpkg -i "$WORK/next.deb" </dev/null >"$WORK/upgrade.log" 2>&1 || { cat "$WORK/upgrade.log"; die "upgrade"; }
check "an edited rule file survives an upgrade" test "$(md5sum /etc/redis/eventilator.d/00-log.lua)" = "$edited"
check "a deleted rule file stays deleted" test ! -e /etc/redis/eventilator.d/30-slack.lua
echo '-- shipped change' >>"$WORK/next/etc/redis/eventilator.d/00-log.lua"
(cd "$WORK/next" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | xargs -0 md5sum >DEBIAN/md5sums)
sed -i "s/^Version: .*/Version: ${VERSION}+t2/" "$WORK/next/DEBIAN/control"
dpkg-deb -b --root-owner-group "$WORK/next" "$WORK/next2.deb" >/dev/null
dpkg -i --force-confdef --force-confold "$WORK/next2.deb" </dev/null >"$WORK/upgrade2.log" 2>&1 \
  || { cat "$WORK/upgrade2.log"; die "upgrade with a changed rule file"; }
check "an edited rule file survives an upgrade that changes it (new one as .dpkg-dist)" bash -c \
  "test \"\$(md5sum /etc/redis/eventilator.d/00-log.lua)\" = '$edited' && test -f /etc/redis/eventilator.d/00-log.lua.dpkg-dist"
rm -f /etc/redis/eventilator.d/00-log.lua.dpkg-dist

stage "remove, purge"
# a Sentinel config that still names the scripts: remove and purge print its lines
cat >"$SCONF" <<'EOF'
port 26379
sentinel monitor pod1 127.0.0.1 6379 2
sentinel notification-script pod1 /usr/lib/eventilator/bin/eventilator
sentinel client-reconfig-script pod1 /usr/lib/eventilator/bin/reconfigurator
sentinel monitor pod2 127.0.0.1 6380 2
EOF
warned() { # the dpkg output in $1 names both lines, where they are, and why they must go
  if grep -qxF "  $SCONF:3:sentinel notification-script pod1 /usr/lib/eventilator/bin/eventilator" "$1" &&
    grep -qxF "  $SCONF:4:sentinel client-reconfig-script pod1 /usr/lib/eventilator/bin/reconfigurator" "$1" &&
    grep -qF "refuses to start" "$1" && ! grep -q "pod2" "$1"; then
    return 0
  fi
  cat "$1"
  return 1
}
dpkg --remove "$PKG" >"$WORK/remove.log" 2>&1 || { cat "$WORK/remove.log"; die "dpkg --remove"; }
check "remove prints the sentinel.conf lines that name the scripts" warned "$WORK/remove.log"
check "remove leaves sentinel.conf as it was" test "$(sed -n 3p "$SCONF")" = \
  "sentinel notification-script pod1 /usr/lib/eventilator/bin/eventilator"
snapshot | grep -v "^$SCONF " >"$WORK/removed"
# (and debhelper's record of the unit's enablement, kept until purge like a conffile)
check "remove keeps only the conffiles and the state folder" bash -c \
  "diff '$WORK/before' '$WORK/removed' | sed -n 's/^> //p' | grep -v -e '^/etc/redis/eventilator\\.d' \
     -e '^/etc/redis/eventilator\\.conf\\.example ' -e '^/etc/redis/reconfigurator\\.conf\\.example ' -e '^$STATE[/ ]' \
     -e '^/var/lib/systemd/deb-systemd-helper-enabled/eventilator-watch\\.service\\.dsh-also ' \
   | { ! grep .; }"
check "remove left the state folder" test -d "$STATE"
dpkg --purge "$PKG" >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log"; die "dpkg --purge"; }
check "purge prints them again" warned "$WORK/purge.log"
check "purge removes the log" test ! -e "$LOG"
rm -f "$SCONF"
snapshot >"$WORK/purged"
check "purge leaves the machine as before the install" diff "$WORK/before" "$WORK/purged"

say "package-test: all passed in $SECONDS s"
