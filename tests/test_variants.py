"""Every line of the record builds: each variant's sample release, pushed, recorded, queryable, traceable."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import docker
import pytest
from bpf import count_hits
from conftest import NAMESPACE, run_process
from test_remote_cache import envoy_build_dir

from hookbuild.binary import symbols
from hookbuild.images import engine

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.bazel]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dist")


def release(dist: Path, *args: str) -> dict[str, object]:
    ran = run_process("release", "--sample", "--json", *args, env={"HOOKBUILD_DIST": str(dist)})
    assert ran.returncode == 0, ran.stderr[-3000:]
    result: dict[str, object] = json.loads(ran.stdout)
    return result


def recorded(dist: Path, variant: str) -> list[dict[str, object]]:
    ran = run_process(
        "versions", "--variant", variant, "--json", "--versions-file", str(dist / "sample" / "versions.toml")
    )
    assert ran.returncode == 0, ran.stderr
    entries: list[dict[str, object]] = json.loads(ran.stdout)
    return entries


def traced_hits(
    binary: Path, script: Path, image_path: str, tmp_path: Path, *, unsafe: bool
) -> dict[str, int]:
    """Run the shipped bpftrace script (pointed at `binary` instead of its path in the image) for real."""
    local = tmp_path / script.name
    local.write_text(script.read_text().replace(f"uprobe:{image_path}:", f"uprobe:{binary}:"))
    with subprocess.Popen(
        [str(binary), "--iterations", "0", "--interval-ms", "2"], stdout=subprocess.DEVNULL
    ) as envoy:
        try:
            return count_hits(local, envoy.pid, unsafe=unsafe, while_attached=lambda: time.sleep(1))
        finally:
            envoy.kill()


def test_envoy_variant_from_envoys_ci_scripts(
    dist: Path, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    result = release(dist, "--variant", "envoy", "--version", "1.0")
    assert result["image"] == f"127.0.0.1:5000/{NAMESPACE}/envoy:1.0"
    build_dir = envoy_build_dir(dist) / "envoy" / "x64" / "bin"
    assert (build_dir / "release.tar.zst").is_file()  # where do_ci.sh release.server_only puts it
    envoy = engine.copy_file(docker_client, str(result["pinned"]), "/usr/local/bin/envoy", tmp_path / "envoy")
    info = symbols.read_binary(envoy)
    assert (
        not info.stripped and len(info.hookpoints) == result["hookpoints"] == 4
    )  # dbg/envoy, not the stripped one
    assert [e["version"] for e in recorded(dist, "envoy")] == ["1.0"]


def test_cilium_variant_with_symbols_and_its_patch(
    dist: Path, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    result = release(dist, "--variant", "cilium", "--version", "2.3")
    envoy = engine.copy_file(
        docker_client, str(result["pinned"]), "/usr/bin/cilium-envoy", tmp_path / "cilium-envoy"
    )
    info = symbols.read_binary(envoy)
    names = {h.function for h in info.hookpoints}
    assert "Envoy::Network::hookpointCiliumPolicyCheck" in names  # from cilium's patches/, applied to a copy
    assert not info.stripped
    entry = next(e for e in recorded(dist, "cilium") if e["version"] == "2.3")
    assert entry["release"]["digest"] == result["digest"]  # type: ignore[index]
    # The release's scripts regenerate from the record alone, and probe Cilium's path in its image.
    script = dist / "sample" / "cilium" / "2.3" / "trace_all.sh"
    shipped = script.read_text()
    script.unlink()
    ran = run_process(
        "trace-script",
        "cilium@2.3",
        "--versions-file",
        str(dist / "sample" / "versions.toml"),
        env={"HOOKBUILD_DIST": str(dist)},
    )
    assert ran.returncode == 0, ran.stderr
    assert script.read_text() == shipped and "ENVOY=/usr/bin/cilium-envoy" in shipped


@pytest.mark.bpf
def test_cilium_stripped_release_is_traced_by_debug_addresses(
    dist: Path, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    result = release(dist, "--variant", "cilium", "--version", "2.4", "--stripped")
    shipped = engine.copy_file(
        docker_client, str(result["pinned"]), "/usr/bin/cilium-envoy", tmp_path / "stripped"
    )
    info = symbols.read_binary(shipped)
    assert info.stripped and not info.hookpoints  # the 2.1 case: a release build, no symbols at all
    script = dist / "sample" / "cilium" / "2.4" / "trace.bt"
    assert "--unsafe" in script.read_text()
    hits = traced_hits(shipped, script, "/usr/bin/cilium-envoy", tmp_path, unsafe=True)
    debug = symbols.read_binary(shipped, debug_binary=dist / "sample" / "cilium" / "2.4" / "envoy.debug")
    assert set(hits) == {h.name for h in debug.hookpoints} and all(count > 0 for count in hits.values())


def test_unsupported_stripped_is_one_clear_error(dist: Path) -> None:
    ran = run_process(
        "release", "--sample", "--variant", "envoy", "--stripped", env={"HOOKBUILD_DIST": str(dist)}
    )
    assert ran.returncode == 2
    assert ran.stderr.strip() == "error: --stripped is not offered by variant envoy (drop --stripped)"


def test_istio_perf_builds_on_the_recorded_istio_release(
    dist: Path, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    istio = release(dist, "--variant", "istio", "--version", "12.5")
    perf = release(dist, "--variant", "istio-perf", "--version", "1.2", "--based-on", "istio@12.5")
    assert perf["durations"]["check"] >= 0  # type: ignore[index]  # `perf --version` ran in the image
    envoy = engine.copy_file(docker_client, str(perf["pinned"]), "/usr/local/bin/envoy", tmp_path / "envoy")
    assert symbols.read_binary(envoy).sha256 == istio["binary_sha256"]  # the istio release's Envoy, unchanged
    output = docker_client.containers.run(str(perf["pinned"]), entrypoint=["perf", "--version"], remove=True)
    assert b"perf version" in output
    helper = docker_client.containers.run(
        str(perf["pinned"]),
        entrypoint=["sh", "-c", "test -x /usr/local/bin/hookbuild-perf-fifo && echo ok"],
        remove=True,
    )
    assert helper.strip() == b"ok"
    entry = next(e for e in recorded(dist, "istio-perf") if e["version"] == "1.2")
    assert entry["based_on"] == "istio@12.5" and entry["packages"] == ["linux-perf"]
    assert (
        entry["release"]["envoy_commit"]
        == next(  # type: ignore[index]
            e for e in recorded(dist, "istio") if e["version"] == "12.5"
        )["release"]["envoy_commit"]
    )


def test_istio_perf_on_a_pre_hookbuild_release_is_refused(dist: Path) -> None:
    ran = run_process(
        "release",
        "--sample",
        "--variant",
        "istio-perf",
        "--based-on",
        "istio@10.1",
        env={"HOOKBUILD_DIST": str(dist)},
    )
    assert ran.returncode == 2 and "istio@10.1 predates hookbuild" in ran.stderr
    assert os.path.exists(dist / "sample" / "versions.toml")
