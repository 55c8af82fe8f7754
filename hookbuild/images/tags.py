"""What a tag holds in the registry, and pointing it back at a recorded digest (Registry HTTP API v2).

A retry of a recorded release, and `invoke versions --check-registry`, ask the registry (not the local
engine) which manifest a tag names now. `point` moves a tag to a digest the registry already holds by
putting that very manifest under the tag, byte for byte, so the tag's digest is exactly the recorded one
(a pull, tag and push through the engine could re-encode it). Basic auth (htpasswd registries) and the
bearer-token challenge (Docker Hub, quay.io, ...) are both answered; credentials never leave the request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hookbuild import secrets
from hookbuild.errors import ImageError
from hookbuild.images.reference import ImageRef

if TYPE_CHECKING:
    import requests

TIMEOUT = 30.0
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def _base(registry: str) -> str:
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    try:
        plain = ipaddress.ip_address(host).is_loopback
    except ValueError:
        plain = host == "localhost"
    name = "registry-1.docker.io" if registry == "docker.io" else registry
    return f"{'http' if plain else 'https'}://{name}"  # Docker, too, speaks plain HTTP only to loopback


class _Session:
    """Requests to one repository, answering the registry's auth challenge once."""

    def __init__(self, ref: ImageRef, auth: Mapping[str, str] | None) -> None:
        import requests

        self.ref = ref
        self.http = requests.Session()
        self.user = (auth["username"], auth["password"]) if auth else None
        self.url = f"{_base(ref.registry)}/v2/{ref.repository}/manifests/"

    def request(self, method: str, what: str, **kwargs: Any) -> requests.Response:
        import requests

        try:
            response = self.http.request(method, self.url + what, timeout=TIMEOUT, **kwargs)
            if response.status_code == 401:
                self._answer(response.headers.get("WWW-Authenticate", ""), push=method == "PUT")
                response = self.http.request(method, self.url + what, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise ImageError(
                f"cannot reach the registry for {self.ref.name}: {secrets.redact(str(exc))}",
                hint="is the registry running and reachable? (scripts/setup.sh starts the local one)",
            ) from None
        if response.status_code in (401, 403):
            raise ImageError(
                f"the registry refuses access to {self.ref.name} (HTTP {response.status_code})",
                hint="log in with `docker login REGISTRY`, or set HOOKBUILD_REGISTRY_USER and "
                "HOOKBUILD_REGISTRY_PASSWORD",
            )
        return response

    def _answer(self, challenge: str, *, push: bool) -> None:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic" and self.user:
            self.http.auth = self.user
            return
        if scheme.lower() != "bearer":
            return
        fields = dict(part.split("=", 1) for part in params.replace('"', "").split(",") if "=" in part)
        scope = f"repository:{self.ref.repository}:{'pull,push' if push else 'pull'}"
        token = self.http.get(
            fields.get("realm", ""),
            params={"service": fields.get("service", ""), "scope": scope},
            auth=self.user,
            timeout=TIMEOUT,
        )
        if token.ok:
            value = token.json().get("token") or token.json().get("access_token", "")
            secrets.register(value)
            self.http.headers["Authorization"] = f"Bearer {value}"


def digest_of(ref: ImageRef, *, auth: Mapping[str, str] | None) -> str | None:
    """The digest of the manifest the tag names now; None if the registry has no such tag."""
    response = _Session(ref, auth).request("HEAD", ref.tag, headers={"Accept": MANIFEST_TYPES})
    if response.status_code == 404:
        return None
    digest = response.headers.get("Docker-Content-Digest")
    if not response.ok or not digest:
        raise ImageError(
            f"cannot read {ref} from the registry (HTTP {response.status_code})",
            hint="check the registry's logs",
        )
    return digest


def point(ref: ImageRef, digest: str, *, auth: Mapping[str, str] | None) -> None:
    """Make the tag name the manifest `digest` again (which the registry must still hold)."""
    session = _Session(ref, auth)
    manifest = session.request("GET", digest, headers={"Accept": MANIFEST_TYPES})
    if manifest.status_code == 404:
        raise ImageError(
            f"the registry no longer holds {ref.pinned(digest)}: the tag cannot be pointed back at it",
            hint="the recorded image is gone; release a new version (`invoke bump`, then `invoke release`)",
        )
    media_type = manifest.headers.get("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
    put = session.request("PUT", ref.tag, data=manifest.content, headers={"Content-Type": media_type})
    if not put.ok:
        raise ImageError(
            f"cannot point {ref} at {digest} (HTTP {put.status_code}: {put.text.strip()[:200]})",
            hint="check that your credentials may push to this repository",
        )
    held = digest_of(ref, auth=auth)
    if held != digest:
        raise ImageError(
            f"{ref} holds {held} after pointing it at {digest}", hint="another push raced this one"
        )
