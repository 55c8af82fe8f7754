"""`invoke inject` on 1, 100 and 1,000 Deployments vs `invoke --list` and `kubectl patch --local`.

Goal (issue 16): injecting 1,000 Deployments costs <= 15x a bare `invoke --list` (the floor of any task).
`kubectl patch --local` applies a strategic-merge patch of the same sidecar without a cluster (it keeps
no comments and re-serialises every document), for reference. Whole-process medians, runs interleaved so
other load on the machine hits every side alike. Each document is parsed once for positions, edited as text
and reparsed once to check the result: there is no dump at all.

Usage: .venv/bin/python benchmarks/bench_inject.py [RUNS]
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVOKE = Path(sys.executable).parent / "invoke"
SIZES = (1, 100, 1000)
GOAL = 15.0
DIGEST = "sha256:" + "1" * 64
RECORD = f"""\
schema = 1

[variants.istio]
title = "Modified Istio proxy"
image = "registry.example.com/hookbuild/istio-proxy"

[[istio]]
version = "12.0"
summary = "bench"

[istio.release]
image = "registry.example.com/hookbuild/istio-proxy:12.0"
digest = "{DIGEST}"
released_at = 2026-08-01T12:00:00Z
envoy_commit = "{"2" * 40}"
binary_sha256 = "{"3" * 64}"
inputs_key = "bench"
base_image = "docker.io/istio/proxyv2:1.28.0"
dockerfile = "dockerfiles/custom_istio.dockerfile"
"""
# A Deployment as people write them: comments, labels, probes, env, resources, an app volume.
DEPLOYMENT = """\
# Deployment {n}: the app's own comment stays where it is
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{n}
  namespace: shop
  labels:
    app: app-{n}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: app-{n}
  template:
    metadata:
      labels:
        app: app-{n}
        version: v1
    spec:
      serviceAccountName: app-{n}
      containers:
      - name: server
        image: docker.io/example/app:1.{n}
        ports:
        - containerPort: 8080
        env:
        - name: PORT
          value: "8080"
        readinessProbe:
          httpGet:
            path: /healthz
            port: 8080
        resources:
          requests: {{cpu: 100m, memory: 64Mi}}
        volumeMounts:
        - name: cache
          mountPath: /cache
      volumes:
      - name: cache
        emptyDir: {{}}
"""
PATCH = {
    "spec": {"template": {"spec": {
        "containers": [{
            "name": "istio-proxy",
            "image": f"registry.example.com/hookbuild/istio-proxy@{DIGEST}",
            "securityContext": {"privileged": True, "allowPrivilegeEscalation": True, "runAsUser": 0,
                                "runAsGroup": 1337, "runAsNonRoot": False, "readOnlyRootFilesystem": False,
                                "capabilities": {"add": ["SYS_ADMIN"]}},
            "volumeMounts": [{"name": "hookbuild-lib-modules", "mountPath": "/lib/modules"},
                             {"name": "hookbuild-usr-src", "mountPath": "/usr/src"},
                             {"name": "hookbuild-tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "hookbuild-lib-modules", "hostPath": {"path": "/lib/modules", "type": "Directory"}},
                    {"name": "hookbuild-usr-src", "hostPath": {"path": "/usr/src", "type": "Directory"}},
                    {"name": "hookbuild-tmp", "emptyDir": {}}],
    }}},
}  # fmt: skip


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    kubectl = shutil.which("kubectl")
    with tempfile.TemporaryDirectory(prefix="hookbuild-bench-inject-") as scratch:
        work = Path(scratch)
        record = work / "versions.toml"
        record.write_text(RECORD)
        commands: dict[str, list[str]] = {"invoke --list": [str(INVOKE), "--list"]}
        for size in SIZES:
            manifest = work / f"deployments-{size}.yaml"
            manifest.write_text("---\n".join(DEPLOYMENT.format(n=n) for n in range(size)))
            commands[f"inject {size}"] = [
                str(INVOKE), "inject", "-r", "istio@12.0", "-f", str(manifest), "-o", str(work / "out.yaml"),
                "--versions-file", str(record),
            ]  # fmt: skip
            if kubectl:
                commands[f"kubectl patch {size}"] = [
                    kubectl, "patch", "--local", "-f", str(manifest), "--type", "strategic",
                    "-p", json.dumps(PATCH), "-o", "yaml",
                ]  # fmt: skip
        for command in commands.values():
            timed(command)  # warm the page cache and .pyc files; a failing command stops here
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, command in commands.items():
                samples[name].append(timed(command))
    median = {name: statistics.median(values) for name, values in samples.items()}
    floor = median["invoke --list"]
    print(f"runs: {runs} each (median, whole process)")
    for name, seconds in median.items():
        print(f"  {name:22} {seconds * 1000:9.1f} ms  {seconds / floor:6.2f}x invoke --list")
    if not kubectl:
        print("  kubectl not found: no kubectl patch --local reference")
    for size in SIZES:
        if f"kubectl patch {size}" in median:
            ratio = median[f"inject {size}"] / median[f"kubectl patch {size}"]
            print(f"  inject / kubectl patch --local at {size}: {ratio:.2f}x")
    ratio = median["inject 1000"] / floor
    met = ratio <= GOAL
    print(
        f"inject of 1,000 Deployments: {ratio:.2f}x invoke --list (goal <= {GOAL:g}x): {'met' if met else 'missed'}"
    )
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
