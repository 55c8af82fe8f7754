"""The registry HTTP API v2 (OCI distribution): manifests, tags and blobs, by digest. The one client.

What the Docker engine cannot do goes through here: ask what a tag holds now and point it back at a
recorded manifest byte for byte (release retries, `versions --check-registry`), push an artifact that is
not an image (the supply chain's attachments), read a manifest's exact bytes, and copy an image between
registries without re-compressing its layers (which would change its digest). Auth follows the registry's
challenge: Basic (the local htpasswd registries) or a Bearer token from the realm it names (Docker Hub,
ghcr.io, quay.io), asked for with the user's password or, for an identity token (an OAuth2 refresh token, as
`docker login` keeps for Azure's registries), by the OAuth2 refresh grant; credentials and tokens never leave
the request and are redacted from every error.
Loopback registries speak plain HTTP, as the Docker engine treats them; everything else HTTPS.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
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
_NO_RIGHT = "the user may not do that there: ask for the right, or push to a namespace of your own"
_CLIENT_ID = "hookbuild"
"""Who asks, in an OAuth2 token request (distribution's spec requires a client_id; Docker sends "docker")."""


@dataclass(frozen=True, kw_only=True)
class Manifest:
    raw: bytes
    """The exact bytes: the digest is theirs, so a copy must push these and nothing re-serialized."""
    media_type: str
    digest: str


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _scopes(repo: str, *, push: bool, mount_from: str | None) -> tuple[str, ...]:
    """What a request needs granted; a mount reads the repository it mounts from, too."""
    own = f"repository:{repo}:{'pull,push' if push else 'pull'}"
    return (own, f"repository:{mount_from}:pull") if mount_from else (own,)


def _params(challenge: str) -> dict[str, str]:
    """`realm="...",service="...",scope="..."` of a WWW-Authenticate challenge."""
    return dict(re.findall(r'(\w+)="([^"]*)"', challenge))


def _loopback(host: str) -> bool:
    """`127.0.0.1:5000`, `localhost`, `[::1]:5000`: where Docker, too, speaks plain HTTP."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        return name == "localhost" or ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def _base(host: str) -> str:
    """`http://127.0.0.1:5000/v2`, `https://registry-1.docker.io/v2` (Docker Hub's API host)."""
    scheme = "http" if _loopback(host) else "https"
    return f"{scheme}://{'registry-1.docker.io' if host == 'docker.io' else host}/v2"


@dataclass(kw_only=True)
class Grants:
    """What a registry host challenged for and granted, shared by the sessions one connector opens to it
    (a release's threads each have their own): a later session does not meet the same challenge again."""

    basic: bool = False  # the registry asked for Basic auth
    realm: tuple[str, str] | None = None  # (realm, service) once the registry asked for a token
    bearer: dict[str, str] = field(default_factory=dict)  # scopes, space-separated -> token


class Registry:
    """One registry host. Credentials are a docker auth config ({username, password} or {identitytoken})
    or None."""

    def __init__(self, host: str, *, auth: Mapping[str, str] | None, grants: Grants | None = None) -> None:
        import requests

        self.host = host
        self.base = _base(host)
        auth = auth or {}
        self._basic = (auth.get("username", ""), auth["password"]) if auth.get("password") else None
        self._identity_token = auth.get("identitytoken") or None
        self._user = auth.get("username") or None
        self._session = requests.Session()
        self._grants = grants or Grants()
        for secret in (auth.get("password"), self._identity_token):
            if secret:
                secrets.register(secret)

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
        mount_from: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: bytes | Iterator[bytes] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One request, answering the registry's auth challenge once; 401/403 and no answer are errors."""
        import requests

        scopes = _scopes(repo, push=push, mount_from=mount_from)

        def send() -> requests.Response:
            sent = dict(headers or {})
            auth = None
            if " ".join(scopes) in self._grants.bearer:
                sent["Authorization"] = f"Bearer {self._grants.bearer[' '.join(scopes)]}"
            elif self._basic and self._grants.basic:
                auth = self._basic
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
            # Once the registry named its token service, a new scope's token comes before the request: a
            # streamed body cannot be sent twice, so it must never meet a challenge.
            fresh = self._grants.realm is not None and " ".join(scopes) not in self._grants.bearer
            if fresh:
                self._fetch_token(scopes)
            response = send()
            if (
                response.status_code == 401
                and isinstance(data, bytes | None)
                and self._authenticate(response, scopes, fresh=fresh)
            ):
                response = send()
        except requests.RequestException as exc:
            raise RegistryError(
                f"registry {self.host} unreachable: {secrets.redact(str(exc))}",
                hint="is the registry running? (scripts/setup.sh starts the local ones)",
            ) from None
        if response.status_code in (401, 403):
            raise self._refused(response, f"{method} {url.removeprefix(self.base)}", scopes)
        return response

    def _authenticate(self, response: requests.Response, scopes: tuple[str, ...], *, fresh: bool) -> bool:
        """Answer a 401's challenge once; False when there is nothing new to try."""
        kind, _, rest = response.headers.get("WWW-Authenticate", "").partition(" ")
        if kind.lower() == "basic":
            if self._grants.basic or not self._basic:
                return False
            self._grants.basic = True
            return True
        # A token issued for this very request that does not do is the service granting less than asked;
        # an older one may just have expired (Docker Hub's last 300 s): renew it once.
        if kind.lower() != "bearer" or fresh:
            return False
        challenge = _params(rest)
        self._grants.realm = (challenge.get("realm", ""), challenge.get("service", ""))
        self._fetch_token(scopes)
        return True

    def _fetch_token(self, scopes: tuple[str, ...]) -> None:
        """A token for `scopes` from the realm the registry named, with our credentials (if any)."""
        assert self._grants.realm is not None
        realm, service = self._grants.realm
        if (self._basic or self._identity_token) and not (
            realm.startswith("https://") or _loopback(realm.partition("://")[2].split("/")[0])
        ):
            raise RegistryError(
                f"registry {self.host} names the token service {realm!r}: not HTTPS, so no credentials go there",
                hint="a registry outside loopback must name an https:// realm; check the registry's auth config",
            )
        if self._identity_token:
            # distribution's OAuth2 flow: the identity token is a refresh token, sent in a POST's form
            reply = self._session.post(
                realm,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": self._identity_token,
                    "service": service,
                    "scope": " ".join(scopes),
                    "client_id": _CLIENT_ID,
                },
                timeout=_TIMEOUT,
            )
        else:
            reply = self._session.get(
                realm, params={"service": service, "scope": list(scopes)}, auth=self._basic, timeout=_TIMEOUT
            )
        refused = _oauth_refusal(reply) if self._identity_token else None
        if reply.status_code in (401, 403) or refused:
            raise RegistryError(
                f"registry {self.host}: the token service {realm} refused {' '.join(scopes)} to {self._who} "
                f"(HTTP {reply.status_code}{f' {refused}' if refused else ''})",
                hint=_NO_RIGHT if reply.status_code == 403 else self._login_hint,
            )
        try:
            body = reply.json()
            token = str(body.get("token") or body.get("access_token") or "")
        except (ValueError, AttributeError):  # not JSON, or JSON but not an object
            token = ""
        if reply.status_code != 200 or not token:
            detail = secrets.redact(reply.text.strip().replace("\n", " ")[:300])
            raise RegistryError(
                f"registry {self.host}: the token service {realm} gave no token (HTTP {reply.status_code}: {detail})",
                hint="check the token service and its log, then retry",
            )
        secrets.register(token)
        self._grants.bearer[" ".join(scopes)] = token

    def _refused(self, response: requests.Response, what: str, scopes: tuple[str, ...]) -> RegistryError:
        kind, _, rest = response.headers.get("WWW-Authenticate", "").partition(" ")
        error = _params(rest).get("error") if kind.lower() == "bearer" else None
        if error == "insufficient_scope":
            return RegistryError(
                f"registry {self.host} refused {what} (401 insufficient_scope): its token service does not "
                f"grant {' '.join(scopes)} to {self._who}",
                hint=_NO_RIGHT,
            )
        why = f"{response.status_code} {error}" if error else str(response.status_code)
        return RegistryError(f"registry {self.host} refused {what} ({why})", hint=self._login_hint)

    @property
    def _who(self) -> str:
        if self._user:
            return f"user {self._user!r}"
        return "the Docker config's identity token" if self._identity_token else "anonymous access"

    @property
    def _login_hint(self) -> str:
        return f"log in with `docker login {self.host}`, or set HOOKBUILD_REGISTRY_USER and HOOKBUILD_REGISTRY_PASSWORD"

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
        """Upload a small blob (an attachment's document or config) and return its digest.

        Always uploaded: what hookbuild pushes this way is new (it names a new image digest), so asking
        first would cost a round trip every time, and uploading what is there already changes nothing.
        """
        digest = digest_of(data)
        self._upload(repo, digest, data)
        return digest

    def _upload(
        self, repo: str, digest: str, body: bytes | Iterator[bytes], location: str | None = None
    ) -> None:
        location = location or self._start_upload(repo)
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

    def _start_upload(self, repo: str, *, mount: tuple[str, str] | None = None) -> str | None:
        """The upload URL, or None when mounting (digest, from repository) already placed the blob."""
        response = self._request(
            "POST",
            f"{self.base}/{repo}/blobs/uploads/",
            repo,
            push=True,
            mount_from=mount[1] if mount else None,
            params={"mount": mount[0], "from": mount[1]} if mount else None,
        )
        if response.status_code == 201 and mount:
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
            location = self._start_upload(repo, mount=(digest, source_repo))
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


def _oauth_refusal(reply: requests.Response) -> str | None:
    """An OAuth2 token endpoint's refusal of the grant itself (RFC 6749 5.2: HTTP 400 with `invalid_grant`,
    an expired or revoked refresh token, or a refused client), as its error code."""
    if reply.status_code != 400:
        return None
    try:
        error = reply.json().get("error")
    except (ValueError, AttributeError):
        return None
    return str(error) if error in ("invalid_grant", "invalid_client", "unauthorized_client") else None


def connector(user: str | None) -> Callable[[str], Registry]:
    """Registry clients with hookbuild's credentials for each host (HOOKBUILD_REGISTRY_*, else Docker's)."""
    from hookbuild.images.registry import credentials

    grants: dict[str, Grants] = {}
    # Looked up once per host: a credential helper of the Docker config (ecr-login, gcloud) is a process to
    # run, and a release connects to its registry from several stages and threads.
    auths: dict[str, dict[str, str] | None] = {}

    def connect(host: str) -> Registry:
        if host not in auths:
            auths[host] = credentials(host, user=user)
        return Registry(host, auth=auths[host], grants=grants.setdefault(host, Grants()))

    return connect
