#!/usr/bin/env bash
# Load benchmark on loopback, every row in one run on the same machine:
#   direct           wrk → nginx (2-byte answers): the upstream alone
#   haproxy_plain    HAProxy 2.x forwarding, no checks
#   minimal_hyper    examples/minimal_proxy.rs: hyper 1.x + hyper-util, pooled, no checks
#   passthrough      trustgate inbound on a public path (its own pass-through)
#   verify_cached    trustgate inbound, one token reused (verified-token cache hits)
#   verify_fresh     trustgate inbound, a fresh request-bound token on every request
#   outbound_cached  trustgate outbound with a cached token, straight to the upstream
#   haproxy_jwt      HAProxy jwt_verify ES256 with alg/iss/aud/exp rules, every request
# For each: req/s and the CPU time the front's process spent per request (utime + stime
# from /proc/PID/stat over the run, divided by the requests served). Then latency at
# c=1 — direct, and the full chain client → outbound sidecar → inbound sidecar → nginx —
# and memory (idle; 1 000 keep-alive connections idle; 1 000 all busy). Targets are
# printed with ok/MISSED; every ratio is against a row of this same run. References
# from the same run: the minimal proxy's memory with 1 000 busy connections, and what a
# chain of two minimal proxies adds at c=1.
#
# The fronts are pinned to CPU 0 (one CPU: trustgate then runs single-threaded, as a
# sidecar with a 1-CPU limit does); wrk and nginx share CPU 1. The c=1 rows run
# everything on CPU 1: a wake-up across CPUs costs ~60 µs in this kind of VM and would
# drown the proxies' own cost.
# Needs: wrk, haproxy, nginx (apt-get install wrk haproxy nginx-light; done here if
# missing and we are root), python3, taskset; builds trustgate and the baseline here.
#
# Rows are measured in ROUNDS interleaved rounds and the medians reported.
#
# Usage: benches/load.sh [duration-seconds] [rounds]     (defaults 10 and 3)
#
# Before/after in one run: BEFORE=/path/to/an/older/trustgate adds that binary's
# pass-through, cached and fresh rows to every round (same configurations, interleaved
# with the current binary's) and its memory with 1 000 busy connections, and prints a
# before → after table. How to build an older commit: see benches/compare.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
ROUNDS="${2:-3}"
BEFORE="${BEFORE:+$(realpath "$BEFORE")}"
CONNS=32

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need haproxy || ! need nginx; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -q wrk haproxy nginx-light >/dev/null
    else
        echo "install wrk haproxy nginx-light first" >&2
        exit 1
    fi
fi
need taskset || { echo "taskset (util-linux) is required" >&2; exit 1; }

cargo build --release --quiet
cargo build --release --quiet --example minimal_proxy
TG="$PWD/target/release/trustgate"
MINI="$PWD/target/release/examples/minimal_proxy"
. benches/lib.sh

UP=$(port); IN=$(port); OUT=$(port); ADMIN=$(port); ADMIN2=$(port)
HAP=$(port); HAPJ=$(port); MIN=$(port); MIN2=$(port); CHAIN_OUT=$(port); CHAIN_ADMIN=$(port)
start_upstream "$UP"

# --- keys and configurations --------------------------------------------------------------
"$TG" keygen orders --out "$WORK/keys" >/dev/null 2>&1
"$TG" keygen billing --out "$WORK/keys" >/dev/null 2>&1
mkdir -p "$WORK/trusted"
cp "$WORK/keys/orders.pub" "$WORK/trusted/"
billing_config "$WORK/billing.toml" "$IN" "$UP" "$ADMIN" 'public_paths = ["/pub"]'
billing_config "$WORK/bound.toml" "$IN" "$UP" "$ADMIN" "require_request_binding = true
replay_cache_size = 1000000"
orders_config "$WORK/orders.toml" "$OUT" "$ADMIN2" "http://127.0.0.1:$UP"
orders_config "$WORK/chain.toml" "$CHAIN_OUT" "$CHAIN_ADMIN" "http://127.0.0.1:$IN"

