"""Shared fixtures. Components are real; a missing one fails the test (never skips): run scripts/setup.sh."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INVOKE = Path(sys.executable).parent / "invoke"
NAMESPACE = f"hookbuild-test-{os.getpid()}"
"""The registry namespace every test pushes into unless it picks its own: never `hookbuild`, the demo's."""


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run_invoke(
    *args: str,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    process: bool = False,
) -> Ran:
    """`invoke ARGS` from the project root: in this process (fast; the same tasks, exit codes and output), or
    with `process=True` as a real process, the way users and CI run it (signals, argv, /proc, invoke.yaml)."""
    if not process:
        return run_task(*args, cwd=cwd, env=env)
    proc = subprocess.run(
        [str(INVOKE), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session", autouse=True)
def _own_cache_dir_and_namespace(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Caches (the symbols cache) live in the test session, never in the user's ~/.cache; pushes go to the
    session's own registry namespace, so `make test` never moves a tag `make demo` recorded."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        patch.setenv("HOOKBUILD_NAMESPACE", NAMESPACE)
        yield


def signing_env() -> dict[str, str]:
    """The session's signing key setting, for code that loads settings from an explicit environment."""
    return {"HOOKBUILD_SIGNING_KEY": os.environ["HOOKBUILD_SIGNING_KEY"]}


def make_signing_key(path: Path, algorithm: str = "ed25519") -> Path:
    """A real private key PEM made by openssl, mode 0600 (releases refuse keys others can read)."""
    argv = ["openssl", "genpkey", "-algorithm", algorithm, "-out", str(path)]
    if algorithm == "EC":
        argv[4:4] = ["-pkeyopt", "ec_paramgen_curve:P-256"]
    subprocess.run(argv, check=True, capture_output=True)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session", autouse=True)
def _signing_key(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Every release signs (issue 13): tests sign with a key of the session's own, never the demo key."""
    key = make_signing_key(tmp_path_factory.mktemp("signing") / "test-signing-key.pem")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOOKBUILD_SIGNING_KEY", str(key))
        yield key


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        pytest.fail(f"Docker engine not reachable ({exc}); run scripts/setup.sh")
    yield client
    client.close()


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """g++-built hookpoint binaries (gcc, lld PIE, stripped, changed, 32-bit, non-ELF): symbols tests."""
    from elf_samples import build

    return build(tmp_path_factory.mktemp("elf-samples"))


def run_task(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, stdin: str = "") -> Ran:
    """`invoke ARGS` in this process (the fast lane): the same tasks, exit code and output as the CLI.

    Use run_invoke where the process itself matters (signals, argv, /proc, a timeout).
    """
    import contextlib
    import io

    from hookbuild.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, saved_stdin = dict(os.environ), Path.cwd(), sys.stdin
    try:
        os.environ.update(env or {})
        os.chdir(cwd)
        sys.stdin = io.StringIO(stdin)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.stdin = saved_stdin
    return Ran(code, out.getvalue(), err.getvalue())


@pytest.fixture
def record_copy(tmp_path: Path) -> Path:
    """A copy of the repo's versions.toml to change: tests never write the live record."""
    import shutil

    copy = tmp_path / "versions.toml"
    shutil.copyfile(ROOT / "versions.toml", copy)
    return copy


@pytest.fixture
def registry_namespace() -> str:
    """A registry namespace of this test's own: never the `hookbuild` one `make demo` pushes to."""
    import uuid

    return f"hookbuild-test-{uuid.uuid4().hex[:10]}"


def run_process(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 900) -> Ran:
    """`invoke ARGS` as a real process (system tests: releases, signals, secrets in /proc, invoke.yaml)."""
    return run_invoke(*args, cwd=cwd, env=env, timeout=timeout, process=True)


def registry_auth() -> dict[str, str]:
    """The local registry's credentials, as scripts/setup.sh made them."""
    password = Path("/etc/hookbuild/registry-password")
    if not password.is_file():
        pytest.fail("no local registry credentials; run scripts/setup.sh")
    return {"username": "hookbuild", "password": password.read_text().strip()}


SAMPLE_ISTIO_BUILDARGS = {"BASE_IMAGE": "hookbuild-sample/proxyv2:sample", "PACKAGES": ""}


def istio_image_context(folder: Path, trace: str) -> Path:
    """A build context for the istio Dockerfile on the sample proxyv2 (SAMPLE_ISTIO_BUILDARGS): a stand-in
    envoy and one trace script with the text given."""
    import shutil

    (folder / "tracing").mkdir(parents=True)
    shutil.copy(ROOT / "dockerfiles" / "custom_istio.dockerfile", folder / "Dockerfile")
    (folder / "envoy").write_bytes(b"#!/bin/sh\n")
    (folder / "tracing" / "trace.bt").write_text(trace)
    return folder
