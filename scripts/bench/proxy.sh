#!/usr/bin/env bash
# Reverse proxies per core: coserve's proxy example against nginx's
# `proxy_pass`, both in front of the same upstream serving a 1 KiB file.
#
#   proxies   under `taskset -c 0`, one worker each (the example with
#             COSERVE_WORKERS=1, nginx with `worker_processes 1`), upstream
#             connections kept alive (the example's pool of 64 idle, nginx's
#             `keepalive 64` with HTTP/1.1 and `Connection ""`), both setting
#             X-Forwarded-For, -Proto, -Host and Forwarded
#   upstream  target/release/coserve with one worker, under `taskset -c 1`
#             beside wrk: CPU 0 is then the proxy's alone, so its own cost
#             is what is compared. (With two cores nothing is ideal: on
#             CPU 0 the upstream would take part of the proxy's core; on
#             CPU 1 it takes part of the client's. The table's "proxy CPU"
#             column says how busy CPU 0 was: well below 100% means the
#             client side, not the proxy, set the rate.)
#   client    `wrk -t1 --latency` under `taskset -c 1`, keep-alive
#
#   c64    64 connections
#   c1000  1,000 connections
#
# Each run starts its proxy afresh, warms it (and its pool) for a second,
# then measures. Proxies alternate, A B A B ...; the table gives medians
# of ROUNDS runs: requests/s, wrk's p99 latency, and the proxy's CPU time
# per request (utime + stime from /proc, its children included).
#
#   scripts/bench/proxy.sh
#   ROUNDS=3 DURATION=5 SCENARIOS="c64 c1000" scripts/bench/proxy.sh
#
# Settings: ROUNDS (3), DURATION (s per wrk run, 5), SCENARIOS, OUT (the
# folder for raw wrk output and the table: docs/results/DATE-proxy by
# default). The binaries come from ${CARGO_TARGET_DIR:-target}/release,
# built first. Loopback only; the nginx configuration is written to a
# temporary directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/ports.sh
source scripts/lib/ports.sh
# shellcheck source=scripts/lib/measure.sh
source scripts/lib/measure.sh
# shellcheck source=scripts/lib/nginx.sh
source scripts/lib/nginx.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
SCENARIOS=${SCENARIOS:-"c64 c1000"}
OUT=${OUT:-docs/results/$(date -u +%Y-%m-%d)-proxy}
release=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$OUT"
cargo build --release --bin coserve --example proxy 2>&1 | tail -1
server=$release/coserve
proxy=$release/examples/proxy

work=$(mktemp -d)
pid= upstream_pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    [ -n "$upstream_pid" ] && kill "$upstream_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/site"
head -c 1024 /dev/zero | tr '\0' 'x' >"$work/site/index.html"
# Settled, so that the upstream's file cache serves it.
touch -d '1 minute ago' "$work/site/index.html"

upstream_port=$(free_port)
taskset -c 1 "$server" "$upstream_port" -b 127.0.0.1 -d "$work/site" --workers 1 -q \
    --max-connections 20000 >/dev/null 2>&1 &
upstream_pid=$!
wait_port "$upstream_port" >/dev/null

# nginx as a reverse proxy on $2 to the upstream, in directory $1: the
# scripts' nginx (scripts/lib/nginx.sh) with an upstream and a location
# that proxies to it.
nginx_proxy_conf() {
    local dir=$1 port=$2
    # As the example's pool: 64 idle connections, never retired for their
    # number of requests.
    local upstream="upstream coserve_upstream {
        server 127.0.0.1:$upstream_port;
        keepalive 64;
        keepalive_requests 10000000;
    }"
    # The fields the example sets.
    local location='location / {
            proxy_pass http://coserve_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header Forwarded "for=$remote_addr;proto=$scheme;host=$host";
        }'
    nginx_conf "$dir" "$port" "" 1 "$upstream" "" "$location"
}

