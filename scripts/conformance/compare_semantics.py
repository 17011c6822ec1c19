#!/usr/bin/env python3
"""Row-by-row HTTP behaviour comparison of coserve against other static servers.

Starts every server found on this machine on 127.0.0.1 (free ports only),
serving the same temporary root (rows 38 and 39 start one more instance each:
one user to log in as, no bind address), sends each of them the same raw
request bytes over plain sockets, and classifies what came back:

    ✅ pass    ❌ fail    ➖ other (legal-but-different, n/a, or not comparable)

Prints a Markdown table (rows = behaviours, columns = servers) and writes it,
with versions, configurations and the exact request bytes, to
scripts/conformance/compare_semantics.md next to this file.

Python 3 standard library only; responses are read by the scripts' one
HTTP/1.1 client, scripts/lib/http1.py, in its tolerant mode.  Every request
has a 2 s budget, so a hanging server shows up as "timeout".  All servers are
stopped and the temporary root removed at exit, also on error or Ctrl-C.

    python3 scripts/conformance/compare_semantics.py            # all servers found
    python3 scripts/conformance/compare_semantics.py --build    # cargo build --release first
    python3 scripts/conformance/compare_semantics.py --only coserve,nginx --no-write
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Optional

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(os.path.dirname(SCRIPT_DIR))
sys.path.insert(0, os.path.join(REPO_DIR, "scripts", "lib"))
from http1 import Conn, Resp  # noqa: E402
from ports import free_port, wait_port  # noqa: E402

HOST = "127.0.0.1"
TIMEOUT = 2.0
HOST_HDR = "Host: 127.0.0.1\r\n"   # identical Host header for every server
FIXED_MTIME = 1704164645           # Tue, 02 Jan 2024 03:04:05 GMT, for every file
OLD_DATE = "Sat, 01 Jan 2000 00:00:00 GMT"
BIG_LEN = 100_000
SECRET_MARKER = b"TOPSECRET-outside-the-root"
SHARED_JS = b"/* shared.js: outside the root, linked in as Debian's doc packages link their JS */\n"
OTHER_UID = 65534                  # nobody: the owner of the planted link's target
AUTH_USER, AUTH_PASS = "user", "pass"
# bcrypt of AUTH_PASS in the form `caddy hash-password` and `htpasswd -B` make, but at cost 5:
# caddy's cost, 14, takes about a second per check, half the 2 s budget of a request
AUTH_BCRYPT = "$2b$05$Y5OIWXJJyCWaUfwkeqH/8e8j.xBxMMWtlKYo1H.3FC7a25G7205yS"

PASS, FAIL, OTHER = "pass", "fail", "other"
MARK = {PASS: "✅", FAIL: "❌", OTHER: "➖"}


def req(method: str, target: str, *headers: str, version: str = "HTTP/1.1",
        host: bool = True, close: bool = True, body: bytes = b"") -> bytes:
    s = f"{method} {target} {version}\r\n"
    if host:
        s += HOST_HDR
    for h in headers:
        s += h + "\r\n"
    if close:
        s += "Connection: close\r\n"
    return (s + "\r\n").encode("latin-1") + body


# --------------------------------------------------------------------------
# the served tree
# --------------------------------------------------------------------------

INDEX_HTML = b"<!doctype html>\n<html><head><title>root</title></head><body>root index</body></html>\n"
SUB_INDEX = b"<!doctype html>\n<html><body>sub index</body></html>\n"
ODD_NAME = "<b>odd&name.txt"
ODD_BODY = b"odd file contents\n"
DOT_BODY = b"dotfile secret\n"


def make_app_js() -> bytes:
    lines = ["// app.js: test fixture for compare_semantics.py", "'use strict';"]
    for i in range(120):
        lines.append(f"export function f{i}(x) {{ return x * {i} + {i % 7}; }}")
    return ("\n".join(lines) + "\n").encode()


def make_big() -> bytes:
    out = bytearray()
    i = 0
    while len(out) < BIG_LEN:
        out += hashlib.sha256(i.to_bytes(4, "big")).digest()
        i += 1
    return bytes(out[:BIG_LEN])


def brotli_bytes(data: bytes, work: str) -> tuple:
    """Return (bytes, how). Real brotli when the module or CLI exists."""
    try:
        import brotli  # type: ignore
        return brotli.compress(data), "real brotli (Python module)"
    except ImportError:
        pass
    exe = shutil.which("brotli")
    if exe:
        src = os.path.join(work, "brotli-src.js")
        with open(src, "wb") as f:
            f.write(data)
        out = subprocess.run([exe, "-c", src], capture_output=True, timeout=30)
        os.unlink(src)
        if out.returncode == 0 and out.stdout:
            return out.stdout, f"real brotli ({exe} CLI)"
    return b"\x1b\x00ARBITRARY-NOT-BROTLI\n", "ARBITRARY bytes (no brotli module or CLI)"


@dataclass
class Tree:
    base: str
    root: str
    files: dict   # url path -> bytes
    br_how: str
    planted: bool  # secret.txt belongs to another user (needs root)


def make_tree(work: str) -> Tree:
    base = os.path.join(work, "base")
    root = os.path.join(base, "root")
    os.makedirs(os.path.join(root, "dir"))
    os.makedirs(os.path.join(root, "sub"))
    app = make_app_js()
    br, br_how = brotli_bytes(app, work)
    files = {
        "/index.html": INDEX_HTML,
        "/big.bin": make_big(),
        "/app.js": app,
        "/app.js.gz": gzip.compress(app, compresslevel=9, mtime=0),
        "/app.js.br": br,
        "/dir/" + ODD_NAME: ODD_BODY,
        "/dir/.hidden": DOT_BODY,
        "/.secret": DOT_BODY,
        "/sub/index.html": SUB_INDEX,
    }
    for path, data in files.items():
        p = os.path.join(root, path.lstrip("/"))
        with open(p, "wb") as f:
            f.write(data)
    with open(os.path.join(base, "secret.txt"), "wb") as f:
        f.write(SECRET_MARKER + b"\n")
    with open(os.path.join(base, "shared.js"), "wb") as f:
        f.write(SHARED_JS)
    os.symlink("../secret.txt", os.path.join(root, "outside-link.txt"))
    os.symlink("../shared.js", os.path.join(root, "shared.js"))
    # readable by servers that drop privileges (nginx workers run as nobody)
    for dirpath, dirnames, filenames in os.walk(work):
        os.chmod(dirpath, 0o755)
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            if not os.path.islink(p):
                os.chmod(p, 0o644)
    for dirpath, dirnames, filenames in os.walk(base):
        for fn in filenames + dirnames:
            os.utime(os.path.join(dirpath, fn), (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
        os.utime(dirpath, (FIXED_MTIME, FIXED_MTIME))
    # a link planted by someone else: the file it points at is another user's (0644 stays,
    # so that a server that follows it can read it and show the leak)
    planted = os.geteuid() == 0
    if planted:
        os.chown(os.path.join(base, "secret.txt"), OTHER_UID, OTHER_UID)
    return Tree(base, root, files, br_how, planted)


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------

def find_exe(name: str) -> Optional[str]:
    p = shutil.which(name)
    if p:
        return p
    cand = os.path.expanduser(f"~/.cargo/bin/{name}")
    return cand if os.access(cand, os.X_OK) else None


def run_version(argv: list, pick: Callable[[str], str] = lambda s: s.strip().splitlines()[0]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return pick(out.stdout + out.stderr)
    except Exception as e:  # noqa: BLE001
        return f"? ({e})"


@dataclass
class ServerDef:
    name: str
    exe: Optional[str]
    version: Callable[[], str]
    # (tree, work, port, listing) -> (argv, env or None); work is a private dir
    argv: Callable
    config: str            # human description of the configuration
    listing: str = "flag"  # "flag": a second instance with listing on; "always"; "none"
    lists_by_default: bool = False   # the listing instance is the server's default (row 37b)
    # extra instances a row starts when it needs one: name -> (tree, work, port) -> (argv, env),
    # or a string saying why the server has none ("no auth")
    variants: dict = field(default_factory=dict)
    missing: str = ""


def variants_of(argv: Callable, auth=True) -> dict:
    """The "auth" and "default-bind" instances of a server whose argv function
    takes `auth=True` and `bind=None`; `auth` a string instead says why it has none."""
    return {
        "auth": (lambda t, w, p: argv(t, w, p, auth=True)) if auth is True else auth,
        "default-bind": lambda t, w, p: argv(t, w, p, bind=None),
    }


def write(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


def coserve_argv(exe: str) -> Callable:
    def argv(tree, work, port, listing=False, bind=HOST, auth=False):
        return ([exe, str(port)] + (["-b", bind] if bind else []) + ["-d", tree.root, "-q"]
                + (["--auth", f"{AUTH_USER}:{AUTH_PASS}"] if auth else []), None)
    return argv


def nginx_argv(tree, work, port, listing=False, bind=HOST, auth=False):
    os.makedirs(os.path.join(work, "tmp"), exist_ok=True)
    auth_conf = ""
    if auth:
        users = write(os.path.join(work, "htpasswd"), f"{AUTH_USER}:{{PLAIN}}{AUTH_PASS}\n")
        auth_conf = f'auth_basic "x"; auth_basic_user_file {users};'
    conf = f"""
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    sendfile on;
    server {{
        listen {f"{bind}:{port}" if bind else port};
        root {tree.root};
        gzip_static on;
        {"autoindex on;" if listing else ""}
        {auth_conf}
    }}
}}
"""
    path = write(os.path.join(work, "nginx.conf"), conf)
    return [find_exe("nginx"), "-e", f"{work}/startup.log", "-p", work, "-c", path], None


def python_argv(tree, work, port, listing=False, bind=HOST, auth=False):
    return ([sys.executable, "-m", "http.server", str(port)] + (["--bind", bind] if bind else [])
            + ["--directory", tree.root], None)


def lighttpd_argv(tree, work, port, listing=False, bind=HOST, auth=False):
    conf = f"""
