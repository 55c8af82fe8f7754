"""Exit codes: distinct per kind of failure, documented in the README, and held where they arise (issue 12).

Build (4) and image/push (5) are held by test_release.py, record conflict (6) by test_tasks_record.py,
registry drift (7) by test_registry_truth.py, a breaking `symbols --diff` (8) by test_tasks_symbols.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from conftest import INVOKE, ROOT, run_task

from hookbuild import fsutil
from hookbuild.errors import ExitCode


def test_codes_are_distinct_and_the_readme_documents_each() -> None:
    values = [code.value for code in ExitCode]
    assert len(values) == len(set(values))
    assert ExitCode.USAGE == 2 and ExitCode.INTERRUPTED == 130
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Exit codes") :]
    section = section[: section.index("\n## ", 1)]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)}
    assert documented == set(values)


def test_usage_is_2_and_one_line(record_copy: Path) -> None:
    ran = run_task("bump", "--minor", "--summary", "s", "--versions-file", str(record_copy))
    assert ran.returncode == ExitCode.USAGE
    assert ran.stderr.startswith("error: bump needs --variant") and ran.stderr.count("\n") == 1


def test_ctrl_c_is_130(record_copy: Path) -> None:
    """A bump waiting for the record's lock is interrupted: one line, exit 130, the record untouched."""
    before = record_copy.read_bytes()
    with fsutil.locked(Path(f"{record_copy}.lock")):
        proc = subprocess.Popen(
            [
                str(INVOKE),
                "bump",
                "-v",
                "istio",
                "--minor",
                "--summary",
                "s",
                "--versions-file",
                str(record_copy),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        waiting = proc.stderr.readline()  # the bump says it waits for the lock
        assert "waiting for another writer" in waiting, waiting
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == ["error: interrupted"]
    assert record_copy.read_bytes() == before
