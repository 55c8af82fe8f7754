"""The Docker engine through its SDK: connect, build with a live log, check, copy out, tag.

`images.build()` in the SDK only returns at the end of a build, so the low-level API is used and every chunk
is checked for errors (the engine reports them inside the stream).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hookbuild import command, fsutil, secrets
from hookbuild.errors import ImageError, ToolMissing
from hookbuild.images.reference import ImageRef

if TYPE_CHECKING:
    import docker

log = logging.getLogger("hookbuild")


def connect(*, like: docker.DockerClient | None = None) -> docker.DockerClient:
    """A client of the engine DOCKER_HOST names; `like` an open client, for another thread's own connection.

    A new client asks the engine its API version, which is the reachability check; one made `like` a client
    that already asked takes its version and talks to the engine only when used.
    """
    import docker
    import docker.errors

    try:
        client = docker.from_env(version=like.api.api_version if like is not None else "auto")
    except docker.errors.DockerException as exc:
        raise ToolMissing(
            f"cannot reach the Docker engine ({os.environ.get('DOCKER_HOST') or 'local socket'}): {exc}",
            hint="start dockerd (scripts/setup.sh does), or set DOCKER_HOST to a reachable engine",
        ) from exc
    return client


def stream_errors(chunk: Mapping[str, Any]) -> str | None:
    if "error" in chunk or "errorDetail" in chunk:
        detail = chunk.get("errorDetail") or {}
        return str(chunk.get("error") or detail.get("message") or chunk)
    return None


def build(
    client: docker.DockerClient,
    *,
    context: Path,
    dockerfile: str,
    buildargs: Mapping[str, str],
    labels: Mapping[str, str],
    on_line: Callable[[str], None],
    on_files: Callable[[str], None] | None = None,
) -> str:
    """Build and return the image ID; every line of the build log goes to `on_line`.

    The labels go in as one LABEL instruction appended to the context's Dockerfile: the classic builder
    turns the API's `labels` into one step (and one container) per label. A label changes no file, so the
    image the step before it made already holds the final image's files: `on_files` gets its ID as soon
    as the LABEL step starts (not at all if the log does not show it), for whoever reads those files.
    """
    import json

    import docker.errors

    watch = _LastStep(on_files) if labels and on_files else None
    if labels:
        instruction = " ".join(f"{json.dumps(key)}={json.dumps(value)}" for key, value in labels.items())
        with (context / dockerfile).open("a", encoding="utf-8") as handle:
            handle.write(f"\nLABEL {instruction}\n")
    image_id: str | None = None
    try:
        for chunk in client.api.build(
            path=str(context),
            dockerfile=dockerfile,
            buildargs=dict(buildargs),
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        ):
            if error := stream_errors(chunk):
                raise ImageError(f"docker build of {context / dockerfile} failed: {error.strip()}")
            for line in str(chunk.get("stream", "")).splitlines():
                if line.strip():
                    on_line(line)
                    if watch is not None:
                        watch.line(line)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    except docker.errors.APIError as exc:
        raise ImageError(f"docker build of {context / dockerfile} failed: {exc.explanation or exc}") from exc
    if image_id is None:
        raise ImageError(f"docker build of {context / dockerfile} reported no image ID")
    return image_id


class _LastStep:
    """Reads the classic builder's log: `Step 8/8 : LABEL ...` starts the last step, and the ` ---> ID` just
    before it is the image the steps before it made."""

    _RESULT = re.compile(r"^ ---> ([0-9a-f]{12,64})$")
    _LAST = re.compile(r"^Step (\d+)/\1 : LABEL ")

    def __init__(self, on_files: Callable[[str], None]) -> None:
        self._on_files: Callable[[str], None] | None = on_files
        self._made: str | None = None

    def line(self, line: str) -> None:
        if found := self._RESULT.match(line):
            self._made = found.group(1)
        elif self._on_files is not None and self._made and self._LAST.match(line):
            self._on_files(self._made)
            self._on_files = None


def mounts_any(summary: Mapping[str, Any], paths: set[str]) -> bool:
    """Does a container (as the engine lists it) mount one of `paths`, or a folder inside one?"""
    sources = {str(mount.get("Source", "")) for mount in summary.get("Mounts") or ()}
    return any(source == path or source.startswith(f"{path}/") for path in paths for source in sources)


def remove_unstarted(client: docker.DockerClient, paths: set[str], *, since: float) -> None:
    """Remove the containers made since `since` (epoch seconds) that mount one of `paths` and never started.

    A `docker run --rm` stopped between creating its container and starting it leaves that container
    behind (`--rm` applies once it has run); a build stopped early must not. Best effort: never raises.
    """
    import docker.errors
    import requests

    try:
        for summary in client.api.containers(all=True, filters={"status": "created"}):
            if int(summary.get("Created", 0)) >= int(since) and mounts_any(summary, paths):
                client.api.remove_container(summary["Id"], force=True)
                log.info("removed the build container %s, which never started", str(summary["Id"])[:12])
    except (docker.errors.DockerException, requests.RequestException) as exc:
        log.warning("could not look for build containers left unstarted: %s", exc)


@dataclass(frozen=True, kw_only=True)
class LocalImage:
    """An image on the engine, as the provenance names it: its registry digests, else its local ID."""

    id: str
    repo_digests: tuple[str, ...]


def ensure(
    reference: str,
    *,
    client: Callable[[], docker.DockerClient],
    auth: Callable[[], Mapping[str, str] | None],
    hint: str,
) -> LocalImage:
    """The engine's image `reference`: present already, or pulled (with `auth()`, its registry's credentials).

    Whether it is present is asked through the docker CLI when there is one: it answers in ~20 ms, where
    importing the SDK alone takes ~150 ms, and this check comes before the build. `client()` (the SDK) is
    only called to pull, or when the CLI is missing or cannot tell.
    """
    found = _inspect_with_cli(reference)
    if found is _Unknown.UNKNOWN:
        found = _inspect_with_sdk(client(), reference)
    if found is not None:
        return found
    import docker.errors

    log.info("pulling %s", reference)
    credentials = auth()
    try:
        return _local_image(
            client().images.pull(reference, auth_config=dict(credentials) if credentials else None).attrs
        )
    except docker.errors.APIError as exc:
        raise ImageError(
            f"image {reference} is neither on the Docker engine nor pullable: "
            f"{secrets.redact(str(exc.explanation or exc))}",
            hint=hint,
        ) from exc


class _Unknown(Enum):
    UNKNOWN = "the docker CLI cannot say"


def _inspect_with_cli(reference: str) -> LocalImage | Literal[_Unknown.UNKNOWN] | None:
    """`docker image inspect` on the engine the SDK talks to: the image, None when the engine has no such
    image, UNKNOWN when the CLI cannot say (it is missing, the engine is unreachable: the SDK then says why)."""
    import json

    if shutil.which("docker") is None:
        return _Unknown.UNKNOWN
    # The SDK ignores the CLI's contexts: DOCKER_HOST, else the local socket. Ask that same engine.
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    answer = command.ask(
        command.Command(argv=("docker", "image", "inspect", "--", reference), env={"DOCKER_HOST": host})
    )
    if answer.returncode == 0:
        try:
            return _local_image(json.loads(answer.stdout)[0])
        except (ValueError, LookupError, TypeError):
            return _Unknown.UNKNOWN
    return None if "no such image" in answer.stderr.lower() else _Unknown.UNKNOWN


def _inspect_with_sdk(client: docker.DockerClient, reference: str) -> LocalImage | None:
    import docker.errors

    try:
        return _local_image(client.images.get(reference).attrs)
    except docker.errors.ImageNotFound:
        return None


def _local_image(attrs: Mapping[str, Any]) -> LocalImage:
    return LocalImage(id=str(attrs["Id"]), repo_digests=tuple(str(d) for d in attrs.get("RepoDigests") or ()))


SCRATCH_LABEL = "io.hookbuild.scratch"  # on scratch containers: host:pid of the process that made one


@contextmanager
def scratch(client: docker.DockerClient, image: str) -> Iterator[str]:
    """The ID of a created (never started) container of `image`, to read its files; removed on the way out
    whatever happens, but a killed process's: the next scratch removes those (`sweep_scratch`). The
    low-level API: the SDK's `containers.create` inspects what it made, a round trip nothing here reads."""
    sweep_scratch(client)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    container = str(
        client.api.create_container(image, entrypoint=["/nonexistent"], labels={SCRATCH_LABEL: owner})["Id"]
    )
    try:
        yield container
    finally:
        client.api.remove_container(container, force=True)


