#!/usr/bin/env bash
# Two "pods" on one machine, as a cluster would run them, with Linux network namespaces:
#
#   ns tg-orders  10.77.0.2   app (127.0.0.1:8080) + trustgate (outbound 127.0.0.1:15001)
#   ns tg-billing 10.77.0.3   app (127.0.0.1:8080) + trustgate (inbound 0.0.0.0:8443)
#   ns tg-stranger 10.77.0.4  no sidecar, a key nobody trusts
#   ns tg-apiserver 10.77.0.5 a Kubernetes-like API server (Python: discovery, JWKS behind
#                             a bearer token, RS256, projected-token claims)
#   joined by a bridge tg-br0 (10.77.0.1) in the root namespace, like a node's pod network.
#
# The real trustgate binary, bound the way deploy/kubernetes binds it, with its keys and
# config laid out the way the kubelet lays out Secret/ConfigMap volumes (`..data`
# symlinks). Shows:
#   1. orders app → its sidecar (HTTP_PROXY) → network → billing sidecar → billing app:
#      200, and the billing app sees x-service-caller: orders;
#   2. the stranger namespace is refused (no token: 401 missing; its own key: 401
#      unknown_key);
#   3. rotating orders' key by kubelet-style Secret swaps (publish new public key →
#      switch private key → remove old public key) while orders calls billing in a
#      loop: not one failed call, and the kid switches;
#   4. trust by URL: billing's authorized_keys holds only `orders.url` (orders' own
#      inbound listener, over TLS, publishes its JWKS); orders rotates its key again —
#      only its own Secret changes — while calling billing in a loop: not one failed call;
#   5. platform identity: both pods trust the API server (`issuer = "kubernetes:///"`: the
#      issuer read from each pod's own token, the JWKS fetched from
#      $KUBERNETES_SERVICE_HOST with that token); orders calls billing presenting a
#      projected-style token file (route `token_file`) that the test rotates as the kubelet
#      does, while calling in a loop: not one failed call.
# Needs root, iproute2, curl, python3, openssl. Fails loudly without network namespace
# support.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TG="${TRUSTGATE:-$ROOT/target/debug/trustgate}"
WORK="$(mktemp -d /tmp/trustgate-e2e.XXXXXX)"
NS=(tg-orders tg-billing tg-stranger tg-apiserver)
PIDS=()

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