# --- HAProxy, plain and with jwt_verify ----------------------------------------------------
haproxy_config "$WORK/haproxy.cfg" "$HAP" "$UP"
haproxy_config "$WORK/haproxy-jwt.cfg" "$HAPJ" "$UP" jwt

# --- running fronts and measuring them ---------------------------------------------------------
FRONT=""
start_front() { # cpu wait-url command...
    local cpu=$1 wait=$2; shift 2
    taskset -c "$cpu" "$@" 2>"$WORK/front.log" &
    FRONT=$!
    PIDS+=("$FRONT")
    for _ in $(seq 1 200); do
        # Up: readiness 200, or (HAProxy with jwt rules) a 401 for a call without token.
        case "$(curl -s -o /dev/null -w '%{http_code}' "$wait" 2>/dev/null)" in
            200 | 401) return 0 ;;
        esac
        sleep 0.05
    done
    cat "$WORK/front.log" >&2
    echo "front did not come up: $*" >&2
    exit 1
}
stop_front() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# The RSS (KiB) of process PID halfway through a run of wrk holding 1 000 busy connections.
busy_rss() { # pid url [wrk args...]
    local pid=$1 url=$2
    shift 2
    taskset -c 1 wrk -t1 -c1000 -d"${DUR}s" "$@" "$url" >/dev/null 2>&1 &
    local w=$!
    sleep $(( (DUR + 1) / 2 ))
    rss_kib "$pid"
    wait "$w"
}
RESULTS="$WORK/results"
: >"$RESULTS"

# measure NAME PID(- for none) CONNS URL [wrk args...] → a line in $RESULTS:
# name rps cpu_us_per_request p50 p99 non2xx
measure() {
    local name=$1 pid=$2 conns=$3 url=$4; shift 4
    local cpu=1
    # Warm-up (pool, caches) — not for single-use tokens, which it would use up.
    [ "${WARM:-1}" = 1 ] && taskset -c "$cpu" wrk -t1 -c"$conns" -d1s "$@" "$url" >/dev/null 2>&1
    local t0=0 t1=0
    [ "$pid" != - ] && t0=$(cpu_ticks "$pid")
    taskset -c "$cpu" wrk -t1 -c"$conns" -d"${DUR}s" --latency "$@" "$url" >"$WORK/$name.wrk" 2>&1
    [ "$pid" != - ] && t1=$(cpu_ticks "$pid")
    local reqs rps p50 p99 non2xx
    reqs=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.wrk")
    p50=$(awk '$1=="50%" {print $2}' "$WORK/$name.wrk")
    p99=$(awk '$1=="99%" {print $2}' "$WORK/$name.wrk")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/$name.wrk")
    local us=-
    [ "$pid" != - ] && us=$(python3 -c "print(f'{($t1 - $t0) / $TICK * 1e6 / $reqs:.1f}')")
    echo "$name $rps $us $p50 $p99 ${non2xx:-0}" >>"$RESULTS"
    printf "%-18s %10s req/s   CPU %6s µs/req   p50 %8s   p99 %8s   non-2xx %s\n" \
        "$name" "$rps" "$us" "$p50" "$p99" "${non2xx:-0}"
}

TOKEN=$("$TG" token --key "$WORK/keys/orders.key" --iss orders --aud billing --ttl 300s)
AUTH="Authorization: Bearer $TOKEN"
echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -t1 -c$CONNS -d${DUR}s"
echo

# Memory, once: idle; 1 000 open keep-alive connections idle (each made one verified
# request and stays open); then, in a fresh process (as the minimal proxy and BEFORE are
# measured: freed memory glibc keeps from the idle phase would otherwise be counted for
# this build only), all 1 000 busy under wrk.
start_front 0 "http://127.0.0.1:$ADMIN/readyz" "$TG" run --config "$WORK/billing.toml"
TGP=$FRONT
IDLE_RSS=$(rss_kib "$TGP")
cat >"$WORK/hold.py" <<PY
import socket, sys
conns = []
req = b"GET /x HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer $TOKEN\r\n\r\n"
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", $IN))
    s.sendall(req)
    data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 200"), data[:100]
    conns.append(s)
