#!/usr/bin/env bash
# Load ("Hardening: load") at full size, against the release binary:
#
#   (a) 15,000 keep-alive connections held at once, each making requests for
#       20 s: every one served, no errors;
#   (b) a flood of 5,000 connections against --max-connections 2000: the
#       first 2,000 served (and still served after the flood), the excess
#       refused with 503, and the server's descriptors never above the cap
#       plus a bounded overhead;
#   (c) 5,000 slowloris connections trickling a header byte a second against
#       --header-timeout 5: every one cut off with a 408 at about 5 s, while
#       50 normal clients are served, their latency measured.
#
# Each scenario gets a fresh `coserve` (on 127.0.0.1, port 0) in a process
# of its own and `loadgen` (tools/loadgen) in another: a process may hold 20,000
# descriptors here, and both ends of 15,000 connections would need 30,000.
# Each server is stopped with SIGTERM and must exit 0. Exits 0 when every
# check holds; otherwise lists the failed checks and exits 1.
#
#   scripts/bench/load.sh                      # about 1 minute after the build
#   HELD=2000 HELD_SECS=5 scripts/bench/load.sh
#
# Sizes: HELD HELD_SECS CAP FLOOD SLOW TRICKLE_MS HEADER_TIMEOUT NORMAL.
set -euo pipefail
cd "$(dirname "$0")/../.."

HELD=${HELD:-15000}
HELD_SECS=${HELD_SECS:-20}
CAP=${CAP:-2000}
FLOOD=${FLOOD:-5000}
SLOW=${SLOW:-5000}
TRICKLE_MS=${TRICKLE_MS:-1000}
HEADER_TIMEOUT=${HEADER_TIMEOUT:-5}
NORMAL=${NORMAL:-50}
# The server refuses at most this many connections at once, each holding a
# descriptor for up to a second (MAX_REJECTING in src/server/accept.rs).
REFUSING=2048
# Descriptors of an idle server beyond its connections (stdio, epoll, the
# listener, ...), with room to spare.
BASE_FDS=32

echo "== building (release)"
cargo build --release --workspace --bin coserve --bin loadgen
BIN=target/release/coserve
LOADGEN=target/release/loadgen

work=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# A 1 KiB page to serve.
mkdir "$work/site"
head -c 1024 /dev/zero | tr '\0' 'x' >"$work/site/index.html"

failures=()
check() { # check DESCRIPTION CONDITION...
    local what=$1
    shift
    if "$@"; then
        echo "   ok: $what"
    else
        echo "   FAIL: $what"
        failures+=("$what")
    fi
}

# Starts the server with extra flags; sets server_pid and port. Its startup
# line comes through a FIFO, so the port is known as soon as it is bound.
start_server() {
    rm -f "$work/stdout"
    mkfifo "$work/stdout"
    "$BIN" -q -b 127.0.0.1 0 -d "$work/site" "$@" >"$work/stdout" 2>"$work/stderr" &
    server_pid=$!
    exec {server_out}<"$work/stdout"
    local line
    if ! read -r -t 10 -u "$server_out" line; then
        echo "coserve did not start: $(cat "$work/stderr")" >&2
        exit 1
    fi
    port=$(sed -n 's/^Serving HTTP on 127\.0\.0\.1 port \([0-9]*\) .*/\1/p' <<<"$line")
    if [[ -z $port ]]; then
        echo "unexpected startup line: $line" >&2
        exit 1
    fi
    echo "   coserve $* (pid $server_pid) on port $port"
}

# SIGTERM, then the exit status must be 0; anything the server logged is
# shown.
stop_server() {
    kill -TERM "$server_pid"
    local rc=0 t0=$SECONDS
    wait "$server_pid" || rc=$?
    exec {server_out}<&-
    echo "   stopped with SIGTERM: exit $rc after $((SECONDS - t0)) s"
    if [[ -s $work/stderr ]]; then
        echo "   server stderr:"
        sed 's/^/     /' "$work/stderr"
    fi
    server_pid=
    check "the server exits 0 on SIGTERM" test "$rc" -eq 0
}

# The loadgen's result line, and its fields.
run_loadgen() {
    "$LOADGEN" --addr "127.0.0.1:$port" --watch-pid "$server_pid" "$@" | tee "$work/loadgen.out"
    result=$(grep '^result ' "$work/loadgen.out" | tail -1)
}
val() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$result"; }

# ---------------------------------------------------------------------------
echo
echo "== (a) $HELD keep-alive connections held at once, each making requests for $HELD_SECS s"
start_server --max-connections $((HELD + 1000)) --idle-timeout 60
run_loadgen --held "$HELD" --duration "$HELD_SECS" --watch-ms 50
a=$result
check "all $HELD connections open at once (server descriptors $(val server_fds_max))" \
    test "$(val connected)" -eq "$HELD" -a "$(val server_fds_max)" -ge "$HELD"
