#!/usr/bin/env bash
# What a person's request costs at the edge, against a caller's cached request measured in
# the same run (interleaved rounds, medians). One edge sidecar (billing) takes people's
# tokens (a user issuer whose JWKS a Python http.server serves; the tokens made by PyJWT)
# and service tokens, and mints a transaction token per person's request:
#   caller_cached   a service token, the same every request (verified-token cache)
#   person_cached   a person's ES256 token, the same every request: verified once, then
#                   from the cache; the transaction token's signature is the floor
#   person_fresh    a new person's token every request (fed to wrk by a Lua script):
#                   one verification and one signature per request
#   person_dpop     the same person's token bound to a client key (cnf.jkt), with a fresh
#                   DPoP proof every request (made by PyJWT): one more ES256 verify, a
#                   replay-cache insert
# For each: req/s at c=32 and trustgate's CPU per request (utime+stime from /proc).
# trustgate is pinned to CPU 0 (a 1-CPU sidecar), wrk, nginx and the issuer to CPU 1.
# Needs wrk, nginx, python3 with PyJWT and cryptography.
#
# Usage: benches/person.sh [duration-seconds] [rounds]     (defaults 10 and 3)
#        BEFORE=/path/to/older/trustgate adds that binary's person_cached row.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
ROUNDS="${2:-3}"
need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -q wrk nginx-light >/dev/null
    else
        echo "install wrk nginx-light first" >&2
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
mkdir -p "$WORK/trusted" "$WORK/people"
cp "$WORK/keys/orders.pub" "$WORK/trusted/"

# The people's issuer: a P-256 key, its JWKS served over http on CPU 1; tokens made by
# PyJWT (the person's, for audience billing, ten minutes).
ISSUER_PORT=$(port)
python3 - "$WORK/people" "$((DUR * 12000))" "$ROUNDS" <<'PY'
import json, sys, time, jwt
from cryptography.hazmat.primitives.asymmetric import ec
dir, n = sys.argv[1], int(sys.argv[2])
key = ec.generate_private_key(ec.SECP256R1())
pub = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
pub.update(kid="people-1", use="sig", alg="ES256")
json.dump({"keys": [pub]}, open(f"{dir}/jwks.json", "w"))
now = int(time.time())
def token(i):
    claims = {"iss": "https://people.example", "sub": f"person-{i}", "aud": "billing",
              "iat": now, "exp": now + 600, "tenant": "acme"}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "people-1"})
open(f"{dir}/one.txt", "w").write(token(0))
with open(f"{dir}/fresh.txt", "w") as f:
    for i in range(1, n + 1):
        f.write(token(i) + "\n")
