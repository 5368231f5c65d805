#!/usr/bin/env bash
# Renders every kustomization (base and example) and validates each resource offline
# against a current Kubernetes schema with kubernetes-validate --strict (a misspelled
# field fails). Rendering: `kubectl kustomize` (kubectl's built-in kustomize); if kubectl
# is missing and we are root, Debian's kubernetes-client is installed for it.
#
#   TRUSTGATE=target/debug/trustgate deploy/kubernetes/validate.sh
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
K8S_VERSION="${K8S_VERSION:-1.33}"

if ! command -v kubectl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -q kubernetes-client >/dev/null
    else
        echo "kubectl is needed to render the kustomizations" >&2
        exit 1
    fi
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate \
        || python3 -m pip install --quiet --break-system-packages kubernetes-validate
fi

# The example's secretGenerators read keys made by trustgate keygen.
"$HERE/make-secrets.sh" >/dev/null

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for k in base example; do
    kubectl kustomize "$HERE/$k" >"$OUT/$k.yaml" 2>"$OUT/$k.err" || { cat "$OUT/$k.err" >&2; exit 1; }
    echo "rendered $k: $(grep -c '^kind:' "$OUT/$k.yaml") resources"
done
# The other path: an app's own manifests through `trustgate inject`. Injecting twice is
# injecting once, and the rendered example's hand-written sidecar is recognised (left
# byte for byte).
TRUSTGATE="${TRUSTGATE:-trustgate}"
"$TRUSTGATE" inject "$HERE/inject/billing.yaml" >"$OUT/injected.yaml" 2>"$OUT/inject.err" \
    || { cat "$OUT/inject.err" >&2; exit 1; }
"$TRUSTGATE" inject "$OUT/injected.yaml" 2>/dev/null | cmp -s - "$OUT/injected.yaml" \
    || { echo "trustgate inject is not idempotent on inject/billing.yaml" >&2; exit 1; }
"$TRUSTGATE" inject "$OUT/example.yaml" 2>/dev/null | cmp -s - "$OUT/example.yaml" \
    || { echo "trustgate inject changed the already-injected example" >&2; exit 1; }
echo "injected inject/billing.yaml: $(cat "$OUT/inject.err" | tr '\n' ' ')"
# The rendered example's NetworkPolicies admit the pods that dial what they protect (the
# fleet's store, each route's upstream): a kustomize transformer rewriting a selector
# fails here, not in a cluster where every replica silently limits on its own.
python3 "$HERE/check-policies.py" <"$OUT/example.yaml"
# Every document of every rendering, strictly, against one Kubernetes version.
kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$OUT/base.yaml" "$OUT/example.yaml" "$OUT/injected.yaml"
# The authorizer's examples (Istio, Envoy Gateway): their Kubernetes kinds strictly, their
# custom resources against the fields those APIs document (no CRD schemas offline).
kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$HERE"/authz/*.yaml 2>&1 \
    | grep -v "Couldn't find schema for kind \(AuthorizationPolicy\|ServiceEntry\|SecurityPolicy\)" || true
kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$HERE"/authz/*.yaml >/dev/null
python3 "$HERE/authz/check-crs.py" "$HERE"/authz/*.yaml
# The native sidecar form must survive rendering.
grep -q 'restartPolicy: Always' "$OUT/example.yaml"
echo "manifests valid for Kubernetes $K8S_VERSION (strict)"
