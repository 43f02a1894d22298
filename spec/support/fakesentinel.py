#!/usr/bin/env python3
"""fakesentinel.py: a hostile fake Redis Sentinel for the specs (python3 stdlib only).

Speaks RESP2 on 127.0.0.1. Binds port 0 and prints its port (one line on
stdout, and into --ready FILE once it listens), so there is no free-port race.
It answers what `eventilator watch` and `eventilator sentinels` ask: AUTH,
PING, PSUBSCRIBE, SENTINEL MYID / MASTERS / MASTER / SENTINELS /
PENDING-SCRIPTS, INFO. What it can be told to do wrong:

  --master NAME:IP:PORT       a master it monitors (repeatable)
  --coalesce CHANNEL=PAYLOAD  write PSUBSCRIBE's reply and this message in one send
  --name N                    SENTINEL SENTINELS names N Sentinels: the first
  --silent K                  K are listeners of its own that accept and never
                              answer, the rest addresses nobody listens on
                              (127.x.y.z:1, refused at once)
  --huge COMMAND=KIND         answer COMMAND ("PSUBSCRIBE", "SENTINEL MASTERS",
                              "INFO", ...) with KIND: "bulk" announces 4 000 000 000
                              bytes (after PSUBSCRIBE: as a message's payload),
                              "array" 2 000 000 000 elements; then sends
                              --huge-send bytes of it (default: 64 MiB) as fast as
                              the peer reads, one chunk every --huge-pause s, and
                              holds the connection
  --field KEY=TYPE            in SENTINEL MASTER(S) entries, KEY sent as TYPE:
                              int, array or nil (instead of a string)
  --log FILE                  one line per command received: "<conn> <words>"

Control, from any client (redis-cli):
  PUBLISH CHANNEL PAYLOAD                  a pmessage to every subscriber
  FAKE.FLOOD N CHANNEL FORMAT [PER_SEC]    N messages (FORMAT with one %d),
                                           to every subscriber, in the background
Exits on SIGTERM or SIGINT.
"""

import argparse
import itertools
import os
import secrets
import signal
import socket
import sys
import threading
import time

LOCK = threading.Lock()
SUBSCRIBERS = {}  # conn id -> (socket, its send lock, pattern)
CONN_IDS = itertools.count(1)
HELD = []  # the silent listeners' accepted sockets, never answered
RUNID = secrets.token_hex(20)
OPTS = None


def bulk(s):
    if s is None:
        return b"$-1\r\n"
    if isinstance(s, str):
        s = s.encode()
    return b"$%d\r\n%s\r\n" % (len(s), s)


def array(items):
    return b"*%d\r\n" % len(items) + b"".join(items)


def strings(words):
    return array([bulk(w) for w in words])


def pmessage(pattern, channel, payload):
    return array([bulk("pmessage"), bulk(pattern), bulk(channel), bulk(payload)])


def log(conn, words):
    if OPTS.log:
        with LOCK, open(OPTS.log, "a") as f:
            f.write("%d %s\n" % (conn, " ".join(w.decode("utf-8", "replace") for w in words)))


def read_command(sock, buf):
    """One RESP array of bulk strings: (words, rest of buf), or (None, _) at EOF."""
    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk

    def line():
        nonlocal buf
        while b"\r\n" not in buf:
            need(len(buf) + 1)
        i = buf.index(b"\r\n")
        out, buf = buf[:i], buf[i + 2:]
        return out

    try:
        head = line()
        if not head.startswith(b"*"):
            return head.split(), buf  # an inline command
        words = []
        for _ in range(int(head[1:])):
            n = int(line()[1:])
            need(n + 2)
            words.append(buf[:n])
            buf = buf[n + 2:]
        return words, buf
    except (EOFError, OSError, ValueError):
        return None, buf


def field_value(key, value):
    kind = OPTS.fields.get(key)
    if kind == "int":
        return b":%d\r\n" % 42
    if kind == "array":
        return strings(["x", "y"])
    if kind == "nil":
        return b"$-1\r\n"
    return bulk(value)


def master_entry(name, ip, port):
    fields = [("name", name), ("ip", ip), ("port", port), ("runid", ""), ("flags", "master"),
              ("num-slaves", "0"), ("num-other-sentinels", str(OPTS.name)), ("quorum", "2"),
              ("config-epoch", "0")]
    for key in OPTS.fields:
        if key not in dict(fields):
            fields.append((key, "/bin/true"))
    items = []
    for key, value in fields:
        items += [bulk(key), field_value(key, value)]
    return array(items)


