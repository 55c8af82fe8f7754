"""The registry HTTP API v2 (OCI distribution): manifests, tags and blobs, by digest. The one client.

What the Docker engine cannot do goes through here: ask what a tag holds now and point it back at a
recorded manifest byte for byte (release retries, `versions --check-registry`), push an artifact that is
not an image (the supply chain's attachments), read a manifest's exact bytes, and copy an image between
registries without re-compressing its layers (which would change its digest). Auth follows the registry's
challenge: Basic (the local htpasswd registries) or a Bearer token from the realm it names (Docker Hub,
ghcr.io, quay.io); credentials and tokens never leave the request and are redacted from every error.
Loopback registries speak plain HTTP, as the Docker engine treats them; everything else HTTPS.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hookbuild import secrets
from hookbuild.errors import RegistryError

if TYPE_CHECKING:
    import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST))
_TIMEOUT = 30.0
_CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class Manifest:
    raw: bytes
    """The exact bytes: the digest is theirs, so a copy must push these and nothing re-serialized."""
    media_type: str
    digest: str


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _base(host: str) -> str:
    """`http://127.0.0.1:5000/v2`, `https://registry-1.docker.io/v2` (Docker Hub's API host)."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        plain = name == "localhost" or ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        plain = False
    # Docker, too, speaks plain HTTP only to loopback.
    return f"{'http' if plain else 'https'}://{'registry-1.docker.io' if host == 'docker.io' else host}/v2"


class Registry:
    """One registry host. Credentials are a docker auth config ({username, password}) or None."""

    def __init__(self, host: str, *, auth: Mapping[str, str] | None) -> None:
        import requests

        self.host = host
        self.base = _base(host)
        self._auth = auth
        self._session = requests.Session()
        self._bearer: dict[str, str] = {}  # scope -> token
        self._basic = False  # set once the registry asked for Basic auth
        if auth and auth.get("password"):
            secrets.register(auth["password"])

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport -------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        repo: str,
        *,
        push: bool = False,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: bytes | Iterator[bytes] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One request, answering the registry's auth challenge once; 401/403 and no answer are errors."""
        import requests

        scope = f"repository:{repo}:{'pull,push' if push else 'pull'}"

        def send() -> requests.Response:
            sent = dict(headers or {})
            auth = None
            if scope in self._bearer:
                sent["Authorization"] = f"Bearer {self._bearer[scope]}"
            elif self._auth and self._basic:
                auth = (self._auth["username"], self._auth["password"])
            return self._session.request(
                method,
                url,
                headers=sent,
                params=params,
                data=data,
                stream=stream,
                auth=auth,
                timeout=_TIMEOUT,
            )

        try:
            response = send()
            # A streamed body cannot be sent twice; it only ever follows requests that settled the auth.
            if response.status_code == 401 and self._authenticate(response, scope):
                response = send()
        except requests.RequestException as exc:
            raise RegistryError(
                f"registry {self.host} unreachable: {secrets.redact(str(exc))}",
                hint="is the registry running? (scripts/setup.sh starts the local ones)",
            ) from None
        if response.status_code in (401, 403):
            raise RegistryError(
                f"registry {self.host} refused {method} {url.removeprefix(self.base)} ({response.status_code})",
                hint=f"log in with `docker login {self.host}`, or set HOOKBUILD_REGISTRY_USER and "
                "HOOKBUILD_REGISTRY_PASSWORD",
            )
        return response

    def _authenticate(self, response: requests.Response, scope: str) -> bool:
        """Answer a 401's challenge once; False when there is nothing new to try."""
        challenge = response.headers.get("WWW-Authenticate", "")
        if challenge.lower().startswith("basic"):
            if self._basic or not self._auth:
                return False
            self._basic = True
            return True
        if not challenge.lower().startswith("bearer") or scope in self._bearer:
            return False
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        token_auth = (self._auth["username"], self._auth["password"]) if self._auth else None
        reply = self._session.get(
            params.get("realm", ""),
            params={"service": params.get("service", ""), "scope": scope},
            auth=token_auth,
            timeout=_TIMEOUT,
        )
        if reply.status_code != 200:
            return False
        body = reply.json()
        token = str(body.get("token") or body.get("access_token") or "")
        secrets.register(token)
        self._bearer[scope] = token
        return bool(token)

    def _fail(self, response: requests.Response, what: str) -> RegistryError:
        detail = response.text.strip().replace("\n", " ")[:300]
        return RegistryError(
            f"registry {self.host}: {what} failed (HTTP {response.status_code}: {secrets.redact(detail)})",
            hint="check the registry and its log, then retry",
        )

    # --- manifests -------------------------------------------------------------------------------

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """What a tag (or digest) resolves to now, or None if the registry has no such manifest."""
        response = self._request(
            "HEAD", f"{self.base}/{repo}/manifests/{reference}", repo, headers={"Accept": _ACCEPT}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"HEAD {repo}:{reference}")
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        found = self.manifest_or_none(repo, reference)  # a registry that leaves the header out
        return found.digest if found else None

    def manifest_or_none(self, repo: str, reference: str) -> Manifest | None:
        response = self._request(
            "GET", f"{self.base}/{repo}/manifests/{reference}", repo, headers={"Accept": _ACCEPT}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"GET {repo}:{reference}")
        raw = response.content
        digest = digest_of(raw)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(
                f"registry {self.host} served {repo}@{reference} with content hashing to {digest}",
                hint="the registry's storage is corrupt or something rewrites manifests in between",
            )
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip() or OCI_MANIFEST
        return Manifest(raw=raw, media_type=media_type, digest=digest)

    def manifest(self, repo: str, reference: str) -> Manifest:
        found = self.manifest_or_none(repo, reference)
        if found is None:
            raise RegistryError(f"{self.host}/{repo}:{reference} does not exist", hint="was it pushed?")
        return found

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> str:
        response = self._request(
            "PUT",
            f"{self.base}/{repo}/manifests/{reference}",
            repo,
            push=True,
            data=raw,
            headers={"Content-Type": media_type},
        )
        if response.status_code not in (200, 201):
            raise self._fail(response, f"push of manifest {repo}:{reference}")
        digest = digest_of(raw)
        given = response.headers.get("Docker-Content-Digest")
        if given and given != digest:
            raise RegistryError(
                f"registry {self.host} stored {repo}:{reference} as {given}, not {digest}",
                hint="the registry rewrote the manifest; use a registry that stores manifests as pushed",
            )
        return digest

    # --- blobs -----------------------------------------------------------------------------------

    def has_blob(self, repo: str, digest: str) -> bool:
        response = self._request("HEAD", f"{self.base}/{repo}/blobs/{digest}", repo)
        return response.status_code == 200

    def blob(self, repo: str, digest: str, *, limit: int = 64 << 20) -> bytes:
        """A small blob (attachment layer, config), checked against its digest."""
        response = self._request("GET", f"{self.base}/{repo}/blobs/{digest}", repo)
        if response.status_code != 200:
            raise self._fail(response, f"GET blob {repo}@{digest}")
        data = response.content
        if len(data) > limit or digest_of(data) != digest:
            raise RegistryError(
                f"blob {repo}@{digest} from {self.host} does not match its digest",
                hint="the registry's storage is corrupt",
            )
        return data

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        if not self.has_blob(repo, digest):
            self._upload(repo, digest, data)
        return digest

    def _upload(
        self, repo: str, digest: str, body: bytes | Iterator[bytes], location: str | None = None
    ) -> None:
        location = location or self._start_upload(repo, params={})
        assert location is not None
        response = self._request(
            "PUT",
            location,
            repo,
            push=True,
            params={"digest": digest},
            data=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        if response.status_code != 201:
            raise self._fail(response, f"upload of blob {repo}@{digest}")

    def _start_upload(self, repo: str, *, params: Mapping[str, str]) -> str | None:
        """The upload URL, or None when a cross-repository mount already placed the blob."""
        response = self._request(
            "POST", f"{self.base}/{repo}/blobs/uploads/", repo, push=True, params=dict(params)
        )
        if response.status_code == 201 and params:
            return None
        if response.status_code != 202:
            raise self._fail(response, f"starting an upload to {repo}")
        location = response.headers["Location"]
        return location if "://" in location else f"{self.base.removesuffix('/v2')}{location}"

    def copy_blob(self, source: Registry, source_repo: str, repo: str, digest: str) -> bool:
        """Make `digest` exist in `repo`; False if it already did. Same registry: mount, no bytes move."""
        if self.has_blob(repo, digest):
            return False
        location = None
        if source.host == self.host:
            location = self._start_upload(repo, params={"mount": digest, "from": source_repo})
            if location is None:
                return True
        response = source._request(
            "GET", f"{source.base}/{source_repo}/blobs/{digest}", source_repo, stream=True
        )
        if response.status_code != 200:
            raise source._fail(response, f"GET blob {source_repo}@{digest}")
        with response:
            # the registry checks the digest of what it received: a corrupted stream fails the PUT
            self._upload(repo, digest, response.iter_content(_CHUNK), location)
        return True


def connector(user: str | None) -> Callable[[str], Registry]:
    """Registry clients with hookbuild's credentials for each host (HOOKBUILD_REGISTRY_*, else Docker's)."""
    from hookbuild.images.registry import credentials

    def connect(host: str) -> Registry:
        return Registry(host, auth=credentials(host, user=user))

    return connect
