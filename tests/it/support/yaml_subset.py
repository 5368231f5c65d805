"""Is every value of BEFORE still in AFTER, as a YAML 1.1 reader (PyYAML, like
Kubernetes' own) reads both? Inject may add keys and list elements, may re-target a
Service port to the sidecar and may add NetworkPolicy documents of its own (labelled
app.kubernetes.io/managed-by: trustgate-inject); nothing else may change meaning (quoting, octal modes,
booleans, block scalars). Exit 0 if so; otherwise print the first difference, exit 1."""
import sys

import yaml


def covered(before, after, path):
    if isinstance(before, dict):
        if not isinstance(after, dict):
            return f"{path}: was a mapping"
        for k, v in before.items():
            if k not in after:
                return f"{path}.{k}: gone"
            if k == "targetPort" and after[k] == "trustgate-in":
                continue
            why = covered(v, after[k], f"{path}.{k}")
            if why:
                return why
        return None
    if isinstance(before, list):
        if not isinstance(after, list):
            return f"{path}: was a list"
        for i, v in enumerate(before):
            if all(covered(v, a, f"{path}[{i}]") for a in after):
                return f"{path}[{i}]: {v!r} not found in {after!r}"
        return None
    if before != after or type(before) is not type(after):
        return f"{path}: {before!r} ({type(before).__name__}) became {after!r} ({type(after).__name__})"
    return None


before = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]
def added_by_inject(d):
    labels = (d.get("metadata") or {}).get("labels") or {}
    return d.get("kind") == "NetworkPolicy" and labels.get("app.kubernetes.io/managed-by") == "trustgate-inject"


after = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d is not None and not added_by_inject(d)]
if len(before) != len(after):
    sys.exit(f"{len(before)} documents became {len(after)}")
for i, (b, a) in enumerate(zip(before, after)):
    why = covered(b, a, f"document {i + 1}")
    if why:
        sys.exit(why)
