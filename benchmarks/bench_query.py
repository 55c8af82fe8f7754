"""`invoke versions --supports perf --json` vs a no-op run of the same CLI; goal: ratio <= 1.5.

The no-op is `invoke versions --help`: the same interpreter start, invoke import, tasks.py collection load
and argument parsing for the same task, but the task body (load + validate versions.toml, filter, JSON) does
not run. So the ratio is exactly what the query adds on top of any invoke call. `invoke --list` is also
timed for reference. Also checks that the query imports no docker, git, elftools or rich (-X importtime).

Usage: .venv/bin/python benchmarks/bench_query.py [RUNS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVOKE = Path(sys.executable).parent / "invoke"
QUERY = ["versions", "--supports", "perf", "--json"]
FORBIDDEN = ("docker", "git", "elftools", "rich", "tomlkit", "ruamel")


def timed(args: list[str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(INVOKE), *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - started)
    return samples


def imported_by_query() -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(INVOKE), *QUERY],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    timed(QUERY, 2)  # warm the page cache and .pyc files
    # interleave so drift (other load on the machine) hits both sides alike
    query, noop, listing = [], [], []
    for _ in range(runs):
        query += timed(QUERY, 1)
        noop += timed(["versions", "--help"], 1)
        listing += timed(["--list"], 1)
    q, n, li = (statistics.median(s) for s in (query, noop, listing))
    print(f"runs: {runs} each (median)")
    print(f"  invoke {' '.join(QUERY):34} {q * 1000:7.1f} ms")
    print(f"  invoke versions --help (no-op)     {n * 1000:7.1f} ms")
    print(f"  invoke --list (reference)          {li * 1000:7.1f} ms")
    print(f"ratio query / no-op: {q / n:.2f}x (goal <= 1.5x)")
    heavy = sorted(imported_by_query() & set(FORBIDDEN))
    print(f"heavy modules imported by the query: {', '.join(heavy) if heavy else 'none'}")
    if heavy or q / n > 1.5:
        sys.exit(1)


if __name__ == "__main__":
    main()
