#!/usr/bin/env bash
# What a fleet-wide limit costs, on loopback, against the same caller with a local limit
# measured in the same run (interleaved rounds, medians):
#   limited_local   cached verify + the caller's own bucket (rate_limit_scope = "sidecar")
#   limited_fleet   the same limit fleet-wide: one GCRA round trip to a real redis-server
#                   (Unix socket, password) per request
# For each: req/s at c=32 and trustgate's CPU per request (utime+stime from /proc), plus
# the store's CPU per request (redis-server's /proc) on the fleet row; then latency at
# c=1 (p50, p99) and what the round trip adds. trustgate is pinned to CPU 0 (a 1-CPU
# sidecar), wrk, nginx and redis-server to CPU 1.
# Needs wrk, nginx, redis-server (installed with apt-get when missing and root).
#
# Usage: benches/fleet.sh [duration-seconds] [rounds]     (defaults 10 and 3)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
ROUNDS="${2:-3}"
need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need redis-server; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -q wrk nginx-light redis-server >/dev/null
    else
        echo "install wrk nginx-light redis-server first" >&2
        exit 1
    fi
fi
cargo build --release --quiet
TG="$PWD/target/release/trustgate"
. benches/lib.sh

UP=$(port)
start_upstream "$UP"
"$TG" keygen orders --out "$WORK/keys" >/dev/null 2>&1
"$TG" keygen billing --out "$WORK/keys" >/dev/null 2>&1
mkdir -p "$WORK/trusted"
cp "$WORK/keys/orders.pub" "$WORK/trusted/"

SOCK="$WORK/redis.sock"
echo "bench-password" >"$WORK/redis-password"
taskset -c 1 redis-server --port 0 --unixsocket "$SOCK" --unixsocketperm 700 --save "" \
    --appendonly no --requirepass bench-password --logfile "$WORK/redis.log" &
REDIS=$!
PIDS+=("$REDIS")
for _ in $(seq 1 100); do [ -S "$SOCK" ] && break; sleep 0.05; done

declare -A IN ADMIN PID
for scope in sidecar fleet; do
    IN[$scope]=$(port)
    ADMIN[$scope]=$(port)
    billing_config "$WORK/$scope.toml" "${IN[$scope]}" "$UP" "${ADMIN[$scope]}"
    cat >>"$WORK/$scope.toml" <<TOML
[callers.orders]
rate_limit = "1000000/s"
rate_limit_scope = "$scope"
[fleet]
redis = "unix://$SOCK"
password_file = "$WORK/redis-password"
TOML
    taskset -c 0 "$TG" run --config "$WORK/$scope.toml" >"$WORK/$scope.log" 2>&1 &
    PID[$scope]=$!
    PIDS+=("$!")
    wait_port "${IN[$scope]}"
done
TOKEN=$("$TG" token --key "$WORK/keys/orders.key" --iss orders --aud billing --ttl 300s)
AUTH="Authorization: Bearer $TOKEN"
echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -t1 -d${DUR}s, $ROUNDS rounds"

RESULTS="$WORK/results"
: >"$RESULTS"
# measure NAME SCOPE CONNS → name rps tg_us store_us p50 p99 non2xx
measure() {
    local name=$1 scope=$2 conns=$3
    local url="http://127.0.0.1:${IN[$scope]}/x"
    taskset -c 1 wrk -t1 -c"$conns" -d1s -H "$AUTH" "$url" >/dev/null 2>&1
    local t0 r0 t1 r1
    t0=$(cpu_ticks "${PID[$scope]}"); r0=$(cpu_ticks "$REDIS")
    taskset -c 1 wrk -t1 -c"$conns" -d"${DUR}s" --latency -H "$AUTH" "$url" >"$WORK/$name.wrk" 2>&1
    t1=$(cpu_ticks "${PID[$scope]}"); r1=$(cpu_ticks "$REDIS")
    local reqs rps p50 p99 non2xx
    reqs=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.wrk")
    p50=$(awk '$1=="50%" {print $2}' "$WORK/$name.wrk")
    p99=$(awk '$1=="99%" {print $2}' "$WORK/$name.wrk")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/$name.wrk")
    local us store
    us=$(python3 -c "print(f'{($t1 - $t0) / $TICK * 1e6 / $reqs:.1f}')")
    store=$(python3 -c "print(f'{($r1 - $r0) / $TICK * 1e6 / $reqs:.1f}')")
    echo "$name $rps $us $store $p50 $p99 ${non2xx:-0}" >>"$RESULTS"
    printf "%-16s %9s req/s   trustgate %6s µs/req   store %6s µs/req   p50 %8s   p99 %8s   non-2xx %s\n" \
        "$name" "$rps" "$us" "$store" "$p50" "$p99" "${non2xx:-0}"
}
for r in $(seq 1 "$ROUNDS"); do
    echo "--- round $r"
    measure limited_local sidecar 32
    measure limited_fleet fleet 32
    measure c1_local sidecar 1
    measure c1_fleet fleet 1
done
grep -c "fleet store" "$WORK/fleet.log" >/dev/null && grep "fleet store" "$WORK/fleet.log" | head -3

python3 - "$RESULTS" <<'PY'
import statistics, sys
def lat(s):
    for unit, f in (("us", 1), ("ms", 1000), ("s", 1e6)):
        if s.endswith(unit):
            return float(s[: -len(unit)]) * f
runs = {}
for line in open(sys.argv[1]):
    name, rps, us, store, p50, p99, bad = line.split()
    runs.setdefault(name, []).append((float(rps), float(us), float(store), lat(p50), lat(p99), int(bad)))
med = lambda n, i: statistics.median(r[i] for r in runs[n])
print()
print(f"{'row':16} {'req/s':>9} {'trustgate µs/req':>17} {'store µs/req':>13} {'p50 µs':>8} {'p99 µs':>8}")
for n in runs:
    print(f"{n:16} {med(n,0):9.0f} {med(n,1):17.1f} {med(n,2):13.1f} {med(n,3):8.0f} {med(n,4):8.0f}")
print()
print(f"fleet / local, trustgate CPU per request: {med('limited_fleet',1) / med('limited_local',1):.3f}")
print(f"fleet / local, req/s at c=32:             {med('limited_fleet',0) / med('limited_local',0):.3f}")
print(f"the round trip adds at c=1: p50 {med('c1_fleet',3) - med('c1_local',3):+.0f} µs, p99 {med('c1_fleet',4) - med('c1_local',4):+.0f} µs")
bad = sum(r[5] for rs in runs.values() for r in rs)
print(f"non-2xx answers: {bad}")
sys.exit(1 if bad else 0)
PY
