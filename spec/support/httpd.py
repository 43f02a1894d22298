#!/usr/bin/env python3
"""A scriptable HTTP stand-in server for the specs (python3 stdlib only).

Usage:
    httpd.py PORT [--ready FILE] [--log FILE] [--reply FILE] [--cert FILE --key FILE]
    httpd.py --unix PATH [--log FILE] [--reply FILE]

Listens on 127.0.0.1:PORT or on a unix socket. PORT 0: a port the kernel
picks, free for sure; --ready FILE then tells it (below). Every request is appended to
the --log file as one JSON line, before the reply is sent (so /hang is logged
too):

    {"method": "POST", "path": "/x?y=1",
     "headers": {"content-type": "...", ...},   # names lowercased, repeats joined ", "
     "body": "...",                             # UTF-8, undecodable bytes replaced
     "body_hex": "00ff..."}                     # the exact bytes

Replies, by path (the query is ignored except for `header`):
    /status/<code>   that status, JSON body {"status": code}
    /delay/<secs>    sleeps, then 200
    /hang            accepts and never replies, until the process ends
    /big/<n>         200 with n bytes of "x"
    /redirect        302 to /status/200
    /redirect/<n>    302 to /redirect/<n-1>, the last hop to /status/200
    /echo            200 with the log record above as JSON
    /pagerduty/...   PagerDuty's Events API v2 (enqueue): the body is checked
                     against the published schema; 202 {"status": "success",
                     "dedup_key": ...}, or 400 {"status": "invalid event",
                     "errors": [...]} naming what is wrong
    /verify/...      checks X-Eventilator-Signature (sha256=<hex HMAC-SHA256
                     of the body>) with the --secret given, and that
                     X-Eventilator-Timestamp is a number: 200, or 401
    anything else    200 {"ok":true}
Any of these adds the response headers given as ?header=Name:Value
(repeatable, so repeated headers can be produced).

--reply FILE: when the file exists it is read for every request (so a spec
can change it between requests) and replaces the behaviour above:
    {"status": 200, "headers": {"Name": "v"} or [["Name", "v"], ...],
     "body": "text" or any JSON value (sent encoded)}
--cert/--key serve HTTPS on the TCP port.
--secret S: the key /verify checks signatures with.
--ready FILE: once it listens, the port it listens on is written to FILE (in
one rename, so a reader never sees it half written).

Prints nothing; exits at once on SIGTERM or SIGINT.
"""

import hashlib
import hmac
import json
import os
import signal
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG_LOCK = threading.Lock()
OPTS = {"log": None, "reply": None, "secret": ""}

PD_KEYS = {"routing_key", "event_action", "dedup_key", "payload", "images", "links", "client", "client_url"}
PD_PAYLOAD = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}


def pagerduty_errors(raw):
    """What PagerDuty's Events API v2 would reject in this body."""
    try:
        ev = json.loads(raw)
    except ValueError:
        return ["body is not JSON"]
    if not isinstance(ev, dict):
        return ["body is not an object"]
    errs = ["unknown field '%s'" % k for k in ev if k not in PD_KEYS]
    if not isinstance(ev.get("routing_key"), str) or len(ev["routing_key"]) != 32:
        errs.append("'routing_key' must be a 32-character string")
    action = ev.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        errs.append("'event_action' must be trigger, acknowledge or resolve")
    dk = ev.get("dedup_key")
    if action != "trigger" and not isinstance(dk, str):
        errs.append("'dedup_key' is required to %s" % action)
    if dk is not None and (not isinstance(dk, str) or not 0 < len(dk) <= 255):
        errs.append("'dedup_key' must be a string of at most 255 characters")
    if action == "trigger":
        p = ev.get("payload")
        if not isinstance(p, dict):
            return errs + ["'payload' is required to trigger"]
        errs += ["unknown field 'payload.%s'" % k for k in p if k not in PD_PAYLOAD]
        if not isinstance(p.get("summary"), str) or not 0 < len(p["summary"]) <= 1024:
            errs.append("'payload.summary' must be a string of 1 to 1024 characters")
        if not isinstance(p.get("source"), str) or not p["source"]:
            errs.append("'payload.source' is required")
        if p.get("severity") not in ("critical", "error", "warning", "info"):
            errs.append("'payload.severity' must be critical, error, warning or info")
        for k in ("timestamp", "component", "group", "class"):
            if k in p and not isinstance(p[k], str):
                errs.append("'payload.%s' must be a string" % k)
    return errs


def signature_ok(headers, body):
    sig = headers.get("X-Eventilator-Signature", "")
    want = "sha256=" + hmac.new(OPTS["secret"].encode(), body, hashlib.sha256).hexdigest()
    ts = headers.get("X-Eventilator-Timestamp", "")
    return hmac.compare_digest(sig, want) and ts.isdigit()


