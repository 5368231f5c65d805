#!/usr/bin/env bash
# Two trustgate binaries side by side in one run: pass-through (a public path) and
# verification with a reused token (verified-token cache hits), against the same nginx
# upstream, in interleaved rounds. Reports req/s and the CPU time the trustgate process
# spent per request (utime+stime from /proc/PID/stat over the wrk run), median of rounds.
#
# For before/after measurements of a change: build the old commit into a copy first, e.g.
#   git worktree add /tmp/before <commit> && (cd /tmp/before && \
#       CARGO_TARGET_DIR=$PWD/target cargo build --release) && cp target/release/trustgate /tmp/tg-before
#   cargo build --release && benches/compare.sh /tmp/tg-before target/release/trustgate
#
# trustgate is pinned to CPU 0; wrk and nginx share CPU 1.
# Usage: benches/compare.sh BEFORE AFTER [seconds-per-run] [rounds]    (default 8, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=$(realpath "$1"); AFTER=$(realpath "$2"); DUR="${3:-8}"; ROUNDS="${4:-3}"
CONNS=32
for t in wrk nginx taskset curl python3; do
    command -v "$t" >/dev/null || { echo "$t is required (apt-get install wrk nginx-light)" >&2; exit 1; }
done
. benches/lib.sh
UP=$(port); IN=$(port); ADMIN=$(port)

start_upstream "$UP"

"$AFTER" keygen orders --out "$WORK/keys" >/dev/null 2>&1
"$AFTER" keygen billing --out "$WORK/keys" >/dev/null 2>&1
mkdir -p "$WORK/trusted" && cp "$WORK/keys/orders.pub" "$WORK/trusted/"
billing_config "$WORK/billing.toml" "$IN" "$UP" "$ADMIN" 'public_paths = ["/pub"]'
TOKEN=$("$AFTER" token --key "$WORK/keys/orders.key" --iss orders --aud billing --ttl 300s)


# run BIN NAME PATH [wrk args] → "req/s cpu-us-per-request"
measure() {
    local bin=$1 name=$2 path=$3; shift 3
    taskset -c 0 "$bin" run --config "$WORK/billing.toml" 2>"$WORK/tg.log" &
    local pid=$!
    for _ in $(seq 1 200); do
        curl -fs "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1 && break
        sleep 0.05
    done
    # Warm up (pool, caches), then measure.
    taskset -c 1 wrk -t1 -c$CONNS -d1s "$@" "http://127.0.0.1:$IN$path" >/dev/null 2>&1
    local t0 t1
    t0=$(cpu_ticks "$pid")
    taskset -c 1 wrk -t1 -c$CONNS -d"${DUR}s" "$@" "http://127.0.0.1:$IN$path" >"$WORK/out" 2>&1
    t1=$(cpu_ticks "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    local reqs rps non2xx
    reqs=$(awk '/requests in/ {print $1}' "$WORK/out")
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/out")
    [ -z "$non2xx" ] || { echo "$name: $non2xx non-2xx answers" >&2; exit 1; }
    python3 -c "print($rps, ($t1 - $t0) / $TICK * 1e6 / $reqs)" >>"$WORK/$name"
}

echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -t1 -c$CONNS -d${DUR}s, $ROUNDS interleaved rounds"
for r in $(seq 1 "$ROUNDS"); do
    for side in before after; do
        bin=$BEFORE; [ "$side" = after ] && bin=$AFTER
        measure "$bin" "$side.passthrough" /pub
        measure "$bin" "$side.verify_cached" /x -H "Authorization: Bearer $TOKEN"
    done
done
python3 - "$WORK" <<'EOF'
import statistics, sys
work = sys.argv[1]
def med(name):
    rows = [tuple(map(float, l.split())) for l in open(f"{work}/{name}")]
    return statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
print(f"{'row':16} {'before req/s':>13} {'after req/s':>12} {'before µs/req':>14} {'after µs/req':>13} {'after/before CPU':>17}")
for row in ("passthrough", "verify_cached"):
    (rb, cb), (ra, ca) = med(f"before.{row}"), med(f"after.{row}")
    print(f"{row:16} {rb:13.0f} {ra:12.0f} {cb:14.1f} {ca:13.1f} {ca / cb:17.3f}")
EOF