check "no errors ($(val errors) in $(val requests) requests)" test "$(val errors)" -eq 0
check "every connection served throughout (fewest requests on one: $(val min_per_conn))" \
    test "$(val min_per_conn)" -ge 2
stop_server

# ---------------------------------------------------------------------------
echo
echo "== (b) a flood of $FLOOD connections against --max-connections $CAP"
start_server --max-connections "$CAP"
run_loadgen --flood "$FLOOD" --watch-ms 5
b=$result
fd_cap=$((CAP + REFUSING + BASE_FDS))
check "exactly $CAP served, and all still served after the flood" \
    test "$(val ok)" -eq "$CAP" -a "$(val served_again)" -eq "$CAP" -a "$(val again_errors)" -eq 0
check "the cap holds: server descriptors at most $fd_cap (cap + $REFUSING being refused + $BASE_FDS); peak $(val server_fds_max)" \
    test "$(val server_fds_max)" -le "$fd_cap"
check "every excess connection gets a 503 ($(val refused_503) of $((FLOOD - CAP)); closed without an answer $(val closed), reset $(val reset))" \
    test "$(val refused_503)" -eq $((FLOOD - CAP))
check "no connection left unanswered or failed" \
    test "$(val no_answer)" -eq 0 -a "$(val connect_failed)" -eq 0 -a "$(val other)" -eq 0 -a "$(val refused_503_open)" -eq 0
stop_server

# ---------------------------------------------------------------------------
echo
echo "== (c) $SLOW slowloris connections (a byte every $TRICKLE_MS ms) against --header-timeout $HEADER_TIMEOUT, with $NORMAL normal clients"
start_server --max-connections $((SLOW + NORMAL + 1000)) --header-timeout "$HEADER_TIMEOUT" --idle-timeout 60
run_loadgen --slowloris "$SLOW" --trickle-ms "$TRICKLE_MS" --header-timeout "$HEADER_TIMEOUT" \
    --normal "$NORMAL" --duration $((HEADER_TIMEOUT * 3 + 10))
c=$result
check "all $SLOW held at once, then closed by the server with a 408 ($(val status_408))" \
    test "$(val peak_open)" -eq "$SLOW" -a "$(val closed)" -eq "$SLOW" -a "$(val status_408)" -eq "$SLOW"
# On time: from the header timeout (less 10 ms: may counts whole
# milliseconds) until just before the next trickled byte.
check "none closed before the header timeout (first after $(val close_min_s) s)" \
    test "$(val closed_early)" -eq 0
check "all closed at the header timeout, before the next trickled byte ($(val closed_late) late; last after $(val close_max_s) s)" \
    test "$(val closed_late)" -eq 0
check "normal clients served throughout ($(val normal_requests) requests, $(val normal_errors) errors)" \
    test "$(val normal_errors)" -eq 0 -a "$(val normal_requests)" -gt 0
stop_server

# ---------------------------------------------------------------------------
echo
echo "== summary"
result=$a
echo "(a) held:      $(val connected) connections, $(val requests) requests in $(val secs) s ($(val rps)/s), $(val errors) errors;"
echo "               latency p50 $(val p50_ms) ms, p99 $(val p99_ms) ms, max $(val max_ms) ms; fewest on one connection $(val min_per_conn);"
echo "               server: $(val server_fds_max) descriptors at most, $(val server_threads_max) threads, $(( $(val server_rss_max_kib) / 1024 )) MiB peak RSS"
result=$b
echo "(b) flood:     $(val conns) against a cap of $CAP: $(val ok) served ($(val served_again) served again after), $(val refused_503) got 503,"
echo "               $(val closed) closed without an answer, $(val reset) reset; server descriptors $(val server_fds_first) before, $(val server_fds_max) at most"
result=$c
echo "(c) slowloris: $(val conns) held at once, $(val closed) closed ($(val status_408) with 408; $(val closed_on_time) on time, $(val closed_late) late, $(val closed_early) early)"
echo "               after their first byte: min $(val close_min_s) s, p50 $(val close_p50_s) s, p99 $(val close_p99_s) s, max $(val close_max_s) s"
echo "               normal clients: $(val normal) x $(val normal_requests) requests, $(val normal_errors) errors, latency p50 $(val normal_p50_ms) ms, p99 $(val normal_p99_ms) ms, max $(val normal_max_ms) ms"
echo
if ((${#failures[@]})); then
    echo "FAILED checks:"
    printf '  - %s\n' "${failures[@]}"
    exit 1
fi
echo "all checks passed"
