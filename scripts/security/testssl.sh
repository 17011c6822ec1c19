#!/usr/bin/env bash
# testssl.sh (the Debian package's `testssl`) against coserve's HTTPS, with
# a certificate as a real site would have one: signed by a CA (made here,
# and given to testssl with --add-ca), valid for a year, with a CRL
# distribution point, and HSTS sent with --header. So what it rates is the
# server, not a throw-away certificate. Prints the findings rated LOW or
# worse; the full output and JSON go to OUT.
#
#   scripts/security/testssl.sh [COSERVE_BINARY]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/ports.sh
source scripts/lib/ports.sh
bin=${1:-target/release/coserve}
OUT=${OUT:-docs/results/$(date -u +%Y-%m-%d)-testssl}
mkdir -p "$OUT"
command -v testssl >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq testssl.sh >/dev/null
[[ $bin != target/release/coserve ]] || cargo build --release --bin coserve 2>&1 | tail -1

work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -keyout ca.key -out ca.pem -subj "/CN=coserve testssl CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout key.pem -out req.csr -subj /CN=localhost 2>/dev/null
cat >ext.cnf <<EXT
subjectAltName=DNS:localhost,IP:127.0.0.1
crlDistributionPoints=URI:http://localhost/ca.crl
extendedKeyUsage=serverAuth
keyUsage=digitalSignature
EXT
openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
    -extfile ext.cnf -out cert.pem 2>/dev/null
mkdir site && echo '<!doctype html><title>t</title><p>testssl' >site/index.html
cd - >/dev/null
port=$(free_port)
"$bin" "$port" -b 127.0.0.1 -d "$work/site" -q \
    --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
    --header "Strict-Transport-Security: max-age=31536000" >/dev/null 2>&1 &
pid=$!
wait_port "$port" >/dev/null
rm -f "$OUT/testssl.json"
testssl --color 0 --warnings off --nodns min --quiet --wide --add-ca "$work/ca.pem" \
    --jsonfile "$OUT/testssl.json" "https://127.0.0.1:$port" >"$OUT/testssl.txt" 2>&1 || true
python3 - "$OUT/testssl.json" <<'PY' | tee "$OUT/summary.txt"
import collections, json, sys
found = json.load(open(sys.argv[1]))
print("severities:", dict(collections.Counter(f["severity"] for f in found)))
for f in found:
    if f["severity"] in ("LOW", "MEDIUM", "HIGH", "CRITICAL"):
        print(f["severity"], f["id"], "-", f["finding"])
PY
