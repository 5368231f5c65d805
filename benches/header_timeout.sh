#!/usr/bin/env bash
# How long a dripped request head (Slowloris: a byte every 200 ms, never finished) stays
# open against `limits.header_read_timeout = "1s"`: the timeout bounds the whole head, so
# every connection should close at about 1 s, never be kept alive by the drip. The pass/fail
# test (tests/it/attack_exhaustion.rs) asserts the close; this measures when it comes.
#
# Usage: benches/header_timeout.sh [connections]      (default 20, one after the other)
#        BIN=/path/to/trustgate benches/header_timeout.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20}"
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet
    BIN="$PWD/target/release/trustgate"
fi
TG="$BIN"
. benches/lib.sh

UP=$(port); IN=$(port); ADMIN=$(port)
"$TG" keygen orders --out "$WORK/keys" >/dev/null 2>&1
"$TG" keygen billing --out "$WORK/keys" >/dev/null 2>&1
mkdir -p "$WORK/trusted"
cp "$WORK/keys/orders.pub" "$WORK/trusted/"
billing_config "$WORK/billing.toml" "$IN" "$UP" "$ADMIN"
cat >>"$WORK/billing.toml" <<TOML
[limits]
header_read_timeout = "1s"
TOML
"$TG" run --config "$WORK/billing.toml" &
PIDS+=($!)
wait_port "$IN"

python3 - "$IN" "$N" <<'PY'
import socket, statistics, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
took = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: billing\r\nX-Slow: ")
    s.settimeout(0.2)
    start = time.monotonic()
    while True:
        try:
            if s.recv(4096) == b"":
                break
        except socket.timeout:
            pass
        except ConnectionResetError:
            break
        try:
            s.sendall(b"a")
        except (BrokenPipeError, ConnectionResetError):
            break
        if time.monotonic() - start > 10:
            sys.exit("still open after 10 s of dripping")
    took.append(time.monotonic() - start)
    s.close()
print(f"dripped head closed after: min {min(took):.3f} s, median {statistics.median(took):.3f} s, "
      f"max {max(took):.3f} s over {n} connections (header_read_timeout 1 s)")
PY
