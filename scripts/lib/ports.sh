# Port helpers for the measurement scripts (sourced, not run); the work is
# scripts/lib/ports.py's, which the Python scripts import.

# A port free on 127.0.0.1 now (the OS picks it).
free_port() {
    python3 "$(dirname "${BASH_SOURCE[0]}")/ports.py" free
}

# Waits until something accepts on 127.0.0.1:$1, trying every 0.1 s, at
# most $2 times (default 100); fails if nothing does.
wait_port() {
    if ! python3 "$(dirname "${BASH_SOURCE[0]}")/ports.py" wait "$1" "${2:-100}"; then
        echo "nothing listens on $1"
        return 1
    fi
}
