"""Generated uprobe scripts: bpftrace run for real against a driver (exact hit counts), bcc script shape."""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest
from bpf import count_hits
from elf_samples import Samples

from hookbuild.binary import symbols
from hookbuild.probes import scripts as probes

CALLS = 1000
# main() calls each hookpoint CALLS times, hookpoint_c every other iteration, hookpointDead's calls are gone.
EXPECTED = {"hookpoint_c": CALLS // 2, "_Z13hookpointDeadv": 0}


def _trace(binary: Path, script: Path, *, unsafe: bool) -> dict[str, int]:
    """The driver calls its hookpoints CALLS times once it reads a byte: all of them while traced."""
    with subprocess.Popen(
        [str(binary), str(CALLS), "wait"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    ) as driver:
        assert driver.stdin is not None

        def run_driver() -> None:
            assert driver.stdin is not None
            driver.stdin.write(b"g")
            driver.stdin.close()
            assert driver.wait(timeout=30) == 0

        try:
            return count_hits(script, driver.pid, unsafe=unsafe, while_attached=run_driver)
        finally:
            if driver.poll() is None:
                driver.kill()


def _expected(info: symbols.BinaryInfo) -> dict[str, int]:
    return {h.name: EXPECTED.get(h.name, CALLS) for h in info.hookpoints if EXPECTED.get(h.name, CALLS)}


@pytest.mark.bpf
def test_bpftrace_counts_every_hookpoint_by_name(samples: Samples, tmp_path: Path) -> None:
    info = symbols.read_binary(samples.lld)
    script = tmp_path / "trace.bt"
    script.write_text(probes.bpftrace_script(info, binary=str(samples.lld)))
    assert not probes.needs_unsafe(info)
    assert _trace(samples.lld, script, unsafe=False) == _expected(info)


@pytest.mark.bpf
def test_bpftrace_stripped_binary_by_offset(samples: Samples, tmp_path: Path) -> None:
    info = symbols.read_binary(samples.stripped, debug_binary=samples.lld)
    text = probes.bpftrace_script(info, binary=str(samples.stripped))
    assert probes.needs_unsafe(info) and "--unsafe" in text
    assert f":{info.hookpoints[0].file_offset:#x} " in text  # LLD PIE: offset != address
    script = tmp_path / "trace.bt"
    script.write_text(text)
    assert _trace(samples.stripped, script, unsafe=True) == _expected(info)


def _attach_calls(source: str) -> list[dict[str, object]]:
    compile(source, "trace_bcc.py", "exec")
    calls = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "attach_uprobe"
        ):
            calls.append(
                {
                    k.arg: ast.literal_eval(k.value)
                    if isinstance(k.value, ast.Constant)
                    else ast.unparse(k.value)
                    for k in node.keywords
                }
            )
    return calls


def test_bcc_script_by_symbol(samples: Samples) -> None:
    info = symbols.read_binary(samples.lld)
    calls = _attach_calls(probes.bcc_script(info))
    assert [c["sym"] for c in calls] == [h.name for h in info.hookpoints]
    assert all(c["name"] == "args.binary" and c["pid"] == "args.pid" for c in calls)
    assert "BINARY = '/usr/local/bin/envoy'" in probes.bcc_script(info)


def test_bcc_script_stripped_by_virtual_address(samples: Samples) -> None:
    info = symbols.read_binary(samples.stripped, debug_binary=samples.lld)
    calls = _attach_calls(probes.bcc_script(info, binary="/proc/1/root/usr/local/bin/envoy"))
    assert [c["addr"] for c in calls] == [h.address for h in info.hookpoints]
    exported = symbols.read_binary(samples.stripped)  # .dynsym survives strip: still by name
    assert [c["sym"] for c in _attach_calls(probes.bcc_script(exported))] == ["_Z17hookpointExportedi"]


def test_write_scripts(samples: Samples, tmp_path: Path) -> None:
    info = symbols.read_binary(samples.lld)
    paths = probes.write_scripts(info, tmp_path / "out", binary="/proc/42/root/usr/local/bin/envoy")
    assert [p.name for p in paths] == ["trace.bt", "trace_bcc.py", "hookpoints.json"]
    assert (
        "uprobe:/proc/42/root/usr/local/bin/envoy:_Z17hookpointExportedi /pid == $1/" in paths[0].read_text()
    )
    assert os.access(paths[0], os.X_OK) and os.access(paths[1], os.X_OK)
