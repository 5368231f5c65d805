#!/usr/bin/env bash
# benches/soak.sh [SECONDS] — the soak (benches/soak.py): every kind of traffic through
# two sidecars over TLS while keys rotate, a revocation comes and goes, the app restarts,
# a key URL is down, the certificate rotates, and SIGTERM ends it with requests in flight.
# CI runs 120 s; for hours: benches/soak.sh 14400. TRUSTGATE=path picks the binary
# (default: a release build, made if missing). Needs python3 with uvicorn and grpcio,
# h2load (nghttp2-client) and openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${TRUSTGATE:-target/release/trustgate}
[ -x "$bin" ] || cargo build --release --bin trustgate
exec python3 benches/soak.py --trustgate "$bin" --seconds "${1:-120}"