server.document-root = "{tree.root}"
server.port = {port}
server.errorlog = "{work}/error.log"
index-file.names = ( "index.html" )
include_shell "/usr/share/lighttpd/create-mime.conf.pl"
"""
    if bind:
        conf += f'server.bind = "{bind}"\n'
    if listing:
        conf += 'dir-listing.activate = "enable"\ndir-listing.encoding = "utf-8"\n'
    if auth:
        users = write(os.path.join(work, "lighttpd.user"), f"{AUTH_USER}:{AUTH_PASS}\n")
        conf += f"""server.modules += ( "mod_auth", "mod_authn_file" )
auth.backend = "plain"
auth.backend.plain.userfile = "{users}"
auth.require = ( "/" => ( "method" => "basic", "realm" => "x", "require" => "valid-user" ) )
"""
    path = write(os.path.join(work, "lighttpd.conf"), conf)
    return [find_exe("lighttpd"), "-D", "-f", path], None


def caddy_argv(tree, work, port, listing=False, bind=HOST, auth=False):
    # one user a line; caddy 2.6 takes neither a one-line block nor `basic_auth`
    auth_conf = f"""basicauth {{
        {AUTH_USER} {AUTH_BCRYPT}
    }}""" if auth else ""
    conf = f"""{{
    admin off
    auto_https off
}}
http://:{port} {{
    {f"bind {bind}" if bind else ""}
    root * {tree.root}
    {auth_conf}
    file_server {{
        precompressed br gzip
        {"browse" if listing else ""}
    }}
}}
"""
    path = write(os.path.join(work, "Caddyfile"), conf)
    env = dict(os.environ, HOME=work, XDG_DATA_HOME=f"{work}/data", XDG_CONFIG_HOME=f"{work}/config")
    return [find_exe("caddy"), "run", "--config", path, "--adapter", "caddyfile"], env


def sws_argv(tree, work, port, listing=False, bind=HOST, auth=False):
    return ([find_exe("static-web-server")] + (["-a", bind] if bind else [])
            + ["-p", str(port), "-d", tree.root, "--compression-static", "true", "-g", "error"]
            + (["--directory-listing", "true"] if listing else [])
            + (["--basic-auth", f"{AUTH_USER}:{AUTH_BCRYPT}"] if auth else []), None)


def miniserve_argv(tree, work, port, listing=False, bind=HOST, auth=False):
    return ([find_exe("miniserve")] + (["-i", bind] if bind else [])
            + ["-p", str(port), "--index", "index.html", "-q"]
            + ([] if listing else ["--disable-indexing"])
            + (["--auth", f"{AUTH_USER}:{AUTH_PASS}"] if auth else []) + [tree.root], None)


def darkhttpd_argv(tree, work, port, listing=False, bind=HOST, auth=False):
    return ([find_exe("darkhttpd"), tree.root] + (["--addr", bind] if bind else []) + ["--port", str(port)]
            + ([] if listing else ["--no-listing"])
            + (["--auth", f"{AUTH_USER}:{AUTH_PASS}"] if auth else []), None)


def busybox_argv(tree, work, port, listing=False, bind=HOST, auth=False):
    # always a -c file (empty but for auth): without one it reads /etc/httpd.conf
    conf = write(os.path.join(work, "httpd.conf"), f"/:{AUTH_USER}:{AUTH_PASS}\n" if auth else "")
    return [find_exe("busybox"), "httpd", "-f", "-p", f"{bind}:{port}" if bind else str(port),
            "-h", tree.root, "-c", conf], None


def server_defs(coserve_path: str) -> list:
    py = sys.executable
    coserve = coserve_argv(coserve_path)
    return [
        ServerDef(
            "coserve", coserve_path if os.access(coserve_path, os.X_OK) else None,
            lambda: run_version([coserve_path, "--version"]),
            coserve,
            "`coserve PORT -b 127.0.0.1 -d ROOT -q`: listing, precompressed siblings and "
            "`--symlinks owner` are its defaults. Row 38: `--auth user:pass`; row 39: no `-b`",
            listing="always", lists_by_default=True, variants=variants_of(coserve),
            missing="build it: cargo build --release"),
        ServerDef(
            "nginx", find_exe("nginx"),
            lambda: run_version([find_exe("nginx"), "-v"], lambda s: s.strip().split(": ", 1)[-1] + " (nginx-light)"),
            nginx_argv,
            "nginx-light, own config: `include mime.types; gzip_static on;` "
            "(+ `autoindex on;` for row 37); nothing else changed. Row 38: "
            "`auth_basic \"x\"; auth_basic_user_file FILE;`, FILE holding `user:{PLAIN}pass`; "
            "row 39: `listen PORT;`",
            variants=variants_of(nginx_argv),
            missing="apt-get install nginx-light"),
        ServerDef(
            "python http.server", py,
            lambda: f"Python {sys.version.split()[0]} http.server ({py})",
            python_argv,
            f"`{os.path.basename(py)} -m http.server PORT --bind 127.0.0.1 --directory ROOT` "
            "(listing is always on). Row 38: it has no auth; row 39: no `--bind`",
            listing="always", lists_by_default=True, variants=variants_of(python_argv, auth="n/a (no auth)")),
        ServerDef(
            "lighttpd", find_exe("lighttpd"),
            lambda: run_version([find_exe("lighttpd"), "-v"], lambda s: s.split(" - ")[0].strip()),
            lighttpd_argv,
            "own config: document-root, bind, port, `index-file.names`, Debian's "
            "`create-mime.conf.pl` MIME map; `dir-listing.activate` only for row 37. "
            "It has no precompressed-sibling option. Row 38: `mod_auth` + `mod_authn_file`, "
            "`auth.backend = \"plain\"` with a `user:pass` file, `auth.require` on `/`; "
            "row 39: no `server.bind`",
            variants=variants_of(lighttpd_argv),
            missing="apt-get install lighttpd"),
        ServerDef(
            "caddy", find_exe("caddy"),
            lambda: "caddy " + run_version([find_exe("caddy"), "version"]),
            caddy_argv,
            "Caddyfile: `file_server { precompressed br gzip }` on `http://:PORT` bound to "
            "127.0.0.1, admin off (+ `browse` for row 37). Row 38: `basicauth { user BCRYPT }` "
            "(the hash `caddy hash-password` makes, at cost 5); row 39: no `bind`",
            variants=variants_of(caddy_argv),
            missing="apt-get install caddy"),
        ServerDef(
            "static-web-server", find_exe("static-web-server"),
            lambda: "static-web-server " + run_version(
                [find_exe("static-web-server"), "--version"],
                lambda s: (re.search(r"Version:\s*(\S+)", s) or re.search(r"(\S+)", s)).group(1)),
            sws_argv,
            "`static-web-server -a 127.0.0.1 -p PORT -d ROOT --compression-static true` "
            "(on-the-fly compression left at its default, on; `--directory-listing true` for row 37). "
            "Row 38: `--basic-auth user:BCRYPT` (cost 5); row 39: no `-a`",
            variants=variants_of(sws_argv),
            missing="cargo install --locked static-web-server"),
        ServerDef(
            "miniserve", find_exe("miniserve"),
            lambda: run_version([find_exe("miniserve"), "--version"]),
            miniserve_argv,
            "`miniserve -i 127.0.0.1 -p PORT --index index.html ROOT` "
            "(`--disable-indexing` except for rows 37 and 37b: it lists by default). "
            "Row 38: `--auth user:pass`; row 39: no `-i`",
            lists_by_default=True, variants=variants_of(miniserve_argv),
            missing="cargo install --locked miniserve"),
        ServerDef(
            "darkhttpd", find_exe("darkhttpd"),
            lambda: run_version([find_exe("darkhttpd"), "--help"], lambda s: s.strip().split(",")[0]),
            darkhttpd_argv,
            "`darkhttpd ROOT --addr 127.0.0.1 --port PORT --no-listing` (listing only for rows 37 "
            "and 37b: it lists by default). Row 38: `--auth user:pass`; row 39: no `--addr`",
            lists_by_default=True, variants=variants_of(darkhttpd_argv),
            missing="not packaged in Debian 12"),
        ServerDef(
            "busybox httpd", find_exe("busybox"),
            lambda: run_version([find_exe("busybox")], lambda s: re.search(r"BusyBox v\S+ \([^)]*\)", s).group(0)),
            busybox_argv,
            "`busybox httpd -f -p 127.0.0.1:PORT -h ROOT -c EMPTY_CONF` (no listing without CGI). "
            "Row 38: `/:user:pass` in the conf; row 39: `-p PORT`",
            listing="none", variants=variants_of(busybox_argv),
            missing="apt-get install busybox"),
    ]


def wait_any(port: int, seconds: float, alive: Callable, hosts: tuple) -> bool:
    """Whether something accepts on `port` at any of `hosts` within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive():
        for h in hosts:
            if wait_port(port, 0.05, alive, host=h):
                return True
    return False


