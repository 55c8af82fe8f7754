"""The sample istio release through hookbuild vs the seed's raw commands, measured side by side.

Goals (issue 2): a full `invoke release --variant istio --sample` costs <= 1.15x the same work done by hand
(edit WORKSPACE, `make build_envoy BUILD_WITH_CONTAINER=1`, copy out of the `cache` volume, `nm | grep
hookpoint`, `docker build`, `docker tag`, `docker push`); a CI retry of a recorded release costs <= 10% of the
first release and rebuilds and pushes nothing.

Both sides build the same sources with the same warm Bazel cache and push to the local registry, into a
registry namespace of the benchmark's own. Every hookbuild run uses a new version, so each is a full release.
Runs are paired and interleaved, the order inside a pair alternating, so drift in the machine's load hits both
sides alike; each step waits (up to 2 minutes) for the CPU to be idle, and the report says how many did not
get it. The build (the same `make` on both sides) is most of the time and most of the noise, so besides the
whole ratio (the goal) the fixed cost around the build is reported on its own for each side, and the ratio
gets a 95% bootstrap confidence interval over the pairs: "not noise" when the whole interval is on one side
of the goal. The hookbuild side's fixed cost (SBOM and signed provenance included: a release makes them, the
raw commands have no equivalent) is split into the stages before the build, those after it, and the time in
no stage (start-up, the plan, exit).

Usage: .venv/bin/python benchmarks/bench_release.py [RUNS]   (default 8 pairs; needs scripts/setup.sh)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import docker

ROOT = Path(__file__).resolve().parent.parent
INVOKE = Path(sys.executable).parent / "invoke"
REGISTRY = "127.0.0.1:5000"
NAMESPACE = f"hookbuild-bench-release-{os.getpid()}"
GOAL, RETRY_GOAL = 1.15, 0.10
CLASH = "Server terminated abruptly"
BUILD_IMAGE = "hookbuild-sample/build-tools-proxy:sample"  # the sample's build container, both sides
IDLE = 0.9  # a step starts once 90% of the CPU went unused for a second (2 cores: < 0.2 of one busy)
QUIET_LIMIT = 120.0  # seconds a step waits for that at most
QUIET_STARTS: list[bool] = []  # per measured step: did it start on a quiet machine (else after the limit)
NESTED = ("locate", "sbom")  # timed inside the build and sign stages: not added again
T = TypeVar("T")


def hookbuild_release(dist: Path, version: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    proc = subprocess.run(
        [str(INVOKE), "release", "--variant", "istio", "--sample", "--version", version, "--json"],
        cwd=ROOT,
        env={**os.environ, "HOOKBUILD_DIST": str(dist), "HOOKBUILD_NAMESPACE": NAMESPACE},
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 and CLASH in proc.stderr:
        raise Clash(f"hookbuild release {version}")
    if proc.returncode != 0:
        sys.exit(f"hookbuild release failed:\n{proc.stderr[-2000:]}")
    return elapsed, json.loads(proc.stdout)


def raw_release(work: Path, tag: str) -> tuple[float, float]:
    """The seed's manual steps, as a shell user would type them: (total seconds, of which the make)."""
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
started=$(date +%s.%N)
CONDITIONAL_HOST_MOUNTS="--volume {envoy}:/envoy " BAZEL_CONFIG_REL=--config=release-symbol \\
    make build_envoy BUILD_WITH_CONTAINER=1 > {work}/raw-build.log 2>&1
echo "$started $(date +%s.%N)" > {work}/raw-build.times
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
    ran = subprocess.run(["bash", "-c", script], check=False)
    elapsed = time.perf_counter() - started
    if ran.returncode != 0 and CLASH in (work / "raw-build.log").read_text(errors="replace"):
        raise Clash(f"raw release {tag}")
    ran.check_returncode()
    build_start, build_end = map(float, (work / "raw-build.times").read_text().split())
    return elapsed, build_end - build_start


class Clash(Exception):
    """Another build on this machine restarted the shared Bazel server (the `cache` volume) under ours."""


