#!/usr/bin/env bash
# Instructions per request on the hot path, counted by callgrind (stable on
# a noisy machine, unlike a clock): a coserve binary serves COUNT keep-alive
# requests for a cached 1 KiB index.html on one worker, then stops; the
# total is divided by COUNT (start-up and shutdown included, so it is an
# upper bound) and the top functions are printed.
#
#   scripts/bench/callgrind.sh [BINARY]       # default target/release/coserve
#   COUNT=20000 scripts/bench/callgrind.sh /tmp/old/target/release/coserve
#
# SITE=DIR counts the whole-site scenario instead: the requests go to every
# regular file of DIR in turn (sorted, as scripts/bench/whole_site.sh asks
# for them), round and round; with COUNT above the number of files, later
# rounds meet what the file cache kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/coserve}
COUNT=${COUNT:-20000}
[[ $BIN != target/release/coserve ]] || cargo build --release --bin coserve 2>&1 | tail -1
command -v valgrind >/dev/null || { echo "valgrind is needed"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
site=$work/site
target=/index.html
if [[ -n ${SITE:-} ]]; then
    site=$SITE
    (cd "$SITE" && find . -type f -printf '%P\n') | sort |
        python3 -c 'import sys, urllib.parse
for line in sys.stdin:
    print("/" + urllib.parse.quote(line.rstrip("\n")))' >"$work/paths.txt"
    target=@$work/paths.txt
else
    mkdir "$site"
    head -c 1024 /dev/zero | tr '\0' 'x' >"$site/index.html"
    # Old enough for the cache to take it at once.
    touch -d '1 minute ago' "$site/index.html"
fi
# shellcheck source=scripts/lib/ports.sh
. scripts/lib/ports.sh
port=$(free_port)

valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$BIN" "$port" -b 127.0.0.1 -d "$site" -q --workers 1 >"$work/server.log" 2>&1 &
pid=$!
# valgrind starts slowly.
wait_port "$port" 300
python3 scripts/bench/requests.py 127.0.0.1 "$port" "$target" "$COUNT" 8
kill -INT "$pid"
wait "$pid" || true
[[ -z ${KEEP:-} ]] || cp "$work/cg.out" "$KEEP"
total=$(callgrind_annotate "$work/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
echo "total instructions: $total; per request: $((total / COUNT))"
callgrind_annotate "$work/cg.out" 2>/dev/null | sed -n '/file:function/,$p' | head -30