class Running:
    """Processes this script started; stopped by their own process-group id."""

    def __init__(self):
        self.procs = []

    def start(self, sd: ServerDef, tree: Tree, work_root: str, listing: bool) -> tuple:
        tag = f"{sd.name.split()[0]}{'-listing' if listing else ''}"
        return self.launch(tag, lambda t, w, p: sd.argv(t, w, p, listing), tree, work_root)

    def launch(self, tag: str, make: Callable, tree: Tree, work_root: str, hosts: tuple = (HOST,)) -> tuple:
        """Starts `make(tree, work, port)`'s argv on a free port; (port, None) once it
        accepts on one of `hosts`, else (None, the last line it logged)."""
        work = os.path.join(work_root, tag)
        os.makedirs(work, exist_ok=True)
        last_err = ""
        for _attempt in range(3):   # a port picked free can be taken before bind
            port = free_port()
            argv, env = make(tree, work, port)
            log = open(os.path.join(work, "server.log"), "wb")
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=env, cwd=work, start_new_session=True)
            log.close()
            self.procs.append(proc)
            if wait_any(port, 15, lambda: proc.poll() is None, hosts):
                return port, None
            self.stop(proc)
            try:
                with open(os.path.join(work, "server.log"), "rb") as f:
                    last_err = f.read().decode("utf-8", "replace").strip().splitlines()[-1:]
            except OSError:
                last_err = []
            last_err = (last_err[0] if last_err else "did not listen")[:120]
        return None, last_err

    def stop(self, proc):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
        else:
            # the leader is gone; children of its group (busybox forks) may be left
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stop_all(self):
        for p in self.procs:
            try:
                self.stop(p)
            except Exception:  # noqa: BLE001
                pass
        self.procs = []


# --------------------------------------------------------------------------
# rows
# --------------------------------------------------------------------------

class Ctx:
    """What a row function sees: the ports of one server and a request log."""

    def __init__(self, sd: ServerDef, port: int, listing_port: Optional[int], listing_note: str, tree: Tree,
                 launch: Callable[[str, Callable], tuple]):
        self.sd = sd
        self.name = sd.name
        self.port = port
        self.listing_port = listing_port
        self.listing_note = listing_note
        self.tree = tree
        self.sent: list = []   # raw requests sent in the current row
        self._root_get: Optional[Resp] = None
        self._big_get: Optional[Resp] = None
        self._launch = launch  # (variant name, argv maker) -> (port or None, error)
        self._variants: dict = {}

    def variant(self, name: str) -> tuple:
        """(port, None) of the server's `name` instance, started on first use;
        (None, why) when it has none or it failed to start."""
        if name not in self._variants:
            make = self.sd.variants.get(name, "n/a")
            if isinstance(make, str):
                self._variants[name] = (None, make)
            else:
                port, err = self._launch(name, make)
                self._variants[name] = (port, None) if port else (None, f"{name} instance failed: {err}")
        return self._variants[name]

    def one(self, raw: bytes, head: bool = False, port: Optional[int] = None) -> Resp:
        self.sent.append(raw)
        try:
            with Conn(HOST, port or self.port, TIMEOUT) as c:
                c.send(raw)
                return c.read_response(head=head)
        except OSError as e:
            return Resp(error=f"connect/send error: {e.__class__.__name__}")

    @property
    def root_get(self) -> Resp:
        if self._root_get is None:
            self._root_get = self.one(req("GET", "/"))
        return self._root_get

    @property
    def big_get(self) -> Resp:
        if self._big_get is None:
            self._big_get = self.one(req("GET", "/big.bin"))
        return self._big_get

    def etag(self, r: Resp = None) -> Optional[str]:
        return (r or self.root_get).h("etag")