def quiet(client: docker.DockerClient, limit: float = QUIET_LIMIT) -> bool:
    """Wait (up to `limit` s) until no other build container runs and the CPU is idle; False if it never was.

    Two builds at once share one Bazel server in the `cache` volume, and the second one's start cuts the
    first one off. Other work on the machine (tests, type checks) stretches the build, which is most of
    both sides' time and most of the noise: on 2 cores one busy process makes a build take twice as long.
    """
    builder = client.images.get(BUILD_IMAGE).id
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(c.attrs.get("Image") == builder for c in client.containers.list()):
            time.sleep(2)
        elif idle_fraction() >= IDLE:
            return True
    return False


def idle_fraction(window: float = 1.0) -> float:
    """The share of CPU time no process used over `window` seconds (/proc/stat: idle + iowait)."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)

    idle, total = sample()
    time.sleep(window)
    idle2, total2 = sample()
    return (idle2 - idle) / max(total2 - total, 1)


def retried(client: docker.DockerClient, step: Callable[[], T], attempts: int = 5) -> T:
    """`step()` once the machine is quiet, and again when another build cut it off anyway (the failed
    attempt's time is not counted)."""
    for attempt in range(1, attempts + 1):
        QUIET_STARTS.append(quiet(client))
        try:
            return step()
        except Clash as clash:
            if attempt == attempts:
                raise
            print(f"{clash}: the shared Bazel server was restarted under it; again", file=sys.stderr)
    raise AssertionError("unreachable")


def ratio_interval(ours: list[float], theirs: list[float], rounds: int = 4000) -> tuple[float, float]:
    """95% bootstrap interval of median(ours) / median(theirs), resampling whole pairs (run i of each side)."""
    rng = random.Random(16)
    pairs = list(zip(ours, theirs, strict=True))
    ratios = []
    for _ in range(rounds):
        sample = [rng.choice(pairs) for _ in pairs]
        ratios.append(statistics.median(a for a, _ in sample) / statistics.median(b for _, b in sample))
    ratios.sort()
    return ratios[int(0.025 * rounds)], ratios[int(0.975 * rounds) - 1]


def where(elapsed: float, durations: dict[str, float]) -> tuple[float, float, float]:
    """A release's time beside its build: in the stages before it, in those after it, and in no stage."""
    stages = [(name, float(sec)) for name, sec in durations.items() if name not in NESTED]
    names = [name for name, _ in stages]
    before = sum(sec for _, sec in stages[: names.index("build")])
    after = sum(sec for _, sec in stages[names.index("build") + 1 :])
    return before, after, elapsed - before - after - float(durations["build"])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.2f} {min(values):8.2f} {max(values):8.2f}"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    # As installed (make install byte-compiles): PYTHONDONTWRITEBYTECODE would otherwise recompile every run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "hookbuild", "tasks.py"], cwd=ROOT, check=True)
    client = docker.from_env()
    raw_tag = f"{REGISTRY}/{NAMESPACE}/raw-bench"
    ours: list[tuple[float, dict[str, Any]]] = []
    theirs: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="hookbuild-bench-") as tmp:
        work, dist = Path(tmp) / "raw", Path(tmp) / "dist"
        work.mkdir()
        # Releases sign (issue 13): a throwaway key; what signing costs is benchmarks/bench_supply.py's job.
        key = Path(tmp) / "signing-key.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
        key.chmod(0o600)
        os.environ["HOOKBUILD_SIGNING_KEY"] = str(key)
        try:
            # Warm-up: both sides see a warm Bazel output base and local base layers.
            retried(client, lambda: hookbuild_release(dist, "90.0"))
            retried(client, lambda: raw_release(work, f"{raw_tag}:warmup"))
            for run in range(runs):
                ours_step = partial(hookbuild_release, dist, f"90.{run + 1}")
                raw_step = partial(raw_release, work, f"{raw_tag}:{run}")
                if run % 2:  # alternate which side goes first
                    theirs.append(retried(client, raw_step))
                ours.append(retried(client, ours_step))
                if not run % 2:
                    theirs.append(retried(client, raw_step))
                print(
                    f"pair {run + 1}: hookbuild {ours[-1][0]:.2f}s (build {ours[-1][1]['durations']['build']:.2f}s), "
                    f"raw {theirs[-1][0]:.2f}s (make {theirs[-1][1]:.2f}s)",
                    flush=True,
                )
            first, result = retried(client, lambda: hookbuild_release(dist, f"91.{runs}"))
            retries = [hookbuild_release(dist, f"91.{runs}") for _ in range(runs)]
        finally:
            for image in client.images.list():
                for tag in image.tags:
                    if NAMESPACE in tag or tag == "raw-bench:latest":
                        client.images.remove(tag, noprune=True)
    report(ours, theirs, first, result, retries)