print("held", len(conns), flush=True)
sys.stdin.read()
PY
coproc HOLD { taskset -c 1 python3 "$WORK/hold.py"; }
read -r _ HELD <&"${HOLD[0]}"
RSS_IDLE_1000=$(rss_kib "$TGP")
HOLD_IN=${HOLD[1]}
exec {HOLD_IN}>&-
wait "$HOLD_PID" 2>/dev/null || true
stop_front "$TGP"
start_front 0 "http://127.0.0.1:$ADMIN/readyz" "$TG" run --config "$WORK/billing.toml"
TGP=$FRONT
RSS_1000=$(busy_rss "$TGP" "http://127.0.0.1:$IN/x" -H "$AUTH")
stop_front "$TGP"
# The same for the minimal hyper proxy: what the libraries alone hold for 1 000 busy
# connections (a reference for the memory target, not a target).
start_front 0 "http://127.0.0.1:$MIN/" "$MINI" "127.0.0.1:$MIN" "127.0.0.1:$UP"
MINP=$FRONT
RSS_MIN_1000=$(busy_rss "$MINP" "http://127.0.0.1:$MIN/")
stop_front "$MINP"
RSS_BEFORE_1000=0
if [ -n "$BEFORE" ]; then
    start_front 0 "http://127.0.0.1:$ADMIN/readyz" "$BEFORE" run --config "$WORK/billing.toml"
    BP=$FRONT
    RSS_BEFORE_1000=$(busy_rss "$BP" "http://127.0.0.1:$IN/x" -H "$AUTH")
    stop_front "$BP"
fi

