"""Registries: credentials, push with errors read from the stream, and what a tag holds now.

The SDK's push reports failures inside an HTTP-200 stream (docker-py #3161): every chunk is checked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hookbuild import secrets
from hookbuild.errors import ConfigError, ImageError, UsageError
from hookbuild.images.engine import stream_errors
from hookbuild.images.reference import ImageRef

if TYPE_CHECKING:
    import docker

    from hookbuild.images.registry_api import Registry

log = logging.getLogger("hookbuild")


def credentials(
    registry: str, *, user: str | None, env: Mapping[str, str] | None = None, from_env: bool = True
) -> dict[str, str] | None:
    """Registry credentials from HOOKBUILD_REGISTRY_PASSWORD (+ user), else the Docker config.

    `from_env=False` for a registry hookbuild only pulls from (an upstream base image's): the environment's
    password is for the registries it publishes to and never goes elsewhere (Docker Hub would also refuse a
    public pull with it, as a wrong login).

    Returned as an explicit auth_config: credential helpers in the Docker config would otherwise override
    a login (docker-py #3281). From the Docker config: a username and password (an `auths` entry, or a
    credential store or helper: desktop, pass, ecr-login...), or an identity token (an OAuth2 refresh token:
    what `docker login` keeps for a registry whose token service gave one, e.g. Azure's, and what a helper
    answers as the user `<token>`).
    """
    env = os.environ if env is None else env
    password = env.get("HOOKBUILD_REGISTRY_PASSWORD") if from_env else None
    if password:
        secrets.register(password)
        if not user:
            raise UsageError(
                "HOOKBUILD_REGISTRY_PASSWORD is set but no registry user",
                hint="set registry_user in [tool.hookbuild] or HOOKBUILD_REGISTRY_USER",
            )
        return {"username": user, "password": password, "serveraddress": registry}
    import docker.auth
    import docker.errors
    import docker.utils.config

    try:
        with warnings.catch_warnings():
            # docker-py warns of a helper missing from PATH, then fails on it: the failure says it all
            warnings.simplefilter("ignore", UserWarning)
            found: Mapping[str, Any] = docker.auth.load_config().resolve_authconfig(registry) or {}
    except docker.errors.DockerException as exc:  # the store or helper it names is missing or failed
        config = docker.utils.config.find_config_file()
        where = config if isinstance(config, str) else "the Docker config"
        raise ConfigError(
            f"{where}: no credentials for {registry}: {secrets.redact(str(exc))}",
            hint="install the credential helper it names or fix its login, or set HOOKBUILD_REGISTRY_USER "
            "and HOOKBUILD_REGISTRY_PASSWORD",
        ) from None
    # docker-py answers an `auths` entry in lower case and a credential store's in Docker's own case
    entry = {str(key).lower(): str(value) for key, value in found.items() if value}
    if token := entry.get("identitytoken"):
        secrets.register(token)
        return {"identitytoken": token, "serveraddress": registry}
    if not entry.get("password"):
        return None
    secrets.register(entry["password"])
    return {"username": entry.get("username", ""), "password": entry["password"], "serveraddress": registry}


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
        # Closed on any way out: a failure read from the stream leaves the rest unread, and the error's
        # traceback keeps this frame, and so the stream's connection to the engine, for the cyclic collector.
        with contextlib.closing(
            client.api.push(
                ref.name, tag=ref.tag, auth_config=dict(auth) if auth else None, stream=True, decode=True
            )
        ) as stream:
            for chunk in stream:
                if error := stream_errors(chunk):
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


def require_pushed(registry: Registry, ref: ImageRef, digest: str) -> None:
    """Ask the registry what the tag holds now: the release is recorded only if it is what we pushed."""
    held = registry.manifest_digest(ref.repository, ref.tag)
    if held != digest:
        now = f"holds {held}" if held else "is not there"
        raise ImageError(
            f"{ref} {now} right after hookbuild pushed {digest}: another push raced this one",
            hint="release again; nothing was recorded",
        )


def _push_hint(error: str) -> str:
    lowered = error.lower()
    if "unauthorized" in lowered or "authentication" in lowered or "denied" in lowered:
        return "log in with `docker login REGISTRY`, or set HOOKBUILD_REGISTRY_USER and HOOKBUILD_REGISTRY_PASSWORD"
    if "connection refused" in lowered or "no such host" in lowered or "timeout" in lowered:
        return "is the registry running and reachable? (scripts/setup.sh starts the local one)"
    return "check the registry and retry; nothing was recorded"