def report(
    ours: list[tuple[float, dict[str, Any]]],
    theirs: list[tuple[float, float]],
    first: float,
    result: dict[str, Any],
    retries: list[tuple[float, dict[str, Any]]],
) -> None:
    totals, raw_totals = [t for t, _ in ours], [t for t, _ in theirs]
    builds = [float(r["durations"]["build"]) for _, r in ours]
    raw_builds = [b for _, b in theirs]
    fixed = [t - b for t, b in zip(totals, builds, strict=True)]
    raw_fixed = [t - b for t, b in zip(raw_totals, raw_builds, strict=True)]
    ratio = statistics.median(totals) / statistics.median(raw_totals)
    low, high = ratio_interval(totals, raw_totals)
    retry_median = statistics.median(elapsed for elapsed, _ in retries)
    retry_ratio = retry_median / first
    reused = all(
        r["reused"] and "build" not in r["durations"] and "push" not in r["durations"] for _, r in retries
    )
    print(f"{len(totals)} pairs, interleaved (seconds){'median':>10}{'min':>9}{'max':>9}")
    print(f"  {'raw commands (seed, by hand)':38}{spread(raw_totals)}")
    print(f"  {'  of which make (the build)':38}{spread(raw_builds)}")
    print(f"  {'  fixed cost around the build':38}{spread(raw_fixed)}")
    print(f"  {'invoke release --sample':38}{spread(totals)}")
    print(f"  {'  of which the build stage':38}{spread(builds)}")
    print(f"  {'  fixed cost around the build':38}{spread(fixed)}")
    print(f"  {'invoke release (CI retry)':38}{spread([t for t, _ in retries])}")
    stages = {
        name: statistics.median(float(r["durations"][name]) for _, r in ours) for name in result["durations"]
    }
    print("  stages (median s): " + ", ".join(f"{name} {sec:.2f}" for name, sec in stages.items()))
    before, after, outside = zip(*(where(elapsed, r["durations"]) for elapsed, r in ours), strict=True)
    print(
        f"  hookbuild's fixed cost (median s): stages before the build {statistics.median(before):.2f}, "
        f"after it {statistics.median(after):.2f}, outside any stage (python and invoke start-up, the plan, "
        f"exit) {statistics.median(outside):.2f}"
    )
    print(
        f"  steps started on a quiet machine: {sum(QUIET_STARTS)} of {len(QUIET_STARTS)} "
        f"(the rest after waiting {QUIET_LIMIT:.0f} s)"
    )
    noise = "not noise" if high <= GOAL or low > GOAL else "within noise of the goal"
    met = ratio <= GOAL
    print(
        f"release ratio hookbuild/raw: {ratio:.3f}x, 95% CI {low:.3f}..{high:.3f} ({noise}) "
        f"-> {'met' if met else 'MISSED'} (goal <= {GOAL}x)"
    )
    sign = stages.get("sign", 0.0)  # SBOM and signed provenance: work the raw commands do not do
    print(
        f"fixed cost beyond raw: {statistics.median(fixed) - statistics.median(raw_fixed):+.2f} s per release, "
        f"of which sign {sign:.2f} s (no raw equivalent; without it the ratio would be "
        f"{(statistics.median(totals) - sign) / statistics.median(raw_totals):.3f}x)"
    )
    retry_met = retry_ratio <= RETRY_GOAL and reused
    print(
        f"retry / first release: {retry_ratio:.1%}, nothing rebuilt or pushed: {reused} "
        f"-> {'met' if retry_met else 'MISSED'} (goal <= {RETRY_GOAL:.0%})"
    )
    if not (met and retry_met):
        sys.exit(1)


if __name__ == "__main__":
    main()
