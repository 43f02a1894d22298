#!/usr/bin/env python3
"""haproxy_probe.py: what a client of HAProxy sees through a failover, and when
(python3 stdlib only; bench/haproxy_failover.lua runs it).

  python3 bench/haproxy_probe.py --frontend PORT --sentinel PORT [--sentinel PORT ...]
                                 [--every SECONDS]

Subscribes to +switch-master on every Sentinel given and, every --every
seconds (default 0.002), opens a new connection through HAProxy's frontend
and asks INFO server + replication: each connection is a fresh routing
decision of HAProxy's. Prints one line per observation, flushed, with the
wall-clock time it was received (time.time()):

  subscribed <t> <sentinel port>
  switch <t> <sentinel port> <the +switch-master payload>
  route <t> <port>|- <role>|closed|refused|timeout <t0> <t-1>
      (only when the answer changes; t0: when this connection was opened,
      t-1: when the one before it was answered, so a gap in the polling,
      the probe waiting for a core, shows)

All on 127.0.0.1. Runs until killed.
"""

import argparse
import re
import socket
import sys
import threading
import time

LOCK = threading.Lock()


def emit(*words):
    with LOCK:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()


def reply(f):
    """One RESP2 reply from a binary file object (None at EOF)."""
    line = f.readline()
    if not line:
        return None
    kind, body = line[:1], line[1:-2]
    if kind == b"*":
        return [reply(f) for _ in range(int(body))]
    if kind == b"$":
        n = int(body)
        return None if n < 0 else f.read(n + 2)[:-2]
    return body


def subscribe(port):
    """+switch-master as this Sentinel publishes it; reconnects if dropped."""
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n")
            f = s.makefile("rb")
            while True:
                msg = reply(f)
                t = time.time()
                if msg is None:
                    break
                if msg[0] == b"subscribe":
                    emit("subscribed", "%.6f" % t, port)
                elif msg[0] == b"message":
                    emit("switch", "%.6f" % t, port, msg[2].decode())
        except OSError:
            pass
        time.sleep(0.1)


def ask(port):
    """(port, role) of whatever HAProxy routed this new connection to."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    except socket.timeout:
        return "-", "timeout"
    except OSError:
        return "-", "refused"
    try:
        s.sendall(b"INFO server replication\r\n")
        f = s.makefile("rb")
        info = reply(f)
        if not isinstance(info, bytes):
            return "-", "closed"
        tcp_port = re.search(rb"tcp_port:(\d+)", info)
        role = re.search(rb"role:(\w+)", info)
        return (tcp_port.group(1).decode() if tcp_port else "-",
                role.group(1).decode() if role else "-")
    except socket.timeout:
        return "-", "timeout"
    except OSError:
        return "-", "closed"
    finally:
        s.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--frontend", type=int, required=True)
    p.add_argument("--sentinel", type=int, action="append", default=[])
    p.add_argument("--every", type=float, default=0.002)
    a = p.parse_args()
    for port in a.sentinel:
        threading.Thread(target=subscribe, args=(port,), daemon=True).start()
    last, before = None, 0.0
    while True:
        t0 = time.time()
        seen = ask(a.frontend)
        t = time.time()
        if seen != last:
            emit("route", "%.6f" % t, seen[0], seen[1], "%.6f" % t0, "%.6f" % before)
            last = seen
        before = t
        time.sleep(a.every)


if __name__ == "__main__":
    main()
