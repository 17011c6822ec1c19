#!/usr/bin/env python3
"""How a sender's write pattern meets the TCP congestion control: a
one-thread keep-alive server that answers every request with one file,
written by sendfile(2) in one of three patterns. Used for docs/performance.md's
"10 MiB scenario" note; not part of the server.

    scripts/bench/sendfile_pattern.py PORT FILE MODE
    wrk -t1 -c16 -d10s http://127.0.0.1:PORT/

MODE:
    turns      one CHUNK-byte sendfile per connection per epoll turn
               (level-triggered EPOLLOUT), corked only for the head and the
               first piece: lighttpd's pattern
    turnscork  the same, corked until the file is done
    eagain     sendfile until EAGAIN, then wait for an EPOLLOUT edge:
               coserve's and nginx's pattern

Environment: CHUNK (bytes, default 262144), NODELAY=1 sets TCP_NODELAY.
Listens on 127.0.0.1 only.
"""
import os
import select
import socket
import sys

port, path, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
chunk = int(os.environ.get("CHUNK", 262144))
nodelay = os.environ.get("NODELAY") == "1"
size = os.path.getsize(path)
head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(1024)
listener.setblocking(False)
ep = select.epoll()
ep.register(listener.fileno(), select.EPOLLIN)
conns = {}


class Conn:
    def __init__(self, sock):
        self.sock, self.buf, self.file, self.off, self.corked = sock, b"", None, 0, False


def close(fd):
    c = conns.pop(fd)
    ep.unregister(fd)
    if c.file is not None:
        os.close(c.file)
    c.sock.close()


def cork(c, on):
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, int(on))
    c.corked = on


while True:
    for fd, _ in ep.poll():
        if fd == listener.fileno():
            while True:
                try:
                    s, _ = listener.accept()
                except BlockingIOError:
                    break
                s.setblocking(False)
                if nodelay:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conns[s.fileno()] = Conn(s)
                ep.register(s.fileno(), select.EPOLLIN)
            continue
        c = conns.get(fd)
        if c is None:
            continue
        try:
            if c.file is None:
                data = c.sock.recv(8192)
                if not data:
                    close(fd)
                    continue
                c.buf += data
                if b"\r\n\r\n" not in c.buf:
                    continue
                c.buf = c.buf.split(b"\r\n\r\n", 1)[1]
                c.file, c.off = os.open(path, os.O_RDONLY), 0
                cork(c, True)
                c.sock.send(head)
                ep.modify(fd, select.EPOLLOUT | (select.EPOLLET if mode == "eagain" else 0))
            if mode == "eagain":
                while c.off < size:
                    c.off += os.sendfile(fd, c.file, c.off, size - c.off)
            else:
                c.off += os.sendfile(fd, c.file, c.off, min(chunk, size - c.off))
                if mode == "turns" and c.corked:
                    cork(c, False)
        except BlockingIOError:
            continue
        except OSError:
            close(fd)
            continue
        if c.off >= size:
            cork(c, False)
            os.close(c.file)
            c.file = None
            ep.modify(fd, select.EPOLLIN)
