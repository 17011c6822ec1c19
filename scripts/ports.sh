# Port helpers for the measurement scripts (sourced, not run).

# A port free on 127.0.0.1 now (the OS picks it).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until something accepts on 127.0.0.1:$1, trying every 0.1 s, at
# most $2 times (default 100); fails if nothing does.
wait_port() {
    for _ in $(seq "${2:-100}"); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing listens on $1"
    return 1
}
