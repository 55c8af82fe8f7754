"""The sample istio release through hookbuild vs the seed's raw commands, measured side by side.

Goals (issue 2): a full `invoke release --variant istio --sample` costs <= 1.15x the same work done by hand
(edit WORKSPACE, `make build_envoy BUILD_WITH_CONTAINER=1`, copy out of the `cache` volume, `nm | grep
hookpoint`, `docker build`, `docker tag`, `docker push`); a CI retry of a recorded release costs <= 10% of the
first release and rebuilds and pushes nothing.

Both sides build the same sources with the same warm Bazel cache and push to the local registry; runs are
interleaved and medians compared. Every hookbuild run uses a new version, so each is a full release.

Usage: .venv/bin/python benchmarks/bench_release.py [RUNS]   (needs scripts/setup.sh to have run)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
INVOKE = Path(sys.executable).parent / "invoke"
REGISTRY = "127.0.0.1:5000"


def hookbuild_release(dist: Path, version: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    proc = subprocess.run(
        [str(INVOKE), "release", "--variant", "istio", "--sample", "--version", version, "--json"],
        cwd=ROOT,
        env={**os.environ, "HOOKBUILD_DIST": str(dist)},
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"hookbuild release failed:\n{proc.stderr[-2000:]}")
    return elapsed, json.loads(proc.stdout)


def raw_release(work: Path, tag: str) -> float:
    """The seed's manual steps, as a shell user would type them."""
    proxy, envoy = work / "proxy", work / "envoy"
    for name, dest in (("proxy", proxy), ("envoy", envoy)):
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(ROOT / "examples" / name, dest, ignore=shutil.ignore_patterns("bazel-*"))
    context = work / "context"
    shutil.rmtree(context, ignore_errors=True)
    (context / "tracing").mkdir(parents=True)
    shutil.copy(ROOT / "dockerfiles" / "custom_istio.dockerfile", context)
    script = f"""
set -euo pipefail
cd {proxy}
python3 - <<'PY'
import re, pathlib
p = pathlib.Path("WORKSPACE"); text = p.read_text()
start = text.index('http_archive(\\n    name = "envoy"'); end = text.index(")\\n", start) + 1
p.write_text(text[:start] + 'local_repository(\\n    name = "envoy",\\n    path = "/envoy",\\n)' + text[end:])
PY
CONDITIONAL_HOST_MOUNTS="--volume {envoy}:/envoy " BAZEL_CONFIG_REL=--config=release-symbol \\
    make build_envoy BUILD_WITH_CONTAINER=1 > {work}/raw-build.log 2>&1
link=$(readlink bazel-bin)
mount=$(docker volume inspect cache --format '{{{{.Mountpoint}}}}')
cp "$mount${{link#/home/.cache}}/envoy" {context}/envoy
nm {context}/envoy | grep hookpoint > {context}/tracing/hookpoints.txt
cd {context}
docker build -q --build-arg BASE_IMAGE=hookbuild-sample/proxyv2:sample -t raw-bench:latest \\
    -f custom_istio.dockerfile . > /dev/null
docker tag raw-bench:latest {tag}
docker push -q {tag} > /dev/null
"""
    started = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True)
    return time.perf_counter() - started


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    # As installed (make install byte-compiles): PYTHONDONTWRITEBYTECODE would otherwise recompile every run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "hookbuild", "tasks.py"], cwd=ROOT, check=True)
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="hookbuild-bench-") as tmp:
        work, dist = Path(tmp) / "raw", Path(tmp) / "dist"
        work.mkdir()
        # Releases sign (issue 13): a throwaway key; what signing costs is benchmarks/bench_supply.py's job.
        key = Path(tmp) / "signing-key.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
        key.chmod(0o600)
        os.environ["HOOKBUILD_SIGNING_KEY"] = str(key)
        # Warm-up: both sides see a warm Bazel output base and local base layers.
        hookbuild_release(dist, "90.0")
        raw_release(work, f"{REGISTRY}/hookbuild/raw-bench:warmup")
        ours, theirs = [], []
        for run in range(runs):
            ours.append(hookbuild_release(dist, f"90.{run + 1}")[0])
            theirs.append(raw_release(work, f"{REGISTRY}/hookbuild/raw-bench:{run}"))
        first, result = hookbuild_release(dist, f"91.{runs}")
        retries = [hookbuild_release(dist, f"91.{runs}") for _ in range(runs)]
        client.images.remove("raw-bench:latest", force=True)
        for run in ("warmup", *map(str, range(runs))):
            client.images.remove(f"{REGISTRY}/hookbuild/raw-bench:{run}", noprune=True)

    hookbuild_median, raw_median = statistics.median(ours), statistics.median(theirs)
    retry_median = statistics.median(elapsed for elapsed, _ in retries)
    release_ratio = hookbuild_median / raw_median
    retry_ratio = retry_median / first
    reused = all(
        r["reused"] and "build" not in r["durations"] and "push" not in r["durations"] for _, r in retries
    )
    print(f"{'':34}{'median s':>10}{'runs':>6}")
    print(f"{'raw commands (seed, by hand)':34}{raw_median:>10.2f}{runs:>6}")
    print(f"{'invoke release --sample':34}{hookbuild_median:>10.2f}{runs:>6}")
    print(f"{'invoke release (CI retry)':34}{retry_median:>10.2f}{runs:>6}")
    print(f"release ratio hookbuild/raw: {release_ratio:.2f}x (goal <= 1.15x)")
    print(f"retry / first release: {retry_ratio:.1%} (goal <= 10%), nothing rebuilt or pushed: {reused}")
    print(f"first release stages: {result['durations']}")
    if release_ratio > 1.15 or retry_ratio > 0.10 or not reused:
        sys.exit(1)


if __name__ == "__main__":
    main()
