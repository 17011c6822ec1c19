"""The one HTTP/1.1 client of the scripts (Python 3 standard library only):
scripts/bench/{idle_rss,requests,soak}.py and
scripts/conformance/compare_semantics.py read every response with it.

A `Conn` is one connection with a read buffer, so that it serves
keep-alive and pipelining alike. Every read has a deadline: the
connection's timeout, or one given per response.

- `read_response()` is tolerant, for comparing servers: it never raises on
  what a server sends; a response that could not be read whole comes back
  with `error` set ("timeout", "closed", "truncated", "garbage: ...").
  Interim 1xx responses are skipped; a body is framed by chunked coding,
  Content-Length or the close, and there is none for HEAD, 204 and 304.
- `response()`, `read_head()` and `read_body()` are strict, for load that
  checks every answer: anything but a well-framed HTTP/1.1 response with a
  Content-Length raises `HttpError`.

Scripts import it after putting scripts/lib on their path:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    from http1 import Conn
"""

from __future__ import annotations

import re
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Optional

# The longest response head read.
MAX_HEAD = 64 * 1024

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(r"\r?\n")
_STATUS_LINE = re.compile(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", re.ASCII)
# What bytes.strip() strips: a head is decoded as Latin-1, where str.strip()
# would strip more.
_WHITESPACE = " \t\n\r\x0b\x0c"


class HttpError(Exception):
    """A response that a strict read refused."""


@dataclass
class Resp:
    status: Optional[int] = None
    version: str = ""
    reason: str = ""
    headers: list = field(default_factory=list)
    body: bytes = b""
    error: Optional[str] = None  # "timeout", "closed", "reset", "garbage", "truncated", ...
    raw_head: bytes = b""

    def h(self, name: str) -> Optional[str]:
        """The first value of a header field, its name compared without case."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def hall(self, name: str) -> list:
        """Every value of a header field."""
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def short(self) -> str:
        if self.status is None:
            return self.error or "no response"
        s = str(self.status)
        if self.error:
            s += f" ({self.error})"
        return s


def _insecure_tls():
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Conn:
    """One client connection with its own read buffer."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 2.0,
        rcvbuf: Optional[int] = None,
        tls: bool = False,
    ):
        """`tls`: speak HTTPS, trusting any certificate (loopback
        measurements only)."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
            if tls:
                self.sock = _insecure_tls().wrap_socket(self.sock, server_hostname=host)
        except OSError:
            self.sock.close()
            raise
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.was_reset = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        """Closes with a reset (RST) instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data: bytes):
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _deadline(self, timeout: Optional[float]) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _fill(self, deadline: float) -> bool:
        """Reads more bytes into buf. False at EOF (or a reset); raises
        TimeoutError once the deadline has passed."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout:
            raise TimeoutError
        except (ConnectionResetError, BrokenPipeError):
            self.eof = self.was_reset = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _readline(self, deadline: float) -> Optional[bytes]:
        while b"\n" not in self.buf:
            if not self._fill(deadline):
                return None
        i = self.buf.index(b"\n")
        line = bytes(self.buf[:i])
        del self.buf[: i + 1]
        return line.rstrip(b"\r")

    def _readn(self, n: int, deadline: float) -> tuple:
        """Exactly n bytes and True; or, at EOF, what came and False. On a
        timeout what came stays buffered."""
        if len(self.buf) >= n:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out, True
        # Straight into the result: a large body is copied once.
        out = bytearray(n)
        view = memoryview(out)
        have = len(self.buf)
        view[:have] = self.buf
        self.buf.clear()
        try:
            while have < n and not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.sock.settimeout(left)
                try:
                    got = self.sock.recv_into(view[have:], min(n - have, 1 << 20))
                except socket.timeout:
                    raise TimeoutError
                except (ConnectionResetError, BrokenPipeError):
                    self.was_reset = True
                    got = 0
                if got == 0:
                    self.eof = True
                have += got
        except BaseException:
            self.buf[:0] = view[:have]
            raise
        finally:
            view.release()
        return bytes(out[:have]) if have < n else bytes(out), have == n

    def _take_all(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def _read_head(self, r: Resp, deadline: float) -> bool:
        """Reads the next final response head into r, skipping 1xx; False
        with r.error set when there is none."""
        while True:
            while True:
                if len(self.buf) >= 5 and not self.buf.startswith(b"HTTP/"):
                    while self._fill(deadline):
                        pass
                    r.body = self._take_all()
                    first = r.body.split(b"\n", 1)[0].strip()[:30].decode("latin-1")
                    r.error = f"no status line, bare body `{first}`"
                    return False
                m = _HEAD_END.search(self.buf)
                if m:
                    break
                if len(self.buf) > MAX_HEAD:
                    r.error = "head too long"
                    return False
                if not self._fill(deadline):
                    r.error = "closed" if not self.buf else "truncated head"
                    return False
            r.raw_head = bytes(self.buf[: m.end()])
            lines = _LINE_END.split(self.buf[: m.start()].decode("latin-1"))
            del self.buf[: m.end()]
            sm = _STATUS_LINE.match(lines[0])
            if not sm:
                r.error = "garbage: " + lines[0][:40]
                return False
            r.version = sm.group(1)
            r.status = int(sm.group(2))
            r.reason = sm.group(3) or ""
            r.headers = []
            for ln in lines[1:]:
                k, colon, v = ln.partition(":")
                if colon:
                    r.headers.append((k.strip(_WHITESPACE), v.strip(_WHITESPACE)))
            if not 100 <= r.status < 200:
                return True

    def read_response(self, head: bool = False, timeout: Optional[float] = None,
                      need_length: bool = False) -> Resp:
        """Reads one final response, tolerantly: see the module's doc.
        `head` says it answers a HEAD; with `need_length`, a body without a
        Content-Length is an error ("no Content-Length")."""
        deadline = self._deadline(timeout)
        r = Resp()
        try:
            if not self._read_head(r, deadline):
                return r
            if head or r.status in (204, 304):
                return r
            te = (r.h("transfer-encoding") or "").lower()
            cl = r.h("content-length")
            if need_length and cl is None:
                r.error = "no Content-Length"
                return r
            if "chunked" in te:
                body = bytearray()
                while True:
                    line = self._readline(deadline)
                    if line is None:
                        r.error = "truncated"
                        break
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while True:
                            t = self._readline(deadline)
                            if not t:
                                break
                        break
                    data, ok = self._readn(size + 2, deadline)
                    body += data[:size]
                    if not ok:
                        r.error = "truncated"
                        break
                r.body = bytes(body)
            elif cl is not None and cl.isdigit():
                r.body, ok = self._readn(int(cl), deadline)
                if not ok:
                    r.error = "truncated"
            else:
                while self._fill(deadline):
                    pass
                r.body = self._take_all()
        except TimeoutError:
            if r.status is None:
                r.error = "timeout"
            else:
                r.error = "timeout in body"
                r.body = self._take_all()
        except OSError as e:
            r.error = f"reset ({e.__class__.__name__})"
        return r

    def after(self, wait: Optional[float] = None) -> str:
        """What the connection does after a response: 'closed', 'open' or 'data:N'."""
        if self.buf:
            return f"data:{len(self.buf)}"
        try:
            if self._fill(self._deadline(wait)):
                return f"data:{len(self.buf)}"
            return "closed"
        except TimeoutError:
            return "open"
        except OSError:
            return "closed"

    def read_to_close(self, timeout: Optional[float] = None) -> tuple:
        """Everything until the server closes, and how it closed: "fin" or
        "reset". Raises TimeoutError if it does not close in time."""
        deadline = self._deadline(timeout)
        while self._fill(deadline):
            pass
        return self._take_all(), "reset" if self.was_reset else "fin"

    # Strict reads.

    def _strict(self, r: Resp) -> Resp:
        if r.error:
            raise HttpError(f"{r.error}: {r.raw_head[:80]!r}")
        if r.version != "HTTP/1.1":
            raise HttpError(f"not HTTP/1.1: {r.raw_head[:80]!r}")
        return r

    def response(self, head: bool = False) -> Resp:
        """One response, framed by Content-Length (none for HEAD, 204 and
        304); raises HttpError on anything else."""
        return self._strict(self.read_response(head, need_length=True))

    def read_head(self) -> Resp:
        """One response head; its body is left to read_body. Raises
        HttpError if there is none or it is malformed."""
        r = Resp()
        try:
            self._read_head(r, self._deadline(None))
        except TimeoutError:
            r.error = "timeout"
        return self._strict(r)

    def read_body(self, n: int) -> bytes:
        """Exactly n body bytes; raises HttpError at an early EOF."""
        data, ok = self._readn(n, self._deadline(None))
        if not ok:
            raise HttpError(f"EOF after {len(data)} of {n} body bytes")
        return data


def get(path: str, host: str = "127.0.0.1", extra: str = "") -> bytes:
    """The bytes of a keep-alive `GET path`, with extra header lines."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()
