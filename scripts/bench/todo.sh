#!/usr/bin/env bash
# The todo example (examples/todo.rs, a JSON API on SQLite) under mixed
# reads and writes: 80% GET /todos/ID, 10% PATCH, 5% POST, 5% DELETE
# (scripts/bench/todo.lua), from `wrk -t1` over CONNS (64) keep-alive
# connections. Per core: the release example under `taskset -c 0` (one may
# worker, and the blocking pool's SQLite work, on that core), wrk under
# `taskset -c 1`. Each round starts the server on a fresh database of SEED
# (1,000) todos, sends WARM (1) seconds of the same traffic, then measures
# DURATION (10) seconds. Every answer must be a 2xx; the table gives each
# round's requests/s and latency percentiles, and their medians.
#
#   scripts/bench/todo.sh [TODO_BINARY]
#   ROUNDS=3 DURATION=5 CONNS=64 scripts/bench/todo.sh
#
# Raw wrk output and the table go to OUT (docs/results/DATE-todo/).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/ports.sh
source scripts/lib/ports.sh
# shellcheck source=scripts/lib/measure.sh
source scripts/lib/measure.sh
# shellcheck source=scripts/lib/example.sh
source scripts/lib/example.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARM=${WARM:-1}
CONNS=${CONNS:-64}
SEED=${SEED:-1000}
OUT=${OUT:-docs/results/$(date -u +%Y-%m-%d)-todo}
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
example_setup todo "${1:-}"
mkdir -p "$OUT"

# SEED todos, "seed 1" to "seed SEED", on one connection to port $1.
seed() {
    python3 - "$1" "$SEED" <<'PY'
import json, os, sys
sys.path.insert(0, os.path.join("scripts", "lib"))
from http1 import Conn

port, count = int(sys.argv[1]), int(sys.argv[2])
with Conn("127.0.0.1", port, timeout=10) as c:
    for i in range(1, count + 1):
        body = json.dumps({"title": f"seed {i}"}).encode()
        c.send(b"POST /todos HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        r = c.response()
        if r.status != 201 or r.h("location") != f"/todos/{i}":
            sys.exit(f"seeding: todo {i}: {r.short()}")
PY
}

# One round: prints "REQ_PER_S P50_MS P99_MS NON_2XX ERRORS".
run() {
    local round=$1 port log
    port=$(free_port)
    rm -f "$work"/todos.db*
    taskset -c 0 "$bin" "$port" "$work/todos.db" >/dev/null 2>"$work/server.log" &
    pid=$!
    wait_port "$port" >/dev/null
    seed "$port"
    local url="http://127.0.0.1:$port"
    TODO_SEED=$SEED taskset -c 1 wrk -t1 -c"$CONNS" -d"${WARM}s" -s scripts/bench/todo.lua "$url" >/dev/null
    log="$OUT/round$round-$(date -u +%H%M%S).txt"
    TODO_SEED=$SEED taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
        -s scripts/bench/todo.lua "$url" >"$log"
    # Still serving, and every todo a well-formed answer away.
    python3 -c 'import json, sys, urllib.request
todos = json.load(urllib.request.urlopen(sys.argv[1] + "/todos", timeout=30))
print(len(todos), "todos after the run", file=sys.stderr)' "$url" 2>>"$log"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    if [[ -s $work/server.log ]]; then
        echo "server stderr:" >>"$log"
        cat "$work/server.log" >>"$log"
    fi
    local rps p50 p99 non2xx errors
    rps=$(awk '/^Requests\/sec/ {print $2}' "$log")
    p50=$(wrk_percentile_ms "$log" 50%)
    p99=$(wrk_percentile_ms "$log" 99%)
    non2xx=$(awk '/Non-2xx or 3xx responses/ {print $NF}' "$log")
    # "Socket errors: connect 0, read 0, write 0, timeout 0", summed.
    errors=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$log")
    echo "$rps $p50 $p99 ${non2xx:-0} ${errors:-0}"
}

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

table="$OUT/table.md"
rows=()
for r in $(seq "$ROUNDS"); do
    rows+=("$(run "$r")")
done
{
    echo "| round | req/s | p50 ms | p99 ms | non-2xx | socket errors |"
    echo "|---|---|---|---|---|---|"
    for i in "${!rows[@]}"; do
        read -r rps p50 p99 non2xx errors <<<"${rows[$i]}"
        echo "| $((i + 1)) | $rps | $p50 | $p99 | $non2xx | $errors |"
    done
    rps_m=$(for row in "${rows[@]}"; do echo "${row%% *}"; done | median)
    p99_m=$(for row in "${rows[@]}"; do awk '{print $3}' <<<"$row"; done | median)
    echo "| median | $rps_m | | $p99_m | | |"
    echo
    echo "examples/todo.rs ($bin) on CPU 0, one may worker; wrk -t1 -c$CONNS on CPU 1,"
    echo "scripts/bench/todo.lua (80% GET one, 10% PATCH, 5% POST, 5% DELETE), $SEED seeded todos;"
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r), ROUNDS=$ROUNDS DURATION=$DURATION WARM=$WARM"
} >"$table"
cat "$table"
