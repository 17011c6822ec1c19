# Running one of the example binaries in a measurement script (sourced,
# not run).

# Sets `bin` to the release example NAME, or to BINARY if the script was
# given one (then nothing is built); sets `work` to a temporary directory
# and `pid` to empty, and on exit kills and reaps the process in `pid`
# (the script sets it when it starts the example) and removes `work`.
#   example_setup NAME [BINARY]
example_setup() {
    local name=$1 given=${2:-}
    if [[ -n $given ]]; then
        bin=$given
    else
        bin=${CARGO_TARGET_DIR:-target}/release/examples/$name
        cargo build --release --example "$name" 2>&1 | tail -1
    fi
    if [[ ! -x $bin ]]; then
        echo "no example binary at $bin" >&2
        exit 1
    fi
    work=$(mktemp -d)
    pid=
    trap example_cleanup EXIT
}

example_cleanup() {
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