# DPoP: the client's key, a person's token bound to it (cnf.jkt), and a fresh proof per
# request (each jti once; iat now, fresh for dpop_max_age = 10m).
import base64, hashlib, uuid
client = ec.generate_private_key(ec.SECP256R1())
cjwk = jwt.algorithms.ECAlgorithm.to_jwk(client.public_key(), as_dict=True)
canon = json.dumps({k: cjwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
jkt = base64.urlsafe_b64encode(hashlib.sha256(canon.encode()).digest()).rstrip(b"=").decode()
bound = jwt.encode({"iss": "https://people.example", "sub": "person-0", "aud": "billing",
                    "iat": now, "exp": now + 600, "tenant": "acme", "cnf": {"jkt": jkt}},
                   key, algorithm="ES256", headers={"kid": "people-1"})
open(f"{dir}/bound.txt", "w").write(bound)
ath = base64.urlsafe_b64encode(hashlib.sha256(bound.encode()).digest()).rstrip(b"=").decode()
with open(f"{dir}/proofs.txt", "w") as f:
    for i in range(n * int(sys.argv[3])):
        claims = {"jti": uuid.uuid4().hex, "htm": "GET", "htu": "https://api.example.com/x",
                  "iat": now, "ath": ath}
        f.write(jwt.encode(claims, client, algorithm="ES256",
                           headers={"typ": "dpop+jwt", "jwk": cjwk}) + "\n")
PY
(cd "$WORK/people" && exec taskset -c 1 python3 -m http.server "$ISSUER_PORT" --bind 127.0.0.1 >/dev/null 2>&1) &
PIDS+=("$!")
wait_port "$ISSUER_PORT"

edge_config() { # FILE IN ADMIN
    billing_config "$1" "$2" "$UP" "$3"
    cat >>"$1" <<TOML
[[trust.issuers]]
name = "people"
kind = "oidc"
users = true
issuer = "https://people.example"
jwks_url = "http://127.0.0.1:$ISSUER_PORT/jwks.json"
audiences = ["billing"]
[inbound.users]
callers = "optional"
mint_transaction_token = true
context = { tenant = "/tenant" }
dpop_origins = ["https://api.example.com"]
dpop_max_age = "10m"
TOML
}
declare -A IN PID
start_edge() { # NAME BINARY
    IN[$1]=$(port)
    local admin
    admin=$(port)
    edge_config "$WORK/$1.toml" "${IN[$1]}" "$admin"
    # Every DPoP proof's jti is remembered for its window: room for all of them.
    sed -i 's/^\[inbound\]$/[inbound]\nreplay_cache_size = 2000000/' "$WORK/$1.toml"
    # The issuer's JWKS is plain http on loopback here (trust.allow_http_fetch).
    TRUSTGATE_TRUST_ALLOW_HTTP_FETCH=true taskset -c 0 "$2" run --config "$WORK/$1.toml" \
        >"$WORK/$1.log" 2>&1 &
    PID[$1]=$!
    PIDS+=("$!")
    wait_port "${IN[$1]}"
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && return 0
        sleep 0.05
    done
    echo "$1 not ready: $(tail -3 "$WORK/$1.log")" >&2
    exit 1
}
start_edge edge "$TG"
[ -n "${BEFORE:-}" ] && start_edge before "$BEFORE"

SERVICE=$("$TG" token --key "$WORK/keys/orders.key" --iss orders --aud billing --ttl 300s)
PERSON=$(cat "$WORK/people/one.txt")
BOUND=$(cat "$WORK/people/bound.txt")
# Each round's proofs are its own (a proof is single-use): round r starts at its slice.
dpop_lua() { # ROUND
    cat >"$WORK/dpop.lua" <<LUA
local proofs = {}
for line in io.lines("$WORK/people/proofs.txt") do proofs[#proofs + 1] = line end
local i = $(( ($1 - 1) * DUR * 12000 ))
request = function()
    i = i + 1
    if i > #proofs then i = 1 end
    return wrk.format("GET", "/x", { ["x-user-token"] = "DPoP $BOUND", ["DPoP"] = proofs[i] })
end
LUA
}
cat >"$WORK/fresh.lua" <<LUA
local tokens = {}
for line in io.lines("$WORK/people/fresh.txt") do tokens[#tokens + 1] = line end
local i = 0
request = function()
    i = i + 1
    if i > #tokens then i = 1 end
    return wrk.format("GET", "/x", { ["x-user-token"] = tokens[i] })
end
LUA
echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -t1 -c32 -d${DUR}s, $ROUNDS rounds"

RESULTS="$WORK/results"
: >"$RESULTS"
# measure NAME EDGE wrk-args... → name rps us non2xx
measure() {
    local name=$1 edge=$2
    shift 2
    local url="http://127.0.0.1:${IN[$edge]}/x"
    case $name in person_fresh|person_dpop) ;; *) taskset -c 1 wrk -t1 -c32 -d1s "$@" "$url" >/dev/null 2>&1 ;; esac
    local t0 t1
    t0=$(cpu_ticks "${PID[$edge]}")
    taskset -c 1 wrk -t1 -c32 -d"${DUR}s" "$@" "$url" >"$WORK/$name.wrk" 2>&1
    t1=$(cpu_ticks "${PID[$edge]}")
    local reqs rps non2xx us
    reqs=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.wrk")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/$name.wrk")
    us=$(python3 -c "print(f'{($t1 - $t0) / $TICK * 1e6 / $reqs:.1f}')")
    echo "$name $rps $us ${non2xx:-0}" >>"$RESULTS"
    printf "%-16s %9s req/s   trustgate %6s µs/req   non-2xx %s\n" "$name" "$rps" "$us" "${non2xx:-0}"
}
for r in $(seq 1 "$ROUNDS"); do
    echo "--- round $r"
    measure caller_cached edge -H "Authorization: Bearer $SERVICE"
    if [ -n "${PERF:-}" ] && [ "$r" = 1 ]; then
        # PERF=file: a profile of the edge during the first round's person_cached row.
        perf record -F 999 -g -p "${PID[edge]}" -o "$PERF" -- sleep "$DUR" >/dev/null 2>&1 &
    fi
    measure person_cached edge -H "x-user-token: $PERSON"
    measure person_fresh edge -s "$WORK/fresh.lua"
    dpop_lua "$r"
    measure person_dpop edge -s "$WORK/dpop.lua"
    [ -n "${BEFORE:-}" ] && measure before_person_cached before -H "x-user-token: $PERSON"
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, rps, us, bad = line.split()
    runs.setdefault(name, []).append((float(rps), float(us), int(bad)))
med = lambda n, i: statistics.median(r[i] for r in runs[n])
print()
print(f"{'row':22} {'req/s':>9} {'trustgate µs/req':>17}")
for n in runs:
    print(f"{n:22} {med(n,0):9.0f} {med(n,1):17.1f}")
ratio = med("person_cached", 1) / med("caller_cached", 1)
print()
print(f"person (cached) / caller (cached), CPU per request: {ratio:.2f} (<= 2.3 {'ok' if ratio <= 2.3 else 'MISSED'})")
print(f"person (fresh) / person (cached):                   {med('person_fresh', 1) / med('person_cached', 1):.2f}")
dpop = med("person_dpop", 1) / med("person_cached", 1)
print(f"person + DPoP proof / person (cached):              {dpop:.2f} (<= 1.6 {'ok' if dpop <= 1.6 else 'MISSED'})")
bad = sum(r[2] for rs in runs.values() for r in rs)
print(f"non-2xx answers: {bad}")
sys.exit(1 if bad else 0)
PY