@dataclass
class Row:
    num: str
    title: str
    fn: Callable
    expect: str = ""


ROWS: list = []


def row(num: str, title: str):
    def deco(fn):
        ROWS.append(Row(num, title, fn))
        return fn
    return deco


def status_is(r: Resp, want: int, what: str = "") -> tuple:
    if r.status == want:
        return PASS, f"{r.status}{(' ' + what) if what else ''}"
    return FAIL, r.short()


def loc_path(loc: Optional[str]) -> Optional[str]:
    """Path+query of a Location, with scheme://host removed when absolute."""
    if loc is None:
        return None
    m = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*(.*)$", loc)
    return m.group(1) if m else loc


# ---- basics ---------------------------------------------------------------

@row("1", "GET / → 200 with Date, Content-Length, Last-Modified, Content-Type with charset")
def r_get_root(c: Ctx):
    r = c.root_get
    c.sent.append(req("GET", "/"))
    if r.status != 200:
        return FAIL, r.short()
    missing = [h for h in ("Date", "Content-Length", "Last-Modified", "Content-Type") if r.h(h) is None]
    ct = r.h("content-type") or ""
    if ct and "charset=" not in ct.lower():
        missing.append(f"charset (`{ct}`)")
    if r.body != INDEX_HTML:
        missing.append("body ≠ index.html")
    if missing:
        return FAIL, "no " + ", no ".join(missing)
    return PASS, f"`{ct}`"


@row("2", "HEAD / → same Content-Length as GET, no body")
def r_head(c: Ctx):
    raw = req("HEAD", "/")
    c.sent.append(raw)
    try:
        with Conn(HOST, c.port, TIMEOUT) as k:
            k.send(raw)
            r = k.read_response(head=True)
            after = k.after() if r.status else ""
    except OSError as e:
        return OTHER, f"error {e.__class__.__name__}"
    if r.status != 200:
        return FAIL, r.short()
    notes = []
    gcl, hcl = c.root_get.h("content-length"), r.h("content-length")
    if hcl != gcl:
        notes.append(f"CL {hcl} vs GET {gcl}")
    if after.startswith("data"):
        notes.append(f"body sent ({after.split(':')[1]} B)")
    if notes:
        return FAIL, "; ".join(notes)
    return PASS, f"CL {hcl}"


# ---- validators -----------------------------------------------------------

@row("3", "ETag present and strong")
def r_etag(c: Ctx):
    c.sent.append(req("GET", "/"))
    e = c.etag()
    if e is None:
        return FAIL, "no ETag"
    if e.startswith("W/"):
        return OTHER, f"weak `{e}`"
    if not re.match(r'^"[^"]*"$', e):
        return FAIL, f"malformed `{e}`"
    return PASS, f"`{e}`"


def need_etag(c: Ctx):
    e = c.etag()
    return e


@row("4", "If-None-Match: current ETag → 304")
def r_inm(c: Ctx):
    e = need_etag(c)
    if e is None:
        return OTHER, "n/a (no ETag)"
    return status_is(c.one(req("GET", "/", f"If-None-Match: {e}")), 304)


@row("5", "If-None-Match: W/current → 304 (weak comparison)")
def r_inm_weak(c: Ctx):
    e = need_etag(c)
    if e is None:
        return OTHER, "n/a (no ETag)"
    w = e if e.startswith("W/") else "W/" + e
    return status_is(c.one(req("GET", "/", f"If-None-Match: {w}")), 304)


@row("5b", "If-None-Match: \"nope\", current ETag (list) → 304")
def r_inm_list(c: Ctx):
    e = need_etag(c)
    if e is None:
        return OTHER, "n/a (no ETag)"
    return status_is(c.one(req("GET", "/", f'If-None-Match: "nope", {e}')), 304)


@row("6", "If-None-Match: * → 304")
def r_inm_star(c: Ctx):
    return status_is(c.one(req("GET", "/", "If-None-Match: *")), 304)


@row("7", "If-Modified-Since: Last-Modified → 304")
def r_ims(c: Ctx):
    lm = c.root_get.h("last-modified")
    if lm is None:
        return OTHER, "n/a (no Last-Modified)"
    return status_is(c.one(req("GET", "/", f"If-Modified-Since: {lm}")), 304)


@row("8", "If-Modified-Since: invalid date → 200")
def r_ims_bad(c: Ctx):
    return status_is(c.one(req("GET", "/", "If-Modified-Since: not a date")), 200)


@row("8b", "If-None-Match: \"nope\" + If-Modified-Since: Last-Modified → 200 (INM wins)")
def r_inm_over_ims(c: Ctx):
    lm = c.root_get.h("last-modified") or "Tue, 02 Jan 2024 03:04:05 GMT"
    return status_is(c.one(req("GET", "/", 'If-None-Match: "nope"', f"If-Modified-Since: {lm}")), 200)


@row("9", "If-Match: \"nope\" → 412")
def r_if_match(c: Ctx):
    return status_is(c.one(req("GET", "/", 'If-Match: "nope"')), 412)


@row("10", "If-Unmodified-Since: old date → 412")
def r_ius(c: Ctx):
    return status_is(c.one(req("GET", "/", f"If-Unmodified-Since: {OLD_DATE}")), 412)


# ---- ranges ---------------------------------------------------------------

def range_check(c: Ctx, spec: str, start: int, end: int, *extra: str) -> tuple:
    big = c.tree.files["/big.bin"]
    r = c.one(req("GET", "/big.bin", f"Range: {spec}", *extra))
    want_cr = f"bytes {start}-{end}/{len(big)}"
    if r.status != 206:
        if r.status == 200 and r.body == big:
            return FAIL, "200 full body"
        return FAIL, r.short()
    cr = r.h("content-range")
    if cr != want_cr:
        return FAIL, f"206 but Content-Range `{cr}`"
    if r.body != big[start:end + 1]:
        return FAIL, f"206 but body wrong ({len(r.body)} B)"
    return PASS, f"206 `{cr}`"


@row("11", "Range: bytes=0-99 → 206 + Content-Range")
def r_range(c: Ctx):
    return range_check(c, "bytes=0-99", 0, 99)


@row("12", "Range: bytes=-100 → 206, last 100 bytes")
def r_suffix(c: Ctx):
    return range_check(c, "bytes=-100", BIG_LEN - 100, BIG_LEN - 1)


@row("13", "Range: bytes=99990-200000 (past end) → 206 clamped")
def r_clamp(c: Ctx):
    return range_check(c, "bytes=99990-200000", 99990, BIG_LEN - 1)


@row("14", "Range: bytes=200000- → 416 with Content-Range: bytes */LEN")
def r_416(c: Ctx):
    r = c.one(req("GET", "/big.bin", "Range: bytes=200000-"))
    if r.status != 416:
        return FAIL, r.short()
    cr = r.h("content-range")
    if cr != f"bytes */{BIG_LEN}":
        return FAIL, f"416, Content-Range `{cr}`"
    return PASS, f"416 `{cr}`"


@row("15", "Invalid Range bytes=5-1 → 200 full")
def r_invalid_range(c: Ctx):
    big = c.tree.files["/big.bin"]
    r = c.one(req("GET", "/big.bin", "Range: bytes=5-1"))
    if r.status == 200 and r.body == big:
        return PASS, "200 full"
    if r.status == 416:
        return OTHER, "416 (rejecting is allowed, RFC 9110 §14.2)"
    return FAIL, r.short()


