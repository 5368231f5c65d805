#!/usr/bin/env bash
# Makes the example's keys with `trustgate keygen` and lays them out where the example
# overlays' secretGenerators read them:
#   example/<svc>/keys/<svc>.key                  its private key  → Secret <svc>-trustgate-identity
#   example/orders/keys/authorized_keys/billing.pub billing's key  → Secret orders-trustgate-authorized-keys
#   example/billing/keys/authorized_keys/orders.url where orders publishes its keys (trust by
#                                                   URL: orders rotates with no edit here)
#   example/orders/keys/tls/tls.{crt,key}         orders' inbound TLS certificate (openssl, from
#   example/billing/keys/fetch-ca/ca.crt          a throwaway CA; use cert-manager in a cluster)
#   example/billing-redis/keys/{redis-password,users.acl}  billing's fleet store: its password,
#                                                   the store's ACL file → Secret billing-fleet-redis
#   example/web/keys/...                          web (the edge): its key, the CA to call orders
# Existing keys are kept (keygen never overwrites). keys/ directories are not committed.
#
#   TRUSTGATE=target/release/trustgate deploy/kubernetes/make-secrets.sh
#   kubectl apply -k deploy/kubernetes/example
set -euo pipefail
TG="${TRUSTGATE:-trustgate}"
cd "$(dirname "$0")/example"
for svc in orders billing web; do
    mkdir -p "$svc/keys/authorized_keys"
    if [ ! -f "$svc/keys/$svc.key" ]; then
        "$TG" keygen "$svc" --out "$svc/keys" >/dev/null
    fi
done
# orders trusts billing's key file (callbacks); billing trusts orders by URL: orders'
# inbound listener publishes its JWKS over TLS.
cp billing/keys/billing.pub orders/keys/authorized_keys/billing.pub
# orders trusts web's key too: web calls orders, and mints the transaction tokens orders
# believes (trust.transaction_token_issuers). web trusts no caller (people only).
cp web/keys/web.pub orders/keys/authorized_keys/web.pub
: >web/keys/authorized_keys/.keep
rm -f billing/keys/authorized_keys/orders.pub
echo "https://orders-app/.well-known/jwks.json" \
    >billing/keys/authorized_keys/orders.url
mkdir -p orders/keys/tls billing/keys/fetch-ca
if [ ! -f orders/keys/tls/tls.crt ]; then
    tmp="$(mktemp -d)"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
        -subj /CN=trustgate-example-ca -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=orders-app \
        -keyout orders/keys/tls/tls.key -out "$tmp/tls.csr" 2>/dev/null
    printf '%s\n' "subjectAltName=DNS:orders-app,DNS:orders-app.default.svc,DNS:orders-app.default.svc.cluster.local" \
        "basicConstraints=CA:FALSE" "extendedKeyUsage=serverAuth" >"$tmp/ext"
    openssl x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
        -CAcreateserial -days 365 -extfile "$tmp/ext" -out orders/keys/tls/tls.crt 2>/dev/null
    cp "$tmp/ca.crt" billing/keys/fetch-ca/ca.crt
    rm -rf "$tmp"
fi
mkdir -p web/keys/fetch-ca
cp billing/keys/fetch-ca/ca.crt web/keys/fetch-ca/ca.crt
# billing's fleet store: its password (billing's sidecars mount it) and the store's ACL
# file (Valkey mounts it): one user per service, limited to its key prefix and to the
# commands trustgate runs, the password as its SHA-256; the default user off. A file, so
# the users survive a restart of the store.
mkdir -p billing-redis/keys
if [ ! -f billing-redis/keys/redis-password ]; then
    openssl rand -hex 24 | tr -d '\n' >billing-redis/keys/redis-password
fi
hash=$(openssl dgst -sha256 -r billing-redis/keys/redis-password | cut -d' ' -f1)
printf '%s\n' "user default off" \
    "user billing on #$hash resetkeys ~trustgate:billing:* resetchannels -@all +get +set +eval +evalsha +script|load +time +ping +hello +auth +client|setinfo" \
    >billing-redis/keys/users.acl
echo "keys ready: $(ls orders/keys billing/keys | tr '\n' ' ')"
