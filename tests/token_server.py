"""A token service and a registry that trusts it: Debian's docker-registry 2.8 with `auth: token`; and a
registry without auth that speaks plain HTTP off loopback.

What the registry accepts (distribution 2.8, registry/auth/token/token.go): a JWT whose `x5c` header holds a
certificate its rootcertbundle trusts, signed with that certificate's key (ES256: r||s, as libtrust reads
it), with `iss` = issuer, `aud` = service (one string), `exp`/`nbf` within 60 s of leeway, and an `access`
list of {type, name, actions} that must cover every action a request needs (else 401 insufficient_scope).

The service checks Basic credentials on a GET (401 when wrong) and grants, like Docker Hub, only the actions a
user holds: a push it refuses is a token without `push`. A user marked `deny` gets HTTP 403 instead, as some
services answer a scope they refuse. A POST is distribution's OAuth2 flow (docs/spec/auth/oauth.md), the one
the Docker engine and CLI use for an identity token: a form with grant_type=refresh_token, the refresh token,
service, scope (space-separated) and client_id; an unknown refresh token is RFC 6749's 400 `invalid_grant`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import fcntl
import json
import secrets
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

ISSUER = "hookbuild-test-token-service"
SIOCGIFADDR = 0x8915  # linux/sockios.h: an interface's address
SERVICE = "hookbuild-test-registry"


@dataclass(frozen=True)
class User:
    password: str
    grants: Mapping[str, str]
    """Repository prefix -> the actions held there ("pull" or "pull,push")."""
    deny: bool = False


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


@dataclass
class TokenService:
    users: Mapping[str, User]
    lifetime: int = 300
    """Seconds a token is good for; the registry adds 60 s of leeway, so -58 makes a token live ~2 s."""
    asked: list[tuple[str, ...]] = field(default_factory=list)
    """The scopes of every token request that passed the credentials check, in order."""
    issued: list[str] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    """Identity tokens (OAuth2 refresh tokens) -> the user each stands for."""
    clients: list[str] = field(default_factory=list)
    """The client_id of every OAuth2 request, in order."""
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    cert: x509.Certificate = field(init=False)
    """Self-signed: the registry's rootcertbundle holds it and every token's x5c names it."""

    def __post_init__(self) -> None:
        self.cert = _certificate(self.key)

    def issue(self, subject: str, access: list[dict[str, object]]) -> str:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + self.lifetime,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        token = f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        self.issued.append(token)
        return token

    def identity_token(self, name: str) -> str:
        """A new refresh token standing for user `name`, as a login through the OAuth2 flow would get."""
        token = secrets.token_urlsafe(24)
        self.refresh_tokens[token] = name
        return token

    def answer(self, authorization: str, query: str) -> tuple[int, dict[str, object]]:
        """(HTTP status, JSON body) for one GET of the realm."""
        params = urllib.parse.parse_qs(query)
        name, password = _basic(authorization)
        user = self.users.get(name)
        if user is None or not secrets.compare_digest(user.password, password):
            return 401, {"details": "incorrect username or password"}
        if params.get("service") != [SERVICE]:
            return 400, {"details": "unknown service"}
        return self._grant(name, tuple(scope for value in params.get("scope", ()) for scope in value.split()))

    def answer_form(self, body: str) -> tuple[int, dict[str, object]]:
        """(HTTP status, JSON body) for one POST of the realm: the OAuth2 refresh-token grant."""
        form = {key: values[0] for key, values in urllib.parse.parse_qs(body).items()}
        if form.get("grant_type") != "refresh_token" or not form.get("client_id"):
            return 400, {"error": "unsupported_grant_type"}
        self.clients.append(form["client_id"])
        name = self.refresh_tokens.get(form.get("refresh_token", ""))
        if name is None:
            return 400, {"error": "invalid_grant", "error_description": "unknown or expired refresh token"}
        if form.get("service") != SERVICE:
            return 400, {"error": "invalid_request", "error_description": "unknown service"}
        return self._grant(name, tuple(form.get("scope", "").split()))

    def _grant(self, name: str, scopes: tuple[str, ...]) -> tuple[int, dict[str, object]]:
        user = self.users[name]
        self.asked.append(scopes)
        access: list[dict[str, object]] = []
        for scope in scopes:
            kind, repo, actions = scope.split(":")
            held = next((a for prefix, a in user.grants.items() if repo.startswith(prefix)), "").split(",")
            granted = [action for action in actions.split(",") if action in held]
            if user.deny and len(granted) < len(actions.split(",")):
                return 403, {"details": f"requested access to {scope} is denied"}
            access.append({"type": kind, "name": repo, "actions": granted})
        token = self.issue(name, access)
        return 200, {"token": token, "access_token": token, "expires_in": self.lifetime}


def _basic(authorization: str) -> tuple[str, str]:
    kind, _, encoded = authorization.partition(" ")
    if kind.lower() != "basic":
        return "", ""
    try:
        name, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return name, password


@contextmanager
def serve(service: TokenService) -> Iterator[str]:
    """The token service on a free loopback port; yields its realm URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/token":
                self.reply(404, {})
            else:
                self.reply(*service.answer(self.headers.get("Authorization", ""), url.query))

        def do_POST(self) -> None:
            form = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            if urllib.parse.urlsplit(self.path).path != "/token":
                self.reply(404, {})
            elif not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                self.reply(400, {"error": "invalid_request", "error_description": "not a form"})
            else:
                self.reply(*service.answer_form(form))

        def reply(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: pytest shows a failing test's own output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def registry(binary: str, workdir: Path, realm: str, service: TokenService) -> Iterator[str]:
    """A docker-registry on a free loopback port trusting `service`'s certificate; yields host:port."""
    bundle = workdir / "token-ca.pem"
    bundle.write_bytes(service.cert.public_bytes(serialization.Encoding.PEM))
    auth = (
        f"auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
        f"    rootcertbundle: {bundle}\n"
    )
    with _serve(binary, workdir, f"127.0.0.1:{free_port()}", auth) as host:
        yield host


def non_loopback_address() -> str:
    """An IPv4 address of this machine off loopback (docker0's at least, where dockerd runs), for a registry
    that is not treated as local: each interface's address, as the kernel gives it (SIOCGIFADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                address = socket.inet_ntoa(fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)[20:24])
            except OSError:  # no IPv4 address on it
                continue
            if not address.startswith("127."):
                return address
    raise RuntimeError("this machine has no IPv4 address off loopback")


@contextmanager
def plain_registry(binary: str, workdir: Path, address: str) -> Iterator[str]:
    """A docker-registry without auth or TLS on `address` and a free port; yields host:port."""
    with _serve(binary, workdir, f"{address}:{free_port()}", auth="") as host:
        yield host


@contextmanager
def _serve(binary: str, workdir: Path, host: str, auth: str) -> Iterator[str]:
    """docker-registry on `host` with the `auth` section given (none: open), until it answers /v2/."""
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {host}\n  secret: {secrets.token_hex(16)}\n" + auth
    )
    log = workdir / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=out)
    try:
        _wait_for_answer(host, process, log)
        yield host
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_answer(addr: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until /v2/ answers: 200 when open, a Bearer challenge (401) with token auth."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{addr}/v2/", timeout=1):
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and exc.headers.get("WWW-Authenticate", "").startswith("Bearer "):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"docker-registry on {addr} did not answer within 15 s: {log.read_text()[-2000:]}")