def parse_multipart(r: Resp) -> Optional[list]:
    ct = r.h("content-type") or ""
    m = re.search(r'boundary="?([^";]+)"?', ct)
    if not ct.lower().startswith("multipart/byteranges") or not m:
        return None
    b = b"--" + m.group(1).encode()
    parts = []
    for chunk in r.body.split(b)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, _, data = chunk.partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        cr = re.search(rb"(?i)content-range:\s*bytes (\d+)-(\d+)/(\d+)", head)
        parts.append((int(cr.group(1)), int(cr.group(2)), data) if cr else (None, None, data))
    return parts


@row("16", "Multiple ranges bytes=0-9,20-29 → 206 multipart/byteranges")
def r_multi(c: Ctx):
    big = c.tree.files["/big.bin"]
    r = c.one(req("GET", "/big.bin", "Range: bytes=0-9,20-29"))
    if r.status == 200 and r.body == big:
        return OTHER, "200 full (multi-range ignored)"
    if r.status != 206:
        return FAIL, r.short()
    parts = parse_multipart(r)
    if parts is None:
        cr = r.h("content-range") or ""
        m = re.match(r"bytes (\d+)-(\d+)/", cr)
        if m and int(m.group(1)) <= 0 and int(m.group(2)) >= 29:
            return OTHER, f"206 coalesced into one part `{cr}`"
        return OTHER, f"206 one part `{cr}`: 20-29 dropped"
    ok = [(s, e) for s, e, d in parts if s is not None and d == big[s:e + 1]]
    if ok == [(0, 9), (20, 29)]:
        return PASS, "206 multipart, 2 parts"
    return FAIL, f"206 multipart, parts {[(s, e, len(d)) for s, e, d in parts]}"


@row("17", "50 overlapping ranges (bytes=0-,0-,… ×50) → body ≤ file size")
def r_amplify(c: Ctx):
    spec = "bytes=" + ",".join(["0-"] * 50)
    r = c.one(req("GET", "/big.bin", f"Range: {spec}"))
    n = len(r.body)
    if r.status is None:
        return OTHER, r.short()
    if n <= BIG_LEN:
        return PASS, f"{r.status}, {n} B"
    return FAIL, f"{r.status}, {n} B{' (' + r.error + ')' if r.error else ''}"


@row("18", "If-Range: current ETag + bytes=0-99 → 206")
def r_if_range(c: Ctx):
    e = c.etag(c.big_get)
    c.sent.append(req("GET", "/big.bin"))
    if e is None:
        return OTHER, "n/a (no ETag)"
    return range_check(c, "bytes=0-99", 0, 99, f"If-Range: {e}")


@row("18b", "If-Range: current Last-Modified + bytes=0-99 → 206")
def r_if_range_date(c: Ctx):
    lm = c.big_get.h("last-modified")
    c.sent.append(req("GET", "/big.bin"))
    if lm is None:
        return OTHER, "n/a (no Last-Modified)"
    return range_check(c, "bytes=0-99", 0, 99, f"If-Range: {lm}")


@row("19", "If-Range: stale ETag + bytes=0-99 → 200 full")
def r_if_range_stale(c: Ctx):
    big = c.tree.files["/big.bin"]
    r = c.one(req("GET", "/big.bin", "Range: bytes=0-99", 'If-Range: "stale"'))
    if r.status == 200 and r.body == big:
        return PASS, "200 full"
    return FAIL, r.short()


# ---- content coding ---------------------------------------------------------

def enc_get(c: Ctx, ae: str) -> Resp:
    return c.one(req("GET", "/app.js", f"Accept-Encoding: {ae}"))


@row("20", "Accept-Encoding: gzip on app.js → gzip, bytes of app.js.gz")
def r_gzip(c: Ctx):
    f = c.tree.files
    r = enc_get(c, "gzip")
    if r.status != 200:
        return FAIL, r.short()
    ce = (r.h("content-encoding") or "").lower()
    if ce != "gzip":
        return FAIL, f"identity{' (' + ce + ')' if ce else ''}"
    if r.body == f["/app.js.gz"]:
        return PASS, "the .gz sibling"
    try:
        if gzip.decompress(r.body) == f["/app.js"]:
            return OTHER, "gzip on the fly, not the .gz"
    except Exception:  # noqa: BLE001
        pass
    return FAIL, "gzip header, body not gzip of app.js"


@row("21", "Vary: Accept-Encoding on the gzip response")
def r_vary(c: Ctx):
    r = enc_get(c, "gzip")
    vary = ", ".join(r.hall("vary"))
    enc = (r.h("content-encoding") or "").lower()
    has = "accept-encoding" in vary.lower() or vary.strip() == "*"
    if has:
        return PASS, f"`Vary: {vary}`"
    if not enc:
        return OTHER, "n/a (no negotiation)"
    return FAIL, f"no Vary ({enc} served)"


@row("22", "Accept-Encoding: br → br, bytes of app.js.br")
def r_br(c: Ctx):
    f = c.tree.files
    r = enc_get(c, "br")
    if r.status != 200:
        return FAIL, r.short()
    ce = (r.h("content-encoding") or "").lower()
    if ce != "br":
        return FAIL, f"identity{' (' + ce + ')' if ce else ''}"
    if r.body == f["/app.js.br"]:
        return PASS, "the .br sibling"
    return OTHER, "br, but not the .br bytes (on the fly?)"


@row("23", "Accept-Encoding: gzip;q=0 → identity")
def r_q0(c: Ctx):
    f = c.tree.files
    r = enc_get(c, "gzip;q=0")
    if r.status != 200:
        return FAIL, r.short()
    ce = (r.h("content-encoding") or "").lower()
    if ce:
        return FAIL, f"served {ce}"
    if r.body != f["/app.js"]:
        return FAIL, "identity, wrong body"
    return PASS, "identity"


# ---- redirects and paths ------------------------------------------------------

@row("24", "GET /sub (directory, no slash) → 301 Location …/sub/")
def r_dir_redirect(c: Ctx):
    r = c.one(req("GET", "/sub"))
    loc = r.h("location")
    p = loc_path(loc)
    if r.status in (301, 308) and p == "/sub/":
        return PASS, f"{r.status} `{loc}`"
    if r.status in (302, 303, 307) and p == "/sub/":
        return OTHER, f"{r.status} `{loc}`"
    if r.status == 200:
        return FAIL, "200 (index served, no redirect)"
    return FAIL, f"{r.short()}{' `' + loc + '`' if loc else ''}"


@row("25", "GET /sub?x=1 → redirect keeps the query (/sub/?x=1)")
def r_dir_redirect_query(c: Ctx):
    r = c.one(req("GET", "/sub?x=1"))
    loc = r.h("location")
    p = loc_path(loc)
    if r.status not in (301, 302, 303, 307, 308):
        return OTHER, f"n/a ({r.short()}, no redirect)"
    if p == "/sub/?x=1":
        return PASS, f"`{loc}`"
    return FAIL, f"`{loc}`"


OPEN_REDIRECT_TARGETS = [
    "//evil.example/%2e%2e/sub",
    "//evil.example/../sub",
    "//evil.example/%2e%2e",
    "/%5Cevil.example/%2e%2e/sub",
]


@row("26", "Open redirect: GET //evil.example/%2e%2e/sub etc. → Location never starts with // or /\\")
def r_open_redirect(c: Ctx):
    seen = []
    for t in OPEN_REDIRECT_TARGETS:
        r = c.one(req("GET", t))
        loc = r.h("location")
        if loc and (loc.startswith("//") or loc.startswith("/\\") or loc.startswith("\\")):
            return FAIL, f"`{t}` → {r.status} `Location: {loc}`"
        seen.append(str(r.status) if r.status else r.short())
    return PASS, "/".join(dict.fromkeys(seen))


