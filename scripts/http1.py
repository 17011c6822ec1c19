"""The one HTTP/1.1 response reader the measurement scripts share
(idle_rss.py, requests.py): a status line, header fields and a
Content-Length body, from a binary file object (`sock.makefile("rb")`)."""


def read_response(f):
    """Reads one response; returns (status code, body). Raises RuntimeError
    on a malformed head, a missing Content-Length or an early close."""
    status_line = f.readline()
    parts = status_line.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise RuntimeError(f"bad status line {status_line!r}")
    length = None
    while True:
        line = f.readline()
        if line == b"":
            raise RuntimeError("closed before the end of the head")
        if line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise RuntimeError("no Content-Length")
    body = f.read(length)
    if len(body) < length:
        raise RuntimeError("closed in the body")
    return int(parts[1]), body
