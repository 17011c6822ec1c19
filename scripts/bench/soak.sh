#!/usr/bin/env bash
# Soak test: mixed load against the release binary for SOAK_MINUTES minutes
# (default 10) or SOAK_SECONDS seconds, every body byte checked, the
# server's RSS and descriptors sampled. See scripts/bench/soak.py for the
# load.
#
#   scripts/bench/soak.sh                  # 10 minutes
#   SOAK_MINUTES=1 scripts/bench/soak.sh
#   SOAK_SECONDS=20 scripts/bench/soak.sh  # a short check
#
# Exits non-zero on an error, a wrong byte, a descriptor leak, growing
# memory or an unclean exit on SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ -n "${SOAK_SECONDS:-}" ]]; then
    seconds=$SOAK_SECONDS
else
    seconds=$(( ${SOAK_MINUTES:-10} * 60 ))
fi

cargo build --release --quiet --bin coserve
exec python3 scripts/bench/soak.py --binary target/release/coserve --seconds "$seconds" "$@"