TRAVERSALS = [
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/..%2fsecret.txt",
    "/sub/../../secret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "/..%5csecret.txt",
    "/%252e%252e/secret.txt",
]


@row("27", "Traversal /../secret.txt, /%2e%2e/secret.txt (+6 variants) → not served")
def r_traversal(c: Ctx):
    seen = []
    for t in TRAVERSALS:
        r = c.one(req("GET", t))
        if SECRET_MARKER in r.body:
            return FAIL, f"`{t}` served the file"
        seen.append(str(r.status) if r.status else r.short())
    return PASS, "/".join(dict.fromkeys(seen))


@row("27b", "Symlink inside root to another user's file outside it (/outside-link.txt → ../secret.txt) "
           "→ not served")
def r_symlink(c: Ctx):
    if not c.tree.planted:
        return OTHER, "needs root to make another user's file"
    r = c.one(req("GET", "/outside-link.txt"))
    if SECRET_MARKER in r.body:
        return FAIL, f"{r.status}, served"
    return PASS, r.short()


@row("27c", "Symlink inside root to the same user's file outside it (/shared.js → ../shared.js, "
           "as Debian's doc packages link shared JS) → served")
def r_symlink_same_owner(c: Ctx):
    r = c.one(req("GET", "/shared.js"))
    if r.status == 200 and r.body == SHARED_JS:
        return PASS, "200, served"
    if r.status in (403, 404):
        return OTHER, f"{r.status}: refused"
    return FAIL, r.short()


@row("28", "Dotfile /.secret → 404 (hidden)")
def r_dotfile(c: Ctx):
    r = c.one(req("GET", "/.secret"))
    if r.status == 404:
        return PASS, "404"
    if r.body == DOT_BODY:
        return FAIL, f"{r.status}, served"
    if r.status == 403:
        return OTHER, "403 (hidden, existence shown)"
    return OTHER, r.short()


@row("28b", "GET /index.html%00.txt (NUL byte) → 4xx, not the file")
def r_nul(c: Ctx):
    r = c.one(req("GET", "/index.html%00.txt"))
    if r.status and 400 <= r.status < 500:
        return PASS, str(r.status)
    if r.body == INDEX_HTML:
        return FAIL, f"{r.status}, index.html served"
    if r.status is None and r.error == "closed":
        return FAIL, "connection closed, no response"
    return FAIL, r.short()


# ---- request parsing ---------------------------------------------------------

@row("29", "HTTP/1.1 request without Host → 400")
def r_no_host(c: Ctx):
    return status_is(c.one(req("GET", "/", host=False)), 400)


@row("29b", "Host with userinfo (`Host: a@b`) → 400")
def r_host_userinfo(c: Ctx):
    return status_is(c.one(req("GET", "/", "Host: a@b", host=False)), 400)


@row("29c", "Host with a path (`Host: a/b`) → 400")
def r_host_path(c: Ctx):
    return status_is(c.one(req("GET", "/", "Host: a/b", host=False)), 400)


@row("29d", "Host that is a list (`Host: a, b`) → 400")
def r_host_list(c: Ctx):
    return status_is(c.one(req("GET", "/", "Host: a, b", host=False)), 400)


@row("29e", "Empty Host with an origin-form target (`GET /`, `Host: `) → 400")
def r_host_empty(c: Ctx):
    return status_is(c.one(req("GET", "/", "Host: ", host=False)), 400)


@row("30", "GET / HTTP/2.0 (text) → 505")
def r_505(c: Ctx):
    r = c.one(req("GET", "/", version="HTTP/2.0"))
    if r.status is None and b"505" in r.body:
        return FAIL, "505 page sent with no status line or headers"
    return status_is(r, 505)


@row("31", "Content-Length + Transfer-Encoding: chunked → 400 (or answer then close)")
def r_cl_te(c: Ctx):
    raw = req("GET", "/", "Content-Length: 5", "Transfer-Encoding: chunked", close=False) + b"0\r\n\r\n"
    c.sent.append(raw)
    try:
        with Conn(HOST, c.port, TIMEOUT) as k:
            k.send(raw)
            r = k.read_response()
            after = k.after() if r.status else ""
    except OSError as e:
        return OTHER, f"error {e.__class__.__name__}"
    if r.status == 400:
        return PASS, "400"
    if r.status is None:
        return FAIL, r.short()
    if after == "closed":
        return OTHER, f"{r.status}, then closed"
    return FAIL, f"{r.status}, connection kept {after}"


@row("31b", "Two different Content-Length headers (0 and 5) → 400")
def r_dup_cl(c: Ctx):
    return status_is(c.one(req("GET", "/", "Content-Length: 0", "Content-Length: 5") + b"hello"), 400)


@row("31c", "Whitespace before colon (`X-Test : 1`) → 400")
def r_ws_colon(c: Ctx):
    return status_is(c.one(req("GET", "/", "X-Test : 1")), 400)


@row("31d", "Absolute-form target GET http://127.0.0.1/index.html → 200")
def r_absolute(c: Ctx):
    r = c.one(req("GET", "http://127.0.0.1/index.html"))
    if r.status == 200 and r.body == INDEX_HTML:
        return PASS, "200"
    return FAIL, r.short()


@row("31e", "64 KiB request header → 431 or 400 (not served, not hung)")
def r_huge_header(c: Ctx):
    r = c.one(req("GET", "/", "X-Big: " + "a" * 65536))
    if r.status in (431, 400, 413, 414):
        return PASS, str(r.status)
    if r.status == 200:
        return OTHER, "200 (accepted)"
    return FAIL, r.short()


@row("31f", "Chunk size with trailing whitespace (`5 \\r\\n`) → 400")
def r_chunk_size_ws(c: Ctx):
    r = c.one(req("GET", "/", "Transfer-Encoding: chunked") + b"5 \r\nhello\r\n0\r\n\r\n")
    if r.status == 400:
        return PASS, "400"
    if r.status is None and r.error == "closed":
        return OTHER, "closed, no response"
    if r.status and 200 <= r.status < 300:
        return FAIL, f"{r.status} (accepted)"
    return FAIL, r.short()


# ---- connections ---------------------------------------------------------------

@row("32", "3 pipelined requests in one write → 3 responses in order")
def r_pipeline(c: Ctx):
    f = c.tree.files
    raw = (req("GET", "/index.html", close=False) + req("GET", "/app.js", close=False)
           + req("GET", "/sub/", close=True))
    c.sent.append(raw)
    want = [f["/index.html"], f["/app.js"], f["/sub/index.html"]]
    got = []
    try:
        with Conn(HOST, c.port, TIMEOUT) as k:
            k.send(raw)
            for _ in range(3):
                r = k.read_response()
                if r.status is None:
                    break
                got.append(r)
    except OSError as e:
        return OTHER, f"error {e.__class__.__name__}"
    ok = [r.status == 200 and r.body == w for r, w in zip(got, want)]
    if len(got) == 3 and all(ok):
        return PASS, "3 in order"
    return FAIL, f"{len(got)} response(s){'' if all(ok) else ', wrong order/body'}"


