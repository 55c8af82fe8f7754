"""The registry HTTP API v2 (OCI distribution): manifests, tags and blobs, by digest. The one client.

What the Docker engine cannot do goes through here: ask what a tag holds now and point it back at a
recorded manifest byte for byte (release retries, `versions --check-registry`), push an artifact that is
not an image (the supply chain's attachments), read a manifest's exact bytes, and copy an image between
registries without re-compressing its layers (which would change its digest). Auth follows the registry's
challenge: Basic (the local htpasswd registries) or a Bearer token from the realm it names (Docker Hub,
ghcr.io, quay.io; see registry_auth); credentials and tokens never leave the request and are redacted from
every error. A read the registry answers with 429 or 502-504 is retried with backoff; an upload never is.
Loopback registries speak plain HTTP, as the Docker engine treats them, and so do those listed in
the insecure_registries setting (the engine's `insecure-registries`); everything else HTTPS.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hookbuild import secrets
from hookbuild.errors import RegistryError
from hookbuild.images.registry_auth import (
    NO_RIGHT,
    TIMEOUT,
    Grants,
    Login,
    api_base,
    challenge_params,
    fetch_token,
    login_hint,
)

if TYPE_CHECKING:
    import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST))
_CHUNK = 1 << 20
_RATE_LIMITED = (
    "the registry limits requests (Docker Hub: pulls per 6 hours, fewer anonymous): log in, or retry later"
)


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


class Registry:
    """One registry host. Credentials are a docker auth config ({username, password} or {identitytoken})
    or None."""

    def __init__(
        self,
        host: str,
        *,
        auth: Mapping[str, str] | None,
        grants: Grants | None = None,
        insecure: bool = False,
    ) -> None:
        self.host = host
        self.base = api_base(host, insecure=insecure)
        self._insecure = insecure
        self._login = Login.of(auth)
        self._session = _session()
        self._grants = grants or Grants()

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
            elif self._login.basic and self._grants.basic:
                auth = self._login.basic
            return self._session.request(
                method,
                url,
                headers=sent,
                params=params,
                data=data,
                stream=stream,
                auth=auth,
                timeout=TIMEOUT,
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
        except requests.exceptions.SSLError as exc:  # often a registry that speaks plain HTTP
            raise RegistryError(
                f"registry {self.host}: no TLS connection: {secrets.redact(str(exc))}",
                hint=f"if {self.host} speaks plain HTTP, list it in insecure_registries "
                "(HOOKBUILD_INSECURE_REGISTRIES) as the engine's daemon.json does; if a CA of your own signs its "
                "certificate, point REQUESTS_CA_BUNDLE at that CA",
            ) from None
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
            if self._grants.basic or not self._login.basic:
                return False
            self._grants.basic = True
            return True
        # A token issued for this very request that does not do is the service granting less than asked;
        # an older one may just have expired (Docker Hub's last 300 s): renew it once.
        if kind.lower() != "bearer" or fresh:
            return False
        challenge = challenge_params(rest)
        self._grants.realm = (challenge.get("realm", ""), challenge.get("service", ""))
        self._fetch_token(scopes)
        return True

    def _fetch_token(self, scopes: tuple[str, ...]) -> None:
        assert self._grants.realm is not None
        realm, service = self._grants.realm
        token = fetch_token(
            self._session,
            self.host,
            realm=realm,
            service=service,
            scopes=scopes,
            login=self._login,
            insecure=self._insecure,
        )
        self._grants.bearer[" ".join(scopes)] = token

    def _refused(self, response: requests.Response, what: str, scopes: tuple[str, ...]) -> RegistryError:
        kind, _, rest = response.headers.get("WWW-Authenticate", "").partition(" ")
        error = challenge_params(rest).get("error") if kind.lower() == "bearer" else None
        if error == "insufficient_scope":
            return RegistryError(
                f"registry {self.host} refused {what} (401 insufficient_scope): its token service does not "
                f"grant {' '.join(scopes)} to {self._login.who}",
                hint=NO_RIGHT,
            )
        why = f"{response.status_code} {error}" if error else str(response.status_code)
        return RegistryError(f"registry {self.host} refused {what} ({why})", hint=login_hint(self.host))

    def _fail(self, response: requests.Response, what: str) -> RegistryError:
        detail = response.text.strip().replace("\n", " ")[:300]
        return RegistryError(
            f"registry {self.host}: {what} failed (HTTP {response.status_code}: {secrets.redact(detail)})",
            hint=_RATE_LIMITED
            if response.status_code == 429
            else "check the registry and its log, then retry",
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


def _session() -> requests.Session:
    """A session that retries what is safe to: a read (HEAD, GET, a token request) the registry answered
    with 429 or 502-504, or whose connection failed, after 0.5, 1 and 2 s. An upload is never resent: a
    streamed body cannot be, and the caller's retry starts it afresh."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(
        total=3,
        backoff_factor=0.5,
        status_forcelist=(429, 502, 503, 504),
        allowed_methods=frozenset({"HEAD", "GET"}),
        respect_retry_after_header=False,  # Docker Hub's limit says hours: report it, do not wait for it
        raise_on_status=False,  # the last answer is the error to report
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def connector(user: str | None, insecure: Iterable[str] = ()) -> Callable[[str], Registry]:
    """Registry clients with hookbuild's credentials for each host (HOOKBUILD_REGISTRY_*, else Docker's);
    `insecure`: the hosts that speak plain HTTP off loopback (the insecure_registries setting)."""
    plain_http = frozenset(insecure)
    from hookbuild.images.registry import credentials

    grants: dict[str, Grants] = {}
    # Looked up once per host: a credential helper of the Docker config (ecr-login, gcloud) is a process to
    # run, and a release connects to its registry from several stages and threads.
    auths: dict[str, dict[str, str] | None] = {}

    def connect(host: str) -> Registry:
        if host not in auths:
            auths[host] = credentials(host, user=user)
        return Registry(
            host, auth=auths[host], grants=grants.setdefault(host, Grants()), insecure=host in plain_http
        )

    return connect
