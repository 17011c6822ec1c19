# What the measurement scripts read off a run (sourced, not run).

# Milliseconds from one wrk latency ("812.00us", "1.23ms", "1.01s",
# "1.50m"), with DECIMALS (3) decimals.
#   wrk_ms VALUE [DECIMALS]
wrk_ms() {
    awk -v v="$1" -v d="${2:-3}" 'BEGIN {
        unit = v; sub(/^[0-9.]+/, "", unit)
        f = (unit == "us") ? 0.001 : (unit == "ms") ? 1 : (unit == "s") ? 1000 : (unit == "m") ? 60000 : -1
        printf "%.*f", d, (v + 0) * f
    }'
}

# A percentile ("50%", "99%") of a `wrk --latency` output file, in
# milliseconds.
#   wrk_percentile_ms FILE PERCENTILE [DECIMALS]
wrk_percentile_ms() {
    wrk_ms "$(awk -v p="$2" '$1 == p {print $2}' "$1")" "${3:-3}"
}

# CPU time so far of process PID and its children, in clock ticks.
#   cpu_ticks PID
cpu_ticks() {
    local t=0 p
    for p in $1 $(pgrep -P "$1"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
