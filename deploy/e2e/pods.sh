#!/usr/bin/env bash
# deploy/e2e/pods.sh — trustgate as people deploy it, in real pods: the image built by
# deploy/image/build.sh, pods made by `trustgate inject` from plain workloads
# (deploy/e2e/pods/*.yaml), run by `podman kube play` on a bridge network where every pod
# has an address of its own.
#
#   billing   app on 127.0.0.1:8080 (busybox httpd + a CGI that echoes the caller)
#   orders    an app that only calls out: inject makes its sidecar outbound-only
#   ledger    the same app as billing, but on every address (as most servers default to)
#   intruder  no sidecar: tries the apps around their sidecars
#
# It shows, and fails unless: orders' call reaches billing's app with the caller
# `orders`; the intruder's forged call straight to billing's app port is refused, and
# through billing's sidecar is 401; ledger's exposure check fires (gauge 1, readiness
# 503 naming the address) while billing's stays silent; orders' key rotates (kubelet-style
# `..data` swaps of the volumes) under a loop of calls with zero failures; `podman kube
# down` leaves no pod, container or volume behind.
#
# podman 4.3 has no native sidecars: deploy/e2e/podman-pod.py turns inject's output into
# what podman runs (README: "Pods under podman"). Needs root, podman (installed when
# missing), busybox-static, python3 with PyYAML, curl.
#
#   TRUSTGATE=target/debug/trustgate  the binary for keygen and inject (default: that,
#                                     built when missing)
#   TRUSTGATE_IMAGE=localhost/trustgate:0.1.0  (default: built by build.sh if missing)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -n 1)
image=${TRUSTGATE_IMAGE:-localhost/trustgate:$version}
app_image=localhost/trustgate-e2e-app:1
tg=${TRUSTGATE:-$top/target/debug/trustgate}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$top/deploy/image/containers.conf}
net=trustgate-e2e
min_calls=${MIN_CALLS:-50}

need=()
command -v podman >/dev/null 2>&1 || need+=(podman runc)
[ -x /bin/busybox ] && ! readelf -l /bin/busybox | grep -q interpreter || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
[ -x "$tg" ] || (cd "$top" && cargo build --bin trustgate >&2)
podman image exists "$image" || TRUSTGATE_STATIC_BIN=${TRUSTGATE_STATIC_BIN:-} "$top/deploy/image/build.sh" "${image##*:}" >/dev/null

work=$(mktemp -d)
played=()
cleanup() {
    for f in "${played[@]}"; do podman kube down "$f" >/dev/null 2>&1 || true; done
    podman network rm -f "$net" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for c in $(podman ps -a --format '{{.Names}}' | grep -E '^(billing|orders|ledger)-trustgate$'); do
        echo "--- podman logs $c" >&2
        podman logs "$c" 2>&1 | tail -n 20 >&2 || true
    done
    exit 1
}
step() { echo "--- $*"; }

step "the app image, from Debian's busybox-static (nothing pulled)"
ctx="$work/app-image"
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/www/cgi-bin" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/tmp"
cp /bin/busybox "$ctx/rootfs/bin/busybox"
ln -s busybox "$ctx/rootfs/bin/sh"
cat >"$ctx/rootfs/www/cgi-bin/whoami" <<'EOF'
#!/bin/sh
echo "Content-Type: text/plain"
echo
echo "caller=${HTTP_X_SERVICE_CALLER:-none} roles=${HTTP_X_SERVICE_CALLER_ROLES:-none}"
EOF
echo ok >"$ctx/rootfs/www/healthz"
chmod 0755 "$ctx/rootfs/www/cgi-bin/whoami"
printf 'FROM scratch\nCOPY rootfs/ /\nUSER 1000:1000\n' >"$ctx/Containerfile"
podman build --pull=never -q -t "$app_image" "$ctx" >/dev/null

