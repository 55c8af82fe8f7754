"""How a registry client proves who it is: the login it holds, what a host challenged for, and the tokens its
token service grants.

A login is a docker auth config: a username and password, or an identity token (an OAuth2 refresh token, as
`docker login` keeps for Azure's registries), or nothing (anonymous). A Bearer challenge names a token
service: a password goes there by Basic auth on a GET, an identity token by the OAuth2 refresh grant (a POST,
distribution's docs/spec/auth/oauth.md). No credential goes to a plain-HTTP token service off loopback unless
the user listed the registry as speaking plain HTTP.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hookbuild import secrets
from hookbuild.errors import RegistryError

if TYPE_CHECKING:
    import requests

TIMEOUT = 30.0
NO_RIGHT = "the user may not do that there: ask for the right, or push to a namespace of your own"
CLIENT_ID = "hookbuild"
"""Who asks, in an OAuth2 token request (distribution's spec requires a client_id; Docker sends "docker")."""


def challenge_params(challenge: str) -> dict[str, str]:
    """`realm="...",service="...",scope="..."` of a WWW-Authenticate challenge."""
    return dict(re.findall(r'(\w+)="([^"]*)"', challenge))


def loopback(host: str) -> bool:
    """`127.0.0.1:5000`, `localhost`, `[::1]:5000`: where Docker, too, speaks plain HTTP."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        return name == "localhost" or ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def api_base(host: str, *, insecure: bool = False) -> str:
    """`http://127.0.0.1:5000/v2`, `https://registry-1.docker.io/v2` (Docker Hub's API host)."""
    scheme = "http" if insecure or loopback(host) else "https"
    return f"{scheme}://{'registry-1.docker.io' if host == 'docker.io' else host}/v2"


def login_hint(host: str) -> str:
    return (
        f"log in with `docker login {host}`, or set HOOKBUILD_REGISTRY_USER and HOOKBUILD_REGISTRY_PASSWORD"
    )


@dataclass(kw_only=True)
class Grants:
    """What a registry host challenged for and granted, shared by the sessions one connector opens to it
    (a release's threads each have their own): a later session does not meet the same challenge again."""

    basic: bool = False  # the registry asked for Basic auth
    realm: tuple[str, str] | None = None  # (realm, service) once the registry asked for a token
    bearer: dict[str, str] = field(default_factory=dict)  # scopes, space-separated -> token


@dataclass(frozen=True, kw_only=True)
class Login:
    basic: tuple[str, str] | None = None
    identity_token: str | None = None
    user: str | None = None

    @classmethod
    def of(cls, auth: Mapping[str, str] | None) -> Login:
        """From a docker auth config ({username, password} or {identitytoken}); its secrets are redacted."""
        auth = auth or {}
        login = cls(
            basic=(auth.get("username", ""), auth["password"]) if auth.get("password") else None,
            identity_token=auth.get("identitytoken") or None,
            user=auth.get("username") or None,
        )
        for secret in (auth.get("password"), login.identity_token):
            if secret:
                secrets.register(secret)
        return login

    @property
    def who(self) -> str:
        if self.user:
            return f"user {self.user!r}"
        return "the Docker config's identity token" if self.identity_token else "anonymous access"


def fetch_token(
    session: requests.Session,
    host: str,
    *,
    realm: str,
    service: str,
    scopes: tuple[str, ...],
    login: Login,
    insecure: bool,
) -> str:
    """A token for `scopes` from the realm `host` named, with the login (if any)."""
    realm_host = realm.partition("://")[2].split("/")[0]
    plain = loopback(realm_host) or (insecure and realm_host == host)  # as the user chose
    if (login.basic or login.identity_token) and not (realm.startswith("https://") or plain):
        raise RegistryError(
            f"registry {host} names the token service {realm!r}: not HTTPS, so no credentials go there",
            hint="a registry outside loopback must name an https:// realm; check the registry's auth config",
        )
    if login.identity_token:
        # the identity token is a refresh token, sent in a POST's form
        reply = session.post(
            realm,
            data={
                "grant_type": "refresh_token",
                "refresh_token": login.identity_token,
                "service": service,
                "scope": " ".join(scopes),
                "client_id": CLIENT_ID,
            },
            timeout=TIMEOUT,
        )
    else:
        reply = session.get(
            realm, params={"service": service, "scope": list(scopes)}, auth=login.basic, timeout=TIMEOUT
        )
    refused = _oauth_refusal(reply) if login.identity_token else None
    if reply.status_code in (401, 403) or refused:
        raise RegistryError(
            f"registry {host}: the token service {realm} refused {' '.join(scopes)} to {login.who} "
            f"(HTTP {reply.status_code}{f' {refused}' if refused else ''})",
            hint=NO_RIGHT if reply.status_code == 403 else login_hint(host),
        )
    try:
        body = reply.json()
        token = str(body.get("token") or body.get("access_token") or "")
    except (ValueError, AttributeError):  # not JSON, or JSON but not an object
        token = ""
    if reply.status_code != 200 or not token:
        detail = secrets.redact(reply.text.strip().replace("\n", " ")[:300])
        raise RegistryError(
            f"registry {host}: the token service {realm} gave no token (HTTP {reply.status_code}: {detail})",
            hint="check the token service and its log, then retry",
        )
    secrets.register(token)
    return token


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
