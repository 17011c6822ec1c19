#!/usr/bin/env bash
# Performance against real peers ("Performance" issue), side by side in one
# run on this machine, with `wrk -t1` as the client:
#
#   small  1 KiB index.html, keep-alive, 64 connections
#   c1000  the same at 1,000 connections
#   large  a 10 MiB file, 16 connections
#   idle   10,000 idle keep-alive connections: server RSS held minus RSS
#          before, per connection (scripts/bench/idle_rss.py)
#
# Peers, each run when installed: nginx (2 workers, sendfile on, tcp_nopush
# on, access log off), lighttpd, and may_minihttp answering a fixed 1 KiB
# body from memory (`minihttp_peer`, tools/peers, the may ceiling). Then
# "null" (`null_peer`, tools/peers), a one-thread epoll loop that answers each
# request with coserve's head and body from memory and does nothing else:
# what it makes is what wrk -t1 gets here from a server that costs nothing
# (64 and 1,000 connections only). "null-short" is the same with
# may_minihttp's shorter head (114 bytes against 246): wrk parses every
# byte of a head, so the difference is what the head's length costs the
# client. Every
# server serves the same generated site from a temporary directory and
# listens on 127.0.0.1 only. Prints one table and the ratios, and writes
# them to target/compare/, with the chart `chart` (tools/chart) draws.
#
# coserve and may_minihttp run twice: with may's one worker per core (the
# default), and with one worker ("-1w"), which leaves the second core to
# wrk; docs/performance.md says why both are shown.
#
# coserve builds on a vendored may whose idle workers yield once before
# they sleep (vendor/may/README.coserve.md). "coserve-noyield" turns that
# off (MAY_IDLE_YIELD=0). may_minihttp runs on may as published
# (MAY_IDLE_YIELD=0), and "may_minihttp-yield" on the same loop as coserve.
#
# Each run also records the server's CPU and wrk's CPU (in cores, from
# /proc and /usr/bin/time) and the server threads' voluntary context
# switches per 1,000 requests: on 2 cores, wrk -t1 is itself the limit when
# its CPU is near 1.0. A second table divides both CPUs by the requests:
# microseconds per request for the server and for wrk.
#
# The 10 MiB scenario depends on the kernel's TCP congestion control more
# than on any server: on this machine (BBR) every server makes 250-450
# req/s, with Linux's default (CUBIC) 550-600. The run prints which one was
# in effect; TCP_CC sets it for the run (root only; restored at the end).
#
#   scripts/bench/compare.sh                    # 10 s per wrk run, about 6 min
#   DURATION=5 SERVERS="coserve nginx" scripts/bench/compare.sh
#   COSERVE_ARGS="--no-cache" scripts/bench/compare.sh
#   TCP_CC=cubic SCENARIOS=large IDLE=0 scripts/bench/compare.sh
#   ROUNDS=3 DURATION=5 scripts/bench/compare.sh   # servers alternate; medians
#
# Per core by default (PIN=1): every server under `taskset -c 0` with one
# worker (coserve --workers 1, nginx worker_processes 1, may_minihttp's
# one-worker peer), wrk under `taskset -c 1`, so that the client never
# competes with the server; the default servers are then coserve, nginx,
# lighttpd and may_minihttp-1w. PIN=0 runs everything unpinned on both
# cores, as before: the shared-core case.
#
# Settings: PIN, DURATION (s per wrk run), ROUNDS (each server runs every
# scenario once per round, in turn; the table gives medians), SERVERS,
# SCENARIOS (any of "small c1000 large"), IDLE (connection count, measured
# in the first round; 0 skips it), COSERVE_ARGS (extra flags for coserve),
# TCP_CC (congestion control).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10}
PIN=${PIN:-1}
if [[ $PIN == 1 ]]; then
    SRV="taskset -c 0"
    CLI="taskset -c 1"
    NGINX_WORKERS=1
    SERVERS=${SERVERS:-"coserve nginx lighttpd may_minihttp-1w"}
else
    SRV=""
    CLI=""
    NGINX_WORKERS=2
    SERVERS=${SERVERS:-"coserve coserve-1w coserve-noyield nginx lighttpd may_minihttp may_minihttp-1w may_minihttp-yield null null-short"}
fi
SCENARIOS=${SCENARIOS:-"small c1000 large"}
ROUNDS=${ROUNDS:-1}
IDLE=${IDLE:-10000}
COSERVE_ARGS=${COSERVE_ARGS:-}
TCP_CC=${TCP_CC:-}
cc_file=/proc/sys/net/ipv4/tcp_congestion_control
cc_before=$(cat "$cc_file" 2>/dev/null || echo unknown)

