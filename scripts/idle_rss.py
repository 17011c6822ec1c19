#!/usr/bin/env python3
"""Server memory per idle keep-alive connection.

    scripts/idle_rss.py HOST PORT COUNT PID [PID ...]

Reads the resident memory of the server processes (summed, so nginx's
master and workers count together), opens COUNT keep-alive connections that
each make one GET / and read the whole answer, leaves them idle for 2 s,
waits until the server's RSS stops moving, reads it again, and prints

    idle conns=COUNT rss_before_kib=... rss_held_kib=... per_conn_kib=...

The connections are then closed. Loopback only; every connection is checked
(status 200, the whole body read), and a failure ends the run with status 1.
"""
import resource
import socket
import sys
import time

from http1 import read_response


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


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


def one_request(host, port, path):
    s = socket.create_connection((host, port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    status, _ = read_response(s.makefile("rb"))
    if status != 200:
        raise RuntimeError(f"status {status}")
    return s


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pids = [int(p) for p in sys.argv[4:]]
    path = "/"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    before = settled(pids)
    socks = []
    try:
        for _ in range(count):
            socks.append(one_request(host, port, path))
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
        except BlockingIOError:
            pass
    per = (held - before) / count
    print(f"idle conns={count} rss_before_kib={before} rss_held_kib={held} per_conn_kib={per:.2f}")
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
