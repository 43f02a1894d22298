#!/usr/bin/env python3
"""systemd's notification socket, for the specs (python3 stdlib only).

    notifyd.py SOCKET LOG

Binds a unix datagram socket at SOCKET (the path a service finds in
$NOTIFY_SOCKET) and appends every datagram to LOG as one line:
"<monotonic seconds> <message, newlines as |>", flushed at once, so a spec
can read what the service said and when (READY=1, STATUS=..., WATCHDOG=1).
Runs until killed.
"""
import os
import socket
import sys
import time


def main():
    path, log = sys.argv[1], sys.argv[2]
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    with open(log, "a", encoding="utf-8") as out:
        out.write("%.6f listening\n" % time.monotonic())
        out.flush()
        while True:
            msg = s.recv(65536).decode("utf-8", "replace")
            out.write("%.6f %s\n" % (time.monotonic(), msg.replace("\n", "|")))
            out.flush()


if __name__ == "__main__":
    main()
