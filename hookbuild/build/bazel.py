"""Bazel settings every build system passes through: remote cache and execution, disk cache, configs, and
secret `--remote_header`s that reach Bazel through a private rc file made for one build.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hookbuild import secrets
from hookbuild.errors import ConfigError

REMOTE_HEADER_ENV = "HOOKBUILD_BAZEL_REMOTE_HEADER"  # NAME=VALUE, one per line; a secret
SECRET_RC_MOUNT = "/run/hookbuild-bazelrc"  # where a build container sees the secret rc's directory
SECRET_RC_NAME = "remote.bazelrc"


@dataclass(frozen=True, kw_only=True)
class BazelOptions:
    """Pass-through scale-out settings: Bazel's remote cache/execution, never a home-made layer."""

    remote_cache: str | None = None
    remote_executor: str | None = None
    disk_cache: str | None = None
    configs: tuple[str, ...] = ()

    def flags(self) -> list[str]:
        flags = [f"--config={config}" for config in self.configs]
        if self.remote_cache:
            flags.append(f"--remote_cache={self.remote_cache}")
        if self.remote_executor:
            flags.append(f"--remote_executor={self.remote_executor}")
        if self.disk_cache:
            flags.append(f"--disk_cache={self.disk_cache}")
        return flags

    @property
    def needs_host_network(self) -> bool:
        """A loopback endpoint is the host's: a build container must share the host's network to reach it."""
        return any(_is_loopback(url) for url in (self.remote_cache, self.remote_executor) if url)

    def docker_run_options(self) -> list[str]:
        """`docker run` options for a build container (run.sh's DOCKER_RUN_OPTIONS, ENVOY_DOCKER_OPTIONS)."""
        return ["--network", "host"] if self.needs_host_network else []


def _is_loopback(url: str) -> bool:
    host = urlsplit(url if "://" in url else f"//{url}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def remote_headers(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """`--remote_header` values (NAME=VALUE) from HOOKBUILD_BAZEL_REMOTE_HEADER, registered as secrets."""
    raw = (os.environ if env is None else env).get(REMOTE_HEADER_ENV, "")
    headers = tuple(line.strip() for line in raw.splitlines() if line.strip())
    for header in headers:
        name, sep, value = header.partition("=")
        if not sep or not name or not value:
            raise ConfigError(
                f"{REMOTE_HEADER_ENV} holds a line that is not NAME=VALUE",
                hint="set it to e.g. 'Authorization=Bearer TOKEN' (one header per line)",
            )
        secrets.register(value)
        secrets.register(header)
    return headers


@contextmanager
def secret_bazelrc(headers: tuple[str, ...]) -> Iterator[Path | None]:
    """A private rc file holding `build --remote_header=...` for the length of one build, then deleted.

    Bazel 4 has no credential helper, and a flag would put the secret in argv (ps, make's echo). The rc
    lives in a fresh 0700 directory on tmpfs (/dev/shm when there is one), never under the repo or dist;
    Bazel reads it through the startup option `--bazelrc=` (which replaces ~/.bazelrc for that build).
    Mount its directory read-only at SECRET_RC_MOUNT for a build container. Yields None without headers.
    """
    if not headers:
        yield None
        return
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    _sweep_stale_rcs(Path(base or tempfile.gettempdir()))
    directory = Path(tempfile.mkdtemp(prefix=f"hookbuild-bazelrc-{os.getpid()}-", dir=base))
    rc = directory / SECRET_RC_NAME
    try:
        fd = os.open(rc, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for header in headers:
                out.write(f"build {shlex.quote('--remote_header=' + header)}\n")
        yield rc
    finally:
        rc.unlink(missing_ok=True)
        directory.rmdir()


def _sweep_stale_rcs(folder: Path) -> None:
    """Remove rc folders whose run was killed before it could (their name carries its PID)."""
    for stale in folder.glob("hookbuild-bazelrc-*-*"):
        pid = stale.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
