#!/usr/bin/env python3
"""podman-pod.py INJECTED.yaml VOLUMES_DIR > pods.yaml

Turns what `trustgate inject` wrote for Kubernetes into what `podman kube play` (4.3) can
run, changing only what podman lacks; the Kubernetes manifests stay native:

- native sidecars: podman ignores `restartPolicy: Always` on an init container and the
  pod hangs (podman#20372), so the sidecar becomes the first regular container (its
  startup probe goes with that restartPolicy; podman starts containers in order);
- Secret and ConfigMap volumes become hostPath directories VOLUMES_DIR/<pod>/<volume>,
  which the test lays out as the kubelet does (`..data` -> `..<timestamp>/`, one symlink
  per file) and updates by swapping `..data`, as the kubelet does;
- `ports` go: podman 4.3 publishes a containerPort on the host even without a hostPort
  (a second pod's sidecar then cannot bind 15000); pods reach each other by address;
- probes go: podman runs them as healthchecks through systemd timers, which a machine
  without systemd as PID 1 does not have; the test polls /readyz itself;
- the downward API's `status.podIPs` is not known to podman: the variable is dropped,
  and the sidecar uses its default, every non-loopback address of the pod's network
  namespace — the same addresses;
- documents podman cannot run (NetworkPolicy, Service) are left out; podman's bridge
  network has no policies, which is why the test's third pod can try the app directly.
"""
import sys

import yaml

src, volumes = sys.argv[1], sys.argv[2]
out = []
for doc in yaml.safe_load_all(open(src)):
    if not doc or doc.get("kind") != "Pod":
        continue
    name = doc["metadata"]["name"]
    spec = doc["spec"]
    init = spec.get("initContainers", [])
    sidecars = [c for c in init if c.get("restartPolicy") == "Always"]
    spec["initContainers"] = [c for c in init if c.get("restartPolicy") != "Always"]
    if not spec["initContainers"]:
        del spec["initContainers"]
    for c in sidecars:
        del c["restartPolicy"]
        c.pop("startupProbe", None)
        c["env"] = [e for e in c.get("env", []) if "valueFrom" not in e]
    spec["containers"] = sidecars + spec["containers"]
    for c in spec["containers"]:
        for key in ("ports", "livenessProbe", "readinessProbe", "startupProbe"):
            c.pop(key, None)
    for v in spec.get("volumes", []):
        if "secret" in v or "configMap" in v:
            v.pop("secret", None)
            v.pop("configMap", None)
            v["hostPath"] = {"path": f"{volumes}/{name}/{v['name']}", "type": "Directory"}
    out.append(doc)
yaml.safe_dump_all(out, sys.stdout, sort_keys=False)
