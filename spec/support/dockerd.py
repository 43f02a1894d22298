#!/usr/bin/env python3
"""A stand-in for the Docker Engine API (v1.41) on a unix socket, for the
specs (python3 stdlib only; the HTTP plumbing is httpd.py's).

Usage:
    dockerd.py --unix PATH --log FILE --dir DIR [--service NAME] [--conflict-once]
               [--image-missing]

It keeps services and containers in memory and checks every request against
the published API; a request that breaks it is answered 400 and logged with a
"problem" key, so a spec only has to assert there are none. Log lines (JSON):
    {"method", "path", "headers", "body", ...}     every request, as httpd.py
    {"problem": "..."}                             a request the API would refuse
    {"started": id, "port": n, "pid": n, "cmd": [...]}  a Redis container started

--service NAME   a replicated service NAME (2 replicas of redis:7) exists
--conflict-once  the first service update is answered as if someone else had
                 updated the service just before ("update out of sequence")
--image-missing  images must be pulled (POST /images/create) before create

POST /containers/{id}/start of a container whose Cmd starts with
"redis-server" really starts redis-server with those arguments, plus a
loopback --port of its own and a private --dir, standing in for the
container, and answers once it answers. They are stopped when the stand-in
gets SIGTERM (and run under `timeout` regardless).
"""

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import httpd

API = "/v1.41"
LOCK = threading.Lock()
STATE = {"services": {}, "containers": {}, "images": set(), "conflict_once": False,
         "children": [], "dir": "/tmp", "log": None}


