"""Running a generated bpftrace script for real (as root) and reading its per-hookpoint counts."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

_HITS = re.compile(r"^@hits\[(.*)\]: (\d+)$", re.M)


def bpftrace() -> str:
    tool = shutil.which("bpftrace")
    if tool is None or os.geteuid() != 0:
        pytest.fail("bpftrace (as root) is needed: run scripts/setup.sh")
    if not os.path.ismount("/sys/kernel/tracing"):
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"], check=False)
    return tool


def count_hits(script: Path, pid: int, *, unsafe: bool, while_attached: Callable[[], None]) -> dict[str, int]:
    """Attach `script` to `pid`, run `while_attached`, stop the tracer with Ctrl-C, return @hits."""
    tracer = subprocess.Popen(
        [bpftrace(), *(["--unsafe"] if unsafe else []), str(script), str(pid)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tracer.stdout is not None
        seen = []
        for line in tracer.stdout:  # the script's BEGIN line comes once every probe is attached
            seen.append(line)
            if line.startswith("hookbuild: tracing"):
                break
        else:
            pytest.fail(
                f"bpftrace did not start: {''.join(seen)} {tracer.stderr.read() if tracer.stderr else ''}"
            )
        while_attached()
        tracer.send_signal(signal.SIGINT)
        out, err = tracer.communicate(timeout=30)
    finally:
        if tracer.poll() is None:
            tracer.kill()
        tracer.wait()
    hits = {m[1]: int(m[2]) for m in _HITS.finditer(out)}
    assert hits, f"no counts from bpftrace: {out} {err}"
    return hits
