#!/usr/bin/env bash
# Makes the example's keys with `trustgate keygen` and lays them out where the example
# overlays' secretGenerators read them:
#   example/<svc>/keys/<svc>.key                 its private key  → Secret <svc>-trustgate-identity
#   example/<svc>/keys/authorized_keys/<peer>.pub its callers' keys → Secret <svc>-trustgate-authorized-keys
# Existing keys are kept (keygen never overwrites). keys/ directories are not committed.
#
#   TRUSTGATE=target/release/trustgate deploy/kubernetes/make-secrets.sh
#   kubectl apply -k deploy/kubernetes/example
set -euo pipefail
TG="${TRUSTGATE:-trustgate}"
cd "$(dirname "$0")/example"
for svc in orders billing; do
    mkdir -p "$svc/keys/authorized_keys"
    if [ ! -f "$svc/keys/$svc.key" ]; then
        "$TG" keygen "$svc" --out "$svc/keys" >/dev/null
    fi
done
# billing trusts orders (orders calls billing); orders trusts billing (callbacks).
cp billing/keys/billing.pub orders/keys/authorized_keys/billing.pub
cp orders/keys/orders.pub billing/keys/authorized_keys/orders.pub
echo "keys ready: $(ls orders/keys billing/keys | tr '\n' ' ')"