def sweep_scratch(client: docker.DockerClient) -> None:
    """Remove the scratch containers of processes on this host that are gone (killed: they could not)."""
    import docker.errors

    host = socket.gethostname()
    for summary in client.api.containers(all=True, filters={"label": SCRATCH_LABEL, "status": "created"}):
        owner_host, _, pid = str((summary.get("Labels") or {}).get(SCRATCH_LABEL, "")).rpartition(":")
        if owner_host == host and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            with suppress(docker.errors.NotFound):  # another run swept it first
                client.api.remove_container(summary["Id"], force=True)
                log.info("removed the scratch container %s of a run that was killed", str(summary["Id"])[:12])


def copy_file(client: docker.DockerClient, image: str, path: str, dest: Path) -> Path:
    """Copy one file out of an image (the Envoy of a release that a variant builds on)."""
    import io
    import tarfile

    import docker.errors

    try:
        with scratch(client, image) as container:
            stream, _ = client.api.get_archive(container, path)
            data = b"".join(stream)
    except docker.errors.NotFound as exc:
        raise ImageError(f"{image} has no {path}", hint="is this the right release image?") from exc
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        source = tar.extractfile(member) if member is not None else None
        if source is None:
            raise ImageError(
                f"{path} in {image} is not a regular file", hint="is this the right release image?"
            )
        with fsutil.atomic_writer(dest, mode=0o755) as out:
            shutil.copyfileobj(source, out)
    return dest


