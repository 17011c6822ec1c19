#!/usr/bin/env bash
# Streamed uploads (examples/upload.rs): the server's memory while it
# writes uploads to disk. The release example runs under `taskset -c 0`,
# curl under `taskset -c 1`. It sends one SIZE (1 GiB) upload with a
# Content-Length (curl also asks for `100 Continue`), the same again
# chunked, then PARALLEL (100) uploads of EACH (10 MiB) at once, and
# prints for each the time, the rate, and the server's RSS (`VmRSS`) and
# peak RSS (`VmHWM`) after it, from /proc. Every upload must answer 201
# and leave a file of the size sent.
#
#   scripts/bench/upload.sh [UPLOAD_BINARY]
#   SIZE=$((256 << 20)) PARALLEL=10 scripts/bench/upload.sh
#
# The table goes to OUT (docs/results/DATE-upload/).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/ports.sh
source scripts/lib/ports.sh
# shellcheck source=scripts/lib/measure.sh
source scripts/lib/measure.sh
# shellcheck source=scripts/lib/example.sh
source scripts/lib/example.sh

SIZE=${SIZE:-$((1 << 30))}
PARALLEL=${PARALLEL:-100}
EACH=${EACH:-$((10 << 20))}
OUT=${OUT:-docs/results/$(date -u +%Y-%m-%d)-upload}
command -v curl >/dev/null || { echo "curl is needed"; exit 1; }
example_setup upload "${1:-}"
mkdir -p "$OUT"

port=$(free_port)
mkdir "$work/store"
taskset -c 0 "$bin" "$port" "$work/store" >/dev/null 2>"$work/server.log" &
pid=$!
wait_port "$port" >/dev/null
url="http://127.0.0.1:$port"
kib() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$pid/status"; }

# Sparse input files: reading them costs the client no disk.
truncate -s "$SIZE" "$work/big.in"
truncate -s "$EACH" "$work/each.in"

table="$OUT/upload-$(date -u +%H%M%S).md"
{
    echo "| upload | seconds | MiB/s | server VmRSS after | server VmHWM after | server CPU s |"
    echo "|---|---|---|---|---|---|"
} >"$table"
echo "server VmRSS at start: $(kib VmRSS) KiB, VmHWM $(kib VmHWM) KiB" | tee -a "$table"

# row NAME BYTES_TOTAL COMMAND...: runs the uploads and adds a row.
row() {
    local name=$1 total=$2 t0 t1 c0 c1
    shift 2
    c0=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$pid")
    awk -v n="$name" -v t0="$t0" -v t1="$t1" -v b="$total" -v rss="$(kib VmRSS)" \
        -v hwm="$(kib VmHWM)" -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {
        s = t1 - t0
        printf "| %s | %.2f | %.0f | %d KiB | %d KiB | %.2f |\n", n, s, b / s / 1048576, rss, hwm, c / hz
    }' | tee -a "$table"
}

put() {
    local code
    code=$(taskset -c 1 curl -sS -o /dev/null -w '%{http_code}' "$@")
    [[ $code == 201 ]] || { echo "upload answered $code: $*" >&2; exit 1; }
}

sized() { put -T "$work/big.in" "$url/sized.bin"; }
chunked() { put -H 'Transfer-Encoding: chunked' -T - "$url/chunked.bin" <"$work/big.in"; }
parallel() {
    local i pids=()
    for ((i = 0; i < PARALLEL; i++)); do
        put -T "$work/each.in" "$url/each-$i.bin" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
}

row "$((SIZE >> 20)) MiB, Content-Length" "$SIZE" sized
row "$((SIZE >> 20)) MiB, chunked" "$SIZE" chunked
row "$PARALLEL × $((EACH >> 20)) MiB at once" "$((PARALLEL * EACH))" parallel

for f in sized.bin chunked.bin; do
    [[ $(stat -c %s "$work/store/$f") == "$SIZE" ]] || { echo "$f: wrong size" >&2; exit 1; }
done
for ((i = 0; i < PARALLEL; i++)); do
    [[ $(stat -c %s "$work/store/each-$i.bin") == "$EACH" ]] || { echo "each-$i: wrong size" >&2; exit 1; }
done
echo "table: $table"
