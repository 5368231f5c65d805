#!/usr/bin/env bash
# deploy/image/test.sh [IMAGE] — what the image must do inside a container, tried for
# real with podman (default IMAGE: what build.sh builds):
#
#   - start as user 65532 with no shell, and get ready (the time from `podman run` to
#     /readyz 200 is printed);
#   - resolve an upstream's name through DNS: a real resolver (dnsmasq) on a loopback
#     address and `--dns`, which becomes the container's /etc/resolv.conf;
#   - resolve one through /etc/hosts (`--add-host`);
#   - https:// to an upstream with `outbound.ca_file`, and a key URL with
#     `trust.fetch_ca_file` (a JWKS served by Python over TLS, a token signed by jwcrypto);
#   - the bundled CA roots: loaded (the count is logged), and a certificate from a CA
#     not among them refused as `upstream_tls` — a positive check against a public CA
#     needs the internet, which these machines do not have.
#
# Needs root (dnsmasq on a loopback address, podman), python3 with jwcrypto, curl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -n 1)
image=${1:-localhost/trustgate:$version}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
tls="$top/tests/fixtures/tls"
dns_ip=127.0.0.53

command -v dnsmasq >/dev/null 2>&1 || {
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dnsmasq-base >/dev/null
}

work=$(mktemp -d)
pids=()
containers=()
cleanup() {
    for c in "${containers[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for c in "${containers[@]}"; do
        echo "--- podman logs $c" >&2
        podman logs "$c" 2>&1 | tail -n 30 >&2 || true
    done
    exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { # admin port; prints the milliseconds it took from $2 (ms since epoch)
    local deadline=$((SECONDS + 20))
    until curl -fsS -o /dev/null "http://127.0.0.1:$1/readyz" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.02
    done
    echo $(($(date +%s%3N) - $2))
}

# What is in the image (no shell, so `podman run` runs only trustgate).
echo "--- image $image"
podman image inspect --format 'user={{.Config.User}} entrypoint={{.Config.Entrypoint}} cmd={{.Config.Cmd}} size={{.Size}}' "$image"
podman image inspect --format '{{range $k, $v := .Labels}}{{$k}}={{$v}}{{"\n"}}{{end}}' "$image" | grep '^org.opencontainers'
mnt=$(podman image mount "$image")
(cd "$mnt" && find . -mindepth 1 | sort | sed 's/^\.//' | while read -r f; do
    printf '%10s  %s\n' "$(stat -c %s "$mnt$f" 2>/dev/null || echo -)" "$f"; done)
[ ! -e "$mnt/bin/sh" ] || fail "the image has a shell"
podman image unmount "$image" >/dev/null
podman run --rm "$image" --version

# The resolver: one name, nothing else (no upstream servers, no /etc/hosts).
dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
    --listen-address=$dns_ip --port=53 --address=/app.trustgate.test/127.0.0.1 \
    --log-queries --log-facility="$work/dnsmasq.log" &
pids+=($!)

# The app: Python's http.server, answering any GET with its path.
app_port=$(free_port)
python3 - "$app_port" >"$work/app.log" 2>&1 <<'EOF' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("app saw %s caller=%s\n" % (self.path, self.headers.get("x-service-caller"))).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
pids+=($!)

# A JWKS (and an upstream) over TLS with the test CA's certificate for localhost.
coproc JWKS { python3 "$top/tests/it/support/jwks_server.py" "$tls/server.crt" "$tls/server.key" orders billing; }
pids+=("$JWKS_PID")
read -r jwks_port token <&"${JWKS[0]}"

# The sidecar's files: config, keys, the key URL. Readable by user 65532.
conf="$work/conf"
mkdir -p "$conf/ak" "$conf/tls"
TRUSTGATE=${TRUSTGATE:-}
if [ -z "$TRUSTGATE" ]; then
    podman run --rm --user 0 -v "$conf:/out" "$image" keygen billing --out /out >/dev/null
else
    "$TRUSTGATE" keygen billing --out "$conf" >/dev/null
fi
echo "https://localhost:$jwks_port/jwks.json" >"$conf/ak/orders.url"
cp "$tls/ca.crt" "$conf/tls/ca.crt"
in_port=$(free_port) out_port=$(free_port) admin_port=$(free_port)
cat >"$conf/trustgate.toml" <<EOF
[identity]
name = "billing"
private_key = "billing.key"
[trust]
authorized_keys = "ak"
fetch_ca_file = "tls/ca.crt"
[inbound]
listen = "127.0.0.1:$in_port"
upstream = "http://127.0.0.1:$app_port"
[outbound]
listen = "127.0.0.1:$out_port"
ca_file = "tls/ca.crt"
[[outbound.routes]]
host = "bydns"
upstream = "http://app.trustgate.test:$app_port"
[[outbound.routes]]
host = "byhosts"
upstream = "http://app-by-hosts:$app_port"
[[outbound.routes]]
host = "tls"
upstream = "https://localhost:$jwks_port"
[admin]
listen = "127.0.0.1:$admin_port"
EOF
chmod -R a+rX "$conf"
chmod 0644 "$conf/billing.key" # a test key; trustgate warns about the mode, as it should

echo "--- the sidecar in the image (user 65532, --dns $dns_ip, --add-host app-by-hosts)"
start=$(date +%s%3N)
containers+=(tg-image-test)
podman run -d --name tg-image-test --dns $dns_ip --add-host app-by-hosts:127.0.0.1 \
    -v "$conf:/etc/trustgate:ro" "$image" >/dev/null
ms=$(wait_ready "$admin_port" "$start") || fail "not ready within 20 s"
echo "start to ready: ${ms} ms (podman run → /readyz 200, the first key-URL fetch included)"
[ "$(podman inspect --format '{{.Config.User}}' tg-image-test)" = "65532:65532" ] || fail "not user 65532"

via() { curl -sS -H "host: $1" "http://127.0.0.1:$out_port$2"; }
answer=$(via bydns /dns) ; echo "bydns   → $answer"
[[ "$answer" == "app saw /dns caller=None" ]] || fail "no answer through a name resolved by DNS"
grep -q "query\[A\] app.trustgate.test from 127.0.0.1" "$work/dnsmasq.log" || fail "dnsmasq saw no query"
echo "dnsmasq: $(grep -m1 'query\[A\] app.trustgate.test' "$work/dnsmasq.log" | sed 's/.*dnsmasq[^:]*: //')"
answer=$(via byhosts /hosts) ; echo "byhosts → $answer"
[[ "$answer" == "app saw /hosts caller=None" ]] || fail "no answer through a name from /etc/hosts"
answer=$(via tls /jwks.json) ; echo "tls     → ${answer:0:60}..."
[[ "$answer" == '{"keys": [{'* ]] || fail "no JWKS through https:// with outbound.ca_file"
# The key URL was fetched with trust.fetch_ca_file: the token jwcrypto signed is trusted.
answer=$(curl -sS -H "authorization: Bearer $token" "http://127.0.0.1:$in_port/by-url")
echo "inbound, a token whose key came from https:// with fetch_ca_file → $answer"
[[ "$answer" == "app saw /by-url caller=orders" ]] || fail "key URL over https with fetch_ca_file"

echo "--- the bundled CA roots (no ca_file)"
sed -i '/^ca_file = /d' "$conf/trustgate.toml"
containers+=(tg-image-roots)
podman rm -f -t 0 tg-image-test >/dev/null
podman run -d --name tg-image-roots -e TRUSTGATE_LOG_FORMAT=json -e TRUSTGATE_LOG_LEVEL=trustgate=debug,info \
    -v "$conf:/etc/trustgate:ro" "$image" >/dev/null
wait_ready "$admin_port" "$(date +%s%3N)" >/dev/null || fail "not ready within 20 s"
roots=$(podman logs tg-image-roots 2>&1 | grep -m1 'system CA roots loaded' | sed 's/.*"roots":\([0-9]*\).*/\1/')
echo "system CA roots loaded: $roots"
[ "${roots:-0}" -gt 50 ] || fail "the image's CA bundle was not loaded"
answer=$(via tls /jwks.json)
echo "tls (test CA, not in the bundle) → $answer"
[[ "$answer" == *'"error":"upstream_tls"'* ]] || fail "a certificate from an unknown CA was not refused as upstream_tls"
echo "image test: ok"