def check(client: docker.DockerClient, image: str, command: tuple[str, ...]) -> None:
    """Run `command` in a throwaway container of `image`; it must exit 0 (e.g. `perf --version`).

    The container is removed whatever happens: `containers.run(remove=True)` leaves it behind when it cannot
    start (a command missing from the image), and such a container keeps the image's last tag from being
    removed after a failed release.
    """
    import docker.errors

    what = " ".join(command)
    try:
        container = client.containers.create(image, entrypoint=list(command))
    except docker.errors.APIError as exc:
        raise ImageError(
            f"`{what}` cannot run in the built image: {exc.explanation or exc}",
            hint="check the packages the image installs",
        ) from exc
    try:
        container.start()
        status = int(container.wait().get("StatusCode", 1))
        text = container.logs(stdout=True, stderr=True).decode(errors="replace")
    except docker.errors.APIError as exc:
        raise ImageError(
            f"`{what}` cannot run in the built image: {exc.explanation or exc}",
            hint="check the packages the image installs",
        ) from exc
    finally:
        container.remove(force=True)
    if status != 0:
        raise ImageError(
            f"`{what}` fails in the built image (exit {status}): {text.strip()[-300:]}",
            hint="check the packages the image installs",
        )
    log.info("  %s: %s", what, (text.strip().splitlines() or [""])[0])


@contextmanager
def tagged(
    client: docker.DockerClient, image_id: str, ref: ImageRef, *, keep: Callable[[], bool]
) -> Iterator[None]:
    """Tag the image for the push; the tag is removed again unless `keep()` says the release landed."""
    client.api.tag(image_id, ref.name, ref.tag)
    try:
        yield
    finally:
        if not keep():
            import docker.errors

            try:
                client.images.remove(str(ref), noprune=True)
            except docker.errors.APIError:
                log.warning("could not remove the local tag %s", ref)
