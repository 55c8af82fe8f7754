"""Generated uprobe scripts: bpftrace run for real against a driver (exact hit counts), bcc script shape."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from elf_samples import Samples

from hookbuild import probes, symbols

CALLS = 1000
# main() calls each hookpoint CALLS times, hookpoint_c every other iteration, hookpointDead's calls are gone.
EXPECTED = {"hookpoint_c": CALLS // 2, "_Z13hookpointDeadv": 0}


def _bpftrace_ready() -> str:
    tool = shutil.which("bpftrace")
    if tool is None or os.geteuid() != 0:
        pytest.fail("bpftrace (as root) is needed: run scripts/setup.sh")
    if not os.path.ismount("/sys/kernel/tracing"):
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"], check=False)
    return tool


def _trace(tool: str, binary: Path, script: Path, *, unsafe: bool) -> dict[str, int]:
    driver = subprocess.Popen(
        [str(binary), str(CALLS), "wait"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    tracer = subprocess.Popen(
        [tool, *(["--unsafe"] if unsafe else []), str(script), str(driver.pid)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tracer.stdout is not None and driver.stdin is not None
        seen = []
        for line in tracer.stdout:  # bpftrace prints our BEGIN line once every probe is attached
            seen.append(line)
            if line.startswith("hookbuild: tracing"):
                break
        else:
            pytest.fail(
                f"bpftrace did not start: {''.join(seen)} {tracer.stderr.read() if tracer.stderr else ''}"
            )
        driver.stdin.write(b"g")
        driver.stdin.close()
        assert driver.wait(timeout=30) == 0
        tracer.send_signal(2)
        out, err = tracer.communicate(timeout=30)
    finally:
        for proc in (driver, tracer):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    hits = {m[1]: int(m[2]) for m in re.finditer(r"^@hits\[(.*)\]: (\d+)$", out, re.M)}
    assert hits, f"no counts from bpftrace: {out} {err}"
    return hits


def _expected(info: symbols.BinaryInfo) -> dict[str, int]:
    return {h.name: EXPECTED.get(h.name, CALLS) for h in info.hookpoints if EXPECTED.get(h.name, CALLS)}


@pytest.mark.bpf
def test_bpftrace_counts_every_hookpoint_by_name(samples: Samples, tmp_path: Path) -> None:
    tool = _bpftrace_ready()
    info = symbols.read_binary(samples.lld)
    script = tmp_path / "trace.bt"
    script.write_text(probes.bpftrace_script(info, binary=str(samples.lld)))
    assert not probes.needs_unsafe(info)
    assert _trace(tool, samples.lld, script, unsafe=False) == _expected(info)


@pytest.mark.bpf
def test_bpftrace_stripped_binary_by_offset(samples: Samples, tmp_path: Path) -> None:
    tool = _bpftrace_ready()
    info = symbols.read_binary(samples.stripped, debug_binary=samples.lld)
    text = probes.bpftrace_script(info, binary=str(samples.stripped))
    assert probes.needs_unsafe(info) and "--unsafe" in text
    assert f":{info.hookpoints[0].file_offset:#x} " in text  # LLD PIE: offset != address
    script = tmp_path / "trace.bt"
    script.write_text(text)
    assert _trace(tool, samples.stripped, script, unsafe=True) == _expected(info)


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
