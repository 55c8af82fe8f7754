"""SIGINT/SIGKILL trials of a real sample release: does the record survive, is anything lost or left behind?

Each trial starts `invoke release --sample` (Bazel in the build container, docker build, push to the local
registry, record), sends SIGINT (odd trials, a Ctrl-C) or SIGKILL (even trials) after a random delay within
a clean release's duration (half the trials) or shortly after a later stage (locate, hookpoints, image, push,
record) begins (the other half), lets the engine settle, inspects, then re-runs the same version, which must
succeed. Printed: one row per trial, then the table (trials, survived = record parses with no partial
release, lost records (must be 0), WORKSPACE original after the kill / after the re-run, leftovers, re-run
ok) and the recovery cost: (interrupted run + re-run) / one clean release, measured in the same run.

Usage: .venv/bin/python benchmarks/bench_faults.py [--trials 20] [--seed N]   (needs scripts/setup.sh)
Exit status 1 if a record was broken or lost, a re-run failed, or something was left behind.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fault_trials import (
    SampleRelease,
    own_base_image,
    remove_base_image,
    remove_tags,
    run_trial,
    schedule,
)


def throwaway_signing_key(folder: Path) -> Path:
    import subprocess

    key = folder / "bench-signing-key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
    key.chmod(0o600)
    return key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="number of trials (default 20)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="random seed for the delays")
    args = parser.parse_args()

    import docker

    client = docker.from_env()
    namespace = f"hbbench{int(time.time())}"
    dist = Path(tempfile.mkdtemp(prefix="hookbuild-bench-faults-"))
    os.environ["HOOKBUILD_SIGNING_KEY"] = str(throwaway_signing_key(dist))  # releases sign (issue 13)
    sample = SampleRelease(dist=dist, namespace=namespace, base_image=own_base_image(client, namespace))
    try:
        warm = sample.run("100.0")
        if warm.returncode != 0:
            print(f"a clean sample release fails; run scripts/setup.sh\n{warm.stderr[-2000:]}")
            return 1
        clean = []
        for minor in (98, 99):
            started = time.monotonic()
            ran = sample.run(f"100.{minor}")
            clean.append(time.monotonic() - started)
            assert ran.returncode == 0, ran.stderr[-2000:]
        duration = statistics.median(clean)
        print(f"seed {args.seed}; a clean warm sample release takes {duration:.2f}s\n")
        rng = random.Random(args.seed)
        versions = {f"101.{n}" for n in range(1, args.trials + 1)} | {"100.0", "100.98", "100.99"}
        known: dict[str, str] = {}
        trials, costs = [], []
        for number in range(1, args.trials + 1):
            sig, stage, delay = schedule(rng, number, duration)
            started = time.monotonic()
            trial = run_trial(
                client,
                sample,
                number=number,
                sig=sig,
                delay=delay,
                version=f"101.{number}",
                versions=versions,
                known=known,
                stage=stage,
            )
            costs.append(time.monotonic() - started)
            trials.append(trial)
            print(trial.row())
    finally:
        remove_tags(client, sample)
        remove_base_image(client, sample)

    interrupted = [t for t in trials if t.killed_rc != 0]
    survived = sum(t.survived for t in trials)
    lost = sum(len(t.lost) for t in trials)
    ws_after_kill = sum(t.after_kill.workspace_original for t in trials)
    ws_after_rerun = sum(t.after_rerun.workspace_original for t in trials)
    leftovers = sum(len(t.leftovers) for t in trials)
    sigint_leftovers = sum(len(t.interrupt_leftovers) for t in trials if t.signal == "SIGINT")
    rerun_ok = sum(t.rerun_ok for t in trials)
    stages = Counter(t.stage for t in interrupted)
    rows = [
        ("trials", f"{len(trials)} ({len(interrupted)} interrupted before the end, the rest finished first)"),
        ("interrupted in stage", ", ".join(f"{k} {v}" for k, v in stages.most_common())),
        ("survived (record parses, no partial)", f"{survived}/{len(trials)}"),
        ("lost records (must be 0)", str(lost)),
        (
            "WORKSPACE original right after",
            f"{ws_after_kill}/{len(trials)} (a SIGKILL mid-build leaves it edited)",
        ),
        ("WORKSPACE original after the re-run", f"{ws_after_rerun}/{len(trials)}"),
        ("leftovers after SIGINT", str(sigint_leftovers)),
        ("leftovers after the re-run", str(leftovers)),
        ("re-run ok", f"{rerun_ok}/{len(trials)}"),
        ("recovery cost (trial / clean release)", f"{statistics.median(costs) / duration:.2f}x median"),
    ]
    print()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"\nscratch: {dist}")
    ok = survived == len(trials) and lost == 0 and rerun_ok == len(trials)
    return 0 if ok and leftovers == 0 and sigint_leftovers == 0 and ws_after_rerun == len(trials) else 1


if __name__ == "__main__":
    sys.exit(main())
