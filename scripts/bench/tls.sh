#!/usr/bin/env bash
# HTTPS per core: coserve against nginx, each under `taskset -c 0` with one
# worker, the client under `taskset -c 1`, with the same ECDSA P-256
# certificate (made here) and TLS 1.3. Servers alternate, round by round;
# the table gives medians of ROUNDS runs.
#
#   small      1 KiB, keep-alive, 64 connections (wrk -t1)
#   c1000      the same at 1,000 connections
#   large      a 10 MiB file, 16 connections
#   handshake  full handshakes, no resumption (`openssl s_time -new`, one
#              GET of the 1 KiB file each): handshakes/s, and the server's
#              CPU per handshake
#   idle       IDLE (10,000) HTTPS keep-alive connections that each made one
#              GET and wait: the server's RSS per connection, in KiB
#              (scripts/bench/idle_rss.py --tls; the "per s" column holds it)
#
# Every scenario also gives the server's CPU per request (its utime and
# stime over the run, from /proc, divided by the requests).
#
#   scripts/bench/tls.sh [COSERVE_BINARY]
#   ROUNDS=3 DURATION=10 SCENARIOS="small handshake" scripts/bench/tls.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/ports.sh
source scripts/lib/ports.sh
# shellcheck source=scripts/lib/nginx.sh
source scripts/lib/nginx.sh
# shellcheck source=scripts/lib/measure.sh
source scripts/lib/measure.sh

bin=${1:-target/release/coserve}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
SERVERS=${SERVERS:-"coserve nginx"}
SCENARIOS=${SCENARIOS:-"small c1000 large handshake idle"}
IDLE=${IDLE:-10000}
OUT=${OUT:-docs/results/$(date -u +%Y-%m-%d)-tls}
mkdir -p "$OUT"
[[ $bin != target/release/coserve ]] || cargo build --release --bin coserve 2>&1 | tail -1

work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/site"
head -c 1024 /dev/zero | tr '\0' 'x' >"$work/site/index.html"
head -c $((10 * 1024 * 1024)) /dev/urandom >"$work/site/big.bin"
touch -d '1 minute ago' "$work/site/index.html" "$work/site/big.bin"
# nginx's worker runs as nobody: the site must be readable to all.
chmod 755 "$work" "$work/site"
chmod 644 "$work/site/index.html" "$work/site/big.bin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null

start() {
    local name=$1 port=$2
    case $name in
    coserve)
        taskset -c 0 "$bin" "$port" -b 127.0.0.1 -d "$work/site" --workers 1 -q \
            --max-connections 20000 --idle-timeout 60 --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" >/dev/null 2>&1 &
        ;;
    nginx)
        nginx_conf "$work/nginx" "$port" "$work/site" 1 \
            "ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem; ssl_protocols TLSv1.2 TLSv1.3; ssl_ecdh_curve X25519:prime256v1;" ssl
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

# One run of scenario $2 against server $1: prints "rate cpu_us".
run() {
    local name=$1 scenario=$2 port log before after count rate
    port=$(free_port)
    start "$name" "$port"
    log="$OUT/$name-$scenario-$(date -u +%H%M%S).txt"
    local url="https://127.0.0.1:$port"
    case $scenario in
    small | c1000 | large)
        local conns=64 path=/index.html
        [[ $scenario == c1000 ]] && conns=1000
        [[ $scenario == large ]] && conns=16 path=/big.bin
        taskset -c 1 wrk -t1 -c"$conns" -d2s "$url$path" >/dev/null
        before=$(cpu_ticks "$pid")
        taskset -c 1 wrk -t1 -c"$conns" -d"${DURATION}s" "$url$path" >"$log"
        after=$(cpu_ticks "$pid")
        count=$(awk '/requests in/ {print $1}' "$log")
        if grep -q 'Non-2xx' "$log"; then
            echo "$name $scenario: responses other than 2xx (see $log)" >&2
            exit 1
        fi
        rate=$(awk '/^Requests\/sec/ {print $2}' "$log")
        ;;
    handshake)
        before=$(cpu_ticks "$pid")
        taskset -c 1 openssl s_time -connect "127.0.0.1:$port" -new -time "$DURATION" \
            -www /index.html >"$log" 2>&1 || true
        after=$(cpu_ticks "$pid")
        count=$(awk '/connections in/ && /real seconds/ {print $1; exit}' "$log")
        rate=$(awk -v n="$count" -v d="$DURATION" 'BEGIN {printf "%.1f", n / d}')
        ;;
    idle)
        before=0 after=0 count=1
        # shellcheck disable=SC2046
        python3 scripts/bench/idle_rss.py --tls 127.0.0.1 "$port" "$IDLE" \
            "$pid" $(pgrep -P "$pid") >"$log"
        rate=$(sed -n 's/.*per_conn_kib=\([0-9.]*\).*/\1/p' "$log")
        ;;
    esac
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    awk -v r="$rate" -v a="$after" -v b="$before" -v n="$count" -v hz="$(getconf CLK_TCK)" \
        'BEGIN {printf "%s %.2f\n", r, (a - b) / hz * 1e6 / (n > 0 ? n : 1)}'
}

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

declare -A rates cpus
for _ in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        for s in $SERVERS; do
            read -r rate cpu < <(run "$s" "$scenario")
            rates[$s.$scenario]+="$rate "
            cpus[$s.$scenario]+="$cpu "
        done
    done
done
table="$OUT/table.md"
{
    echo "| scenario | server | per s (median of $ROUNDS) | server CPU µs each (median) | runs |"
    echo "|---|---|---|---|---|"
    for scenario in $SCENARIOS; do
        for s in $SERVERS; do
            echo "| $scenario | $s | $(printf '%s\n' ${rates[$s.$scenario]} | median) | $(printf '%s\n' ${cpus[$s.$scenario]} | median) | ${rates[$s.$scenario]}|"
        done
    done
    echo
    echo "coserve: $bin; ECDSA P-256, TLS 1.3; servers on CPU 0 with one worker, the client on CPU 1;"
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r), DURATION=$DURATION, $(openssl version)"
} >"$table"
cat "$table"