# Fresh tokens: one request-bound token per request, fed to wrk by a Lua script; a new
# file per round (they are single-use).
fresh_tokens() { # round
    "$TG" token --key "$WORK/keys/orders.key" --iss orders --aud billing --ttl 300s \
        --bind GET /fresh --count $(( DUR * 16000 )) >"$WORK/tokens.$1.txt"
    cat >"$WORK/fresh.$1.lua" <<LUA
local tokens = {}
for line in io.lines("$WORK/tokens.$1.txt") do tokens[#tokens + 1] = line end
local i = 0
request = function()
    i = i + 1
    if i > #tokens then i = 1 end
    return wrk.format("GET", "/fresh", { ["Authorization"] = "Bearer " .. tokens[i] })
end
LUA
}

# A binary's inbound rows of a round: pass-through, cached and fresh verification, named
# with a prefix ("" for this build, before_ for $BEFORE).
trustgate_rows() { # binary prefix tokens-tag
    start_front 0 "http://127.0.0.1:$ADMIN/readyz" "$1" run --config "$WORK/billing.toml"
    measure "${2}passthrough" "$FRONT" "$CONNS" "http://127.0.0.1:$IN/pub"
    measure "${2}verify_cached" "$FRONT" "$CONNS" "http://127.0.0.1:$IN/x" -H "$AUTH"
    stop_front "$FRONT"
    fresh_tokens "$3"
    start_front 0 "http://127.0.0.1:$ADMIN/readyz" "$1" run --config "$WORK/bound.toml"
    WARM=0 measure "${2}verify_fresh" "$FRONT" "$CONNS" "http://127.0.0.1:$IN/fresh" \
        -s "$WORK/fresh.$3.lua"
    stop_front "$FRONT"
}

# Steal time (a shared VM): /proc/stat's 8th cpu field, over the whole rounds.
steal() { awk '$1 == "cpu" {print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
read -r STEAL0 TOTAL0 < <(steal)
for r in $(seq 1 "$ROUNDS"); do
    echo "--- round $r of $ROUNDS"
    # A token per round: a run of several rounds outlasts one token's 300 s.
    TOKEN=$("$TG" token --key "$WORK/keys/orders.key" --iss orders --aud billing --ttl 300s)
    AUTH="Authorization: Bearer $TOKEN"
    measure direct - "$CONNS" "http://127.0.0.1:$UP/"

    start_front 0 "http://127.0.0.1:$HAP/" haproxy -f "$WORK/haproxy.cfg"
    measure haproxy_plain "$FRONT" "$CONNS" "http://127.0.0.1:$HAP/"
    stop_front "$FRONT"

    start_front 0 "http://127.0.0.1:$MIN/" "$MINI" "127.0.0.1:$MIN" "127.0.0.1:$UP"
    measure minimal_hyper "$FRONT" "$CONNS" "http://127.0.0.1:$MIN/"
    stop_front "$FRONT"

    trustgate_rows "$TG" "" "$r"
    if [ -n "$BEFORE" ]; then
        trustgate_rows "$BEFORE" before_ "$r.before"
    fi

    start_front 0 "http://127.0.0.1:$ADMIN2/readyz" "$TG" run --config "$WORK/orders.toml"
    measure outbound_cached "$FRONT" "$CONNS" "http://127.0.0.1:$OUT/" -H "Host: up"
    stop_front "$FRONT"

    start_front 0 "http://127.0.0.1:$HAPJ/" haproxy -f "$WORK/haproxy-jwt.cfg"
    measure haproxy_jwt "$FRONT" "$CONNS" "http://127.0.0.1:$HAPJ/x" -H "$AUTH"
    stop_front "$FRONT"

    # Latency at c=1, everything on CPU 1: direct, then the full chain.
    measure c1_direct - 1 "http://127.0.0.1:$UP/x"
    start_front 1 "http://127.0.0.1:$ADMIN/readyz" "$TG" run --config "$WORK/billing.toml"
    B=$FRONT
    start_front 1 "http://127.0.0.1:$CHAIN_ADMIN/readyz" "$TG" run --config "$WORK/chain.toml"
    O=$FRONT
    measure c1_chain - 1 "http://127.0.0.1:$CHAIN_OUT/x" -H "Host: up"
    stop_front "$O"
    stop_front "$B"
    # The same chain shape made of two minimal hyper proxies: what two hops of these
    # libraries add at c=1 (a reference for the latency target).
    start_front 1 "http://127.0.0.1:$MIN2/" "$MINI" "127.0.0.1:$MIN2" "127.0.0.1:$UP"
    M2=$FRONT
    start_front 1 "http://127.0.0.1:$MIN/" "$MINI" "127.0.0.1:$MIN" "127.0.0.1:$MIN2"
    M1=$FRONT
    measure c1_chain_minimal - 1 "http://127.0.0.1:$MIN/x"
    stop_front "$M1"
    stop_front "$M2"
done

read -r STEAL1 TOTAL1 < <(steal)
STOLEN=$(python3 -c "print(100 * ($STEAL1 - $STEAL0) / max(1, $TOTAL1 - $TOTAL0))")

# --- targets ------------------------------------------------------------------------------------
python3 - "$RESULTS" "$IDLE_RSS" "$RSS_IDLE_1000" "$RSS_1000" "$HELD" "$RSS_MIN_1000" "$RSS_BEFORE_1000" "$STOLEN" <<'EOF'
import statistics, sys
def lat(s):
    for unit, f in (("us", 1), ("ms", 1000), ("s", 1e6)):
        if s.endswith(unit):
            return float(s[: -len(unit)]) * f
    return float(s)
runs = {}
for line in open(sys.argv[1]):
    name, rps, us, p50, p99, non2xx = line.split()
    runs.setdefault(name, []).append((float(rps), None if us == "-" else float(us), lat(p50), lat(p99), int(non2xx)))
med = lambda xs: statistics.median(xs) if None not in xs else None
rows = {
    n: dict(rps=med([r[0] for r in rs]), us=med([r[1] for r in rs]), p50=med([r[2] for r in rs]),
            p99=med([r[3] for r in rs]), bad=sum(r[4] for r in rs))
    for n, rs in runs.items()
}
print()
print(f"medians of {len(runs['direct'])} round(s):")
for n, r in rows.items():
    us = "-" if r["us"] is None else f"{r['us']:.1f}"
    print(f"{n:18} {r['rps']:10.0f} req/s   CPU {us:>6} µs/req   p50 {r['p50']:7.0f} µs   p99 {r['p99']:7.0f} µs")
idle, idle1000, busy1000 = (int(x) / 1024 for x in sys.argv[2:5])
# What the chain adds to a direct call: the median of the per-round differences.
def added(name, col):
    return statistics.median(x[col] - y[col] for x, y in zip(runs[name], runs["c1_direct"]))
# A ratio is the median of the per-round ratios: the two rows of a round ran minutes
# apart at most, so a slow drift of the machine (a neighbour on the host) cancels out.
def ratio(a, b):
    return statistics.median(x[1] / y[1] for x, y in zip(runs[a], runs[b]))
checks = [
    ("pass-through CPU / minimal hyper proxy", ratio("passthrough", "minimal_hyper"), "<=", 1.0),
    ("pass-through CPU / HAProxy plain", ratio("passthrough", "haproxy_plain"), "<=", 1.3),
    ("fresh verify CPU / HAProxy jwt_verify", ratio("verify_fresh", "haproxy_jwt"), "<=", 0.8),
    ("cached verify CPU / pass-through", ratio("verify_cached", "passthrough"), "<=", 1.05),
    ("outbound (cached token) CPU / pass-through", ratio("outbound_cached", "passthrough"), "<=", 1.05),
    ("idle RSS (MiB)", idle, "<=", 12),
    ("RSS, 1000 connections all busy (MiB)", busy1000, "<=", 48),
    ("chain adds at c=1, p50 (µs)", added("c1_chain", 2), "<=", 100),
    ("chain adds at c=1, p99 (µs)", added("c1_chain", 3), "<=", 250),
]
print()
print(f"{'target':46} {'value':>9} {'bound':>8}")
for name, value, op, bound in checks:
    ok = value <= bound
    print(f"{name:46} {value:9.2f} {op + ' ' + str(bound):>8} {'ok' if ok else 'MISSED'}")
# References from the same run (not targets): what the libraries alone need.
print()
print("references (not targets):")
print(f"{'RSS, 1000 idle keep-alive connections (MiB)':46} {idle1000:9.2f}")
print(f"{'minimal hyper proxy RSS, 1000 busy (MiB)':46} {int(sys.argv[6]) / 1024:9.2f}")
if "c1_chain_minimal" in rows:
    print(f"{'two minimal hyper proxies add at c=1, p50 (µs)':46} {added('c1_chain_minimal', 2):9.2f}")
    print(f"{'two minimal hyper proxies add at c=1, p99 (µs)':46} {added('c1_chain_minimal', 3):9.2f}")
print(f"{'CPU stolen by the hypervisor during the run (%)':46} {float(sys.argv[8]):9.2f}")
bad = {n: r["bad"] for n, r in rows.items() if r["bad"]}
if bad:
    print(f"non-2xx answers: {bad}")
print(f"(held {sys.argv[5]} idle connections)")
if "before_passthrough" in rows:
    print()
    print("before -> after (CPU µs/request, this run):")
    for n in ("passthrough", "verify_cached", "verify_fresh"):
        b, a = rows["before_" + n]["us"], rows[n]["us"]
        print(f"{n:18} {b:7.1f} -> {a:7.1f}   x{ratio(n, 'before_' + n):.2f} (median of per-round ratios)")
    print(f"{'RSS 1000 busy MiB':18} {int(sys.argv[7]) / 1024:7.1f} -> {busy1000:7.1f}")
EOF