def sentinel_entries():
    out = []
    for i in range(OPTS.name):
        if i < len(OPTS.silent_ports):
            ip, port = "127.0.0.1", OPTS.silent_ports[i]
        else:
            ip, port = "127.%d.%d.%d" % (1 + i // 65536 % 254, i // 256 % 256, i % 256), 1
        out.append(strings(["name", "%040x" % (i + 1), "ip", ip, "port", str(port),
                            "runid", "%040x" % (i + 1), "flags", "sentinel"]))
    return array(out)


def huge(sock, kind, prefix=b""):
    """Announce a huge reply, send --huge-send bytes of it, then hold the connection."""
    if kind == "array":
        head, unit = b"*2000000000\r\n", b":1\r\n"
    else:
        head, unit = b"$4000000000\r\n", b"x"
    chunk = unit * (65536 // len(unit))
    sock.sendall(prefix + head)
    sent = 0
    while sent < OPTS.huge_send:
        sock.sendall(chunk)
        sent += len(chunk)
        if OPTS.huge_pause:
            time.sleep(OPTS.huge_pause)
    while sock.recv(65536):
        pass


def flood(n, channel, fmt, per_sec):
    t0 = time.monotonic()
    for i in range(n):
        msg = None
        with LOCK:
            subs = list(SUBSCRIBERS.items())
        for cid, (sock, slock, pattern) in subs:
            msg = pmessage(pattern, channel, fmt.replace("%d", str(i)))
            try:
                with slock:
                    sock.sendall(msg)
            except OSError:
                with LOCK:
                    SUBSCRIBERS.pop(cid, None)
        if per_sec:
            delay = t0 + (i + 1) / per_sec - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def answer(cid, sock, slock, words):
    """The reply to one command (bytes), or None when it was written already."""
    cmd = [w.decode("utf-8", "replace") for w in words]
    up = [c.upper() for c in cmd]
    name = " ".join(up[:2]) if up[0] == "SENTINEL" else up[0]
    if name in OPTS.huge:
        if name == "PSUBSCRIBE" and OPTS.huge[name] == "bulk":
            prefix = array([bulk("psubscribe"), bulk(cmd[1]), b":1\r\n"])
            prefix += b"*4\r\n" + bulk("pmessage") + bulk(cmd[1]) + bulk("+sdown")
            huge(sock, "bulk", prefix)
        else:
            huge(sock, OPTS.huge[name])
        return None
    if up[0] in ("AUTH", "CLIENT", "HELLO"):
        return b"+OK\r\n"
    if up[0] == "PING":
        return b"+PONG\r\n"
    if up[0] == "PSUBSCRIBE" and len(cmd) > 1:
        reply = array([bulk("psubscribe"), bulk(cmd[1]), b":1\r\n"])
        if OPTS.coalesce:
            channel, payload = OPTS.coalesce.split("=", 1)
            reply += pmessage(cmd[1], channel, payload)
        with LOCK:
            SUBSCRIBERS[cid] = (sock, slock, cmd[1])
        return reply
    if up[0] == "PUBLISH" and len(cmd) == 3:
        with LOCK:
            subs = list(SUBSCRIBERS.values())
        for s, lk, pattern in subs:
            try:
                with lk:
                    s.sendall(pmessage(pattern, cmd[1], cmd[2]))
            except OSError:
                pass
        return b":%d\r\n" % len(subs)
    if up[0] == "FAKE.FLOOD" and len(cmd) >= 4:
        per_sec = float(cmd[4]) if len(cmd) > 4 else 0
        threading.Thread(target=flood, args=(int(cmd[1]), cmd[2], cmd[3], per_sec), daemon=True).start()
        return b"+OK\r\n"
    if up[0] == "INFO":
        return bulk("# Sentinel\r\nsentinel_masters:%d\r\nsentinel_tilt:0\r\nsentinel_running_scripts:0\r\n"
                    "sentinel_scripts_queue_length:0\r\n" % len(OPTS.master))
    if name == "SENTINEL MYID":
        return bulk(RUNID)
    if name == "SENTINEL MASTERS":
        return array([master_entry(*m.split(":")) for m in OPTS.master])
    if name == "SENTINEL MASTER" and len(cmd) > 2:
        for m in OPTS.master:
            if m.split(":")[0] == cmd[2]:
                return master_entry(*m.split(":"))
        return b"-ERR No such master with that name\r\n"
    if name == "SENTINEL SENTINELS":
        return sentinel_entries()
    if name == "SENTINEL PENDING-SCRIPTS":
        return b"*0\r\n"
    return b"-ERR unknown command '%s'\r\n" % words[0]


def serve(sock):
    cid = next(CONN_IDS)
    slock = threading.Lock()
    buf = b""
    try:
        while True:
            words, buf = read_command(sock, buf)
            if not words:
                break
            log(cid, words)
            reply = answer(cid, sock, slock, words)
            if reply is not None:
                with slock:
                    sock.sendall(reply)
    except OSError:
        pass
    finally:
        with LOCK:
            SUBSCRIBERS.pop(cid, None)
        sock.close()


def hold(listener):
    while True:
        conn, _ = listener.accept()
        HELD.append(conn)


def main():
    global OPTS
    p = argparse.ArgumentParser()
    p.add_argument("--master", action="append", default=[])
    p.add_argument("--coalesce")
    p.add_argument("--name", type=int, default=0)
    p.add_argument("--silent", type=int, default=0)
    p.add_argument("--huge", action="append", default=[])
    p.add_argument("--huge-send", type=int, default=64 << 20)
    p.add_argument("--huge-pause", type=float, default=0)
    p.add_argument("--field", action="append", default=[])
    p.add_argument("--log")
    p.add_argument("--ready")
    OPTS = p.parse_args()
    OPTS.huge = dict(h.split("=", 1) for h in OPTS.huge)
    OPTS.huge = {k.upper(): v for k, v in OPTS.huge.items()}
    OPTS.fields = dict(f.split("=", 1) for f in OPTS.field)
    OPTS.silent_ports = []
    for _ in range(min(OPTS.silent, OPTS.name)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        OPTS.silent_ports.append(s.getsockname()[1])
        threading.Thread(target=hold, args=(s,), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    port = srv.getsockname()[1]
    print(port, flush=True)
    if OPTS.ready:
        with open(OPTS.ready + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.rename(OPTS.ready + ".tmp", OPTS.ready)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
