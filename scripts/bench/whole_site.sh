#!/usr/bin/env bash
# The whole-site scenario: every regular file of Debian's `rust-doc` HTML
# (32,759 files, 582 MB, up to 10 MB), asked for in turn by `wrk -t1`
# (scripts/bench/site_paths.lua) over 64 keep-alive connections. Per core:
# each server under `taskset -c 0` with one worker, wrk under
# `taskset -c 1`. The servers alternate, round by round; the table gives
# each one's median requests/s and its ratio to the first.
#
#   scripts/bench/whole_site.sh [COSERVE_BINARY]
#   SERVERS="coserve nginx" ROUNDS=3 DURATION=10 scripts/bench/whole_site.sh
#
# Servers: coserve (the binary given, default target/release/coserve, with
# COSERVE_ARGS), coserve-b (the binary BIN_B, to compare two builds),
# coserve-nocache (--no-cache --no-precompressed), coserve-nocompress
# (--no-compress), sws (static-web-server, its on-the-fly compression on,
# one thread per core), nginx
# (1 worker, sendfile, tcp_nopush, no access log), nginx-ofc (the same with
# `open_file_cache max=10000`). WRK_GZIP=1 sends `Accept-Encoding: gzip`;
# WARM is the seconds of traffic before each measured run (3).
# SITE overrides the directory; without it, rust-doc is installed with
# apt-get if missing (never in tests). Raw wrk output and the table go to
# OUT (docs/results/DATE-whole-site/).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/ports.sh
source scripts/lib/ports.sh
# shellcheck source=scripts/lib/nginx.sh
source scripts/lib/nginx.sh

bin=${1:-target/release/coserve}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
SERVERS=${SERVERS:-"coserve nginx nginx-ofc"}
COSERVE_ARGS=${COSERVE_ARGS:-}
OUT=${OUT:-docs/results/$(date -u +%Y-%m-%d)-whole-site}
SITE=${SITE:-/usr/share/doc/rust-doc/html}
mkdir -p "$OUT"
suffix=
if [ "${WRK_GZIP:-}" = 1 ]; then
    suffix=-gzip
fi

if [ ! -d "$SITE" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y rust-doc >/dev/null
fi

work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Every regular file (not the symlinks, which not every server follows),
# as a URL path.
(cd "$SITE" && find . -type f -printf '%P\n') | sort |
    python3 -c 'import sys, urllib.parse
for line in sys.stdin:
    print("/" + urllib.parse.quote(line.rstrip("\n")))' >"$work/paths.txt"
echo "$(wc -l <"$work/paths.txt") files under $SITE" >&2

# Starts server $1 on port $2 (its pid in $pid).
start() {
    local name=$1 port=$2
    case $name in
    coserve)
        # shellcheck disable=SC2086 # the flags are words
        taskset -c 0 "$bin" "$port" -b 127.0.0.1 -d "$SITE" --workers 1 -q \
            $COSERVE_ARGS >/dev/null 2>&1 &
        ;;
    coserve-b)
        # shellcheck disable=SC2086 # the flags are words
        taskset -c 0 "$BIN_B" "$port" -b 127.0.0.1 -d "$SITE" --workers 1 -q \
            $COSERVE_ARGS >/dev/null 2>&1 &
        ;;
    coserve-nocompress)
        taskset -c 0 "$bin" "$port" -b 127.0.0.1 -d "$SITE" --workers 1 -q \
            --no-compress >/dev/null 2>&1 &
        ;;
    sws)
        taskset -c 0 static-web-server -a 127.0.0.1 -p "$port" -d "$SITE" -g error \
            --compression true -n 1 >/dev/null 2>&1 &
        ;;
    coserve-nocache)
        taskset -c 0 "$bin" "$port" -b 127.0.0.1 -d "$SITE" --workers 1 -q \
            --no-cache --no-precompressed >/dev/null 2>&1 &
        ;;
    nginx)
        nginx_conf "$work/nginx" "$port" "$SITE" 1
        taskset -c 0 nginx -c "$work/nginx/nginx.conf" >/dev/null 2>&1 &
        ;;
    nginx-ofc)
        nginx_conf "$work/nginx" "$port" "$SITE" 1 "open_file_cache max=10000; open_file_cache_valid 60s;"
        taskset -c 0 nginx -c "$work/nginx/nginx.conf" >/dev/null 2>&1 &
        ;;
    *)
        echo "unknown server $name" >&2
        exit 2
        ;;
    esac
    pid=$!
    wait_port "$port" >/dev/null
}

# One run of server $1; prints requests/s.
run() {
    local name=$1 port log
    port=$(free_port)
    start "$name" "$port"
    # WARM seconds (3) of the same traffic first, so that every run starts
    # with a warm page cache and connection pool (and, made long enough to
    # go once round the site, with every file compressed).
    WRK_PATHS="$work/paths.txt" taskset -c 1 wrk -t1 -c"$CONNS" -d"${WARM:-3}s" \
        -s scripts/bench/site_paths.lua "http://127.0.0.1:$port" >/dev/null
    log="$OUT/$name$suffix-$(date -u +%H%M%S).txt"
    WRK_PATHS="$work/paths.txt" taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" \
        -s scripts/bench/site_paths.lua "http://127.0.0.1:$port" | tee "$log" |
        awk '/^Requests\/sec/ {print $2}'
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
}

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

declare -A runs
for _ in $(seq "$ROUNDS"); do
    for s in $SERVERS; do
        runs[$s]+="$(run "$s") "
    done
done
table="$OUT/table$suffix.md"
first=
{
    echo "| server | req/s (median of $ROUNDS) | ratio to the first | runs |"
    echo "|---|---|---|---|"
    for s in $SERVERS; do
        m=$(printf '%s\n' ${runs[$s]} | median)
        first=${first:-$m}
        echo "| $s | $m | $(awk -v a="$first" -v b="$m" 'BEGIN {printf "%.3f", b / a}') | ${runs[$s]}|"
    done
    echo
    echo "coserve: $bin $COSERVE_ARGS; coserve-b: ${BIN_B:-}; site: $SITE ($(wc -l <"$work/paths.txt") files);"
    echo "$CONNS connections, wrk -t1 on CPU 1, servers on CPU 0 with one worker;"
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r), DURATION=$DURATION, WRK_GZIP=${WRK_GZIP:-0}"
} >"$table"
cat "$table"
