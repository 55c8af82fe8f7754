"""The record at 10, 100, 1,000 and 10,000 entries: a query and a bump against a bare `invoke --list`.

Goals (issue 16): at 1,000 entries `versions --supports perf --json` <= 1.5x and `bump` <= 2.5x
`invoke --list`; at 10,000 entries both <= 6x. Whole-process medians, the commands interleaved so that
other load on the machine hits them alike. The records are the seed plus synthetic entries shaped like
real ones (every third one released by hookbuild, with its provenance table), made in a scratch folder;
each bump runs on a fresh copy.

Each command runs twice: "warm", with the validated record in hookbuild's cache (keyed by the file's
content: every query but the first after an edit), and "cold", with an empty cache (tomli parses and the
schema validates the whole file: the first query after an edit, every query of a fresh CI machine). Every
goal is judged on both: four verdicts per size with a goal, each printed as met or MISSED.

Usage: .venv/bin/python benchmarks/bench_record.py [RUNS]   (exit 1 if any goal is missed, warm or cold)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVOKE = Path(sys.executable).parent / "invoke"
SIZES = (10, 100, 1_000, 10_000)
GOALS = {1_000: (1.5, 2.5), 10_000: (6.0, 6.0)}  # entries -> (query, bump) ratio to `invoke --list`


def synthetic_entry(i: int) -> str:
    major, minor = 100 + i // 100, i % 100
    features = '["hookpoints", "grpc", "perf"]' if i % 2 else '["hookpoints", "grpc"]'
    text = (
        f'[[istio]]\nversion = "{major}.{minor}"\nstatus = "working"\nverified = false\n'
        f'summary = "synthetic entry {i}: a hookpoint in the router"\nfeatures = {features}\npackages = []\n'
        f'image = "docker.io/hookbuild/istio-proxy:{major}.{minor}"\n\n'
    )
    if i % 3:
        return text
    return text + (
        f'[istio.release]\nimage = "127.0.0.1:5000/hookbuild/istio-proxy:{major}.{minor}"\n'
        f'digest = "sha256:{i:064x}"\nreleased_at = 2026-08-01T12:00:00Z\n'
        f'envoy_commit = "{"b" * 40}"\nproxy_commit = "{"c" * 40}"\ndirty = false\n'
        f'binary_sha256 = "{"d" * 64}"\nbuild_id = "0123abcd"\n'
        'hookpoints = [\n  { mangled = "_ZN5Envoy4Http9hookpointEv", demangled = "Envoy::Http::hookpoint()" },\n]\n'
        f'scripts = ["trace_all.sh"]\ninputs_key = "{"e" * 64}"\n'
        'base_image = "docker.io/istio/proxyv2:1.26.0"\ndockerfile = "istio.dockerfile"\n\n'
    )


def make_record(entries: int, dest: Path) -> Path:
    seed = (ROOT / "versions.toml").read_text(encoding="utf-8")
    seed_entries = seed.count("\n[[")
    extra = "".join(synthetic_entry(i) for i in range(max(0, entries - seed_entries)))
    dest.write_text(seed.rstrip("\n") + "\n\n" + extra, encoding="utf-8")
    return dest


def timed(args: list[str], before: list[str] | None = None, cache: str | None = None) -> float:
    if before:
        shutil.copyfile(before[0], before[1])
    env = dict(os.environ)
    if cache is not None:
        env["XDG_CACHE_HOME"] = cache
    started = time.perf_counter()
    subprocess.run([str(INVOKE), *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    missed = False
    # As installed (make install byte-compiles): PYTHONDONTWRITEBYTECODE would otherwise recompile every run,
    # and the record's modules, which `--list` does not import, only in the measured commands.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "hookbuild", "tasks.py"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(prefix="hookbuild-bench-record-") as scratch:
        warm_cache = str(Path(scratch) / "cache")
        print(f"runs: {runs} each (median); ratios to `invoke --list`; warm = record cache hit, cold = miss")
        head = f"{'query warm':>16} {'cold':>16}  {'bump warm':>16} {'cold':>16}"
        print(f"{'entries':>8} {'--list':>7}  {head}  goals (warm and cold)")
        for size in SIZES:
            source = make_record(size, Path(scratch) / f"record-{size}.toml")
            work = Path(scratch) / f"bump-{size}.toml"
            query = ["versions", "--supports", "perf", "--json", "--versions-file", str(source)]
            bump = [
                "bump",
                "--variant",
                "istio",
                "--minor",
                "--summary",
                "bench",
                "--versions-file",
                str(work),
            ]
            timed(query, cache=warm_cache)  # warm the page cache, the bytecode and the record cache
            samples: dict[str, list[float]] = {name: [] for name in ("list", "qw", "qc", "bw", "bc")}
            for run in range(runs):
                cold = str(Path(scratch) / f"cold-{size}-{run}")
                samples["list"].append(timed(["--list"]))
                samples["qw"].append(timed(query, cache=warm_cache))
                samples["qc"].append(timed(query, cache=cold + "q"))
                samples["bw"].append(timed(bump, before=[str(source), str(work)], cache=warm_cache))
                samples["bc"].append(timed(bump, before=[str(source), str(work)], cache=cold + "b"))
            li, qw, qc, bw, bc = (statistics.median(samples[k]) for k in ("list", "qw", "qc", "bw", "bc"))
            verdict = ""
            if size in GOALS:
                goal_q, goal_b = GOALS[size]
                verdicts = (  # (goal, met warm, met cold)
                    (f"query <= {goal_q}x", qw / li <= goal_q, qc / li <= goal_q),
                    (f"bump <= {goal_b}x", bw / li <= goal_b, bc / li <= goal_b),
                )
                missed |= not all(warm and cold for _, warm, cold in verdicts)
                verdict = "; ".join(
                    f"{goal} warm {_says(warm)}, cold {_says(cold)}" for goal, warm, cold in verdicts
                )
            cells = "  ".join(f"{t * 1000:7.0f}ms {t / li:5.2f}x" for t in (qw, qc, bw, bc))
            print(f"{size:>8} {li * 1000:5.0f}ms  {cells}  {verdict}")
    if missed:
        sys.exit(1)


def _says(met: bool) -> str:
    return "met" if met else "MISSED"


if __name__ == "__main__":
    main()
