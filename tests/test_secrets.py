"""Secrets never leave hookbuild: with the registry password and a Bazel remote header set, every task runs
with debug logging, and neither value appears in any output, in any file under the repo or the dist folder,
in the released image's labels, config or history, in any process's argument list (/proc/*/cmdline,
sampled every 50 ms during the run), or in the environment of any container started meanwhile.

The password is the local registry's real one (the push must succeed). The Bazel header
(HOOKBUILD_BAZEL_REMOTE_HEADER) is set whether or not hookbuild.config supports it yet: either way it must not
leak. A failing push with a wrong password is checked too (its error line must mask the password).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from conftest import ROOT, run_process

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.bazel]

PASSWORD_FILE = Path("/etc/hookbuild/registry-password")
SKIPPED_DIRS = {".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__", "objects"}


class Watcher:
    """Samples every process's argv and every container's environment while tasks run."""

    def __init__(self, client: docker.DockerClient, secrets: list[bytes]) -> None:
        self.client = client
        self.secrets = secrets
        self.found: list[str] = []
        self.samples = 0
        self.containers_seen: set[str] = set()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._argv_loop, daemon=True),
            threading.Thread(target=self._container_loop, daemon=True),
        ]

    def __enter__(self) -> Watcher:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _argv_loop(self) -> None:
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    argv = cmdline.read_bytes()
                except OSError:
                    continue  # the process ended
                for secret in self.secrets:
                    if secret in argv:
                        shown = argv.replace(b"\0", b" ")[:300]
                        self.found.append(f"{cmdline}: {shown!r}")
            self.samples += 1
            self._stop.wait(0.05)

    def _container_loop(self) -> None:
        while not self._stop.is_set():
            try:
                for container in self.client.containers.list(all=True):
                    if container.id in self.containers_seen:
                        continue
                    self.containers_seen.add(container.id)
                    config = json.dumps(container.attrs.get("Config", {})).encode()
                    for secret in self.secrets:
                        if secret in config:
                            self.found.append(
                                f"container {container.short_id} ({container.image}) config/env"
                            )
            except docker.errors.APIError:
                pass  # a container went away while listed
            self._stop.wait(0.2)


def files_holding(root: Path, secrets: list[bytes]) -> list[str]:
    hits = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits += [f"{path}" for secret in secrets if secret in data]
    return hits


@pytest.fixture(scope="module")
def password() -> str:
    if not PASSWORD_FILE.is_file():
        pytest.fail(f"{PASSWORD_FILE} is missing; run scripts/setup.sh")
    return PASSWORD_FILE.read_text().strip()


@pytest.fixture(scope="module")
def header() -> str:
    return f"hbsecret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def secret_forms(password: str, header: str) -> list[bytes]:
    """The raw values and the encodings a leak would take (Docker's base64 auth, JSON-escaped)."""
    auth = base64.b64encode(f"hookbuild:{password}".encode())
    return [password.encode(), header.encode(), auth, base64.b64encode(password.encode())]


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    password: str,
    header: str,
    secret_forms: list[bytes],
) -> Iterator[tuple[dict[str, object], Path, Watcher]]:
    """Every task, with debug logging and both secrets in the environment, under the watcher."""
    dist = tmp_path_factory.mktemp("secrets")
    namespace = f"hbsecrets{os.getpid()}"
    env = {
        "HOOKBUILD_DIST": str(dist),
        "HOOKBUILD_NAMESPACE": namespace,
        "HOOKBUILD_DEBUG": "1",
        "HOOKBUILD_REGISTRY_USER": "hookbuild",
        "HOOKBUILD_REGISTRY_PASSWORD": password,
        "HOOKBUILD_BAZEL_REMOTE_HEADER": f"x-token={header}",
    }
    record = dist / "sample" / "versions.toml"
    binary = dist / "sample" / "istio" / "104.1" / "envoy"
    manifest = ROOT / "tests" / "data" / "manifests" / "bookinfo.yaml"
    out = dist / "out"
    results: dict[str, object] = {}
    with Watcher(docker_client, secret_forms) as watcher:
        for name, args in [
            ("release --dry-run", ("release", "--sample", "--version", "104.1", "--dry-run", "--verbose")),
            ("release", ("release", "--sample", "--version", "104.1", "--verbose", "--json")),
            ("release (retry)", ("release", "--sample", "--version", "104.1", "--verbose")),
            ("versions", ("versions", "--all", "--versions-file", str(record))),
            ("versions --json", ("versions", "--json", "--versions-file", str(record))),
            (
                "versions --show",
                ("versions", "--show", "istio@104.1", "--json", "--versions-file", str(record)),
            ),
            (
                "bump",
                ("bump", "--variant", "istio", "--minor", "--summary", "s", "--versions-file", str(record)),
            ),
            ("deprecate", ("deprecate", "istio@104.1", "--reason", "r", "--versions-file", str(record))),
            (
                "deprecate --working",
                ("deprecate", "istio@104.1", "--working", "--reason", "ok", "--versions-file", str(record)),
            ),
            (
                "changelog",
                ("changelog", "--output", str(dist / "CHANGELOG.md"), "--versions-file", str(record)),
            ),
            ("symbols", ("symbols", str(binary), "--json", "--scripts-dir", str(out))),
            (
                "inject",
                (
                    "inject",
                    "-r",
                    "istio@104.1",
                    "-f",
                    str(manifest),
                    "-o",
                    str(out / "m.yaml"),
                    "--versions-file",
                    str(record),
                ),
            ),
            (
                "trace-script",
                (
                    "trace-script",
                    "istio@104.1",
                    "--binary",
                    str(binary),
                    "--output",
                    str(out),
                    "--versions-file",
                    str(record),
                ),
            ),
        ]:
            results[name] = run_process(*args, env=env)
        # A push refused for a wrong password: the error line names the failure, never the password.
        wrong = {**env, "HOOKBUILD_REGISTRY_PASSWORD": f"{password}-wrong"}
        results["release (wrong password)"] = run_process(
            "release", "--sample", "--version", "104.2", "--verbose", env=wrong
        )
    yield results, dist, watcher
    for image in docker_client.images.list(name=f"127.0.0.1:5000/{namespace}/istio-proxy"):
        for tag in image.tags:
            docker_client.images.remove(tag, noprune=True)


