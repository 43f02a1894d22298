#!/usr/bin/python3
"""Run a command under the file-system rules of a systemd unit, without systemd.

    unitns.py UNIT_FILE [--bind-rw PATH]... -- COMMAND [ARG]...

Runs as root. In a private mount namespace it reproduces, from the unit's own
directives:
  - ProtectSystem=strict: every mount read-only, except ReadWritePaths= (and
    the older ReadWriteDirectories=); a leading "-" skips a missing path;
  - NoExecPaths=/ with ExecPaths=: every mount noexec, except the ExecPaths
    (bind-mounted on themselves, read-only, executable);
  - PrivateTmp=true: an empty tmpfs on /tmp and /var/tmp;
  - ProtectHome=true: /home, /root and /run/user empty and read-only;
  - ProtectKernelTunables=true: /proc/sys and /sys read-only;
then drops to User=/Group= (supplementary groups cleared) and execs COMMAND
directly: nothing else is executed once / is noexec.

It does not reproduce PrivateUsers=, PrivateDevices=, the seccomp filter
(SystemCallFilter=; the package test checks syscalls with strace instead),
capabilities, or the other Protect*/Restrict* settings: see docs/packaging.md.
"""
import ctypes
import grp
import os
import pwd
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
CLONE_NEWNS = 0x00020000

libc = ctypes.CDLL(None, use_errno=True)


def die(msg):
    sys.stderr.write("unitns: %s\n" % msg)
    sys.exit(2)


def mount(src, target, fstype, flags, data=None):
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    if libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        die("mount %s on %s: %s" % (src, target, os.strerror(err)))


def unit_directives(path):
    """[Service] settings as name -> list of values (repeatable directives)."""
    out, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            if section != "[Service]" or "=" not in line:
                continue
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def paths(values):
    """Space-separated path lists; "-" prefix: skip when missing. Resolved."""
    out = []
    for v in values:
        for p in v.split():
            optional = p.startswith("-")
            p = p.lstrip("-+")
            if not os.path.exists(p):
                if optional:
                    continue
                die("%s does not exist" % p)
            real = os.path.realpath(p)
            if real not in out:
                out.append(real)
    return out


def mountpoints():
    """Mount points, parents first, with their per-mount flags."""
    pts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            target = fields[4].encode().decode("unicode_escape")
            opts = fields[5].split(",")
            flags = 0
            for name, bit in (("nosuid", MS_NOSUID), ("nodev", MS_NODEV), ("noexec", MS_NOEXEC)):
                if name in opts:
                    flags |= bit
            pts.append((target, flags))
    return pts


def under(path, top):
    return path == top or path.startswith(top.rstrip("/") + "/")


def main(argv):
    if "--" not in argv:
        die("usage: unitns.py UNIT_FILE [--bind-rw PATH]... -- COMMAND [ARG]...")
    sep = argv.index("--")
    opts, cmd = argv[1:sep], argv[sep + 1:]
    if not opts or not cmd:
        die("usage: unitns.py UNIT_FILE [--bind-rw PATH]... -- COMMAND [ARG]...")
    unit = unit_directives(opts[0])
    extra_rw = [opts[i + 1] for i in range(1, len(opts) - 1) if opts[i] == "--bind-rw"]
    if os.geteuid() != 0:
        die("needs root")

    rw = paths(unit.get("ReadWritePaths", []) + unit.get("ReadWriteDirectories", [])) + paths(extra_rw)
    noexec_all = "/" in paths(unit.get("NoExecPaths", []))
    exe = paths(unit.get("ExecPaths", []))
    strict = unit.get("ProtectSystem", ["no"])[-1] == "strict"
    user = unit.get("User", ["root"])[-1]
    group = unit.get("Group", [None])[-1]
    pw = pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid

    if libc.unshare(CLONE_NEWNS) != 0:
        die("unshare: %s" % os.strerror(ctypes.get_errno()))
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    before = mountpoints()

    created = []
    if unit.get("PrivateTmp", ["no"])[-1] in ("true", "yes"):
        for t in ("/tmp", "/var/tmp"):
            if os.path.isdir(t):
                mount("tmpfs", t, "tmpfs", MS_NOSUID | MS_NODEV | (MS_NOEXEC if noexec_all else 0), "mode=1777")
                created.append(t)
    if unit.get("ProtectHome", ["no"])[-1] in ("true", "yes"):
        for h in ("/home", "/root", "/run/user"):
            if os.path.isdir(h):
                mount("tmpfs", h, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755")
                created.append(h)
    for p in rw:
        mount(p, p, None, MS_BIND | MS_REC)
        mount(None, p, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (MS_NOEXEC if noexec_all else 0))
        created.append(p)
    for p in exe:
        mount(p, p, None, MS_BIND)
        mount(None, p, None, MS_REMOUNT | MS_BIND | (MS_RDONLY if strict else 0) | MS_NODEV)
        created.append(p)

    # Every mount that was there before: read-only (strict) and noexec,
    # except the file systems API mounts systemd leaves writable. The root
    # mount goes last; it does not reach the mounts made above it.
    writable_api = ("/dev", "/proc")
    for target, flags in sorted(before, key=lambda m: -len(m[0])):
        if any(under(target, c) for c in created):
            continue
        if not os.path.exists(target):
            continue
        f = flags
        if noexec_all:
            f |= MS_NOEXEC
        ro = strict and not any(under(target, a) for a in writable_api)
        if under(target, "/sys") or under(target, "/proc/sys"):
            ro = True
        if ro:
            f |= MS_RDONLY
        mount(None, target, None, MS_REMOUNT | MS_BIND | f)
    if strict and os.path.isdir("/proc/sys"):
        mount("/proc/sys", "/proc/sys", None, MS_BIND)
        mount(None, "/proc/sys", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

    os.setgroups([])
    os.setgid(gid)
    os.setuid(pw.pw_uid)
    os.chdir("/")
    env = dict(os.environ, HOME=pw.pw_dir, USER=user, LOGNAME=user)
    try:
        os.execve(cmd[0], cmd, env)
    except OSError as e:
        die("exec %s: %s" % (cmd[0], e))


if __name__ == "__main__":
    main(sys.argv)
