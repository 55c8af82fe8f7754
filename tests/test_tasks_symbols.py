"""`invoke symbols` as a process: JSON equal to nm, one-line errors, --diff exit status, --scripts-dir."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_invoke
from elf_samples import Samples, nm_hookpoints


def test_json_equals_nm(samples: Samples) -> None:
    ran = run_invoke("symbols", str(samples.gcc), "--json")
    assert ran.returncode == 0, ran.stderr
    data = json.loads(ran.stdout)
    assert {(h["name"], int(h["address"], 16)) for h in data["hookpoints"]} == nm_hookpoints(samples.gcc)
    assert "hookpointDead()" in ran.stderr and "never fires" in ran.stderr


def test_table_and_scripts(samples: Samples, tmp_path: Path) -> None:
    ran = run_invoke("symbols", str(samples.lld), "--scripts-dir", str(tmp_path / "s"))
    assert ran.returncode == 0, ran.stderr
    assert "Envoy::Http::hookpointDecodeHeaders(long, char const*)" in ran.stdout
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "hookpoints.json",
        "trace.bt",
        "trace_bcc.py",
    ]


def test_stripped(samples: Samples) -> None:
    ran = run_invoke("symbols", str(samples.stripped), "--pattern", "hookpointExported")
    assert ran.returncode == 0 and "stripped" in ran.stdout and "--debug-binary" in ran.stderr
    none = run_invoke("symbols", str(samples.stripped), "--pattern", "hookpointA")
    assert none.returncode == 1
    assert none.stderr.startswith("error: ") and "stripped" in none.stderr and "--debug-binary" in none.stderr
    full = run_invoke("symbols", str(samples.stripped), "--debug-binary", str(samples.lld), "--json")
    assert full.returncode == 0, full.stderr
    assert len(json.loads(full.stdout)["hookpoints"]) == len(nm_hookpoints(samples.lld))


def test_bad_inputs_one_line(samples: Samples, tmp_path: Path) -> None:
    for path, words in (
        (samples.elf32, "32-bit"),
        (samples.text, "not an ELF"),
        (tmp_path / "missing", "no such file"),
    ):
        ran = run_invoke("symbols", str(path))
        assert ran.returncode != 0
        assert ran.stderr.count("\n") == 1 and ran.stderr.startswith("error: ") and words in ran.stderr
        assert "Traceback" not in ran.stderr


def test_diff_exit_status(samples: Samples) -> None:
    same = run_invoke("symbols", "--diff", str(samples.lld), str(samples.gcc))
    assert same.returncode == 0, same.stdout + same.stderr
    changed = run_invoke("symbols", "--diff", str(samples.lld), str(samples.changed), "--json")
    assert changed.returncode == 8  # ExitCode.BREAKING_DIFF: CI tells it from a failure to read the files
    data = json.loads(changed.stdout)
    assert (
        data["breaking"] and data["signature_changed"][0]["function"] == "Envoy::Http::hookpointDecodeHeaders"
    )


def test_cache_in_xdg_cache_home(samples: Samples, tmp_path: Path) -> None:
    import shutil
    import time

    binary = tmp_path / "envoy"
    shutil.copy(samples.gcc, binary)
    time.sleep(max(0.0, binary.stat().st_ctime + 2.1 - time.time()))  # older than the racy window
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    store = tmp_path / "xdg" / "hookbuild" / "symbols"
    uncached = run_invoke("symbols", str(binary), "--json", "--no-cache", env=env)
    assert uncached.returncode == 0, uncached.stderr
    assert not store.exists()
    runs = [run_invoke("symbols", str(binary), "--json", env=env) for _ in range(2)]
    assert all(r.stdout == uncached.stdout and r.stderr == uncached.stderr for r in runs)
    assert len(list(store.glob("*.json"))) == 1
