#!/usr/bin/env python3
"""The custom resources of the authorizer examples (Istio, Envoy Gateway), checked
offline: kubernetes-validate has no schema for CRDs, so each kind's fields are checked
here against the fields its API documents (a misspelt field fails), and the mesh
config's extension provider against Istio's MeshConfig. Usage: check-crs.py FILE..."""
import sys

import yaml

# Documented fields, nested: a dict is an object's fields, a list [x] a list of x, None
# a value not looked into.
KINDS = {
    ("security.istio.io/v1", "AuthorizationPolicy"): {
        "selector": {"matchLabels": None},
        "targetRefs": None,
        "action": None,
        "provider": {"name": None},
        "rules": [{"from": None, "to": None, "when": None}],
    },
    ("networking.istio.io/v1", "ServiceEntry"): {
        "hosts": None,
        "addresses": None,
        "endpoints": [{"address": None, "ports": None, "labels": None}],
        "ports": [{"name": None, "number": None, "protocol": None, "targetPort": None}],
        "location": None,
        "resolution": None,
        "exportTo": None,
    },
    ("gateway.envoyproxy.io/v1alpha1", "SecurityPolicy"): {
        "targetRefs": [{"group": None, "kind": None, "name": None}],
        "extAuth": {
            "failOpen": None,
            "headersToExtAuth": None,
            "grpc": {"backendRefs": [{"name": None, "port": None, "namespace": None}]},
            "http": {"backendRefs": None, "path": None, "headersToBackend": None},
        },
    },
}
MESH = {
    "extensionProviders": [{
        "name": None,
        "envoyExtAuthzGrpc": {"service": None, "port": None, "timeout": None,
                              "failOpen": None, "statusOnError": None,
                              "includeRequestBodyInCheck": None},
    }],
    "pathNormalization": {"normalization": None},
}
NORMALIZATIONS = {"DEFAULT", "NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"}


def check(value, schema, where, problems):
    if schema is None:
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            problems.append(f"{where}: not a list")
            return
        for i, item in enumerate(value):
            check(item, schema[0], f"{where}[{i}]", problems)
        return
    if not isinstance(value, dict):
        problems.append(f"{where}: not an object")
        return
    for key, v in value.items():
        if key not in schema:
            problems.append(f"{where}.{key}: not a field of this kind")
        else:
            check(v, schema[key], f"{where}.{key}", problems)


def main():
    problems = []
    seen = 0
    for path in sys.argv[1:]:
        for doc in yaml.safe_load_all(open(path)):
            if not doc:
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            name = f"{path}: {key[1]}/{doc['metadata']['name']}"
            if key in KINDS:
                seen += 1
                check(doc.get("spec", {}), KINDS[key], f"{name} spec", problems)
            if key == ("v1", "ConfigMap") and "mesh" in doc.get("data", {}):
                seen += 1
                mesh = yaml.safe_load(doc["data"]["mesh"])
                check(mesh, MESH, f"{name} mesh", problems)
                norm = mesh.get("pathNormalization", {}).get("normalization")
                if norm not in NORMALIZATIONS:
                    problems.append(f"{name}: pathNormalization {norm!r}")
                for p in mesh.get("extensionProviders", []):
                    if p.get("envoyExtAuthzGrpc", {}).get("failOpen") is not False:
                        problems.append(f"{name}: provider {p.get('name')} must fail closed")
            if key[1] == "SecurityPolicy" and doc["spec"]["extAuth"].get("failOpen") is not False:
                problems.append(f"{name}: extAuth must fail closed (failOpen: false)")
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"authorizer custom resources: {seen} checked")


main()
