"""Ports on 127.0.0.1 for the scripts (Python 3 standard library only): one
the OS says is free, and waiting until something listens on one.

As a command, for shell scripts (scripts/lib/ports.sh wraps it):

    python3 scripts/lib/ports.py free             # prints a free port
    python3 scripts/lib/ports.py wait PORT [TRIES] # every 0.1 s, TRIES times (100)
"""

import socket
import sys
import time

HOST = "127.0.0.1"


def free_port(host=HOST):
    """A port free on `host` now (the OS picks it; it may be taken before use)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(port, seconds=10.0, alive=lambda: True, host=HOST):
    """Whether something accepts on `port` within `seconds`, trying every
    0.05 s for as long as `alive()` holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)  # the polling interval of a bounded wait
    return False


if __name__ == "__main__":
    if sys.argv[1:2] == ["free"]:
        print(free_port())
    elif sys.argv[1:2] == ["wait"] and len(sys.argv) in (3, 4):
        tries = int(sys.argv[3]) if len(sys.argv) == 4 else 100
        sys.exit(0 if wait_port(int(sys.argv[2]), tries * 0.1) else 1)
    else:
        sys.exit("usage: ports.py free | wait PORT [TRIES]")
