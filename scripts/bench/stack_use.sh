#!/usr/bin/env bash
# How much stack each connection's coroutine uses, as may reports it: a
# coserve binary built with `--cfg coserve_stack_report` (odd stack sizes:
# may fills each stack with a pattern and prints its use when the coroutine
# ends) serves COUNT keep-alive GETs of a cached 1 KiB file, and of a file
# it does not cache, over 4 connections each, on one worker. Prints, for
# each, how many coroutines used how many bytes.
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

for case in cached uncached; do
    flags=(-q --workers 1)
    [ "$case" = uncached ] && flags+=(--no-cache)
    port=$(free_port)
    "$bin" "$port" -b 127.0.0.1 -d "$work/site" "${flags[@]}" >"$work/$case.log" 2>&1 &
    pid=$!
    wait_port "$port" >/dev/null
    python3 scripts/bench/requests.py 127.0.0.1 "$port" /index.html "$COUNT" 4 >/dev/null
    kill -INT "$pid"
    wait "$pid" || true
    pid=
    echo "$case: coroutines x bytes of stack used (4 connections, the accept loop, others)"
    awk '/used size/ {print $NF * 8}' "$work/$case.log" | sort -n | uniq -c |
        awk '{printf "  %d x %d\n", $1, $2}'
done