def joined_headers(msg):
    out = {}
    for name, value in msg.items():
        name = name.lower()
        out[name] = out[name] + ", " + value if name in out else value
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "httpd-stand-in"
    sys_version = ""

    def log_message(self, *args):  # silence: the specs read --log instead
        pass

    def __getattr__(self, name):  # every method, including made-up ones
        if name.startswith("do_"):
            return self.serve
        raise AttributeError(name)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def record(self, body):
        rec = {
            "method": self.command,
            "path": self.path,
            "headers": joined_headers(self.headers),
            "body": body.decode("utf-8", "replace"),
            "body_hex": body.hex(),
        }
        if OPTS["log"]:
            with LOG_LOCK, open(OPTS["log"], "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
        return rec

    def send(self, status, body=b"", headers=(), ctype="application/json"):
        if isinstance(body, str):
            body = body.encode("utf-8")
        no_body = status < 200 or status in (204, 304)
        self.send_response(status)
        sent = {name.lower() for name, _ in headers}
        for name, value in headers:
            self.send_header(name, value)
        if "content-type" not in sent and not no_body:
            self.send_header("Content-Type", ctype)
        if not no_body:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if no_body or self.command == "HEAD":
            return
        for i in range(0, len(body), 65536):
            self.wfile.write(body[i:i + 65536])

    def canned(self):
        path = OPTS["reply"]
        if not path or not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        headers = spec.get("headers") or []
        if isinstance(headers, dict):
            headers = list(headers.items())
        body = spec.get("body", "")
        if not isinstance(body, str):
            body = json.dumps(body)
        return int(spec.get("status", 200)), body, [(str(n), str(v)) for n, v in headers]

    def serve(self):
        body = self.read_body()
        rec = self.record(body)
        reply = self.canned()
        if reply:
            self.send(reply[0], reply[1], reply[2])
            return
        url = urllib.parse.urlsplit(self.path)
        extra = []
        for h in urllib.parse.parse_qs(url.query).get("header", []):
            name, _, value = h.partition(":")
            extra.append((name.strip(), value.strip()))
        parts = url.path.strip("/").split("/")
        head, arg = parts[0], parts[1] if len(parts) > 1 else None
        ok = '{"ok":true}'
        if head == "status" and arg:
            self.send(int(arg), json.dumps({"status": int(arg)}), extra)
        elif head == "delay" and arg:
            time.sleep(float(arg))
            self.send(200, ok, extra)
        elif head == "hang":
            threading.Event().wait()
        elif head == "big" and arg:
            self.send(200, b"x" * int(arg), extra, "application/octet-stream")
        elif head == "redirect":
            n = int(arg) if arg else 1
            to = "/redirect/%d" % (n - 1) if n > 1 else "/status/200"
            self.send(302, "", extra + [("Location", to)], "text/plain")
        elif head == "echo":
            self.send(200, json.dumps(rec), extra)
        elif head == "pagerduty":
            errs = pagerduty_errors(body)
            if errs:
                self.send(400, json.dumps({"status": "invalid event", "message": "Event object is invalid",
                                           "errors": errs}), extra)
            else:
                dk = json.loads(body).get("dedup_key") or "generated"
                self.send(202, json.dumps({"status": "success", "message": "Event processed",
                                           "dedup_key": dk}), extra)
        elif head == "verify":
            if signature_ok(self.headers, body):
                self.send(200, ok, extra)
            else:
                self.send(401, json.dumps({"error": "bad signature"}), extra)
        else:
            self.send(200, ok, extra)


class QuietMixIn:
    daemon_threads = True  # /hang threads must not keep the process alive

    def handle_error(self, request, client_address):
        pass  # a client that hung up (max_body, timeouts) is expected


class TCPServer(QuietMixIn, ThreadingHTTPServer):
    pass


class UnixServer(QuietMixIn, socketserver.ThreadingUnixStreamServer):
    pass


class UnixHandler(Handler):
    def address_string(self):
        return "unix"


def serve(server, unix=None, cleanup=None):
    """Serve until SIGTERM/SIGINT, then run cleanup and remove the socket file."""
    def stop(*_):
        if cleanup:
            cleanup()
        if unix and os.path.exists(unix):
            os.unlink(unix)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()


def write_ready(path, port):
    """The port to `path`, whole or not at all (a spec polls for it)."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("%d\n" % port)
    os.rename(path + ".tmp", path)


def main(argv):
    port, unix, cert, key, ready = None, None, None, None, None
    args = iter(argv)
    for a in args:
        if a == "--unix":
            unix = next(args)
        elif a == "--log":
            OPTS["log"] = next(args)
        elif a == "--reply":
            OPTS["reply"] = next(args)
        elif a == "--cert":
            cert = next(args)
        elif a == "--key":
            key = next(args)
        elif a == "--secret":
            OPTS["secret"] = next(args)
        elif a == "--ready":
            ready = next(args)
        else:
            port = int(a)
    if unix:
        if os.path.exists(unix):
            os.unlink(unix)
        server = UnixServer(unix, UnixHandler)
    else:
        server = TCPServer(("127.0.0.1", port), Handler)
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
    if ready:
        write_ready(ready, 0 if unix else server.server_address[1])
    serve(server, unix)


if __name__ == "__main__":
    main(sys.argv[1:])