@row("33", "HTTP/1.0 request → connection closed after the response")
def r_http10_close(c: Ctx):
    raw = req("GET", "/", version="HTTP/1.0", close=False)
    c.sent.append(raw)
    try:
        with Conn(HOST, c.port, TIMEOUT) as k:
            k.send(raw)
            r = k.read_response()
            after = k.after() if r.status else ""
    except OSError as e:
        return OTHER, f"error {e.__class__.__name__}"
    if r.status != 200:
        return FAIL, r.short()
    if after == "closed":
        return PASS, f"closed ({r.version})"
    return FAIL, f"left {after}"


@row("34", "HTTP/1.0 + Connection: keep-alive → kept open and echoed")
def r_http10_ka(c: Ctx):
    raw = req("GET", "/", "Connection: keep-alive", version="HTTP/1.0", close=False)
    c.sent.append(raw)
    c.sent.append(raw)
    try:
        with Conn(HOST, c.port, TIMEOUT) as k:
            k.send(raw)
            r1 = k.read_response()
            if r1.status != 200:
                return FAIL, r1.short()
            echoed = "keep-alive" in (r1.h("connection") or "").lower()
            try:
                k.send(raw)
                r2 = k.read_response()
            except OSError:
                r2 = Resp(error="closed")
    except OSError as e:
        return OTHER, f"error {e.__class__.__name__}"
    kept = r2.status == 200
    if kept and echoed:
        return PASS, "kept, echoed"
    if not kept and not echoed:
        return FAIL, "closed, not echoed"
    if kept:
        return FAIL, "kept, not echoed"
    return FAIL, "echoed but closed"


# ---- methods --------------------------------------------------------------------

@row("35", "POST / (Content-Length: 0) → 405 with Allow")
def r_post(c: Ctx):
    r = c.one(req("POST", "/", "Content-Length: 0"))
    allow = r.h("allow")
    if r.status == 405:
        return (PASS, f"405 `Allow: {allow}`") if allow else (FAIL, "405 without Allow")
    if r.status == 501:
        return OTHER, "501"
    if r.status == 200:
        return FAIL, "200 (file served)"
    return OTHER, r.short()


@row("36", "Unknown method BREW / → 501")
def r_brew(c: Ctx):
    r = c.one(req("BREW", "/"))
    if r.status == 501:
        return PASS, "501"
    if r.status in (400, 405):
        return OTHER, str(r.status)
    return FAIL, r.short()


# ---- listing ------------------------------------------------------------------------

@row("37", "Listing /dir/ (listing enabled): `<b>odd&name.txt` escaped, link works")
def r_listing(c: Ctx):
    if c.listing_port is None:
        return OTHER, c.listing_note or "n/a"
    r = c.one(req("GET", "/dir/"), port=c.listing_port)
    if r.status != 200:
        return FAIL, r.short()
    text = r.body.decode("utf-8", "replace")
    if "<b>odd" in text:
        return FAIL, "name not escaped (raw `<b>` in HTML)"
    if ODD_NAME not in html.unescape(text):
        return FAIL, "file not listed"
    links = []
    for href in re.findall(r'href\s*=\s*"([^"]*)"|href\s*=\s*\'([^\']*)\'', text):
        href = html.unescape(href[0] or href[1])
        url = urllib.parse.urljoin("http://127.0.0.1/dir/", href)
        path = urllib.parse.urlsplit(url).path
        if urllib.parse.unquote(path).endswith(ODD_NAME):
            # what a browser puts on the wire for that URL
            links.append(urllib.parse.quote(path, safe="/%:@!$&'()*+,;=-._~"))
    if not links:
        return FAIL, "escaped, but no link to the file"
    for target in dict.fromkeys(links):
        f = c.one(req("GET", target), port=c.listing_port)
        if f.status == 200 and f.body == ODD_BODY:
            return PASS, f"escaped, link `{target}` → 200"
    return FAIL, f"escaped, link `{links[0]}` → {f.short()}"


@row("37b", "Directory without index at the server's default (no listing flag): GET /dir/ → listed, "
           "dotfile `.hidden` not shown")
def r_listing_default(c: Ctx):
    port = c.listing_port if c.sd.lists_by_default else c.port
    if port is None:
        return OTHER, c.listing_note or "n/a"
    r = c.one(req("GET", "/dir/"), port=port)
    if r.status in (403, 404):
        return OTHER, f"{r.status}: listing off by default"
    if r.status != 200:
        return FAIL, r.short()
    text = html.unescape(r.body.decode("utf-8", "replace"))
    if ODD_NAME not in text:
        return FAIL, "200, file not listed"
    if ".hidden" in text:
        return FAIL, "listed, with the dotfile `.hidden`"
    return PASS, "listed, no dotfile"


# ---- auth ---------------------------------------------------------------------------

