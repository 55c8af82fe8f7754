"""Container images through the Docker SDK: build with a live log, push with errors read from the stream.

The SDK's push reports failures inside an HTTP-200 stream (docker-py #3161) and `images.build()` only
returns at the end, so both use the low-level API and check every chunk themselves.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hookbuild import secrets
from hookbuild.errors import ImageError, ToolMissing, UsageError

if TYPE_CHECKING:
    import docker

log = logging.getLogger("hookbuild")

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]{1,5})?)"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_REFERENCE = re.compile(
    rf"(?:(?P<registry>{_REGISTRY})/)?(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>sha256:[a-f0-9]{{64}}))?"
)


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    registry: str
    repository: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        match = _REFERENCE.fullmatch(text)
        if not match or not match.group("tag"):
            raise UsageError(
                f"invalid image reference {text!r}",
                hint="write REGISTRY/NAMESPACE/NAME:TAG, e.g. 127.0.0.1:5000/hookbuild/istio-proxy:12.1",
            )
        registry = match.group("registry") or ""
        if registry and "." not in registry and ":" not in registry and registry != "localhost":
            # docker's rule: a first component without '.' or ':' is a Docker Hub namespace.
            return cls(
                registry="docker.io",
                repository=f"{registry}/{match.group('repository')}",
                tag=match.group("tag"),
            )
        return cls(
            registry=registry or "docker.io", repository=match.group("repository"), tag=match.group("tag")
        )

    @classmethod
    def parse_any(cls, text: str) -> ImageRef:
        """Also accept `repo@sha256:...` and an untagged `repo` (the tag then reads `latest`)."""
        match = _REFERENCE.fullmatch(text)
        if not match:
            return cls.parse(text)  # raises the usual error
        tag = match.group("tag") or "latest"
        return cls.parse(
            f"{match.group('registry') + '/' if match.group('registry') else ''}"
            f"{match.group('repository')}:{tag}"
        )

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"


def validate_registry(registry: str) -> str:
    if not re.fullmatch(_REGISTRY, registry):
        raise UsageError(
            f"invalid registry {registry!r}",
            hint="write HOST[:PORT] without a scheme or path, e.g. 127.0.0.1:5000 or quay.io",
        )
    return registry


def connect() -> docker.DockerClient:
    import docker
    import docker.errors

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise ToolMissing(
            f"cannot reach the Docker engine ({os.environ.get('DOCKER_HOST') or 'local socket'}): {exc}",
            hint="start dockerd (scripts/setup.sh does), or set DOCKER_HOST to a reachable engine",
        ) from exc
    return client


def credentials(
    registry: str, *, user: str | None, env: Mapping[str, str] | None = None
) -> dict[str, str] | None:
    """Registry credentials from HOOKBUILD_REGISTRY_PASSWORD (+ user), else the Docker config.

    Returned as an explicit auth_config: credential helpers in the Docker config would otherwise override
    a login (docker-py #3281).
    """
    env = os.environ if env is None else env
    password = env.get("HOOKBUILD_REGISTRY_PASSWORD")
    if password:
        secrets.register(password)
        if not user:
            raise UsageError(
                "HOOKBUILD_REGISTRY_PASSWORD is set but no registry user",
                hint="set registry_user in [tool.hookbuild] or HOOKBUILD_REGISTRY_USER",
            )
        return {"username": user, "password": password, "serveraddress": registry}
    import docker.auth

    found: Mapping[str, Any] | None = docker.auth.load_config().resolve_authconfig(registry)
    if not found or not found.get("password"):
        return None
    secrets.register(str(found["password"]))
    return {"username": str(found["username"]), "password": str(found["password"]), "serveraddress": registry}


def _stream_errors(chunk: Mapping[str, Any]) -> str | None:
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
) -> str:
    """Build and return the image ID; every line of the build log goes to `on_line`.

    The labels go in as one LABEL instruction appended to the context's Dockerfile: the classic builder
    turns the API's `labels` into one step (and one container) per label.
    """
    import json

    import docker.errors

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
            if error := _stream_errors(chunk):
                raise ImageError(f"docker build of {context / dockerfile} failed: {error.strip()}")
            for line in str(chunk.get("stream", "")).splitlines():
                if line.strip():
                    on_line(line)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    except docker.errors.APIError as exc:
        raise ImageError(f"docker build of {context / dockerfile} failed: {exc.explanation or exc}") from exc
    if image_id is None:
        raise ImageError(f"docker build of {context / dockerfile} reported no image ID")
    return image_id


def ensure(client: docker.DockerClient, reference: str, *, auth: Mapping[str, str] | None, hint: str) -> None:
    """Make sure the engine has `reference`: present already, or pulled (with credentials for its registry)."""
    import docker.errors

    try:
        client.images.get(reference)
        return
    except docker.errors.ImageNotFound:
        pass
    log.info("pulling %s", reference)
    try:
        client.images.pull(reference, auth_config=dict(auth) if auth else None)
    except docker.errors.APIError as exc:
        raise ImageError(
            f"image {reference} is neither on the Docker engine nor pullable: "
            f"{secrets.redact(str(exc.explanation or exc))}",
            hint=hint,
        ) from exc


@contextmanager
def _container(client: docker.DockerClient, image: str) -> Iterator[Any]:
    """A created (never started) container, removed on the way out whatever happens."""
    container = client.containers.create(image, entrypoint=["/nonexistent"])
    try:
        yield container
    finally:
        container.remove(force=True)


def copy_file(client: docker.DockerClient, image: str, path: str, dest: Path) -> Path:
    """Copy one file out of an image (the Envoy of a release that a variant builds on)."""
    import io
    import tarfile

    import docker.errors

    try:
        with _container(client, image) as container:
            stream, _ = container.get_archive(path)
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
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_bytes(source.read())
    tmp.chmod(0o755)
    tmp.replace(dest)
    return dest


def check(client: docker.DockerClient, image: str, command: tuple[str, ...]) -> None:
    """Run `command` in a throwaway container of `image`; it must exit 0 (e.g. `perf --version`)."""
    import docker.errors

    try:
        output = client.containers.run(image, entrypoint=list(command), remove=True, stdout=True, stderr=True)
    except docker.errors.ContainerError as exc:
        stderr = (
            exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        )
        raise ImageError(
            f"`{' '.join(command)}` fails in the built image (exit {exc.exit_status}): {stderr.strip()[-300:]}",
            hint="check the packages the image installs",
        ) from exc
    except docker.errors.APIError as exc:
        raise ImageError(
            f"`{' '.join(command)}` cannot run in the built image: {exc.explanation or exc}",
            hint="check the packages the image installs",
        ) from exc
    text = output.decode(errors="replace") if isinstance(output, bytes) else str(output)
    log.info("  %s: %s", " ".join(command), (text.strip().splitlines() or [""])[0])


@contextmanager
def tagged(
    client: docker.DockerClient, image_id: str, ref: ImageRef, *, keep: Callable[[], bool]
) -> Iterator[None]:
    """Tag the image for the push; the tag is removed again unless `keep()` says the release landed."""
    image = client.images.get(image_id)
    image.tag(ref.name, ref.tag)
    try:
        yield
    finally:
        if not keep():
            import docker.errors

            try:
                client.images.remove(str(ref), noprune=True)
            except docker.errors.APIError:
                log.warning("could not remove the local tag %s", ref)


def push(
    client: docker.DockerClient,
    ref: ImageRef,
    *,
    auth: Mapping[str, str] | None,
    on_progress: Callable[[str | None, str], None],
) -> str:
    """Push and return the digest the registry gave the manifest; progress goes to on_progress(layer, status)."""
    import docker.errors

    digest: str | None = None
    try:
        stream: Iterator[dict[str, Any]] = client.api.push(
            ref.name, tag=ref.tag, auth_config=dict(auth) if auth else None, stream=True, decode=True
        )
        for chunk in stream:
            if error := _stream_errors(chunk):
                raise ImageError(
                    f"push of {ref} failed: {secrets.redact(error.strip())}",
                    hint=_push_hint(error),
                )
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "Digest" in aux:
                digest = str(aux["Digest"])
            if status := chunk.get("status"):
                layer = chunk.get("id")
                on_progress(str(layer) if layer and layer != ref.tag else None, str(status))
    except docker.errors.APIError as exc:
        raise ImageError(
            f"push of {ref} failed: {secrets.redact(str(exc.explanation or exc))}", hint=_push_hint(str(exc))
        ) from exc
    if digest is None:
        raise ImageError(f"push of {ref} ended without a digest", hint="check the registry's logs")
    return digest


def require_pushed(
    client: docker.DockerClient, ref: ImageRef, digest: str, *, auth: Mapping[str, str] | None
) -> None:
    """Ask the registry what the tag holds now: the release is recorded only if it is what we pushed."""
    import docker.errors

    try:
        held = client.images.get_registry_data(str(ref), auth_config=dict(auth) if auth else None).id
    except docker.errors.APIError as exc:
        raise ImageError(
            f"cannot read back {ref} from the registry after the push: {secrets.redact(str(exc.explanation or exc))}",
            hint="check the registry; nothing was recorded",
        ) from exc
    if held != digest:
        raise ImageError(
            f"{ref} holds {held} right after hookbuild pushed {digest}: another push raced this one",
            hint="release again; nothing was recorded",
        )


def _push_hint(error: str) -> str:
    lowered = error.lower()
    if "unauthorized" in lowered or "authentication" in lowered or "denied" in lowered:
        return "log in with `docker login REGISTRY`, or set HOOKBUILD_REGISTRY_USER and HOOKBUILD_REGISTRY_PASSWORD"
    if "connection refused" in lowered or "no such host" in lowered or "timeout" in lowered:
        return "is the registry running and reachable? (scripts/setup.sh starts the local one)"
    return "check the registry and retry; nothing was recorded"