step "keys (trustgate keygen) and the pods' volumes, laid out as the kubelet does"
keys="$work/keys"
for who in orders billing ledger; do "$tg" keygen "$who" --out "$keys/$who" >/dev/null; done
"$tg" keygen orders --out "$keys/orders-next" >/dev/null
vol="$work/volumes"
# publish POD VOLUME FILE... : a new `..<timestamp>` directory with the files, then
# `..data` swapped to it by rename, and one symlink per file through `..data` — the
# kubelet's atomic update of a Secret or ConfigMap volume.
publish() {
    local dir="$vol/$1/$2"; shift 2
    mkdir -p "$dir"
    local ts; ts="..$(date +%Y_%m_%d_%H_%M_%S.%N)"
    mkdir "$dir/$ts"
    local names=()
    for f in "$@"; do
        local name=${f##*/} src=${f%%=*}
        [[ "$f" == *=* ]] && name=${f#*=}
        cp "$src" "$dir/$ts/$name"
        names+=("$name")
    done
    chown -R 65532:65532 "$dir/$ts"
    chmod 0500 "$dir/$ts"; chmod 0400 "$dir/$ts"/*
    ln -sfn "$ts" "$dir/..data_tmp"
    mv -T "$dir/..data_tmp" "$dir/..data"
    for name in "${names[@]}"; do [ -e "$dir/$name" ] || ln -s "..data/$name" "$dir/$name"; done
    # Names no longer in the new data, and the old timestamped directories, go.
    for link in "$dir"/*; do [ -e "$link" ] || rm -f "$link"; done
    for old in "$dir"/..[0-9]*; do [ "$old" = "$dir/$ts" ] || rm -rf "$old"; done
}
cat >"$work/billing.toml" <<'EOF'
# billing's policy; ports, paths and identity come from the environment inject sets.
[inbound]
public_paths = ["/healthz"]
[[inbound.allow]]
callers = ["orders"]
[callers.orders]
roles = ["invoicing"]
EOF
cat >"$work/ledger.toml" <<'EOF'
[inbound]
app_exposure = "refuse"
app_exposure_interval = "2s"
EOF
publish billing trustgate-config "$work/billing.toml=trustgate.toml"
publish billing trustgate-identity "$keys/billing/billing.key"
publish billing trustgate-authorized-keys "$keys/orders/orders.pub"
publish ledger trustgate-config "$work/ledger.toml=trustgate.toml"
publish ledger trustgate-identity "$keys/ledger/ledger.key"
publish ledger trustgate-authorized-keys "$keys/orders/orders.pub"
publish orders trustgate-identity "$keys/orders/orders.key"

step "trustgate inject, then the podman transformation"
for pod in billing orders ledger intruder; do
    "$tg" inject --image "$image" "$here/pods/$pod.yaml" >"$work/$pod.injected.yaml" 2>"$work/$pod.inject.log"
    sed 's/^/  inject: /' "$work/$pod.inject.log"
    python3 "$here/podman-pod.py" "$work/$pod.injected.yaml" "$vol" >"$work/$pod.pod.yaml"
done
grep -q "kind: NetworkPolicy" "$work/billing.injected.yaml" || fail "inject wrote no NetworkPolicy"
grep -q "outbound-only" "$work/orders.inject.log" || fail "orders was not injected outbound-only"

podman network rm -f "$net" >/dev/null 2>&1 || true
podman network create "$net" >/dev/null
ip_of() { podman inspect --format "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$1-app"; }
play() {
    local started; started=$(date +%s%3N)
    podman kube play --network "$net" "$work/$1.pod.yaml" >/dev/null || fail "kube play $1"
    played+=("$work/$1.pod.yaml")
    local ip; ip=$(ip_of "$1")
    eval "${1}_ip=$ip"
    if [ "$1" != intruder ]; then
        local deadline=$((SECONDS + 30)) status=000
        while [ $SECONDS -lt $deadline ]; do
            status=$(curl -s -o /dev/null -w '%{http_code}' "http://$ip:15000/readyz" || true)
            [ "$status" = 200 ] && break
            [ "$1" = ledger ] && [ "$status" = 503 ] && break
            sleep 0.05
        done
        echo "  $1: pod at $ip, sidecar /readyz $status after $(($(date +%s%3N) - started)) ms"
    else
        echo "  $1: pod at $ip"
    fi
}
step "podman kube play (network $net)"
play billing
cat >"$work/orders.toml" <<EOF
[[outbound.routes]]
host = "billing"
upstream = "http://$billing_ip:8443"
EOF
publish orders trustgate-config "$work/orders.toml=trustgate.toml"
play orders
play ledger
play intruder

in_pod() { local pod=$1; shift; podman exec "$pod-app" busybox "$@"; }
wait_for() { local deadline=$((SECONDS + 20)); until eval "$1"; do [ $SECONDS -lt $deadline ] || fail "timed out: $1"; sleep 0.05; done; }

step "a trusted call: orders' app → its sidecar (HTTP_PROXY) → billing's sidecar → billing's app"
answer=$(in_pod orders wget -q -O - http://billing/cgi-bin/whoami)
echo "  orders → billing: $answer"
[ "$answer" = "caller=orders roles=invoicing" ] || fail "the trusted call"

step "around the sidecar: the intruder pod calls billing's app port directly"
# Raw requests with busybox nc (busybox 1.35's wget crashes on a refused connection and with -T).
raw() { # POD IP PORT: a GET of the CGI with a forged caller; prints what came back, or
         # "no connection (nc exit N)"
    local rc=0 got
    # The pipe is inside the container, and stays open until the answer is in: busybox
    # nc may close as soon as its stdin ends, before the answer.
    got=$(podman exec "$1-app" busybox sh -c "(printf 'GET /cgi-bin/whoami HTTP/1.0\\r\\nhost: $2\\r\\nx-service-caller: admin\\r\\n\\r\\n'; sleep 2) | busybox nc -w 3 $2 $3" 2>/dev/null) || rc=$?
    if [ -z "$got" ] && [ $rc != 0 ]; then echo "no connection (nc exit $rc)"; else echo "$got"; fi
}
answer=$(raw intruder "$billing_ip" 8080)
echo "  intruder → $billing_ip:8080 (the app's port), forged x-service-caller: $answer"
[[ "$answer" == "no connection"* ]] || fail "the intruder reached billing's app directly: $answer"
answer=$(raw intruder "$billing_ip" 8443)
echo "  intruder → $billing_ip:8443 (billing's sidecar), forged, no token: $(head -n 1 <<<"$answer")"
[[ "$answer" == "HTTP/1."?" 401 Unauthorized"* ]] || fail "the sidecar did not refuse a forged call: $answer"

step "the exposure check: billing's app on loopback, ledger's on every address"
metric() { curl -s "http://$1:15000/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
echo "  billing: trustgate_app_exposed $(metric "$billing_ip" trustgate_app_exposed), /readyz $(curl -s "http://$billing_ip:15000/readyz")"
[ "$(metric "$billing_ip" trustgate_app_exposed)" = 0 ] || fail "billing reported exposed"
# Its sidecar started before the app: the first round found nothing; a later one does.
wait_for '[ "$(metric "$ledger_ip" trustgate_app_exposed)" = 1 ]'
ledger_ready=$(curl -s "http://$ledger_ip:15000/readyz")
echo "  ledger:  trustgate_app_exposed $(metric "$ledger_ip" trustgate_app_exposed), /readyz $ledger_ready"
[ "$(metric "$ledger_ip" trustgate_app_exposed)" = 1 ] || fail "ledger's exposure not found"
[[ "$ledger_ready" == *"app_exposed"*"$ledger_ip:8080"* ]] || fail "ledger's readiness does not name the exposure"
podman logs ledger-trustgate 2>&1 | grep -m1 'the app answers on a pod address' | sed 's/^/  ledger log: /'
answer=$(raw intruder "$ledger_ip" 8080 | tail -n 1)
echo "  intruder → ledger's app directly: $answer  (the hole the check reports)"
[ "$answer" = "caller=admin roles=none" ] || fail "expected ledger's exposed app to answer: $answer"

step "rotating orders' key under load (calls one after another until it is over, kubelet-style swaps)"
rotation_started=$(date +%s%3N)
old_kid=$(curl -s "http://$orders_ip:15000/trust" | python3 -c 'import json,sys; print(json.load(sys.stdin)["signing_kid"])')
# Calls one after another until the rotation is over (a stop file), each checked.
podman exec orders-app busybox sh -c "ok=0; bad=0; while [ ! -e /tmp/stop ]; do
    if [ \"\$(busybox wget -q -O - http://billing/cgi-bin/whoami)\" = 'caller=orders roles=invoicing' ]; then ok=\$((ok+1)); else bad=\$((bad+1)); fi
    done; echo \"ok=\$ok failed=\$bad\" > /tmp/result" &
loop=$!
kids() { curl -s "http://$billing_ip:15000/trust" | python3 -c 'import json,sys; print(" ".join(sorted(k["kid"] for k in json.load(sys.stdin)["keys"] if k["identity"]=="orders")))'; }
sleep 1
# 1. billing trusts the new key next to the old one.
publish billing trustgate-authorized-keys "$keys/orders/orders.pub" "$keys/orders-next/orders.pub=orders.next.pub"
wait_for '[ "$(kids | wc -w)" = 2 ]'
echo "  billing trusts both of orders' keys: $(kids)"
# 2. orders signs with the new key.
publish orders trustgate-identity "$keys/orders-next/orders.key=orders.key"
wait_for '[ "$(curl -s "http://$orders_ip:15000/trust" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"signing_kid\"])")" != "$old_kid" ]'
new_kid=$(curl -s "http://$orders_ip:15000/trust" | python3 -c 'import json,sys; print(json.load(sys.stdin)["signing_kid"])')
echo "  orders signs with $new_kid (was $old_kid)"
# 3. billing drops the old key (tokens signed with it are past their cache: fresh ones
#    carry the new kid).
sleep 1
publish billing trustgate-authorized-keys "$keys/orders-next/orders.pub=orders.next.pub"
wait_for '[ "$(kids)" = "$new_kid" ]'
echo "  billing trusts only $new_kid"
kill -0 "$loop" 2>/dev/null || fail "the calls ended before the rotation did"
sleep 1
podman exec orders-app busybox touch /tmp/stop
wait "$loop"
result=$(podman exec orders-app busybox cat /tmp/result)
echo "  calls during the rotation: $result (the loop took $(($(date +%s%3N) - rotation_started)) ms)"
[[ "$result" =~ ^ok=([0-9]+)\ failed=0$ ]] && [ "${BASH_REMATCH[1]}" -ge "$min_calls" ] \
    || fail "calls failed during the rotation (or fewer than $min_calls were made)"
answer=$(in_pod orders wget -q -O - http://billing/cgi-bin/whoami)
[ "$answer" = "caller=orders roles=invoicing" ] || fail "a call after the rotation"
reloads=$(curl -s "http://$billing_ip:15000/metrics" | awk '$1 == "trustgate_keyring_reloads_total{result=\"ok\"}" {print $2}')
echo "  billing's keyring reloads: $reloads"

step "podman kube down"
for f in "${played[@]}"; do podman kube down "$f" >/dev/null; done
played=()
podman network rm -f "$net" >/dev/null
left=$(podman ps -a --format '{{.Names}}' | grep -E '^(billing|orders|ledger|intruder)(-|$)' || true)
pods=$(podman pod ls --format '{{.Name}}' | grep -E '^(billing|orders|ledger|intruder)$' || true)
vols=$(podman volume ls -q)
echo "  containers left: ${left:-none}; pods left: ${pods:-none}; volumes: ${vols:-none}; network $net: $(podman network exists "$net" && echo left || echo removed)"
[ -z "$left$pods$vols" ] || fail "kube down left something behind"
echo "pods test: ok"