def basic(user: str, password: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@row("38", "Basic auth (one user configured): no credentials → 401 + `WWW-Authenticate: Basic realm=...`; "
           "right → 200; wrong → 401")
def r_auth(c: Ctx):
    port, why = c.variant("auth")
    if port is None:
        return OTHER, why
    none = c.one(req("GET", "/"), port=port)
    right = c.one(req("GET", "/", basic(AUTH_USER, AUTH_PASS)), port=port)
    wrong = c.one(req("GET", "/", basic(AUTH_USER, "wrong")), port=port)
    challenge = none.h("www-authenticate") or ""
    problems = []
    if none.status != 401:
        problems.append(f"none → {none.short()}")
    elif not re.match(r"(?i)basic\s.*\brealm=", challenge):
        # RFC 7617 §2: the realm parameter is required
        problems.append(f"401 with `WWW-Authenticate: {challenge}`, no realm" if challenge
                        else "401 without WWW-Authenticate")
    if right.status != 200 or right.body != INDEX_HTML:
        problems.append(f"right → {right.short()}")
    if wrong.status != 401:
        problems.append(f"wrong → {wrong.short()}")
    if problems:
        return FAIL, "; ".join(problems)
    return PASS, f"401 `{challenge}` / 200 / 401"


# ---- binding ------------------------------------------------------------------------

def status_at(c: Ctx, host: str, port: int) -> str:
    """The status a GET / gets at host:port, or the connect error's name.
    (http1.Conn opens IPv4 sockets only, so this reads the status line itself.)"""
    raw = req("GET", "/")
    c.sent.append(raw)
    head = b""
    try:
        with socket.create_connection((host, port), TIMEOUT) as s:
            s.sendall(raw)
            while b"\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError as e:
        return e.__class__.__name__
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return m.group(1).decode() if m else "no status line"


@row("39", "No bind address: answers on 127.0.0.1 and on ::1")
def r_default_bind(c: Ctx):
    port, why = c.variant("default-bind")
    if port is None:
        return OTHER, why
    v4, v6 = status_at(c, HOST, port), status_at(c, "::1", port)
    if v4 == "200" and v6 == "200":
        return PASS, "200 on both"
    if v4 == "200":
        return OTHER, f"IPv4 only (::1: {v6})"
    if v6 == "200":
        return OTHER, f"IPv6 only (127.0.0.1: {v4})"
    return FAIL, f"127.0.0.1: {v4}; ::1: {v6}"


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------

def md_cell(mark: str, note: str) -> str:
    note = note.replace("|", "\\|").replace("\n", " ")
    return f"{MARK[mark]} {note}".strip()


def show_bytes(raw: bytes, limit: int = 300) -> str:
    s = raw.decode("latin-1")
    s = re.sub(r"a{100,}", lambda m: f"a…(×{len(m.group(0))})", s)
    s = re.sub(r"(0-,){10,}", lambda m: f"0-,…(×{m.group(0).count('0-,')})", s)
    s = s.replace("\r", "\\r").replace("\n", "\\n")
    return s if len(s) <= limit else s[:limit] + "…"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coserve", default=os.path.join(REPO_DIR, "target", "release", "coserve"),
                    help="coserve binary (default: target/release/coserve)")
    ap.add_argument("--build", action="store_true", help="run `cargo build --release` first")
    ap.add_argument("--only", help="comma-separated server names (prefix match)")
    ap.add_argument("--out", default=os.path.join(SCRIPT_DIR, "compare_semantics.md"))
    ap.add_argument("--no-write", action="store_true", help="print only, don't write --out")
    args = ap.parse_args()

    if args.build:
        subprocess.run(["cargo", "build", "--release"], cwd=REPO_DIR, check=True)

    defs = server_defs(os.path.abspath(args.coserve))
    if args.only:
        wanted = [w.strip().lower() for w in args.only.split(",")]
        defs = [d for d in defs if any(d.name.lower().startswith(w) for w in wanted)]

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    running = Running()
    work = tempfile.mkdtemp(prefix="compare-semantics-")
    results = {}     # server -> {row num: (mark, note)}
    columns = []     # (name, version)
    skipped = []     # (name, why)
    configs = []     # (name, config)
    sent_by_row = {}
    try:
        tree = make_tree(work)
        for sd in defs:
            if sd.exe is None:
                skipped.append((sd.name, f"not installed ({sd.missing})"))
                continue
            version = sd.version()
            port, err = running.start(sd, tree, work, listing=False)
            if port is None:
                skipped.append((sd.name, f"failed to start: {err}"))
                continue
            lport, lnote = None, ""
            if sd.listing == "always":
                lport = port
            elif sd.listing == "flag":
                lport, lerr = running.start(sd, tree, work, listing=True)
                if lport is None:
                    lnote = f"listing instance failed: {lerr}"
            else:
                lnote = "n/a (no listing)"
            print(f"# {sd.name} ({version}) on port {port}" + (f", listing on {lport}" if lport else ""),
                  file=sys.stderr)
            def launch(name, make, sd=sd):
                # the default-bind instance may listen on ::1 only
                return running.launch(f"{sd.name.split()[0]}-{name}", make, tree, work, (HOST, "::1"))
            ctx = Ctx(sd, port, lport, lnote, tree, launch)
            cells = {}
            for rw in ROWS:
                ctx.sent = []
                try:
                    cells[rw.num] = rw.fn(ctx)
                except Exception as e:  # noqa: BLE001  (a row never stops the run)
                    cells[rw.num] = (OTHER, f"script error: {e.__class__.__name__}: {e}"[:80])
                if rw.num not in sent_by_row and ctx.sent:
                    sent_by_row[rw.num] = (sd.name, list(dict.fromkeys(ctx.sent)))
            results[sd.name] = cells
            columns.append((sd.name, version))
            configs.append((sd.name, sd.config))
            running.stop_all()
    finally:
        running.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    names = [n for n, _ in columns]
    table = ["| # | behaviour | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for rw in ROWS:
        cells = [md_cell(*results[n][rw.num]) for n in names]
        table.append(f"| {rw.num} | {rw.title.replace('|', chr(92) + '|')} | " + " | ".join(cells) + " |")
    totals = []
    for n in names:
        marks = [m for m, _ in results[n].values()]
        totals.append(f"{marks.count(PASS)} ✅ / {marks.count(FAIL)} ❌ / {marks.count(OTHER)} ➖")
    table.append("| | **total** | " + " | ".join(totals) + " |")

    out = ["# coserve behaviour comparison", "",
           "Generated by `python3 scripts/conformance/compare_semantics.py` (stdlib only, raw sockets, "
           "2 s per request). Every server gets the same request bytes on 127.0.0.1 (row 39: also on "
           "::1); only the ETag / Last-Modified values echoed back in rows 4, 5, 5b, 7, 8b, 18 and 18b "
           "are each server's own.", "",
           "Legend: ✅ pass · ❌ fail · ➖ other (legal but different, or n/a); the note is what came back.",
           "", "## Rerun", "", "```sh",
           "apt-get install -y nginx-light lighttpd busybox caddy brotli   # peers + brotli CLI for app.js.br",
           "cargo install --locked static-web-server                     # ~4 min on 2 cores",
           "cargo install --locked miniserve                             # ~4 min on 2 cores",
           "cargo build --release && python3 scripts/conformance/compare_semantics.py",
           "```", "",
           "Servers that are not installed are skipped and listed as such; `--only NAME,...` picks "
           "columns, `--no-write` only prints. The run takes about 10 s.",
           "", "## Versions", ""]
    for n, v in columns:
        out.append(f"- **{n}**: {v}")
    for n, why in skipped:
        out.append(f"- ~~{n}~~: skipped, {why}")
    out += ["", "## Results", ""] + table
    out += ["", "## Configuration", "",
            "Defaults everywhere, except: bound to 127.0.0.1, precompressed `.gz`/`.br` siblings "
            "enabled where the server has an option for it (coserve has it on by default), and "
            "directory listing enabled only for row 37 (a second instance; row 37b asks each server's "
            "default). Rows 38 and 39 start one more instance each when they run: one user "
            "`user:pass` for row 38, no bind address for row 39; a server with no way to do it "
            "gets ➖ n/a. No server was given dotfile, symlink or charset settings, so rows 1 "
            "(charset), 27b and 27c (symlinks), 28 and 37b (dotfiles) measure defaults: nginx, lighttpd "
            "and caddy can be configured to pass them (`charset utf-8;`, `disable_symlinks "
            "if_not_owner;`, a `location ~ /\\.` rule, `hide`, ...).", ""]
    for n, cfg in configs:
        out.append(f"- **{n}**: {cfg}")
    out += ["", "## The served tree", "",
            "`ROOT/` = `index.html`, `big.bin` (100 000 bytes), `app.js`, `app.js.gz` (gzip -9 of app.js), "
            f"`app.js.br` ({tree.br_how}), `dir/<b>odd&name.txt` and `dir/.hidden` (no index), "
            "`.secret`, `sub/index.html`, `outside-link.txt` → `../secret.txt` and `shared.js` → "
            "`../shared.js`; `ROOT/../secret.txt` and `ROOT/../shared.js` are outside the root. "
            "The links and `shared.js` belong to the user running the script; `secret.txt` belongs "
            + (f"to uid {OTHER_UID}, so `outside-link.txt` is a link someone else planted. "
               if tree.planted else "to that user too (making it another user's needs root). ")
            + "All mtimes are fixed at Tue, 02 Jan 2024 03:04:05 GMT.", "",
            "## Requests", "",
            "As sent to the first server (ETag values differ per server); `\\r\\n` shown escaped. "
            "Each request goes on a new connection, except: rows 2, 31 and 33 then wait up to 2 s to see "
            "whether the server closes the connection or sends more; row 32 sends its three requests in "
            "one `send()`; row 34 sends its request twice on one connection; row 39 sends its request "
            "to 127.0.0.1 and to ::1. Rows 1, 3, 18 and 18b reuse "
            "one plain GET of `/` or `/big.bin` for the validators.", ""]
    for rw in ROWS:
        if rw.num in sent_by_row:
            _, raws = sent_by_row[rw.num]
            out.append(f"- **{rw.num}**: " + " ; ".join(f"`{show_bytes(b)}`" for b in raws))
    md = "\n".join(out) + "\n"

    print("\n".join(table))
    print()
    for n, v in columns:
        print(f"- {n}: {v}")
    for n, why in skipped:
        print(f"- {n}: skipped, {why}")
    if not args.no_write:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(md)
        print(f"\nwrote {os.path.relpath(args.out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
