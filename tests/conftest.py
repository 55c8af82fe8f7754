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


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run_invoke(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 900) -> Ran:
    """Run `invoke ARGS` as a real process from the project root, the way users and CI do."""
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
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Caches (the symbols cache) live in the test session, never in the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


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
