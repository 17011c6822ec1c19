#!/usr/bin/env python3
"""Soak test for the coserve binary (Python 3 standard library only).

Starts the binary on 127.0.0.1 (port 0) serving a generated site, runs a
mixed load against it for a fixed time, checks every body byte against the
file it came from, samples the server's RSS and descriptor count, stops the
server with SIGTERM and prints a summary. Exits non-zero on any error, any
wrong byte, a descriptor leak, or an unclean exit.

    scripts/bench/soak.py --binary target/release/coserve [--seconds N]

Usually run through scripts/bench/soak.sh, which builds the release binary
and reads SOAK_MINUTES / SOAK_SECONDS. Responses are read by the scripts'
one HTTP/1.1 client (scripts/lib/http1.py), /proc by scripts/lib/procfs.py.

The load (worker threads pick a kind at random, by weight):
  small      keep-alive GETs of small files (several per connection)
  large      GET of an 8 MB file
  head       HEAD: Content-Length right, no body
  range      one byte range (206, Content-Range, bytes)
  multirange two or three ranges (206 multipart/byteranges, every part)
  cond       If-None-Match / If-Modified-Since (304), a stale ETag (200),
             If-Range (206)
  abort      a large GET abandoned mid-body, by a reset or a FIN
  bad        malformed requests and smuggling attempts: one 400, then close
and, on threads of their own, slowloris clients that trickle a request
head one byte at a time and must get a 408 and a close.
"""

import argparse
import os
import random
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import procfs  # noqa: E402
from http1 import Conn as HttpConn, HttpError  # noqa: E402
from http1 import get as http_get  # noqa: E402

WORKERS = 8
SLOWLORIS = 3
HEADER_TIMEOUT = 2  # the server's --header-timeout, seconds
IO_TIMEOUT = 30  # any single socket wait, seconds
SAMPLE_EVERY = 2.0

SMALL_SIZES = [0, 1, 100, 1000, 4096, 10_000, 65_535, 65_536, 65_537, 300_000]
LARGE_SIZE = 8 * 1000 * 1000