def test_every_task_ran(runs: tuple[dict[str, object], Path, Watcher]) -> None:
    results, _dist, watcher = runs
    for name, ran in results.items():
        expected_failure = name == "release (wrong password)"
        assert (ran.returncode != 0) == expected_failure, (name, ran.stderr[-2000:])  # type: ignore[attr-defined]
    assert "unauthorized" in results["release (wrong password)"].stderr  # type: ignore[attr-defined]
    assert "│" in results["release"].stderr  # type: ignore[attr-defined]  # debug/build log really streamed
    assert watcher.samples > 50, "the /proc sampler barely ran"


def test_no_secret_in_any_output(
    runs: tuple[dict[str, object], Path, Watcher], secret_forms: list[bytes]
) -> None:
    results, _dist, _watcher = runs
    for name, ran in results.items():
        text = (ran.stdout + ran.stderr).encode()  # type: ignore[attr-defined]
        assert not [s for s in secret_forms if s in text], name


def test_no_secret_in_any_file(
    runs: tuple[dict[str, object], Path, Watcher], secret_forms: list[bytes]
) -> None:
    _results, dist, _watcher = runs
    assert not files_holding(dist, secret_forms)
    assert not files_holding(ROOT, secret_forms)


def test_no_secret_in_argv_or_container_env(runs: tuple[dict[str, object], Path, Watcher]) -> None:
    _results, _dist, watcher = runs
    assert watcher.containers_seen, "no container was seen: the build container must have run"
    assert not watcher.found, watcher.found


def test_no_secret_in_the_image(
    runs: tuple[dict[str, object], Path, Watcher],
    docker_client: docker.DockerClient,
    secret_forms: list[bytes],
) -> None:
    results, _dist, _watcher = runs
    released = json.loads(results["release"].stdout)  # type: ignore[attr-defined]
    image = docker_client.images.get(released["image"])
    inspected = json.dumps(image.attrs).encode()
    history = json.dumps(docker_client.api.history(image.id)).encode()
    assert image.labels.get("io.hookbuild.variant") == "istio"  # the labels really are there
    for secret in secret_forms:
        assert secret not in inspected and secret not in history
