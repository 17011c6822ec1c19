#!/usr/bin/env bash
# Two coserve binaries against each other, per core: each server under
# `taskset -c 0` with one worker, `wrk -t1` under `taskset -c 1`, so that
# the client never competes with the server. The binaries alternate, A B A
# B ..., scenario by scenario, and the table gives each one's median
# requests/s and the ratio B/A of the medians.
#
#   small  1 KiB index.html, keep-alive, 64 connections
#   c1000  the same at 1,000 connections
#   large  a 10 MiB file, 16 connections
#
#   scripts/bench/per_core.sh OLD_BINARY NEW_BINARY
#   ROUNDS=5 DURATION=5 SCENARIOS="small c1000" scripts/bench/per_core.sh A B
#
# ARGS_A and ARGS_B replace each side's "--workers 1", so one binary can
# run against itself in two shapes; SERVER_CPUS (0) is the cores the
# servers get. One process of two workers against two processes of one
# (--processes), on one core and then on both:
#
#   ARGS_A="--workers 2" ARGS_B="--processes 2 --workers 1" \
#       scripts/bench/per_core.sh target/release/coserve target/release/coserve
#
# Settings: ROUNDS (3), DURATION (s per wrk run, 10), SCENARIOS, OUT (the
# folder for raw wrk output and the table: docs/results/DATE-per-core by
# default). Loopback only; every server serves a generated site from a
# temporary directory on a free port.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/ports.sh
source scripts/lib/ports.sh

a=${1:?usage: per_core.sh BINARY_A BINARY_B}
b=${2:?usage: per_core.sh BINARY_A BINARY_B}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
SCENARIOS=${SCENARIOS:-"small c1000 large"}
ARGS_A=${ARGS_A:-"--workers 1"}
ARGS_B=${ARGS_B:-"--workers 1"}
SERVER_CPUS=${SERVER_CPUS:-0}
OUT=${OUT:-docs/results/$(date -u +%Y-%m-%d)-per-core}
mkdir -p "$OUT"

site=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$site"
}
trap cleanup EXIT
head -c 1024 /dev/zero | tr '\0' 'x' >"$site/index.html"
head -c $((10 * 1024 * 1024)) /dev/urandom >"$site/10m.bin"

# scenario -> "connections path"
declare -A load=([small]="64 /index.html" [c1000]="1000 /index.html" [large]="16 /10m.bin")

# Runs one wrk against binary $1 (with the flags $3) for scenario $2;
# prints requests/s.
run() {
    local bin=$1 scenario=$2 args=$3 port conns path log
    read -r conns path <<<"${load[$scenario]}"
    port=$(free_port)
    # shellcheck disable=SC2086 # the flags are words
    taskset -c "$SERVER_CPUS" "$bin" "$port" -b 127.0.0.1 -d "$site" $args -q \
        --max-connections 20000 >/dev/null 2>&1 &
    pid=$!
    wait_port "$port" >/dev/null
    # Warm the file cache and the connection pool before measuring.
    taskset -c 1 wrk -t1 -c"$conns" -d1s "http://127.0.0.1:$port$path" >/dev/null
    log="$OUT/$scenario-$(basename "$(dirname "$bin")")-$(basename "$bin")$(tr -d ' -' <<<"$args")-$(date -u +%H%M%S).txt"
    taskset -c 1 wrk -t1 -c"$conns" -d"${DURATION}s" "http://127.0.0.1:$port$path" | tee "$log" |
        awk '/^Requests\/sec/ {print $2}'
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
}

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

table="$OUT/table.md"
{
    echo "| scenario | A req/s (median of $ROUNDS) | B req/s | B/A | A runs | B runs |"
    echo "|---|---|---|---|---|---|"
} >"$table"
for scenario in $SCENARIOS; do
    ra=() rb=()
    for _ in $(seq "$ROUNDS"); do
        ra+=("$(run "$a" "$scenario" "$ARGS_A")")
        rb+=("$(run "$b" "$scenario" "$ARGS_B")")
    done
    ma=$(printf '%s\n' "${ra[@]}" | median)
    mb=$(printf '%s\n' "${rb[@]}" | median)
    ratio=$(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.3f", b / a}')
    echo "| $scenario | $ma | $mb | $ratio | ${ra[*]} | ${rb[*]} |" >>"$table"
done
{
    echo
    echo "A: $a $ARGS_A"
    echo "B: $b $ARGS_B"
    echo "servers on CPUs $SERVER_CPUS, wrk -t1 on CPU 1"
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r), DURATION=$DURATION, ROUNDS=$ROUNDS"
} >>"$table"
cat "$table"
