"""Faults during a real sample release: the registry drops a push, the engine is unreachable, Bazel fails, the
disk is full when the record is written, the release is interrupted (SIGINT) or killed (SIGKILL) at random
points, two releases of one version race. After each: the record parses and holds no partial release, the
proxy WORKSPACE is original (or restored by the next run), no temporary tags or containers are left, and a
re-run succeeds. (Wrong password, registry down and a broken C++ build are in test_release.py.)

All trials share one sample checkout, Bazel cache and registry namespace (unique per run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from conftest import ROOT, run_process
from fault_trials import (
    SampleRelease,
    inspect_world,
    output_of,
    own_base_image,
    registry_auth,
    remove_base_image,
    remove_tags,
    run_trial,
    schedule,
    settle,
)

from hookbuild import record
from hookbuild.errors import ExitCode

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.bazel, pytest.mark.slow]

TRIALS = 20
SEED = int(os.environ.get("HOOKBUILD_FAULT_SEED", "20260807"))
VERSIONS = {f"{major}.{minor}" for major in (100, 101, 102, 103) for minor in range(60)}


@pytest.fixture(scope="module")
def sample(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[SampleRelease]:
    if not Path("/etc/hookbuild/registry-password").is_file():
        pytest.fail("no local registry credentials; run scripts/setup.sh")
    namespace = f"hbfaults{os.getpid()}"
    release = SampleRelease(
        dist=tmp_path_factory.mktemp("faults"),
        namespace=namespace,
        base_image=own_base_image(docker_client, namespace),
    )
    ran = release.run("100.0")  # materializes the sample, warms Bazel, pushes the base layers
    assert ran.returncode == 0, (
        f"the sample release fails without any fault; run scripts/setup.sh\n{ran.stderr[-2000:]}"
    )
    yield release
    remove_tags(docker_client, release)
    remove_base_image(docker_client, release)


@pytest.fixture(scope="module")
def duration(sample: SampleRelease) -> float:
    """How long a warm sample release takes: the signals land within it."""
    started = time.monotonic()
    ran = sample.run("100.59")
    assert ran.returncode == 0, ran.stderr[-2000:]
    return time.monotonic() - started


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def assert_clean(client: docker.DockerClient, sample: SampleRelease, since: float, version: str) -> None:
    """Nothing recorded for `version`, record intact, WORKSPACE original, no tag or container left."""
    assert not settle(client, sample, since)
    world = inspect_world(client, sample, since=since, versions=VERSIONS)
    assert world.record_ok, (world.record_error, world.partial)
    assert version not in world.recorded
    assert world.workspace_original and not world.workspace_backup
    assert not world.leftover_tags and not world.leftover_containers and not world.temp_files, world


def assert_rerun_records(
    client: docker.DockerClient, sample: SampleRelease, version: str, **kwargs: object
) -> None:
    since = time.time()
    ran = sample.run(version, **kwargs)  # type: ignore[arg-type]
    assert ran.returncode == 0, ran.stderr[-3000:]
    world = inspect_world(client, sample, since=since, versions=VERSIONS)
    assert world.record_ok and version in world.recorded, world
    assert world.workspace_original and not world.leftover_tags and not world.leftover_containers, world


# --- SIGINT / SIGKILL at random points ---------------------------------------------------------------------


def test_interrupted_and_killed_releases(
    sample: SampleRelease, duration: float, docker_client: docker.DockerClient
) -> None:
    rng = random.Random(SEED)
    known: dict[str, str] = {}
    trials = []
    for number in range(1, TRIALS + 1):
        sig, stage, delay = schedule(rng, number, duration)
        trial = run_trial(
            docker_client,
            sample,
            number=number,
            sig=sig,
            delay=delay,
            version=f"101.{number}",
            versions=VERSIONS,
            known=known,
            stage=stage,
        )
        trials.append(trial)
        print(trial.row())
        context = f"seed {SEED}, {trial.row()}"
        assert trial.survived, (context, trial.after_kill)
        assert not trial.lost, (context, trial.lost)
        assert trial.rerun_ok, (context, trial.rerun.stderr[-3000:])
        assert trial.after_rerun.workspace_original and not trial.leftovers, (context, trial.after_rerun)
        if sig is signal.SIGINT:
            # Ctrl-C: the process itself restores the WORKSPACE and removes its tag and containers.
            assert trial.after_kill.workspace_original, context
            assert not trial.interrupt_leftovers, (context, trial.after_kill)
            if trial.killed_rc == 130:
                assert error_line(trial.killed.stderr) == "error: interrupted", context
            else:  # finished first (0), or Ctrl-C while Python was still starting (-2): nothing ran yet
                assert trial.killed_rc in (0, -signal.SIGINT), context
    interrupted = [t for t in trials if t.killed_rc != 0]
    assert len(interrupted) >= TRIALS // 3, "the signals must land before the release ends"


# --- the registry fails in the middle of a push -----------------------------------------------------------


class DroppingRegistry:
    """A real TCP proxy to the local registry that cuts the first blob upload after `cut_after` bytes and
    refuses later uploads with a registry `DENIED` error (so the engine gives up instead of retrying)."""

    UPLOAD = re.compile(rb"(?:POST|PATCH|PUT) /v2/[^ ]*/blobs/uploads/")

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5000), cut_after: int = 1024) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.failing = True
        self.cut = 0
        self.refused = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop = True
        self.server.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _pump(self, source: socket.socket, dest: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                dest.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, dest):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        counting: int | None = None  # bytes of the upload being cut, so far
        try:
            while data := client.recv(65536):
                match = self.UPLOAD.search(data) if self.failing else None
                if match and self.cut:
                    self.refused += 1
                    body = (
                        b'{"errors":[{"code":"DENIED","message":"test proxy: upload refused after a cut",'
                        b'"detail":null}]}'
                    )
                    client.sendall(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
                    break
                if match and counting is None and match.group().split()[0] != b"POST":
                    counting = -match.start()
                if counting is not None:
                    room = self.cut_after - counting
                    if len(data) >= room:
                        upstream.sendall(data[:room])
                        self.cut += 1
                        break  # drop both connections in the middle of the blob
                    counting += len(data)
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def test_registry_drops_the_connection_mid_push(
    sample: SampleRelease, docker_client: docker.DockerClient
) -> None:
    proxy = DroppingRegistry()
    via_proxy = dataclasses.replace(sample, registry=proxy.address)
    credentials = {
        "HOOKBUILD_REGISTRY_USER": "hookbuild",
        "HOOKBUILD_REGISTRY_PASSWORD": registry_auth()["password"],
    }
    before = sample.record.read_bytes()
    since = time.time()
    try:
        ran = via_proxy.run("102.1", env=credentials)
        assert ran.returncode != 0
        line = error_line(ran.stderr)
        assert f"push of {proxy.address}/{sample.namespace}/istio-proxy:102.1 failed" in line, line
        assert proxy.cut >= 1, "the proxy never saw a blob upload to cut"
        assert sample.record.read_bytes() == before
        assert not [
            t
            for i in docker_client.images.list(name=via_proxy.repository)
            for t in i.tags
            if t.endswith(":102.1")
        ]
        assert_clean(docker_client, sample, since, "102.1")
        proxy.failing = False  # the registry recovers: the same release goes through
        rerun = via_proxy.run("102.1", env=credentials)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        entry = record.load(sample.record).get("istio@102.1")
        assert entry.release is not None and entry.release.image.startswith(proxy.address)
        # What the record pins is really in the registry (asked directly, not through the proxy).
        direct = f"{sample.repository}@{entry.release.digest}"
        assert (
            docker_client.images.get_registry_data(direct, auth_config=registry_auth()).id
            == entry.release.digest
        )
    finally:
        proxy.close()
        remove_tags(docker_client, via_proxy)


# --- dockerd unreachable, Bazel failing -------------------------------------------------------------------


def test_docker_engine_unreachable(sample: SampleRelease, docker_client: docker.DockerClient) -> None:
    since = time.time()
    ran = sample.run("102.2", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert ran.returncode == 3
    line = error_line(ran.stderr)
    assert "cannot reach the Docker engine (unix:///nonexistent.sock)" in line and "start dockerd" in line, (
        line
    )
    assert_clean(docker_client, sample, since, "102.2")
    assert_rerun_records(docker_client, sample, "102.2")


def test_bazel_build_fails(sample: SampleRelease, docker_client: docker.DockerClient) -> None:
    since = time.time()
    ran = sample.run("102.3", env={"HOOKBUILD_BAZEL_CONFIGS": "hookbuild-no-such-config"})
    assert ran.returncode == ExitCode.BUILD
    line = error_line(ran.stderr)
    assert "the build failed with exit status" in line and "build.log" in line, line
    assert "hookbuild-no-such-config" in line, line  # Bazel's own complaint is in the tail
    assert_clean(docker_client, sample, since, "102.3")
    assert_rerun_records(docker_client, sample, "102.3")


# --- disk full when the record is written -----------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs ({done.stderr.strip()}); run the tests as root (scripts/setup.sh)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write zeros until the file system says ENOSPC."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 1024):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def test_disk_full_bump_keeps_the_record(tiny_disk: Path) -> None:
    versions = tiny_disk / "versions.toml"
    shutil.copyfile(ROOT / "versions.toml", versions)
    before = versions.read_bytes()
    filler = fill(tiny_disk)
    ran = run_process(
        "bump", "--variant", "istio", "--minor", "--summary", "disk full", "--versions-file", str(versions)
    )
    assert ran.returncode == 1
    line = error_line(ran.stderr)
    assert f"cannot write {versions}: No space left on device" in line and "left unchanged" in line, line
    assert versions.read_bytes() == before
    record.load(versions)
    assert not list(tiny_disk.glob(".versions.toml.*"))
    filler.unlink()
    ran = run_process(
        "bump", "--variant", "istio", "--minor", "--summary", "disk freed", "--versions-file", str(versions)
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() in [str(e.version) for e in record.load(versions).of("istio")]


def test_disk_full_at_the_release_record_step(
    sample: SampleRelease, tiny_disk: Path, docker_client: docker.DockerClient
) -> None:
    versions = tiny_disk / "versions.toml"
    shutil.copyfile(sample.record, versions)
    before = versions.read_bytes()
    filler = fill(tiny_disk)
    argv = (
        "release", "--version", "102.4", "--envoy", str(sample.envoy), "--proxy", str(sample.proxy),
        "--base-image", sample.base_image, "--versions-file", str(versions),
    )  # fmt: skip
    env = sample.env
    since = time.time()
    ran = run_process(*argv, env=env)
    assert ran.returncode == 1
    line = error_line(ran.stderr)
    assert f"cannot write {versions}: No space left on device" in line, line
    assert "▶ record" in ran.stderr  # it got as far as the record step: built and pushed
    assert versions.read_bytes() == before
    assert "102.4" not in [str(e.version) for e in record.load(versions).of("istio")]
    assert not settle(docker_client, sample, since)
    assert not [
        t for i in docker_client.images.list(name=sample.repository) for t in i.tags if t.endswith(":102.4")
    ]
    assert inspect_world(docker_client, sample, since=since, versions=VERSIONS).workspace_original
    filler.unlink()
    rerun = run_process(*argv, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert record.load(versions).get("istio@102.4").release is not None
    docker_client.images.remove(
        f"{sample.repository}:102.4", noprune=True
    )  # recorded in this test's record only


# --- two releases of the same version at once ---------------------------------------------------------------


def test_two_releases_of_one_version_at_once(
    sample: SampleRelease, docker_client: docker.DockerClient
) -> None:
    since = time.time()
    first, second = sample.start("103.1"), sample.start("103.1")
    first.wait(timeout=600)
    second.wait(timeout=600)
    results = [output_of(first), output_of(second)]
    winners = [r for r in results if r.returncode == 0]
    assert winners, [r.stderr[-2000:] for r in results]
    for ran in results:
        assert "Traceback" not in ran.stderr, ran.stderr[-3000:]
        if ran.returncode != 0:
            line = error_line(ran.stderr)
            assert "istio@103.1" in line, line
    settle(docker_client, sample, since)
    world = inspect_world(docker_client, sample, since=since, versions=VERSIONS)
    assert world.record_ok and "103.1" in world.recorded, world
    assert world.workspace_original and not world.workspace_backup, world
    assert not world.leftover_tags and not world.leftover_containers, world
    data = tomllib.loads(sample.record.read_text())
    assert [e["version"] for e in data["istio"]].count("103.1") == 1
    # The tag in the registry is the recorded image: a loser must not have moved it.
    tagged = docker_client.images.get_registry_data(f"{sample.repository}:103.1", auth_config=registry_auth())
    assert tagged.id == world.recorded["103.1"]
    rerun = sample.run("103.1")
    assert rerun.returncode == 0 and '"reused": true' in rerun.stdout, rerun.stderr[-2000:]