start() {
    local name=$1 port=$2
    case $name in
    coserve)
        COSERVE_WORKERS=1 taskset -c 0 "$proxy" "$port" "http://127.0.0.1:$upstream_port" \
            >/dev/null 2>"$work/coserve.err" &
        ;;
    nginx)
        nginx_proxy_conf "$work/nginx" "$port"
        taskset -c 0 nginx -c "$work/nginx/nginx.conf" >/dev/null 2>&1 &
        ;;
    *)
        echo "unknown proxy $name" >&2
        exit 2
        ;;
    esac
    pid=$!
    wait_port "$port" >/dev/null
}

# One run of scenario $2 against proxy $1: prints "rate p99_ms cpu_us cpu_percent".
run() {
    local name=$1 scenario=$2 port log before after count rate
    local conns=${scenario#c}
    port=$(free_port)
    start "$name" "$port"
    local url="http://127.0.0.1:$port/index.html"
    taskset -c 1 wrk -t1 -c"$conns" -d1s "$url" >/dev/null
    log="$OUT/$name-$scenario-$(date -u +%H%M%S).txt"
    before=$(cpu_ticks "$pid")
    taskset -c 1 wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$url" >"$log"
    after=$(cpu_ticks "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    if grep -q 'Non-2xx' "$log"; then
        echo "$name $scenario: responses other than 2xx (see $log)" >&2
        exit 1
    fi
    count=$(awk '/requests in/ {print $1}' "$log")
    rate=$(awk '/^Requests\/sec/ {print $2}' "$log")
    awk -v r="$rate" -v p="$(wrk_percentile_ms "$log" 99% 2)" -v a="$after" -v b="$before" -v n="$count" \
        -v d="$DURATION" -v hz="$(getconf CLK_TCK)" \
        'BEGIN {printf "%s %s %.2f %.0f\n", r, p, (a - b) / hz * 1e6 / (n > 0 ? n : 1), (a - b) / hz / d * 100}'
}

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

proxies="coserve nginx"
declare -A rates p99s cpus busy
for _ in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        for p in $proxies; do
            read -r rate p99 cpu pct < <(run "$p" "$scenario")
            rates[$p.$scenario]+="$rate "
            p99s[$p.$scenario]+="$p99 "
            cpus[$p.$scenario]+="$cpu "
            busy[$p.$scenario]+="$pct "
        done
    done
done

# shellcheck disable=SC2086 # a list of numbers, split into words
med() { printf '%s\n' $1 | median; }
table="$OUT/table.md"
{
    echo "| scenario | proxy | req/s (median of $ROUNDS) | p99 ms | proxy CPU µs/req | proxy CPU % | req/s runs | p99 runs |"
    echo "|---|---|---|---|---|---|---|---|"
    for scenario in $SCENARIOS; do
        for p in $proxies; do
            echo "| $scenario | $p | $(med "${rates[$p.$scenario]}") | $(med "${p99s[$p.$scenario]}") | $(med "${cpus[$p.$scenario]}") | $(med "${busy[$p.$scenario]}") | ${rates[$p.$scenario]}| ${p99s[$p.$scenario]}|"
        done
    done
    echo
    echo "| scenario | coserve/nginx req/s | coserve/nginx p99 | coserve/nginx CPU per request |"
    echo "|---|---|---|---|"
    for scenario in $SCENARIOS; do
        awk -v s="$scenario" -v ra="$(med "${rates[coserve.$scenario]}")" -v rb="$(med "${rates[nginx.$scenario]}")" \
            -v pa="$(med "${p99s[coserve.$scenario]}")" -v pb="$(med "${p99s[nginx.$scenario]}")" \
            -v ca="$(med "${cpus[coserve.$scenario]}")" -v cb="$(med "${cpus[nginx.$scenario]}")" \
            'BEGIN {printf "| %s | %.3f | %.3f | %.3f |\n", s, ra / rb, pa / pb, ca / cb}'
    done
    echo
    echo "coserve: $proxy (COSERVE_WORKERS=1); nginx: $(nginx -v 2>&1 | sed 's/.*: //'), worker_processes 1;"
    echo "both on CPU 0; upstream $server --workers 1 (a 1 KiB file) and wrk -t1 on CPU 1;"
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r), DURATION=$DURATION, ROUNDS=$ROUNDS"
} >"$table"
cat "$table"
