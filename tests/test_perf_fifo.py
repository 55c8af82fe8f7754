"""istio-perf image: dockerfiles/istio_perf.dockerfile on a real istio-release image, real perf, real FIFO.

The "release" is custom_istio.dockerfile FROM the sample proxyv2 (Debian) with a g++-built sample Envoy
(same sources and flags as its Bazel genrule); istio_perf.dockerfile adds linux-perf through apt and the
perf-FIFO helper. Containers run with SYS_ADMIN (perf_event_open), Envoy with --perf-fifo, the helper
records it, and `perf report` / `perf script` must read samples of Envoy's parsing code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

ENVOY_SRC = ROOT / "examples" / "envoy"
SAMPLE_PROXYV2 = "hookbuild-sample/proxyv2:sample"
HELPER = "/usr/local/bin/hookbuild-perf-fifo"
FIFO = "/tmp/hookbuild-perf.fifo"
OUTDIR = "/tmp/hookbuild-perf"
PARSE_SYMBOL = "parseHeadersWork"
# Envoy spends 250 ms of CPU per parse window, so every recording has samples of it. Windows are 1.5 s
# apart: each one overwrites parse.data, and a TERM sent after a window must land before the next one
# starts, also on a loaded machine (an exec there can take several hundred ms).
ENVOY_ARGS = ["--perf-fifo", FIFO, "--interval-ms", "1500", "--parse-work-us", "250000", "--print-every", "1"]

pytestmark = pytest.mark.docker


def _build_envoy(out: Path) -> Path:
    """The sample envoy-static, compiled like its genrule (envoy/bazel/envoy_build_system.bzl)."""
    if shutil.which("g++") is None:
        pytest.fail("g++ not found; run scripts/setup.sh")
    version = (ENVOY_SRC / "VERSION.txt").read_text().strip()
    sources = sorted(
        str(path.relative_to(ENVOY_SRC))
        for path in [ENVOY_SRC / "source/exe/main.cc", *ENVOY_SRC.glob("source/common/*/*.cc")]
    )
    binary = out / "envoy"
    # Relative paths from a fixed directory: the same sources give the same bytes (docker layer cache).
    subprocess.run(
        ["g++", "-std=c++17", "-O2", "-g", "-Wall", "-Werror", "-fno-omit-frame-pointer", "-I.",
         f'-DENVOY_VERSION="{version}"', '-DENVOY_BUILD_FLAVOR="envoy"', "-static-pie", "-o", str(binary),
         *sources],
        cwd=ENVOY_SRC, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return binary


def _build(client: Any, context: Path, dockerfile: str, tag: str, buildargs: dict[str, str]) -> str:
    """Classic-builder build with the live stream checked for errors (the SDK's build() hides them)."""
    lines: list[str] = []
    for chunk in client.api.build(
        path=str(context), dockerfile=dockerfile, tag=tag, buildargs=buildargs, rm=True, forcerm=True,
        decode=True,
    ):  # fmt: skip
        if "error" in chunk or "errorDetail" in chunk:
            pytest.fail(f"docker build of {dockerfile} failed: {chunk.get('error')}\n{''.join(lines[-30:])}")
        lines.append(str(chunk.get("stream", "")))
    image_id: str = client.images.get(tag).id
    return image_id


@pytest.fixture(scope="module")
def perf_image(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    try:
        docker_client.images.get(SAMPLE_PROXYV2)
    except Exception:
        pytest.fail(f"{SAMPLE_PROXYV2} missing; run scripts/setup.sh")
    work = tmp_path_factory.mktemp("istio-perf")
    envoy = _build_envoy(work)
    tag = f"hookbuild-test/istio-perf-{uuid.uuid4().hex[:8]}"
    timings: dict[str, float] = {}

    # 1. the istio release (what the pipeline records and pins): proxyv2 + the hookpoint Envoy
    release_ctx = work / "release"
    (release_ctx / "tracing").mkdir(parents=True)
    shutil.copyfile(ROOT / "dockerfiles" / "custom_istio.dockerfile", release_ctx / "custom_istio.dockerfile")
    os.link(envoy, release_ctx / "envoy")
    (release_ctx / "tracing" / "hookpoints.bt").write_text("// release's uprobe script\n")
    started = time.monotonic()
    release_id = _build(
        docker_client,
        release_ctx,
        "custom_istio.dockerfile",
        f"{tag}:release",
        {"BASE_IMAGE": SAMPLE_PROXYV2},
    )
    timings["release image"] = time.monotonic() - started

    # 2. istio-perf on top, with the context the release pipeline makes (+ perf-fifo from dockerfiles/)
    perf_ctx = work / "perf"
    (perf_ctx / "tracing").mkdir(parents=True)
    shutil.copyfile(ROOT / "dockerfiles" / "istio_perf.dockerfile", perf_ctx / "istio_perf.dockerfile")
    shutil.copyfile(ROOT / "dockerfiles" / "perf-fifo", perf_ctx / "perf-fifo")  # mode dropped on purpose
    os.link(envoy, perf_ctx / "envoy")
    (perf_ctx / "tracing" / "hookpoints.bt").write_text("// perf release's uprobe script\n")
    started = time.monotonic()
    perf_id = _build(
        docker_client, perf_ctx, "istio_perf.dockerfile", f"{tag}:perf",
        {"BASE_IMAGE": release_id, "PACKAGES": "linux-perf"},
    )  # fmt: skip
    timings["perf image (apt-get install linux-perf)"] = time.monotonic() - started
    print(f"\nistio-perf image build: {', '.join(f'{k} {v:.1f} s' for k, v in timings.items())}")
    yield {"id": perf_id, "release_id": release_id, "envoy": envoy, "tag": tag}
    for name in (f"{tag}:perf", f"{tag}:release"):
        docker_client.images.remove(name, force=True)


def _exec(container: Any, cmd: list[str] | str, **kwargs: Any) -> tuple[int, str]:
    code, out = container.exec_run(cmd, **kwargs)
    return code, out.decode(errors="replace") if isinstance(out, bytes) else str(out)


def _run(client: Any, image: str, **kwargs: Any) -> Any:
    # The seed's sidecar securityContext adds SYS_ADMIN (Docker's seccomp profile then allows
    # perf_event_open). Not `privileged`: this VM's capability bounding set lacks CAP_SYS_RESOURCE, so
    # runc cannot start a fully privileged container here.
    return client.containers.run(image, detach=True, cap_add=["SYS_ADMIN"], **kwargs)


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _helper_gone(container: Any) -> bool:
    return (
        _exec(container, ["sh", "-c", "kill -0 $(cat /tmp/helper.pid) 2>/dev/null || echo gone"])[1].strip()
        == "gone"
    )


def _assert_parse_samples(container: Any, data: str) -> None:
    code, header = _exec(container, ["perf", "report", "-i", data, "--header-only"])
    assert code == 0 and "# perf version" in header, header
    code, report = _exec(
        container, ["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "sym"]
    )
    assert code == 0, report
    assert "# Samples:" in report and PARSE_SYMBOL in report, report
    code, script = _exec(container, ["perf", "script", "-i", data, "-F", "comm,ip,sym", "-G"])
    samples = [line for line in script.splitlines() if line.strip().startswith("envoy")]
    assert code == 0 and len(samples) >= 10, script[-2000:]
    assert any(PARSE_SYMBOL in line for line in script.splitlines()), script[-2000:]


def test_image_keeps_the_release_and_adds_perf(docker_client: Any, perf_image: dict[str, Any]) -> None:
    image = docker_client.images.get(perf_image["id"])
    assert image.attrs["Config"]["Entrypoint"] == ["/usr/local/bin/pilot-agent"]
    container = _run(docker_client, perf_image["id"], entrypoint=["sleep", "60"])
    try:
        code, out = _exec(container, ["perf", "--version"])
        assert code == 0 and out.startswith("perf version"), out
        code, out = _exec(container, ["perf", "stat", "-e", "task-clock", "true"])
        assert code == 0 and "task-clock" in out, out
        code, out = _exec(container, ["sh", "-c", f"test -x {HELPER} && head -1 {HELPER}"])
        assert code == 0 and out.strip() == "#!/bin/sh", out
        code, out = _exec(container, ["cat", "/usr/local/share/hookbuild/hookpoints.bt"])
        assert code == 0 and "perf release" in out, out
        code, out = _exec(container, ["sha256sum", "/usr/local/bin/envoy"])  # the release's Envoy, untouched
        assert out.split()[0] == hashlib.sha256(perf_image["envoy"].read_bytes()).hexdigest()
        code, out = _exec(
            container, ["sh", "-c", "ls /var/lib/apt/lists | grep -v -e '^partial$' -e '^lock$' | wc -l"]
        )
        assert code == 0 and out.strip() == "0", out  # apt lists removed from the layer
    finally:
        container.remove(force=True)


def test_helper_records_envoy_parsing_under_pilot_agent(
    docker_client: Any, perf_image: dict[str, Any]
) -> None:
    """Sidecar shape: pilot-agent (PID 1) runs Envoy as a child; the helper starts later and finds it.

    Envoy runs before any reader exists (writes skipped, no blocking), the helper records start/stop
    windows, TERM stops it cleanly, and Envoy keeps serving after the reader left (no SIGPIPE death).
    """
    container = _run(docker_client, perf_image["id"], command=ENVOY_ARGS)
    try:
        _wait_for(
            lambda: "iteration 2:" in container.logs().decode(), 10, "Envoy iterations without a reader"
        )
        code, out = _exec(container, ["sh", "-c", f"test -e {FIFO} || echo no-fifo"])
        assert out.strip() == "no-fifo"
        _exec(
            container, ["sh", "-c", f"echo $$ >/tmp/helper.pid; exec {HELPER} 2>/tmp/helper.log"], detach=True
        )

        def recorded() -> bool:
            return "stopped perf" in _exec(container, ["cat", "/tmp/helper.log"])[1]

        _wait_for(recorded, 20, "a finished recording (helper log)")
        code, out = _exec(container, ["sh", "-c", "kill -TERM $(cat /tmp/helper.pid)"])
        assert code == 0, out
        _wait_for(lambda: _helper_gone(container), 10, "the helper to exit on TERM")
        log = _exec(container, ["cat", "/tmp/helper.log"])[1]
        assert "recording pid" in log and "perf record failed" not in log, log
        code, out = _exec(
            container, ["sh", "-c", f"test -e {FIFO} || echo removed; cat /proc/[0-9]*/comm | grep -c ^perf"]
        )
        assert out.split() == ["removed", "0"], out  # the FIFO it made is gone, no perf left behind
        _assert_parse_samples(container, f"{OUTDIR}/parse.data")
        before = container.logs().decode().count("all hookpoints called")
        _wait_for(
            lambda: container.logs().decode().count("all hookpoints called") >= before + 2, 10,
            "Envoy to keep running after the reader left",
        )  # fmt: skip
        container.stop(timeout=10)  # pilot-agent forwards TERM to Envoy
        assert container.wait(timeout=10)["StatusCode"] == 0
    finally:
        container.remove(force=True)


def test_helper_stops_perf_when_envoy_exits(docker_client: Any, perf_image: dict[str, Any]) -> None:
    """EOF: Envoy dies inside a parse window (no "stop" written); its FIFO end closes and the helper
    finishes that recording itself, then exits (PERF_FIFO_ONCE=1)."""
    container = _run(docker_client, perf_image["id"], entrypoint=["sleep", "120"])
    try:
        helper = (
            f"echo $$ >/tmp/helper.pid; PERF_FIFO_ONCE=1 PERF_OUTDIR=/tmp/out exec {HELPER} 2>/tmp/helper.log"
        )
        _exec(container, ["sh", "-c", helper], detach=True)
        _wait_for(lambda: _exec(container, ["test", "-p", FIFO])[0] == 0, 10, "the helper's FIFO")
        envoy = (
            # 3 s windows: the kill must land inside one even when each exec here takes a while.
            f"echo $$ >/tmp/envoy.pid; exec /usr/local/bin/envoy --perf-fifo {FIFO} --interval-ms 1500 "
            "--parse-work-us 3000000 --print-every 1"
        )
        _exec(container, ["sh", "-c", envoy], detach=True)

        def window_open() -> bool:  # a recording started and not stopped yet: Envoy is mid-parse
            log = _exec(container, ["cat", "/tmp/helper.log"])[1]
            return log.count("recording pid") >= 2 and log.count("recording pid") > log.count("stopped perf")

        _wait_for(window_open, 20, "Envoy inside its second parse window")
        time.sleep(1.0)  # a second into the 3 s window: the recording then holds samples of the parse work
        code, out = _exec(container, ["sh", "-c", "kill -KILL $(cat /tmp/envoy.pid)"])
        assert code == 0, out
        _wait_for(lambda: _helper_gone(container), 10, "the helper to exit at EOF")
        log = _exec(container, ["cat", "/tmp/helper.log"])[1]
        assert log.count("recording pid") == log.count("stopped perf") >= 2, log  # the open one finished too
        assert "perf record failed" not in log, log
        assert _exec(container, ["test", "-e", FIFO])[0] != 0  # the FIFO it made is removed
        _assert_parse_samples(container, "/tmp/out/parse.data")
    finally:
        container.remove(force=True)


def test_no_packages_installs_nothing(docker_client: Any, perf_image: dict[str, Any], tmp_path: Path) -> None:
    """PACKAGES empty: the RUN is a no-op (no apt-get update against the network)."""
    (tmp_path / "tracing").mkdir()
    shutil.copyfile(ROOT / "dockerfiles" / "istio_perf.dockerfile", tmp_path / "istio_perf.dockerfile")
    shutil.copyfile(ROOT / "dockerfiles" / "perf-fifo", tmp_path / "perf-fifo")
    tag = f"{perf_image['tag']}:nopkgs"
    image_id = _build(
        docker_client, tmp_path, "istio_perf.dockerfile", tag, {"BASE_IMAGE": perf_image["release_id"]}
    )
    try:
        out = docker_client.containers.run(
            image_id,
            entrypoint=["sh", "-c", f"command -v perf || echo no-perf; test -x {HELPER} && echo helper"],
            remove=True,
        ).decode()
        assert out.split() == ["no-perf", "helper"], out
    finally:
        docker_client.images.remove(tag, force=True)
