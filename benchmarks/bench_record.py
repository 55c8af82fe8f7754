"""The record at 10, 100, 1,000 and 10,000 entries: a query and a bump against a bare `invoke --list`.

Goals (issue 16): at 1,000 entries `versions --supports perf --json` <= 1.5x and `bump` <= 2.5x
`invoke --list`; at 10,000 entries both <= 6x. Whole-process medians, the three commands interleaved so
that other load on the machine hits them alike. The records are the seed plus synthetic entries shaped
like real ones (every third one released by hookbuild, with its provenance table), made in a scratch
folder; each bump runs on a fresh copy.

Usage: .venv/bin/python benchmarks/bench_record.py [RUNS]   (exit 1 if a goal is missed)
"""

from __future__ import annotations

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


def timed(args: list[str], before: list[str] | None = None) -> float:
    if before:
        shutil.copyfile(before[0], before[1])
    started = time.perf_counter()
    subprocess.run([str(INVOKE), *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    missed = False
    with tempfile.TemporaryDirectory(prefix="hookbuild-bench-record-") as scratch:
        print(f"runs: {runs} each (median); ratios to `invoke --list`")
        print(f"{'entries':>8} {'--list':>9} {'query':>9} {'ratio':>6} {'bump':>9} {'ratio':>6}  goals")
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
            timed(query)  # warm the page cache and the bytecode
            listing, queries, bumps = [], [], []
            for _ in range(runs):
                listing.append(timed(["--list"]))
                queries.append(timed(query))
                bumps.append(timed(bump, before=[str(source), str(work)]))
            li, q, b = (statistics.median(s) for s in (listing, queries, bumps))
            verdict = ""
            if size in GOALS:
                goal_q, goal_b = GOALS[size]
                met_q, met_b = q / li <= goal_q, b / li <= goal_b
                missed |= not (met_q and met_b)
                verdict = (
                    f"query <= {goal_q}x {'met' if met_q else 'MISSED'}, "
                    f"bump <= {goal_b}x {'met' if met_b else 'MISSED'}"
                )
            print(
                f"{size:>8} {li * 1000:7.0f}ms {q * 1000:7.0f}ms {q / li:5.2f}x "
                f"{b * 1000:7.0f}ms {b / li:5.2f}x  {verdict}"
            )
    if missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