command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
echo "== building (release)"
cargo build --release --workspace --bin coserve --bin minihttp_peer --bin null_peer --bin chart 2>&1 | tail -1

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -n $TCP_CC && $cc_before != unknown ]]; then echo "$cc_before" >"$cc_file" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
if [[ -n $TCP_CC ]]; then
    echo "$TCP_CC" >"$cc_file" || { echo "cannot set the congestion control to $TCP_CC (root?)"; exit 1; }
fi
cc=$(cat "$cc_file" 2>/dev/null || echo unknown)

site=$work/site
mkdir -p "$site" "$work/logs"
head -c 1024 /dev/zero | tr '\0' 'x' >"$site/index.html"
head -c $((10 * 1024 * 1024)) /dev/urandom >"$site/10m.bin"
# nginx's workers run as an unprivileged user.
chmod 755 "$work" "$site"
chmod 644 "$site"/*

# shellcheck source=scripts/lib/ports.sh
. scripts/lib/ports.sh
# shellcheck source=scripts/lib/nginx.sh
. scripts/lib/nginx.sh

# Starts server $1 on port $2; sets `server_pids` to the processes whose
# memory counts.
start() {
    local name=$1 port=$2
    case $name in
    coserve | coserve-1w | coserve-noyield)
        local workers=0 yield=1
        [[ $name == coserve-1w || $PIN == 1 ]] && workers=1
        [[ $name == coserve-noyield ]] && yield=0
        # shellcheck disable=SC2086
        MAY_IDLE_YIELD=$yield $SRV target/release/coserve "$port" -b 127.0.0.1 -d "$site" -q \
            --max-connections 20000 --idle-timeout 60 --workers "$workers" $COSERVE_ARGS \
            >"$work/logs/coserve.log" 2>&1 &
        pids+=($!)
        server_pids=($!)
        ;;
    nginx)
        nginx_conf "$work/nginx" "$port" "$site" "$NGINX_WORKERS"
        $SRV nginx -c "$work/nginx/nginx.conf" >"$work/logs/nginx.log" 2>&1 &
        pids+=($!)
        wait_port "$port"
        server_pids=($! $(pgrep -P $! || true))
        return
        ;;
    lighttpd)
        cat >"$work/lighttpd.conf" <<LTD
server.document-root = "$site"
server.bind = "127.0.0.1"
server.port = $port
server.max-fds = 20000
server.max-connections = 16000
server.max-keep-alive-requests = 10000000
server.max-keep-alive-idle = 60
server.errorlog = "$work/lighttpd.error.log"
server.modules = ( "mod_staticfile" )
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html", ".bin" => "application/octet-stream" )
LTD
        $SRV lighttpd -D -f "$work/lighttpd.conf" >"$work/logs/lighttpd.log" 2>&1 &
        pids+=($!)
        server_pids=($!)
        ;;
    may_minihttp | may_minihttp-yield)
        local yield=0
        [[ $name == may_minihttp-yield ]] && yield=1
        MAY_IDLE_YIELD=$yield $SRV target/release/minihttp_peer "127.0.0.1:$port" 1024 \
            >"$work/logs/minihttp.log" 2>&1 &
        pids+=($!)
        server_pids=($!)
        ;;
    may_minihttp-1w)
        MAY_IDLE_YIELD=0 $SRV target/release/minihttp_peer "127.0.0.1:$port" 1024 1 nopin \
            >"$work/logs/minihttp.log" 2>&1 &
        pids+=($!)
        server_pids=($!)
        ;;
    null)
        $SRV target/release/null_peer "127.0.0.1:$port" >"$work/logs/null.log" 2>&1 &
        pids+=($!)
        server_pids=($!)
        ;;
    null-short)
        $SRV target/release/null_peer "127.0.0.1:$port" short >"$work/logs/null.log" 2>&1 &
        pids+=($!)
        server_pids=($!)
        ;;
    esac
    wait_port "$port"
}

stop() {
    for p in "${server_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${server_pids[@]}"; do wait "$p" 2>/dev/null || true; done
}

# CPU time (clock ticks) the server's processes have used so far.
server_ticks() {
    python3 scripts/lib/procfs.py cpu_ticks "${server_pids[@]}"
}

# Voluntary context switches of all the server's threads so far.
server_switches() {
    python3 scripts/lib/procfs.py switches "${server_pids[@]}"
}

# wrk's "Requests/sec", its 99th percentile latency in ms, the server's and
# wrk's CPU in cores, the server's voluntary context switches per 1,000
# requests, and any errors.
run_wrk() {
    local conns=$1 url=$2 out
    local t0 t1 v0 v1 wrk_cpu=-
    t0=$(server_ticks)
    v0=$(server_switches)
    if [[ -x /usr/bin/time ]]; then
        out=$(/usr/bin/time -f '%U %S' -o "$work/time.txt" $CLI wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$url")
        wrk_cpu=$(awk -v d="$DURATION" '{printf "%.2f", ($1 + $2) / d}' "$work/time.txt")
    else
        out=$($CLI wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$url")
    fi
    t1=$(server_ticks)
    v1=$(server_switches)
    echo "$out" >>"$work/wrk.txt"
    local rps p99 errors srv_cpu cs
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    srv_cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v d="$DURATION" 'BEGIN {printf "%.2f", (b - a) / hz / d}')
    cs=$(awk -v a="$v0" -v b="$v1" -v r="$rps" -v d="$DURATION" 'BEGIN {printf "%.0f", (b - a) * 1000 / (r * d)}')
    p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
    echo "$rps $p99 $srv_cpu $wrk_cpu $cs ${errors:-none}"
}

mkdir -p target/compare
stamp=$(date -u +%Y-%m-%dT%H:%MZ)
csv=target/compare/compare-$stamp-$cc.csv
rounds_csv=target/compare/compare-$stamp-$cc-rounds.csv
echo "server,scenario,req_per_s,p99_ms,per_conn_kib,server_cpu,wrk_cpu,switches_per_1k,errors" >"$csv"
echo "round,server,scenario,req_per_s,p99_ms,server_cpu,wrk_cpu,switches_per_1k,errors" >"$rounds_csv"

# The median of the numbers given (the lower middle one for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}

installed() {
    case $1 in
    nginx) command -v nginx >/dev/null ;;
    lighttpd) command -v lighttpd >/dev/null ;;
    *) true ;;
    esac
}

# Per round, each server in turn runs every scenario; with ROUNDS > 1 the
# servers alternate, so that the machine's drift over the run (5-10% an
# hour here) does not fall on one server's figures, and the table reports
# each figure's median over the rounds.
declare -A RPS P99 KIB SRV WRK CS ERR
for round in $(seq "$ROUNDS"); do
    for server in $SERVERS; do
        installed "$server" || { echo "== $server: not installed, skipped"; continue; }
        port=$(free_port)
        echo "== round $round/$ROUNDS: $server on 127.0.0.1:$port"
        start "$server" "$port"
        small_path=/index.html
        [[ $server == may_minihttp* ]] && small_path=/
        # Warm up (page cache, lazy allocations), then measure.
        $CLI wrk -t1 -c64 -d1s "http://127.0.0.1:$port$small_path" >/dev/null
        for scenario in $SCENARIOS; do
            # The null peer answers every target with the 1 KiB response.
            [[ $server == null* && $scenario == large ]] && continue
            case $scenario in
            small) read -r rps p99 srv wrk_cpu cs err <<<"$(run_wrk 64 "http://127.0.0.1:$port$small_path")" ;;
            c1000) read -r rps p99 srv wrk_cpu cs err <<<"$(run_wrk 1000 "http://127.0.0.1:$port$small_path")" ;;
            large) read -r rps p99 srv wrk_cpu cs err <<<"$(run_wrk 16 "http://127.0.0.1:$port/10m.bin")" ;;
            esac
            RPS[$server,$scenario]+=" $rps"
            P99[$server,$scenario]+=" $p99"
            SRV[$server,$scenario]+=" $srv"
            WRK[$server,$scenario]+=" $wrk_cpu"
            CS[$server,$scenario]+=" $cs"
            [[ $err == none ]] || ERR[$server,$scenario]+="round $round: $err "
            printf '   %-6s %12s req/s  p99 %8s ms  cpu: server %s wrk %s  switches/1k: %s  errors: %s\n' \
                "$scenario" "$rps" "$p99" "$srv" "$wrk_cpu" "$cs" "$err"
            echo "$round,$server,$scenario,$rps,$p99,$srv,$wrk_cpu,$cs,$err" >>"$rounds_csv"
        done
        stop
        [[ $round -eq 1 && $IDLE -gt 0 && $server != null* ]] || continue
        # The idle count on a fresh server, so earlier load does not hide or
        # inflate its growth; once, since it barely varies.
        port=$(free_port)
        start "$server" "$port"
        line=$(python3 scripts/bench/idle_rss.py 127.0.0.1 "$port" "$IDLE" "${server_pids[@]}")
        echo "   $line"
        KIB[$server]=$(sed 's/.*per_conn_kib=//' <<<"$line")
        stop
    done
done
# Each figure becomes its median over the rounds.
for server in $SERVERS; do
    for scenario in $SCENARIOS; do
        [[ -n ${RPS[$server,$scenario]:-} ]] || continue
        # shellcheck disable=SC2086
        {
            RPS[$server,$scenario]=$(median ${RPS[$server,$scenario]})
            P99[$server,$scenario]=$(median ${P99[$server,$scenario]})
            SRV[$server,$scenario]=$(median ${SRV[$server,$scenario]})
            WRK[$server,$scenario]=$(median ${WRK[$server,$scenario]})
            CS[$server,$scenario]=$(median ${CS[$server,$scenario]})
        }
        echo "$server,$scenario,${RPS[$server,$scenario]},${P99[$server,$scenario]},,${SRV[$server,$scenario]},${WRK[$server,$scenario]},${CS[$server,$scenario]},${ERR[$server,$scenario]:-none}" >>"$csv"
    done
    [[ -z ${KIB[$server]:-} ]] || echo "$server,idle$IDLE,,,${KIB[$server]},,,," >>"$csv"
done

echo
echo "== $stamp, $(nproc) cores, PIN=$PIN, wrk -t1, ${DURATION}s per run, median of $ROUNDS round(s), TCP congestion control $cc"
printf '%-20s %14s %10s %14s %10s %14s %12s\n' server "64 conns" p99ms "1000 conns" p99ms "10 MiB x16" "KiB/idle"
for server in $SERVERS; do
    printf '%-20s %14s %10s %14s %10s %14s %12s\n' "$server" \
        "${RPS[$server,small]:--}" "${P99[$server,small]:--}" \
        "${RPS[$server,c1000]:--}" "${P99[$server,c1000]:--}" \
        "${RPS[$server,large]:--}" "${KIB[$server]:--}"
done
echo
echo "where the time went: CPU in cores (server / wrk) and server context switches per 1,000 requests"
printf '%-20s %18s %18s %18s\n' server "64 conns" "1000 conns" "10 MiB x16"
for server in $SERVERS; do
    printf '%-20s' "$server"
    for scenario in small c1000 large; do
        printf ' %18s' "${SRV[$server,$scenario]:--}/${WRK[$server,$scenario]:--} cs ${CS[$server,$scenario]:--}"
    done
    echo
done
# CPU per request in µs, "server / wrk": what each side spent on one
# request. On a machine the two share, the client's part moves with the
# server's timing (the null peer shows how much).
per_request() {
    local rps=${RPS[$1,$2]:-} srv=${SRV[$1,$2]:-} wrk=${WRK[$1,$2]:-}
    if [[ -n $rps && $srv != - && $wrk != - && -n $srv && -n $wrk ]]; then
        awk -v r="$rps" -v s="$srv" -v w="$wrk" 'BEGIN { printf "%.2f / %.2f", s * 1e6 / r, w * 1e6 / r }'
    else
        echo -
    fi
}
echo
echo "CPU per request in microseconds (server / wrk)"
printf '%-20s %18s %18s\n' server "64 conns" "1000 conns"
for server in $SERVERS; do
    printf '%-20s %18s %18s\n' "$server" "$(per_request "$server" small)" "$(per_request "$server" c1000)"
done
# ours/peer for one scenario, or "-" where either was not run.
ratio() {
    local a=${RPS[$1,$3]:-} b=${RPS[$2,$3]:-}
    if [[ -n $a && -n $b ]]; then awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", a / b }'; else echo -; fi
}
for ours in coserve coserve-1w coserve-noyield; do
    [[ " $SERVERS " == *" $ours "* ]] || continue
    echo
    echo "$ours / peer (throughput)"
    for peer in $SERVERS; do
        [[ $peer != coserve* ]] || continue
        printf '  vs %-20s 64 conns %s   1000 conns %s   10 MiB %s\n' "$peer" \
            "$(ratio "$ours" "$peer" small)" "$(ratio "$ours" "$peer" c1000)" "$(ratio "$ours" "$peer" large)"
    done
done
cp "$work/wrk.txt" "target/compare/wrk-$stamp.txt"
svg=target/compare/compare-$stamp-$cc.svg
if [[ $PIN == 1 ]]; then
    how="per core: each server on CPU 0, wrk -t1 on CPU 1"
else
    how="wrk -t1 sharing $(nproc) cores"
fi
target/release/chart compare "$csv" "$svg" "coserve and its peers, $stamp, $how, $cc"
echo "(csv: $csv, each round: $rounds_csv; chart: $svg; raw wrk output: target/compare/wrk-$stamp.txt)"
