#!/usr/bin/env bash
# How much stack each connection's coroutine uses, as may reports it: a
# coserve binary built with `--cfg coserve_stack_report` (odd stack sizes:
# may fills each stack with a pattern and prints its use when the coroutine
# ends) serves COUNT keep-alive GETs of a cached 1 KiB file, and of a file
# it does not cache, over 4 connections each, on one worker, and six HTTPS
# connections (TLS 1.3 and 1.2, a GET each). Prints, for each, how many
# coroutines used how many bytes.
#
# Every page a coroutine touches stays resident while it runs, so with
# 10,000 clients each 4 KiB page a request crosses into is 40 MB. The
# numbers are exact for a given binary; compare them before and after a
# change to the request path.
#
#   scripts/bench/stack_use.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${COUNT:-200}
target=target/stack-report
RUSTFLAGS="--cfg coserve_stack_report" cargo build --release --bin coserve \
    --target-dir "$target" 2>&1 | tail -1
bin=$target/release/coserve
# shellcheck source=scripts/lib/ports.sh
. scripts/lib/ports.sh

work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
mkdir "$work/site"
head -c 1024 /dev/zero | tr '\0' 'x' >"$work/site/index.html"
touch -d '1 minute ago' "$work/site/index.html"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 -subj /CN=localhost 2>/dev/null

# TLS 1.3 and 1.2 handshakes, three of each, a GET on each connection.
tls_handshakes() {
    python3 - "$1" <<'PY'
import socket, ssl, sys
port = int(sys.argv[1])
for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
    for _ in range(3):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                             server_hostname="localhost") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data[:64]
PY
}

for case in cached uncached tls; do
    flags=(-q --workers 1)
    [ "$case" = uncached ] && flags+=(--no-cache)
    [ "$case" = tls ] && flags+=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
    port=$(free_port)
    "$bin" "$port" -b 127.0.0.1 -d "$work/site" "${flags[@]}" >"$work/$case.log" 2>&1 &
    pid=$!
    wait_port "$port" >/dev/null
    if [ "$case" = tls ]; then
        tls_handshakes "$port"
    else
        python3 scripts/bench/requests.py 127.0.0.1 "$port" /index.html "$COUNT" 4 >/dev/null
    fi
    kill -INT "$pid"
    wait "$pid" || true
    pid=
    echo "$case: coroutines x bytes of stack used (the connections, the accept loop, others)"
    awk '/used size/ {print $NF * 8}' "$work/$case.log" | sort -n | uniq -c |
        awk '{printf "  %d x %d\n", $1, $2}'
done
