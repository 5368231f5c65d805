#!/usr/bin/env python3
"""Checks that the NetworkPolicies of a rendered manifest stream admit the pods that need
them (a kustomize transformer can silently rewrite a `from` selector).

    kubectl kustomize deploy/kubernetes/example | deploy/kubernetes/check-policies.py

For every workload whose pod mounts a ConfigMap with a trustgate.toml, the hosts that
sidecar dials — `[fleet] redis` and each `[[outbound.routes]] upstream` — are resolved to
Services in the workload's namespace (short names, `<svc>.<ns>`, `<svc>.<ns>.svc...`),
the Services to pods, and every NetworkPolicy selecting those pods must let the workload's
pods in on the Service's target port. Every policy, and every `from` pod selector, must
select some pod. Exit status 1 with one line per problem.
"""
import sys
import tomllib
from urllib.parse import urlsplit

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}


def selects(selector, labels):
    """A LabelSelector (matchLabels and matchExpressions) against a pod's labels."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def main():
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    ns = lambda d: d["metadata"].get("namespace", "default")
    configs = {
        (ns(d), d["metadata"]["name"]): d.get("data", {}).get("trustgate.toml")
        for d in docs
        if d["kind"] == "ConfigMap"
    }
    pods = []  # (namespace, workload name, labels, pod spec)
    for d in docs:
        if d["kind"] in WORKLOADS:
            t = d["spec"]["template"]
            pods.append((ns(d), d["metadata"]["name"], t["metadata"].get("labels", {}), t["spec"]))
    services = {(ns(d), d["metadata"]["name"]): d for d in docs if d["kind"] == "Service"}
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    problems = []

    for p in policies:
        name = p["metadata"]["name"]
        if not any(n == ns(p) and selects(p["spec"]["podSelector"], l) for n, _, l, _ in pods):
            problems.append(f"NetworkPolicy {name}: its podSelector selects no pod")
        for rule in p["spec"].get("ingress") or []:
            for peer in rule.get("from") or []:
                sel = peer.get("podSelector")
                if sel is not None and "namespaceSelector" not in peer:
                    if not any(n == ns(p) and selects(sel, l) for n, _, l, _ in pods):
                        problems.append(f"NetworkPolicy {name}: a `from` selects no pod ({sel})")

    def container_port(spec, target):
        if isinstance(target, int):
            return target
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for port in c.get("ports", []):
                if port.get("name") == target:
                    return port["containerPort"]
        return None

    def admitted(policy, labels, port):
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from")
            who = not peers or any(
                "podSelector" in peer
                and "namespaceSelector" not in peer
                and selects(peer["podSelector"], labels)
                for peer in peers
            )
            ports = rule.get("ports")
            where = not ports or any(q.get("port") == port for q in ports)
            if who and where:
                return True
        return False

    for namespace, workload, labels, spec in pods:
        for vol in spec.get("volumes", []):
            cm = (vol.get("configMap") or {}).get("name")
            text = configs.get((namespace, cm))
            if not text or "[" not in text:
                continue
            cfg = tomllib.loads(text)
            urls = [cfg.get("fleet", {}).get("redis")]
            urls += [r.get("upstream") for r in cfg.get("outbound", {}).get("routes", [])]
            for url in filter(None, urls):
                parts = urlsplit(url)
                host = parts.hostname or ""
                labels_of = host.split(".")
                svc_ns = labels_of[1] if len(labels_of) > 1 and labels_of[1] != "svc" else namespace
                svc = services.get((svc_ns, labels_of[0]))
                if svc is None:
                    problems.append(f"{workload}: {url}: no Service {labels_of[0]} in {svc_ns}")
                    continue
                port = parts.port or {"redis": 6379, "rediss": 6379, "https": 443}.get(parts.scheme, 80)
                sport = next((q for q in svc["spec"]["ports"] if q["port"] == port), None)
                if sport is None:
                    problems.append(f"{workload}: {url}: Service {labels_of[0]} has no port {port}")
                    continue
                for tns, tname, tlabels, tspec in pods:
                    if tns != svc_ns or not selects({"matchLabels": svc["spec"]["selector"]}, tlabels):
                        continue
                    target = container_port(tspec, sport.get("targetPort", port))
                    for p in policies:
                        if ns(p) == tns and selects(p["spec"]["podSelector"], tlabels):
                            if not admitted(p, labels, target):
                                problems.append(
                                    f"{workload} dials {url}, but NetworkPolicy "
                                    f"{p['metadata']['name']} lets its pods into {tname} "
                                    f"on port {target} nowhere"
                                )
    for p in problems:
        print(p)
    print(f"{len(policies)} NetworkPolicies, {len(pods)} workloads: "
          f"{'ok' if not problems else str(len(problems)) + ' problem(s)'}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
