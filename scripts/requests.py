#!/usr/bin/env python3
"""Sends exactly COUNT keep-alive GETs for PATH over CONNS connections,
round robin, and checks every answer is a 200 with the same body length.

    scripts/requests.py HOST PORT PATH COUNT [CONNS]

For instruction counts (scripts/callgrind.sh), where a fixed amount of
work matters, not speed. Exits 1 on a wrong answer.
"""
import socket
import sys

from http1 import read_response


def main():
    host, port, path, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    conns = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    socks = [socket.create_connection((host, port)) for _ in range(conns)]
    files = [s.makefile("rb") for s in socks]
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    lengths = set()
    for i in range(count):
        socks[i % conns].sendall(request)
        status, body = read_response(files[i % conns])
        if status != 200:
            raise SystemExit(f"status {status}")
        lengths.add(len(body))
    if len(lengths) != 1:
        raise SystemExit(f"body lengths differ: {lengths}")
    print(f"{count} requests, body {lengths.pop()} bytes")


if __name__ == "__main__":
    main()