def log(rec):
    with httpd.LOG_LOCK, open(STATE["log"], "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def free_port():
    """A port the kernel just handed out: free then, though any process may bind it next."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def answers(port, folder):
    """Whether the redis-server on `port` is the one in `folder` (CONFIG GET dir)."""
    try:
        with socket.create_connection(("127.0.0.1", port), 1) as c:
            c.settimeout(1)
            c.sendall(b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$3\r\ndir\r\n")
            return folder.encode() in c.recv(4096)
    except OSError:
        return False


def start_redis(args, folder):
    """redis-server with `args` on a port of its own, once it answers: (process, port).
    Should another process bind the port first, redis-server says so and exits, and
    the next port is tried."""
    logf = os.path.join(folder, "redis.log")
    for _ in range(8):
        port = free_port()
        argv = ["timeout", "900", "redis-server"] + args + [
            "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", folder, "--daemonize", "no", "--logfile", logf]
        before = os.path.getsize(logf) if os.path.exists(logf) else 0
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while p.poll() is None and time.monotonic() < deadline:
            if answers(port, folder):
                return p, port
            time.sleep(0.05)
        if p.poll() is None:
            p.kill()
            raise RuntimeError("redis-server on %d: no answer in 20 s" % port)
        with open(logf, encoding="utf-8", errors="replace") as f:
            f.seek(before)
            said = f.read()
        if "address already in use" not in said.lower():
            raise RuntimeError("redis-server on %d exited: %s" % (port, said[-2000:]))
    raise RuntimeError("redis-server: every port tried was taken")


def is_str_list(v):
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def check_service_spec(spec, svc):
    """Problems with a ServiceSpec sent to /services/{id}/update."""
    if not isinstance(spec, dict):
        return "update body is not a ServiceSpec object"
    if spec.get("Name") != svc["Spec"]["Name"]:
        return "update body changes or lacks Name: %r" % spec.get("Name")
    cs = (spec.get("TaskTemplate") or {}).get("ContainerSpec")
    if not isinstance(cs, dict) or not isinstance(cs.get("Image"), str):
        return "update body lacks TaskTemplate.ContainerSpec.Image"
    for key in ("Args", "Command", "Env"):
        if key in cs and not is_str_list(cs[key]):
            return "ContainerSpec.%s is not a list of strings: %r" % (key, cs[key])
    mode = spec.get("Mode")
    if not isinstance(mode, dict) or len(mode) != 1:
        return "update body needs exactly one Mode: %r" % mode
    rep = mode.get("Replicated")
    if rep is not None and (not isinstance(rep.get("Replicas"), int) or rep["Replicas"] < 0):
        return "Mode.Replicated.Replicas is not a count: %r" % rep
    return None


class Docker(httpd.UnixHandler):
    def reply(self, status, value=None):
        self.send(status, "" if value is None else json.dumps(value))

    def refuse(self, problem, status=400):
        log({"problem": problem, "method": self.command, "path": self.path})
        self.reply(status, {"message": "stand-in: " + problem})

    def serve(self):
        body = self.read_body()
        self.record(body)
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if not url.path.startswith(API + "/"):
            return self.refuse("path is not under " + API)
        parts = url.path[len(API) + 1:].split("/")
        data = None
        if body:
            if not self.headers.get("Content-Type", "").startswith("application/json"):
                return self.refuse("body without Content-Type: application/json")
            try:
                data = json.loads(body)
            except ValueError:
                return self.refuse("body is not JSON")
        with LOCK:
            return self.route(parts, query, data)

    def route(self, parts, query, data):
        m = self.command
        if m == "GET" and len(parts) == 2 and parts[0] == "services":
            svc = self.find_service(parts[1])
            if not svc:
                return self.reply(404, {"message": "service %s not found" % parts[1]})
            return self.reply(200, svc)
        if m == "POST" and len(parts) == 3 and parts[0] == "services" and parts[2] == "update":
            return self.update(parts[1], query, data)
        if m == "POST" and parts == ["images", "create"]:
            image = query.get("fromImage", [""])[0]
            tag = query.get("tag", ["latest"])[0]
            if not image:
                return self.refuse("images/create without fromImage")
            STATE["images"].add(image + ":" + tag)
            return self.send(200, '{"status":"Pulling from library/%s"}\n' % image)
        if m == "POST" and parts == ["containers", "create"]:
            return self.create(query, data)
        if m == "POST" and len(parts) == 3 and parts[0] == "containers" and parts[2] == "start":
            return self.start(parts[1])
        return self.refuse("no such endpoint: %s %s" % (m, self.path), 404)

    def find_service(self, key):
        for svc in STATE["services"].values():
            if key in (svc["ID"], svc["Spec"]["Name"]):
                return svc
        return None

    def update(self, key, query, spec):
        svc = STATE["services"].get(key)
        if not svc:
            return self.refuse("update addresses the service by %r, not by its ID" % key, 404)
        version = query.get("version", [None])[0]
        if version is None or not version.isdigit():
            return self.refuse("update without ?version=<Version.Index>")
        problem = check_service_spec(spec, svc)
        if problem:
            return self.refuse(problem)
        if STATE["conflict_once"]:
            STATE["conflict_once"] = False
            svc["Version"]["Index"] += 1  # someone else's update, just before ours
        if int(version) != svc["Version"]["Index"]:
            log({"conflict": int(version), "current": svc["Version"]["Index"]})
            return self.reply(500, {"message": "rpc error: code = Unknown desc = update out of sequence"})
        svc["Spec"] = spec
        svc["Version"]["Index"] += 1
        log({"updated": svc["ID"], "version": int(version), "spec": spec})
        return self.reply(200, {"Warnings": []})

    def create(self, query, data):
        if not isinstance(data, dict) or not isinstance(data.get("Image"), str):
            return self.refuse("containers/create body lacks Image")
        for key in ("Cmd", "Env"):
            if data.get(key) is not None and not is_str_list(data[key]):
                return self.refuse("%s is not a list of strings: %r" % (key, data[key]))
        hc = data.get("HostConfig")
        if hc is not None and not isinstance(hc, dict):
            return self.refuse("HostConfig is not an object")
        image = data["Image"] if ":" in data["Image"] else data["Image"] + ":latest"
        if image not in STATE["images"]:
            return self.reply(404, {"message": "No such image: " + data["Image"]})
        name = query.get("name", [None])[0]
        if name and any(c["name"] == name for c in STATE["containers"].values()):
            return self.reply(409, {"message": 'Conflict. The container name "/%s" is already in use' % name})
        cid = secrets.token_hex(32)
        STATE["containers"][cid] = {"name": name, "config": data, "running": False}
        return self.reply(201, {"Id": cid, "Warnings": []})

    def start(self, cid):
        c = STATE["containers"].get(cid)
        if not c:
            return self.reply(404, {"message": "No such container: " + cid})
        if c["running"]:
            return self.send(304)
        cmd = c["config"].get("Cmd") or []
        if cmd and cmd[0] == "redis-server":
            d = os.path.join(STATE["dir"], cid[:12])
            os.makedirs(d, exist_ok=True)
            p, port = start_redis(cmd[1:], d)
            STATE["children"].append(p)
            log({"started": cid, "port": port, "pid": p.pid, "cmd": cmd})
        c["running"] = True
        return self.send(204)


def main(argv):
    unix = None
    args = iter(argv)
    for a in args:
        if a == "--unix":
            unix = next(args)
        elif a == "--log":
            STATE["log"] = next(args)
        elif a == "--dir":
            STATE["dir"] = next(args)
        elif a == "--service":
            name = next(args)
            STATE["services"][secrets.token_hex(12)] = None
            sid = list(STATE["services"])[-1]
            STATE["services"][sid] = {"ID": sid, "Version": {"Index": 11}, "Spec": {
                "Name": name, "Labels": {},
                "TaskTemplate": {"ContainerSpec": {"Image": "redis:7", "Args": []}},
                "Mode": {"Replicated": {"Replicas": 2}},
                "EndpointSpec": {"Mode": "vip"}}}
        elif a == "--conflict-once":
            STATE["conflict_once"] = True
        elif a == "--image-missing":
            pass
        else:
            sys.exit("dockerd.py: unknown option " + a)
    if "--image-missing" not in argv:
        STATE["images"].add("redis:7")
    httpd.OPTS["log"] = STATE["log"]
    if os.path.exists(unix):
        os.unlink(unix)
    server = httpd.UnixServer(unix, Docker)

    def stop_children():
        for p in STATE["children"]:
            p.terminate()

    httpd.serve(server, unix, stop_children)


if __name__ == "__main__":
    main(sys.argv[1:])
