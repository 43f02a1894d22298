#!/usr/bin/env python3
"""tcpd.py: a scriptable TCP stand-in for the specs (python3 stdlib only).

Listens on --host/--port (127.0.0.1 or ::1) or on a unix socket (--unix PATH)
and plays one of these peers, chosen with --mode:

  echo     echo every line back (a last line without LF is echoed at EOF)
  sensu    the Sensu 1.x client socket: read one JSON object (until it
           parses, the peer half-closes, or 0.5 s pass without data), reply
           "ok", or "invalid" when it is not a check result (a "name" of
           [\w.-]+, a string "output", an integer "status" if any) or with
           --reply invalid; then close. "ping" is answered "pong".
  silent   accept and read, never answer
  haproxy  the HAProxy runtime API (non-interactive): read one command line,
           answer each ';'-separated command with a canned text, then close
  close    accept and close at once

--trickle SECONDS sends every answer one byte at a time with that pause, so
a client sees a line arrive in many pieces.
--reply TEXT overrides the answer (sensu: "ok" or "invalid"; haproxy: the
whole reply, with backslash escapes such as \\n). Every received payload
(echo/haproxy: a line; sensu: the whole object; silent: each chunk) is
appended to --log FILE as one JSON line:
  {"conn": N, "mode": "...", "data": "..."}
and sensu adds "json": the parsed object or null. Bytes that are not UTF-8
are logged as U+FFFD. --port 0 listens on a port the kernel picks (free for
sure); --ready FILE is written once the socket listens, holding that port (0
for --unix), in one rename, so a spec can wait for it and read it whole.
Prints nothing; exits on SIGTERM (or SIGINT).
"""

import argparse
import itertools
import json
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time

LOG_LOCK = threading.Lock()
CONN_IDS = itertools.count(1)
MAX_REQUEST = 1 << 20
SENSU_WATCHDOG = 0.5  # seconds, as in sensu/lib/sensu/client/socket.rb  # a stand-in, not a sink: drop peers that send more

HAPROXY_INFO = (
    "Name: HAProxy\nVersion: 2.8.5\nRelease_date: 2023/12/07\nNbthread: 1\n"
    "Pid: 4242\nUptime_sec: 4242\n\n"
)


def haproxy_answer(cmd):
    """A canned answer per command, shaped like HAProxy 2.x replies."""
    words = cmd.split()
    if not words:
        return ""
    if words[:2] == ["show", "info"]:
        return HAPROXY_INFO
    if words[:2] == ["set", "server"] and len(words) >= 5 and words[3] == "state":
        if "/" not in words[2]:
            return "Require 'backend/server'.\n\n"
        if words[4] not in ("ready", "drain", "maint"):
            return "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n"
        return "\n"
    if words[0] in ("enable", "disable") and len(words) >= 3 and words[1] == "server":
        return "\n"
    return "Unknown command: '%s'\n\n" % words[0]


SENSU_NAME = re.compile(r"\A[\w.-]+\Z")


def sensu_valid(obj):
    """Sensu 1.x client socket rules: name matches [\w.-]+, output is a
    string, status (default 0) an integer."""
    if not isinstance(obj, dict):
        return False
    name, status = obj.get("name"), obj.get("status", 0)
    return (isinstance(name, str) and SENSU_NAME.match(name) is not None
            and isinstance(obj.get("output"), str)
            and isinstance(status, int) and not isinstance(status, bool))


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.conn_id = next(CONN_IDS)
        self.opts = self.server.opts

    def log(self, data, **extra):
        if not self.opts.log:
            return
        rec = {"conn": self.conn_id, "mode": self.opts.mode,
               "data": data.decode("utf-8", errors="replace")}
        rec.update(extra)
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        with LOG_LOCK, open(self.opts.log, "a", encoding="utf-8") as f:
            f.write(line)

    def recv(self):
        try:
            return self.request.recv(65536)
        except OSError:
            return b""

    def send(self, data):
        try:
            if not self.opts.trickle:
                self.request.sendall(data)
                return True
            if self.request.family != socket.AF_UNIX:
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(data)):
                self.request.sendall(data[i:i + 1])
                time.sleep(self.opts.trickle)
            return True
        except OSError:
            return False

    def handle(self):
        getattr(self, "mode_" + self.opts.mode)()

    def lines(self):
        """Yield each received line without its LF; a last partial line at EOF too."""
        buf = b""
        while True:
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line
            if len(buf) > MAX_REQUEST:
                return
            chunk = self.recv()
            if not chunk:
                if buf:
                    yield buf
                return
            buf += chunk

    def mode_echo(self):
        for line in self.lines():
            self.log(line)
            if not self.send(line + b"\n"):
                return

    def mode_haproxy(self):
        for line in self.lines():
            self.log(line)
            if self.opts.reply is not None:
                answer = self.opts.reply
            else:
                text = line.decode("utf-8", errors="replace").rstrip("\r")
                answer = "".join(haproxy_answer(c) for c in text.split(";"))
            self.send(answer.encode())
            return  # non-interactive: one command line per connection

    def mode_sensu(self):
        # Sensu's watchdog: 0.5 s after the last chunk it gives up on the
        # sender; recv() then reads as EOF.
        self.request.settimeout(SENSU_WATCHDOG)
        buf, obj, parsed = b"", None, False
        while True:
            text = buf.decode("utf-8", errors="replace").strip()
            if text == "ping":
                self.log(buf)
                self.send(b"pong")
                return
            try:
                obj, parsed = json.loads(text), True
                break
            except ValueError:
                pass
            chunk = self.recv() if len(buf) <= MAX_REQUEST else b""
            if not chunk:
                break  # EOF (or half-close) before a whole object
            buf += chunk
        if not buf:
            return  # a probe that connected and left
        self.log(buf, json=obj if parsed else None)
        ok = parsed and sensu_valid(obj) and self.opts.reply != "invalid"
        self.send(b"ok" if ok else b"invalid")

    def mode_silent(self):
        while True:
            chunk = self.recv()
            if not chunk:
                return
            self.log(chunk)

    def mode_close(self):
        pass  # finish() closes the socket at once


class TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class TCP6Server(TCPServer):
    address_family = socket.AF_INET6


class UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def unescape(s):
    return s.encode("utf-8").decode("unicode_escape") if s is not None else None


def main():
    ap = argparse.ArgumentParser(description="scriptable TCP stand-in for the specs")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--unix", metavar="PATH")
    ap.add_argument("--mode", default="echo",
                    choices=["echo", "sensu", "silent", "haproxy", "close"])
    ap.add_argument("--reply")
    ap.add_argument("--log", metavar="FILE")
    ap.add_argument("--ready", metavar="FILE")
    ap.add_argument("--trickle", type=float, default=0.0, metavar="SECONDS")
    opts = ap.parse_args()
    opts.reply = unescape(opts.reply)

    if opts.unix:
        try:
            os.unlink(opts.unix)
        except FileNotFoundError:
            pass
        server = UnixServer(opts.unix, Handler)
    else:
        if opts.port is None:
            ap.error("--port or --unix is required")
        cls = TCP6Server if ":" in opts.host else TCPServer
        server = cls((opts.host, opts.port), Handler)
    server.opts = opts

    def stop(_signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if opts.ready:
            with open(opts.ready + ".tmp", "w", encoding="utf-8") as f:
                f.write("%d\n" % (0 if opts.unix else server.server_address[1]))
            os.rename(opts.ready + ".tmp", opts.ready)
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if opts.unix:
            try:
                os.unlink(opts.unix)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
