#!/usr/bin/env python3
"""Write the fuzzers' seed corpora, at build time, from what a real Sentinel
sends (../shared/sentinel/: the recorded failover corpus and the examples in
events.md), the Go eventilator's configs (../shared/legacy/) and this repo's
example configs.

    seeds.py <shared dir> <source dir> <output dir>

Makes <output dir>/event, /config and /redis_reply, one file per seed.
"""
import hashlib
import json
import os
import re
import sys


def resp(value):
    """RESP2 encoding, as a Redis server or Sentinel would send it."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(resp(v) for v in value)
    data = value.encode() if isinstance(value, str) else value
    return b"$%d\r\n%s\r\n" % (len(data), data)


def main():
    shared, src, out = sys.argv[1:4]
    dirs = {k: os.path.join(out, k) for k in ("event", "config", "redis_reply")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)

    def put(kind, data):
        if isinstance(data, str):
            data = data.encode()
        name = hashlib.sha1(data).hexdigest()[:16]
        with open(os.path.join(dirs[kind], name), "wb") as f:
            f.write(data)

    events = []  # (type, description)
    reconfigs = []
    corpus = os.path.join(shared, "sentinel", "corpus-failover.jsonl")
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            args = rec.get("args", [])
            if len(args) == 2:
                events.append((args[0], args[1]))
            elif len(args) == 7:
                reconfigs.append(args)
    # events.md: table rows "| `+name` | ... | `example` ..." give more shapes
    with open(os.path.join(shared, "sentinel", "events.md"), encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\|\s*`([+-][a-z-]+)`", line)
            if not m:
                continue
            for ex in re.findall(r"`([^`]+)`", line)[1:]:
                if " " in ex and not ex.startswith("%"):
                    events.append((m.group(1), ex))

    for typ, desc in events:
        put("event", "%s\n%s" % (typ, desc))
        # as Sentinel publishes it on Pub/Sub, and as a reply to SENTINEL commands
        put("redis_reply", resp(["message", typ, desc]))
    for args in reconfigs:
        put("event", "R" + "\n".join(args))
    for typ, desc in events[:5]:
        put("redis_reply", resp(["pmessage", "*", typ, desc]))
    put("redis_reply", resp([["name", "mymaster", "ip", "127.0.0.1", "port", "6379",
                              "flags", "master", "quorum", "2"]]))
    put("redis_reply", b"+OK\r\n" + b":42\r\n" + b"-ERR unknown command\r\n" + resp(None) +
        b"*-1\r\n" + resp([]) + resp([[1, [2, [3, None]]], "x"]))
    put("redis_reply", b"$8000000000\r\nxxxx")

    for d in (os.path.join(shared, "legacy"), os.path.join(src, "conf")):
        for name in sorted(os.listdir(d)):
            if name.endswith((".conf", ".example")):
                with open(os.path.join(d, name), "rb") as f:
                    put("config", f.read())
    put("config", 'local name = "db1"\nhosts = {\n  [name] = "10.0.0.9",\n}\n')
    put("config", "[Slack]\nEnabled = true\nTriggerOn = [\"+sdown\"]\n")


if __name__ == "__main__":
    main()