def pattern(n, period, shift):
    base = bytes((i + shift) % 256 for i in range(period))
    return (base * (n // period + 1))[:n]


def make_site(root):
    files = {}
    for i, size in enumerate(SMALL_SIZES):
        files[f"/s{i}.bin"] = pattern(size, 241 - i * 2, i * 13)
    files["/large.bin"] = pattern(LARGE_SIZE, 251, 7)
    files["/index.html"] = b"<!doctype html><title>soak</title>soak\n"
    for path, data in files.items():
        with open(os.path.join(root, path.lstrip("/")), "wb") as f:
            f.write(data)
    return files


class Failure(Exception):
    pass


def Conn(addr, rcvbuf=None):
    """A client connection to the server, every wait bounded by IO_TIMEOUT."""
    return HttpConn(addr[0], addr[1], timeout=IO_TIMEOUT, rcvbuf=rcvbuf)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = defaultdict(int)
        self.errors = defaultdict(int)
        self.error_samples = []
        self.wrong_bytes = 0
        self.body_bytes = 0

    def ok(self, kind, n=1):
        with self.lock:
            self.requests[kind] += n

    def error(self, kind, msg):
        with self.lock:
            self.errors[kind] += 1
            if len(self.error_samples) < 20:
                self.error_samples.append(f"{kind}: {msg}")

    def check(self, kind, got, expected):
        """Counts body bytes and wrong ones; True if they match."""
        wrong = 0
        if bytes(got) != expected:
            wrong = sum(1 for a, b in zip(got, expected) if a != b)
            wrong += abs(len(got) - len(expected))
        with self.lock:
            self.body_bytes += len(got)
            self.wrong_bytes += wrong
        if wrong:
            raise Failure(f"{wrong} wrong bytes ({len(got)} vs {len(expected)})")
        return True


def expect(cond, msg):
    if not cond:
        raise Failure(msg)


def get(path, extra=""):
    return http_get(path, "soak", extra)


# ---------------------------------------------------------------------------
# Kinds of load. Each returns normally or raises Failure / OSError.


def do_small(addr, files, stats, rng):
    c = Conn(addr)
    try:
        smalls = [p for p in files if p.startswith("/s")] + ["/index.html"]
        n = rng.randint(1, 8)
        paths = [rng.choice(smalls) for _ in range(n)]
        if rng.random() < 0.5:
            c.send(b"".join(get(p) for p in paths))  # pipelined
            for p in paths:
                r = c.response()
                expect(r.status == 200, f"{p}: status {r.status}")
                stats.check("small", r.body, files[p])
                stats.ok("small")
        else:
            for p in paths:
                c.send(get(p))
                r = c.response()
                expect(r.status == 200, f"{p}: status {r.status}")
                stats.check("small", r.body, files[p])
                stats.ok("small")
    finally:
        c.close()


def do_large(addr, files, stats, rng):
    c = Conn(addr)
    try:
        c.send(get("/large.bin"))
        r = c.response()
        expect(r.status == 200, f"status {r.status}")
        stats.check("large", r.body, files["/large.bin"])
        stats.ok("large")
    finally:
        c.close()


def do_head(addr, files, stats, rng):
    c = Conn(addr)
    try:
        p = rng.choice(list(files))
        c.send(f"HEAD {p} HTTP/1.1\r\nHost: soak\r\n\r\n".encode() + get("/index.html"))
        r = c.response(head=True)
        expect(r.status == 200, f"HEAD {p}: status {r.status}")
        expect(
            r.h("content-length") == str(len(files[p])),
            f"HEAD {p}: Content-Length {r.h('content-length')}",
        )
        # The next response must start right after the head: no body leaked.
        r = c.response()
        expect(r.status == 200, f"GET after HEAD: status {r.status}")
        stats.check("head", r.body, files["/index.html"])
        stats.ok("head")
    finally:
        c.close()


def do_range(addr, files, stats, rng):
    p = rng.choice(["/large.bin", "/s9.bin", "/s5.bin"])
    data = files[p]
    a = rng.randrange(len(data))
    b = rng.randrange(a, min(len(data), a + 2_000_000))
    form = rng.random()
    if form < 0.6:
        spec, lo, hi = f"{a}-{b}", a, b
    elif form < 0.8:
        spec, lo, hi = f"{a}-", a, len(data) - 1
    else:
        k = rng.randint(1, len(data))
        spec, lo, hi = f"-{k}", len(data) - k, len(data) - 1
    c = Conn(addr)
    try:
        c.send(get(p, f"Range: bytes={spec}\r\n"))
        r = c.response()
        expect(r.status == 206, f"{p} {spec}: status {r.status}")
        expect(
            r.h("content-range") == f"bytes {lo}-{hi}/{len(data)}",
            f"{p} {spec}: Content-Range {r.h('content-range')}",
        )
        stats.check("range", r.body, data[lo : hi + 1])
        stats.ok("range")
    finally:
        c.close()


def parse_multipart(body, boundary):
    """Returns [(first, last, total, bytes)] of a multipart/byteranges body."""
    delim = b"--" + boundary.encode()
    body = bytes(body)
    i = body.find(delim)
    expect(i >= 0 and body[:i].strip() == b"", "no first boundary")
    i += len(delim)
    parts = []
    while True:
        if body[i : i + 2] == b"--":
            return parts
        expect(body[i : i + 2] == b"\r\n", "no CRLF after a boundary")
        end = body.find(b"\r\n\r\n", i)
        expect(end >= 0, "no end of part headers")
        m = re.search(rb"(?i)content-range:\s*bytes (\d+)-(\d+)/(\d+)", body[i:end])
        expect(m, "part without Content-Range")
        first, last, total = (int(x) for x in m.groups())
        start = end + 4
        stop = start + last - first + 1
        parts.append((first, last, total, body[start:stop]))
        expect(body[stop : stop + 2 + len(delim)] == b"\r\n" + delim, "no boundary after a part")
        i = stop + 2 + len(delim)


def do_multirange(addr, files, stats, rng):
    data = files["/large.bin"]
    n = rng.randint(2, 3)
    # Separated ranges, in order.
    cuts = sorted(rng.sample(range(0, len(data), 1000), n * 2))
    ranges = [(cuts[2 * k], cuts[2 * k + 1] - 1) for k in range(n)]
    spec = ",".join(f"{a}-{b}" for a, b in ranges)
    c = Conn(addr)
    try:
        c.send(get("/large.bin", f"Range: bytes={spec}\r\n"))
        r = c.response()
        expect(r.status == 206, f"{spec}: status {r.status}")
        m = re.match(r"multipart/byteranges;\s*boundary=\"?([^\";]+)\"?", r.h("content-type") or "")
        expect(m, f"{spec}: Content-Type {r.h('content-type')}")
        parts = parse_multipart(r.body, m.group(1))
        expect(
            [(a, b) for a, b, _, _ in parts] == ranges,
            f"{spec}: parts {[(a, b) for a, b, _, _ in parts]}",
        )
        for first, last, total, part in parts:
            expect(total == len(data), f"{spec}: total {total}")
            stats.check("multirange", part, data[first : last + 1])
        stats.ok("multirange")
    finally:
        c.close()


def do_cond(addr, files, stats, rng):
    p = rng.choice(["/s4.bin", "/index.html", "/large.bin"])
    data = files[p]
    c = Conn(addr)
    try:
        c.send(f"HEAD {p} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
        r = c.response(head=True)
        etag, lm = r.h("etag"), r.h("last-modified")
        expect(r.status == 200 and etag is not None and lm is not None, f"{p}: {r.headers}")
        c.send(get(p, f"If-None-Match: {etag}\r\n"))
        r = c.response()
        expect(r.status == 304, f"{p} If-None-Match current: {r.status}")
        c.send(get(p, f"If-Modified-Since: {lm}\r\n"))
        r = c.response()
        expect(r.status == 304, f"{p} If-Modified-Since: {r.status}")
        c.send(get(p, 'If-None-Match: "stale"\r\n'))
        r = c.response()
        expect(r.status == 200, f"{p} If-None-Match stale: {r.status}")
        stats.check("cond", r.body, data)
        if len(data) > 10:
            c.send(get(p, f"If-Range: {etag}\r\nRange: bytes=5-9\r\n"))
            r = c.response()
            expect(r.status == 206, f"{p} If-Range current: {r.status}")
            stats.check("cond", r.body, data[5:10])
            c.send(get(p, 'If-Range: "stale"\r\nRange: bytes=5-9\r\n'))
            r = c.response()
            expect(r.status == 200, f"{p} If-Range stale: {r.status}")
            stats.check("cond", r.body, data)
        stats.ok("cond", 6 if len(data) > 10 else 4)
    finally:
        c.close()


def do_abort(addr, files, stats, rng):
    data = files["/large.bin"]
    c = Conn(addr, rcvbuf=rng.choice([None, 16384]))
    c.send(get("/large.bin"))
    r = c.read_head()
    expect(r.status == 200, f"status {r.status}")
    want = rng.randrange(1, 2_000_000)
    got = c.read_body(want)
    stats.check("abort", got, data[:want])
    if rng.random() < 0.7:
        c.reset()
    else:
        c.close()
    stats.ok("abort")


BAD = [
    # Smuggling: both framings, duplicate lengths, obfuscated codings.
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /s0.bin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /s1.bin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
    # Malformed lines.
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
    b"GET /\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"G\x00T / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX\x01: y\r\n\r\n",
]


def do_bad(addr, files, stats, rng):
    req = rng.choice(BAD)
    c = Conn(addr)
    try:
        c.send(req)
        out, how = c.read_to_close()
        m = re.match(rb"HTTP/1\.1 (\d{3}) ", out)
        expect(m, f"{req[:40]!r}: no response ({how}, {out[:60]!r})")
        expect(m.group(1) == b"400", f"{req[:40]!r}: status {m.group(1)}")
        # Exactly one response: nothing smuggled through.
        expect(out.count(b"HTTP/1.1 ") == 1, f"{req[:40]!r}: {out.count(b'HTTP/1.1 ')} responses")
        i = out.find(b"\r\n\r\n")
        head = out[: i + 4].decode("latin-1").lower()
        expect("connection: close" in head, f"{req[:40]!r}: no Connection: close")
        n = int(re.search(r"content-length:\s*(\d+)", head).group(1))
        expect(len(out) == i + 4 + n, f"{req[:40]!r}: {len(out) - i - 4} body bytes, {n} announced")
        stats.ok("bad")
    finally:
        c.close()


KINDS = [
    (do_small, 30),
    (do_large, 6),
    (do_head, 8),
    (do_range, 12),
    (do_multirange, 6),
    (do_cond, 10),
    (do_abort, 6),
    (do_bad, 12),
]


def worker(addr, files, stats, stop, seed):
    rng = random.Random(seed)
    funcs = [f for f, _ in KINDS]
    weights = [w for _, w in KINDS]
    while not stop.is_set():
        f = rng.choices(funcs, weights)[0]
        kind = f.__name__[3:]
        try:
            f(addr, files, stats, rng)
        except (Failure, HttpError, OSError) as e:
            stats.error(kind, f"{type(e).__name__}: {e}")


def slowloris(addr, stats, stop, seed):
    """Trickles a request head until the server answers 408 and closes."""
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            c = Conn(addr)
            started = time.monotonic()
            c.send(b"GET /index.html HTTP/1.1\r\nHost: soak\r\n")
            answered = None
            while time.monotonic() - started < HEADER_TIMEOUT + 5:
                # Pacing, as a slowloris client does; the wait on the socket
                # is what detects the server's answer.
                r, _, _ = select.select([c.sock], [], [], 0.2 + rng.random() * 0.2)
                if r:
                    answered, how = c.read_to_close()
                    break
                try:
                    c.send(b"X")
                except OSError:
                    answered, how = c.read_to_close()
                    break
            took = time.monotonic() - started
            c.close()
            if answered is None:
                stats.error("slowloris", f"no answer after {took:.1f}s")
            elif not answered.startswith(b"HTTP/1.1 408 "):
                stats.error("slowloris", f"answer {answered[:40]!r} ({how}) after {took:.1f}s")
            elif took > HEADER_TIMEOUT + 2:
                stats.error("slowloris", f"408 only after {took:.1f}s")
            else:
                stats.ok("slowloris")
        except (Failure, HttpError, OSError) as e:
            stats.error("slowloris", f"{type(e).__name__}: {e}")


def sample(pid):
    """The server's RSS (kB), open descriptors and open sockets; None once
    it is gone."""
    try:
        fds = procfs.fd_targets(pid)
        sockets = sum(t.startswith("socket:") for t in fds.values())
        return procfs.rss_kib(pid), len(fds), sockets
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()

    site = tempfile.TemporaryDirectory(prefix="coserve-soak-")
    files = make_site(site.name)
    server = subprocess.Popen(
        [
            args.binary, "0", "-q", "-b", "127.0.0.1", "-d", site.name,
            "--header-timeout", str(HEADER_TIMEOUT),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    stderr_chunks = []
    line = server.stdout.readline().decode()
    m = re.search(r"port (\d+) ", line)
    if not m:
        server.kill()
        sys.exit(f"soak: no startup line: {line!r} {server.stderr.read()!r}")
    stderr_reader = threading.Thread(
        target=lambda: stderr_chunks.append(server.stderr.read()), daemon=True
    )
    stderr_reader.start()
    addr = ("127.0.0.1", int(m.group(1)))
    fresh = sample(server.pid)
    # Warm up: one of each kind, so that what the runtime creates lazily (an
    # epoll instance and an eventfd per worker) is in the baseline.
    stats = Stats()
    rng = random.Random(args.seed)
    for f, _ in KINDS:
        try:
            f(addr, files, stats, rng)
        except (Failure, HttpError, OSError) as e:
            stats.error(f.__name__[3:], f"warm-up: {type(e).__name__}: {e}")
    idle = fresh
    for _ in range(100):  # the warm-up's connections close
        idle = sample(server.pid)
        if idle[2] <= fresh[2]:
            break
        time.sleep(0.05)  # observation interval of a bounded poll of /proc
    print(
        f"soak: coserve pid {server.pid} on port {addr[1]}, {args.seconds:.0f} s, "
        f"{WORKERS} workers + {SLOWLORIS} slowloris, seed {args.seed}; "
        f"fresh: RSS {fresh[0]} kB, {fresh[1]} fds; after warm-up: RSS {idle[0]} kB, {idle[1]} fds",
        flush=True,
    )

    stop = threading.Event()
    threads = [
        threading.Thread(target=worker, args=(addr, files, stats, stop, args.seed + i))
        for i in range(WORKERS)
    ] + [
        threading.Thread(target=slowloris, args=(addr, stats, stop, args.seed + 100 + i))
        for i in range(SLOWLORIS)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    samples = []  # (seconds, rss kB, fds)
    last_report = started
    while True:
        now = time.monotonic()
        if now - started >= args.seconds or server.poll() is not None:
            break
        s = sample(server.pid)
        if s:
            samples.append((now - started, s[0], s[1]))
        if now - last_report >= 60:
            last_report = now
            with stats.lock:
                total = sum(stats.requests.values())
                errs = sum(stats.errors.values())
            print(
                f"soak: {now - started:5.0f} s: {total} requests, {errs} errors, "
                f"{stats.wrong_bytes} wrong bytes; RSS {s[0] if s else '?'} kB, "
                f"{s[1] if s else '?'} fds",
                flush=True,
            )
        stop.wait(SAMPLE_EVERY)
    stop.set()
    for t in threads:
        t.join(IO_TIMEOUT + 10)
    elapsed = time.monotonic() - started
    alive = [t for t in threads if t.is_alive()]

    # Connections drain: the server's descriptors go back to the idle count.
    drained = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.poll() is None:
        drained = sample(server.pid)
        if drained and drained[1] <= idle[1] and drained[2] <= fresh[2]:
            break
        time.sleep(0.1)  # observation interval of a bounded poll of /proc

    fd_targets = []
    if server.poll() is None:
        open_fds = procfs.fd_targets(server.pid)
        fd_targets = [f"{fd}:{open_fds[fd]}" for fd in sorted(open_fds)]

    t0 = time.monotonic()
    exit_code = None
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            exit_code = server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            exit_code = server.wait()
    else:
        exit_code = server.returncode
    exit_after = time.monotonic() - t0
    stderr_reader.join(5)  # EOF once the server has exited
    err_text = b"".join(stderr_chunks).decode(errors="replace").strip()

    # Summary.
    print()
    print(f"soak summary ({elapsed:.0f} s, seed {args.seed})")
    print(f"  {'kind':<12}{'ok':>10}{'errors':>8}")
    for kind in [f.__name__[3:] for f, _ in KINDS] + ["slowloris"]:
        print(f"  {kind:<12}{stats.requests[kind]:>10}{stats.errors[kind]:>8}")
    total = sum(stats.requests.values())
    errors = sum(stats.errors.values())
    print(f"  {'total':<12}{total:>10}{errors:>8}   ({total / elapsed:.0f}/s)")
    print(f"  body bytes checked: {stats.body_bytes} ({stats.body_bytes / elapsed / 1e6:.0f} MB/s); wrong bytes: {stats.wrong_bytes}")
    for e in stats.error_samples:
        print(f"  error: {e}")

    ok = errors == 0 and stats.wrong_bytes == 0 and not alive
    if samples:
        rss = [s[1] for s in samples]
        fds = [s[2] for s in samples]
        half = len(samples) // 2 or 1
        print(f"  RSS kB: fresh {fresh[0]}, warmed {idle[0]}, start {rss[0]}, max {max(rss)}, end {rss[-1]}, "
              f"first-half max {max(rss[:half])}, second-half max {max(rss[half:] or rss)}")
        print(f"  fds:    fresh {fresh[1]}, warmed {idle[1]}, start {fds[0]}, max {max(fds)}, end {fds[-1]}, "
              f"after drain {drained[1] if drained else '?'}")
        # Flat: the second half of the run never exceeds the first half's
        # peak by more than 10% + 8 MB (allocator noise), and the
        # descriptors return to the warmed-up count once the clients are gone.
        rss_flat = max(rss[half:] or rss) <= max(rss[:half]) * 1.10 + 8192
        fds_back = drained is not None and drained[1] <= idle[1] and drained[2] <= fresh[2]
        print(f"  RSS flat: {'yes' if rss_flat else 'NO'}; descriptors back to the warmed count: {'yes' if fds_back else 'NO'}")
        ok = ok and rss_flat and fds_back
        if not fds_back:
            print(f"  open after drain: {' '.join(fd_targets)}")
        print(f"  samples: {len(samples)} every {SAMPLE_EVERY:.0f} s")
    print(f"  SIGTERM: exit status {exit_code} after {exit_after:.2f} s")
    if alive:
        print(f"  {len(alive)} client threads did not stop")
    if err_text:
        print(f"  server stderr: {err_text[:2000]}")
    ok = ok and exit_code == 0
    print(f"soak: {'PASS' if ok else 'FAIL'}")
    site.cleanup()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
