#!/usr/bin/env python3
"""Server memory per idle keep-alive connection.

    scripts/bench/idle_rss.py [--tls] HOST PORT COUNT PID [PID ...]

Reads the resident memory of the server processes (summed, so nginx's
master and workers count together), opens COUNT keep-alive connections that
each make one GET / and read the whole answer, leaves them idle for 2 s,
waits until the server's RSS stops moving, reads it again, and prints

    idle conns=COUNT rss_before_kib=... rss_held_kib=... per_conn_kib=...

With --tls the connections speak HTTPS (any certificate is trusted: this
is for loopback measurements). The connections are then closed. Loopback only; every connection is checked
(status 200, the whole body read), and a failure ends the run with status 1.
"""
import os
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from http1 import Conn, get  # noqa: E402
from procfs import raise_nofile, rss_kib as process_rss_kib  # noqa: E402


def rss_kib(pids):
    return sum(process_rss_kib(pid) for pid in pids)


def settled(pids, within=10.0):
    """RSS once two readings 0.5 s apart agree within 1%."""
    last = rss_kib(pids)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss_kib(pids)
        if abs(now - last) <= max(last // 100, 64):
            return now
        last = now
    return last


def one_request(host, port, path, tls):
    c = Conn(host, port, timeout=30, tls=tls)
    c.send(get(path, host))
    r = c.response()
    if r.status != 200:
        raise RuntimeError(f"status {r.status}")
    return c.sock


def main():
    args = sys.argv[1:]
    tls = args[:1] == ["--tls"]
    if tls:
        args = args[1:]
    host, port, count = args[0], int(args[1]), int(args[2])
    pids = [int(p) for p in args[3:]]
    path = "/"
    raise_nofile()
    before = settled(pids)
    socks = []
    try:
        for _ in range(count):
            socks.append(one_request(host, port, path, tls))
    except Exception as e:  # noqa: BLE001
        print(f"idle failed after {len(socks)} connections: {e}", file=sys.stderr)
        return 1
    # Servers may free an idle connection's memory after a while (coserve:
    # --release-idle-after, 0.5 s by default); idle means idle for longer.
    time.sleep(2)
    held = settled(pids)
    # Every connection must still be open: a server that dropped idle
    # connections would look cheap.
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                print("idle failed: a connection was closed", file=sys.stderr)
                return 1
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
    per = (held - before) / count
    print(f"idle conns={count} rss_before_kib={before} rss_held_kib={held} per_conn_kib={per:.2f}")
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
