#!/usr/bin/env python3
"""Sends exactly COUNT keep-alive GETs for PATH over CONNS connections,
round robin, and checks every answer is a 200 with the same body length.

    scripts/bench/requests.py HOST PORT PATH COUNT [CONNS]

PATH @FILE asks for the paths FILE lists (one URL path a line) in turn,
round and round, and checks only that each answer is a 200 (or a 404:
coserve hides dotfiles, which a site may have).

For instruction counts (scripts/bench/callgrind.sh), where a fixed amount
of work matters, not speed. Exits 1 on a wrong answer.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from http1 import Conn, get  # noqa: E402


def main():
    host, port, path, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    conns = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    # valgrind runs the server slowly: a generous bound on each answer.
    clients = [Conn(host, port, timeout=60) for _ in range(conns)]
    if path.startswith("@"):
        with open(path[1:]) as f:
            requests = [get(p.rstrip("\n"), host) for p in f if p.strip()]
    else:
        requests = [get(path, host)]
    lengths = set()
    for i in range(count):
        c = clients[i % conns]
        c.send(requests[i % len(requests)])
        r = c.response()
        if r.status != 200 and not (r.status == 404 and len(requests) > 1):
            raise SystemExit(f"status {r.status} for request {i}")
        lengths.add(len(r.body))
    if len(requests) > 1:
        print(f"{count} requests of {len(requests)} paths")
        return
    if len(lengths) != 1:
        raise SystemExit(f"body lengths differ: {lengths}")
    print(f"{count} requests, body {lengths.pop()} bytes")


if __name__ == "__main__":
    main()