cleanup() {
    # A call loop still running (a step failed before its stop file) must not hold the
    # wait below: kill them all.
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    ip link del tg-br0 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "must run as root (network namespaces)"
command -v ip >/dev/null || fail "iproute2 (ip) is not installed"
command -v curl >/dev/null || fail "curl is not installed"
command -v openssl >/dev/null || fail "openssl is not installed"
[ -x "$TG" ] || fail "no trustgate binary at $TG (cargo build first, or set TRUSTGATE)"

say "network: bridge + four namespaces"
ip link add tg-br0 type bridge || fail "cannot create a bridge: no network namespace support here"
ip addr add 10.77.0.1/24 dev tg-br0
ip link set tg-br0 up
i=2
for n in "${NS[@]}"; do
    ip netns add "$n" || fail "cannot create network namespace $n"
    ip link add "veth-$i" type veth peer name eth0 netns "$n"
    ip link set "veth-$i" master tg-br0 up
    ip -n "$n" addr add "10.77.0.$i/24" dev eth0
    ip -n "$n" link set eth0 up
    ip -n "$n" link set lo up
    i=$((i + 1))
done

# A Secret/ConfigMap volume as the kubelet writes it: ..<ts>/files, ..data -> ..<ts>,
# visible names -> ..data/<name>. Updating swaps ..data atomically.
volume() { # dir file=src...
    local dir=$1; shift
    mkdir -p "$dir"
    local ts="..$(date +%Y_%m_%d_%H_%M_%S).$RANDOM$RANDOM"
    mkdir "$dir/$ts"
    local names=()
    for spec in "$@"; do
        cp "${spec#*=}" "$dir/$ts/${spec%%=*}"
        names+=("${spec%%=*}")
    done
    chmod 0444 "$dir/$ts"/*
    local old=""
    [ -L "$dir/..data" ] && old="$(readlink "$dir/..data")"
    ln -s "$ts" "$dir/..data_tmp"
    mv -T "$dir/..data_tmp" "$dir/..data"
    for n in "${names[@]}"; do
        [ -e "$dir/$n" ] || [ -L "$dir/$n" ] || ln -s "..data/$n" "$dir/$n"
    done
    for f in "$dir"/*; do
        local b; b="$(basename "$f")"
        case " ${names[*]} " in *" $b "*) ;; *) rm -f "$f" ;; esac
    done
    [ -n "$old" ] && rm -rf "${dir:?}/$old"
    return 0
}

say "keys (trustgate keygen), laid out as Secret volumes"
"$TG" keygen orders --out "$WORK/keys" >/dev/null 2>&1
"$TG" keygen billing --out "$WORK/keys" >/dev/null 2>&1
"$TG" keygen orders --out "$WORK/keys-next" >/dev/null 2>&1
"$TG" keygen stranger --out "$WORK/keys" >/dev/null 2>&1
"$TG" keygen orders --out "$WORK/keys-third" >/dev/null 2>&1
# A CA and orders' inbound TLS certificate (for its pod IP), as cert-manager would issue.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=tg-e2e-ca -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=orders \
    -keyout "$WORK/orders-tls.key" -out "$WORK/orders-tls.csr" 2>/dev/null
printf 'subjectAltName=IP:10.77.0.2\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$WORK/orders-tls.ext"
openssl x509 -req -in "$WORK/orders-tls.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/orders-tls.ext" -out "$WORK/orders-tls.crt" 2>/dev/null
# The API server's serving certificate (its pod IP), from the same CA.
openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
    -keyout "$WORK/apiserver.key" -out "$WORK/apiserver.csr" 2>/dev/null
printf 'subjectAltName=IP:10.77.0.5\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$WORK/apiserver.ext"
openssl x509 -req -in "$WORK/apiserver.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/apiserver.ext" -out "$WORK/apiserver.crt" 2>/dev/null
kid_of() { # public key file
    local d="$WORK/kid.$RANDOM"
    mkdir -p "$d" && cp "$1" "$d/"
    "$TG" keys "$d" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"][0]["kid"])'
}
KID_OLD="$(kid_of "$WORK/keys/orders.pub")"
KID_NEW="$(kid_of "$WORK/keys-next/orders.pub")"
KID_THIRD="$(kid_of "$WORK/keys-third/orders.pub")"
for svc in orders billing; do
    volume "$WORK/$svc/identity" "$svc.key=$WORK/keys/$svc.key"
done

say "the API server in its own namespace; each pod's service-account token and CA"
coproc APISERVER { ip netns exec tg-apiserver python3 "$ROOT/tests/it/support/platform_issuer.py" \
    "$WORK/apiserver.crt" "$WORK/apiserver.key" "reader-$RANDOM$RANDOM" 10.77.0.5; }
PIDS+=("$APISERVER_PID")
read -r -t 20 API_PORT <&"${APISERVER[0]}" || fail "the API server did not start"
ISSUER="https://10.77.0.5:$API_PORT"
api() { # command -> one line
    echo "$*" >&"${APISERVER[1]}"
    local line
    read -r -t 20 line <&"${APISERVER[0]}" || fail "the API server did not answer $1"
    printf '%s' "$line"
}
sa_token() { # namespace serviceaccount audience -> a projected token's claims, minted
    api mint k8s k8s 3600 "{\"sub\": \"system:serviceaccount:$1:$2\", \"aud\": [\"$3\"], \"kubernetes.io\": {\"namespace\": \"$1\", \"pod\": {\"name\": \"$2-0\"}, \"serviceaccount\": {\"name\": \"$2\"}}}"
}
for svc in orders billing; do
    sa_token shop "$svc" "https://kubernetes.default.svc" >"$WORK/$svc-sa-token"
    volume "$WORK/$svc/serviceaccount" "token=$WORK/$svc-sa-token" "ca.crt=$WORK/ca.crt"
done
sa_token shop orders billing >"$WORK/projected-billing"
volume "$WORK/orders/tokens" "billing=$WORK/projected-billing"
volume "$WORK/billing/authorized_keys" "orders.pub=$WORK/keys/orders.pub"
volume "$WORK/orders/authorized_keys" "billing.pub=$WORK/keys/billing.pub"
volume "$WORK/orders/tls" "tls.crt=$WORK/orders-tls.crt" "tls.key=$WORK/orders-tls.key"
volume "$WORK/billing/fetch-ca" "ca.crt=$WORK/ca.crt"

cat >"$WORK/orders.toml" <<EOF
[identity]
name = "orders"
private_key = "$WORK/orders/identity/orders.key"
[trust]
authorized_keys = "$WORK/orders/authorized_keys"
[inbound]
listen = "0.0.0.0:8443"
upstream = "http://127.0.0.1:8080"
public_paths = ["/healthz"]
tls_cert = "$WORK/orders/tls/tls.crt"
tls_key = "$WORK/orders/tls/tls.key"
[outbound]
listen = "127.0.0.1:15001"
[[outbound.routes]]
host = "billing"
upstream = "http://10.77.0.3:8443"
[[outbound.routes]]
host = "billing-sa"
upstream = "http://10.77.0.3:8443"
audience = "billing"
token_file = "$WORK/orders/tokens/billing"
[admin]
listen = "0.0.0.0:15000"
[[trust.issuers]]
name = "cluster"
kind = "kubernetes"
issuer = "kubernetes:///"
ca_file = "$WORK/orders/serviceaccount/ca.crt"
bearer_token_file = "$WORK/orders/serviceaccount/token"
callers = { "shop/billing" = "billing" }
EOF
cat >"$WORK/billing.toml" <<EOF
[identity]
name = "billing"
private_key = "$WORK/billing/identity/billing.key"
[trust]
authorized_keys = "$WORK/billing/authorized_keys"
fetch_ca_file = "$WORK/billing/fetch-ca/ca.crt"
fetch_cooldown = "1s"
[inbound]
listen = "0.0.0.0:8443"
upstream = "http://127.0.0.1:8080"
public_paths = ["/healthz"]
[[inbound.allow]]
callers = ["orders"]
paths = ["/invoices", "/invoices/*"]
[outbound]
listen = "127.0.0.1:15001"
[admin]
listen = "0.0.0.0:15000"
[[trust.issuers]]
name = "cluster"
kind = "kubernetes"
issuer = "kubernetes:///"
ca_file = "$WORK/billing/serviceaccount/ca.crt"
bearer_token_file = "$WORK/billing/serviceaccount/token"
callers = { "shop/orders" = "orders" }
EOF
for svc in orders billing; do
    volume "$WORK/$svc/config" "trustgate.toml=$WORK/$svc.toml"
done

cat >"$WORK/app.py" <<'EOF'
# The app of a pod: listens on 127.0.0.1 only and says who called it.
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"app": sys.argv[1], "path": self.path,
                           "caller": self.headers.get("x-service-caller"),
                           "token_seen": "authorization" in self.headers}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", 8080), H).serve_forever()
EOF

say "pods: app + real trustgate in each namespace"
for svc in orders billing; do
    ip netns exec "tg-$svc" python3 "$WORK/app.py" "$svc" &
    PIDS+=($!)
    ip netns exec "tg-$svc" env KUBERNETES_SERVICE_HOST=10.77.0.5 KUBERNETES_SERVICE_PORT="$API_PORT" \
        "$TG" --log-format json run --config "$WORK/$svc/config/trustgate.toml" \
        2>"$WORK/$svc.log" &
    PIDS+=($!)
done
ready() { # ns ip
    for _ in $(seq 1 200); do
        ip netns exec "$1" curl -fs "http://$2:15000/readyz" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    cat "$WORK"/*.log >&2
    fail "trustgate in $1 never became ready"
}
ready tg-orders 10.77.0.2
ready tg-billing 10.77.0.3
ip netns exec tg-orders curl -fs http://10.77.0.3:15000/healthz >/dev/null \
    || fail "pod tg-orders cannot reach pod tg-billing over the bridge"
# The kubelet probes the app through the sidecar's public path, from the node.
probe_app() {
    for _ in $(seq 1 100); do
        curl -fs --noproxy "*" http://10.77.0.3:8443/healthz >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    curl -s --noproxy "*" -w " %{http_code}" http://10.77.0.3:8443/healthz >&2 || true
    fail "app probe through public_paths failed"
}
probe_app

say "1. orders app → orders sidecar → network → billing sidecar → billing app"
OUT="$(ip netns exec tg-orders env http_proxy=http://127.0.0.1:15001 curl -s -w ' %{http_code}' http://billing/invoices/1)"
echo "$OUT"
case "$OUT" in *'"caller": "orders"'*' 200') ;; *) fail "trusted call: $OUT" ;; esac
case "$OUT" in *'"token_seen": false'*) ;; *) fail "the token reached the app: $OUT" ;; esac

say "2. a namespace without trusted keys is refused"
OUT="$(ip netns exec tg-stranger curl -s -w ' %{http_code}' http://10.77.0.3:8443/invoices/1)"
echo "$OUT"
case "$OUT" in *'"reason":"missing"'*' 401') ;; *) fail "tokenless call: $OUT" ;; esac
STRANGER_TOKEN="$("$TG" token --key "$WORK/keys/stranger.key" --iss orders --aud billing)"
OUT="$(ip netns exec tg-stranger curl -s -w ' %{http_code}' -H "Authorization: Bearer $STRANGER_TOKEN" http://10.77.0.3:8443/invoices/1)"
echo "$OUT"
case "$OUT" in *'"reason":"unknown_key"'*' 401') ;; *) fail "stranger's key: $OUT" ;; esac

say "3. key rotation by kubelet Secret swaps while orders keeps calling billing"
cat >"$WORK/loop.py" <<'EOF'
import os, sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": "http://127.0.0.1:15001"}))
ok = bad = 0
while not os.path.exists(sys.argv[1]):
    try:
        with opener.open("http://billing/invoices/2", timeout=5) as r:
            ok += r.status == 200
            bad += r.status != 200
    except Exception as e:
        bad += 1
        print("failed:", e, flush=True)
print(ok, bad)
EOF
ip netns exec tg-orders python3 "$WORK/loop.py" "$WORK/stop" >"$WORK/loop.out" &
LOOP=$!
PIDS+=("$LOOP")
trust_has() { # ns ip text
    for _ in $(seq 1 100); do
        ip netns exec "$1" curl -fs "http://$2:15000/trust" | grep -qF -- "$3" && return 0
        sleep 0.05
    done
    fail "$1 /trust never showed $3"
}
trust_lacks() {
    for _ in $(seq 1 100); do
        ip netns exec "$1" curl -fs "http://$2:15000/trust" | grep -qF -- "$3" || return 0
        sleep 0.05
    done
    fail "$1 /trust still shows $3"
}
# Publish the new public key next to the old one.
volume "$WORK/billing/authorized_keys" "orders.pub=$WORK/keys/orders.pub" "orders.next.pub=$WORK/keys-next/orders.pub"
trust_has tg-billing 10.77.0.3 "$KID_NEW"
echo "billing trusts both kids"
# Switch orders' private key.
volume "$WORK/orders/identity" "orders.key=$WORK/keys-next/orders.key"
trust_has tg-orders 10.77.0.2 "\"signing_kid\":\"$KID_NEW\""
echo "orders signs with $KID_NEW"
# Remove the old public key once the new one is in use.
volume "$WORK/billing/authorized_keys" "orders.next.pub=$WORK/keys-next/orders.pub"
trust_lacks tg-billing 10.77.0.3 "$KID_OLD"
echo "billing no longer trusts $KID_OLD"
OUT="$(ip netns exec tg-orders env http_proxy=http://127.0.0.1:15001 curl -s -w ' %{http_code}' http://billing/invoices/3)"
case "$OUT" in *' 200') ;; *) fail "call after rotation: $OUT" ;; esac
touch "$WORK/stop"
wait "$LOOP"
read -r OK BAD <<<"$(tail -1 "$WORK/loop.out")"
echo "calls during the rotation: $OK ok, $BAD failed"
[ "$BAD" = 0 ] || { cat "$WORK/loop.out"; fail "$BAD calls failed during the rotation"; }
[ "$OK" -gt 10 ] || fail "too few calls during the rotation ($OK)"
OLD_TOKEN="$("$TG" token --key "$WORK/keys/orders.key" --iss orders --aud billing)"
OUT="$(ip netns exec tg-stranger curl -s -w ' %{http_code}' -H "Authorization: Bearer $OLD_TOKEN" http://10.77.0.3:8443/invoices/1)"
case "$OUT" in *'"reason":"unknown_key"'*' 401') ;; *) fail "old key still accepted: $OUT" ;; esac

say "4. trust by URL: billing fetches orders' published JWKS (TLS); orders rotates alone"
echo "https://10.77.0.2:8443/.well-known/jwks.json" >"$WORK/orders.url"
volume "$WORK/billing/authorized_keys" "orders.url=$WORK/orders.url"
trust_has tg-billing 10.77.0.3 '"usable":true'
trust_lacks tg-billing 10.77.0.3 "orders.next.pub"
trust_has tg-billing 10.77.0.3 "$KID_NEW"
echo "billing trusts orders by URL (kid $KID_NEW fetched)"
ip netns exec tg-orders python3 "$WORK/loop.py" "$WORK/stop2" >"$WORK/loop2.out" &
LOOP=$!
PIDS+=("$LOOP")
sleep 1
# Only orders' own Secret changes.
volume "$WORK/orders/identity" "orders.key=$WORK/keys-third/orders.key"
trust_has tg-orders 10.77.0.2 "\"signing_kid\":\"$KID_THIRD\""
echo "orders signs with $KID_THIRD"
trust_has tg-billing 10.77.0.3 "$KID_THIRD"
echo "billing fetched $KID_THIRD on its own"
sleep 1
OUT="$(ip netns exec tg-orders env http_proxy=http://127.0.0.1:15001 curl -s -w ' %{http_code}' http://billing/invoices/4)"
case "$OUT" in *' 200') ;; *) fail "call after the rotation by URL: $OUT" ;; esac
touch "$WORK/stop2"
wait "$LOOP"
read -r OK BAD <<<"$(tail -1 "$WORK/loop2.out")"
echo "calls during the rotation by URL: $OK ok, $BAD failed"
[ "$BAD" = 0 ] || { cat "$WORK/loop2.out"; fail "$BAD calls failed during the rotation by URL"; }
[ "$OK" -gt 10 ] || fail "too few calls during the rotation by URL ($OK)"
FETCHES="$(ip netns exec tg-billing curl -fs http://10.77.0.3:15000/metrics | grep '^trustgate_trust_fetches_total' || true)"
echo "$FETCHES"

say "5. platform identity: a projected token file, rotated as the kubelet does"
trust_has tg-billing 10.77.0.3 "\"iss\":\"$ISSUER\""
trust_has tg-orders 10.77.0.2 "\"iss\":\"$ISSUER\""
echo "both pods trust $ISSUER (read from their own tokens; JWKS from the API server)"
OUT="$(ip netns exec tg-orders env http_proxy=http://127.0.0.1:15001 curl -s -w ' %{http_code}' http://billing-sa/invoices/5)"
echo "$OUT"
case "$OUT" in *'"caller": "orders"'*' 200') ;; *) fail "call with the projected token: $OUT" ;; esac
sed -i 's#http://billing/invoices/2#http://billing-sa/invoices/2#' "$WORK/loop.py"
ip netns exec tg-orders python3 "$WORK/loop.py" "$WORK/stop3" >"$WORK/loop3.out" &
LOOP=$!
PIDS+=("$LOOP")
ROTATIONS=0
for _ in 1 2 3 4 5; do
    sleep 1.2
    sa_token shop orders billing >"$WORK/projected-billing"
    volume "$WORK/orders/tokens" "billing=$WORK/projected-billing"
    ROTATIONS=$((ROTATIONS + 1))
done
sleep 1.2
touch "$WORK/stop3"
wait "$LOOP"
read -r OK BAD <<<"$(tail -1 "$WORK/loop3.out")"
REREADS="$(grep -c 'token file re-read' "$WORK/orders.log" || true)"
echo "token file rotated $ROTATIONS times (orders re-read it $REREADS times): $OK calls ok, $BAD failed"
[ "$BAD" = 0 ] || { cat "$WORK/loop3.out"; fail "$BAD calls failed during the token rotations"; }
[ "$OK" -gt 10 ] || fail "too few calls during the token rotations ($OK)"
[ "$REREADS" -ge "$ROTATIONS" ] || fail "orders re-read the token file $REREADS times for $ROTATIONS rotations"
SIGNED="$(ip netns exec tg-orders curl -fs http://10.77.0.2:15000/metrics | grep '^trustgate_tokens_signed_total' || true)"
echo "orders $SIGNED (the projected route signs nothing)"
ip netns exec tg-billing curl -fs http://10.77.0.3:15000/metrics | grep 'issuer:cluster' | grep '^trustgate_trust_fetches_total' || true
echo "API server: $(api stats)"

say "two-pod end-to-end: all checks passed"
