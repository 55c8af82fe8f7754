"""Find the binary a containerised Bazel build left behind.

Inside istio's build container Bazel's output base lives in the docker volume `cache` (mounted at
/home/.cache), so on the host `bazel-bin` is a dangling link into the container's file system. The volume's
Mountpoint, asked of the Docker engine, turns it back into a host path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from hookbuild import fsutil
from hookbuild.errors import OutputError

if TYPE_CHECKING:
    import docker


def resolve_link(
    link: Path, *, client: docker.DockerClient, volume: str = "cache", mount: str = "/home/.cache"
) -> Path:
    """The host directory behind `link` (e.g. the proxy checkout's `bazel-bin`)."""
    if not link.is_symlink():
        if link.is_dir():
            return link
        raise OutputError(f"{link} does not exist", hint="the build did not finish; see the build log")
    target = PurePosixPath(os.readlink(link))
    if Path(target).exists():
        return Path(target)
    inside = PurePosixPath(mount)
    if not target.is_relative_to(inside):
        raise OutputError(
            f"{link} points to {target}, which exists neither on this host nor under {mount}",
            hint="remove the stale link and rebuild",
        )
    import docker.errors

    try:
        mountpoint = client.volumes.get(volume).attrs["Mountpoint"]
    except docker.errors.NotFound as exc:
        raise OutputError(
            f"{link} points into the build container ({target}), but docker volume {volume!r} does not exist",
            hint="run the build with BUILD_WITH_CONTAINER=1 so its cache volume exists",
        ) from exc
    host = Path(mountpoint) / target.relative_to(inside)
    if not Path(mountpoint).is_dir():
        raise OutputError(
            f"docker volume {volume!r} is at {mountpoint} on the daemon's host, which is not visible here",
            hint="run hookbuild on the Docker host (a remote, rootless or Desktop daemon keeps volumes elsewhere)",
        )
    if not host.exists():
        raise OutputError(
            f"{link} -> {target} -> {host}: no such directory in volume {volume!r}",
            hint="the build did not produce output; see the build log",
        )
    return host


def collect(source: Path, dest: Path) -> Path:
    """Copy a built binary to `dest` (the release's dist folder), atomically."""
    if not source.is_file():
        raise OutputError(f"no binary at {source}", hint="check the build target and the build log")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as binary, fsutil.atomic_writer(dest, mode=0o755) as out:
        shutil.copyfileobj(binary, out, 1 << 20)
    return dest


def extract(archive: Path, member: str, dest: Path) -> Path:
    """Copy one file out of a release tarball (`.tar.zst`, as Envoy's do_ci.sh writes, or plain `.tar`)."""
    import tarfile

    import zstandard

    if not archive.is_file():
        raise OutputError(f"no release archive at {archive}", hint="check the build target and the build log")
    dest.parent.mkdir(parents=True, exist_ok=True)
    found = False
    try:
        with archive.open("rb") as raw:
            stream = zstandard.ZstdDecompressor().stream_reader(raw) if archive.suffix == ".zst" else raw
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                for info in tar:
                    if info.name.removeprefix("./") == member and info.isfile():
                        source = tar.extractfile(info)
                        assert source is not None
                        with fsutil.atomic_writer(dest, mode=0o755) as out:
                            shutil.copyfileobj(source, out, 1 << 20)
                        found = True
                        break
    except (tarfile.TarError, zstandard.ZstdError, OSError) as exc:
        raise OutputError(f"cannot read {archive}: {exc}", hint="rebuild; the archive is damaged") from exc
    if not found:
        raise OutputError(f"{archive} holds no {member}", hint="is this a release.server_only build?")
    return dest
