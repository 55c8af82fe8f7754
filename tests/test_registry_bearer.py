"""registry_api's Bearer path on a real registry: Debian's docker-registry 2.8 with `auth: token`, trusting a
token service of the test's own (tests/token_server.py), the way Docker Hub, ghcr.io and quay.io answer.

Through the code that uses the client: the supply chain's attachment push and fetch, `release --repair`'s
pointing a tag back, promote's blob copies (a mount within the registry, a stream from the Basic-auth one),
tokens per scope and reused, an expired token renewed; wrong credentials and a refused push are one
RegistryError line with neither the password nor a token in it. The Docker engine pushes there too.
"""

from __future__ import annotations

import gc
import json
import logging
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import token_server
from conftest import registry_auth

from hookbuild.errors import ExitCode, ImageError, RegistryError
from hookbuild.images.reference import ImageRef
from hookbuild.images.registry import push, require_pushed
from hookbuild.images.registry_api import Registry, connector
from hookbuild.release.truth import _point
from hookbuild.supply import attach
from hookbuild.supply.attach import Kind

pytestmark = pytest.mark.registry

PASSWORD = secrets.token_hex(16)
IMAGE = "sha256:" + "ab" * 32
"""The image the attachments hang off: only its digest names their tag."""


@dataclass(frozen=True)
class TokenRegistry:
    host: str
    service: token_server.TokenService


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed; run scripts/setup.sh")
    service = token_server.TokenService(
        users={
            "pusher": token_server.User(PASSWORD, {"": "pull,push"}),
            "reader": token_server.User(PASSWORD, {"": "pull"}),
            "strict": token_server.User(PASSWORD, {"": "pull"}, deny=True),
        }
    )
    workdir = tmp_path_factory.mktemp("token-registry")
    with token_server.serve(service) as realm, token_server.registry(binary, workdir, realm, service) as host:
        yield TokenRegistry(host, service)


def login(registry: TokenRegistry, user: str, password: str = PASSWORD) -> Registry:
    return Registry(registry.host, auth={"username": user, "password": password})


def sbom(text: str) -> bytes:
    return f'{{"bomFormat": "CycloneDX", "specVersion": "1.5", "note": "{text}"}}'.encode()


def test_push_fetch_and_point_a_tag_back(
    token_registry: TokenRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = f"bearer-{secrets.token_hex(4)}/istio"
    monkeypatch.setenv("HOOKBUILD_REGISTRY_PASSWORD", PASSWORD)
    asked = len(token_registry.service.asked)
    with connector("pusher")(token_registry.host) as registry:
        first = attach.push(registry, repo, IMAGE, Kind.SBOM, sbom("first"))
        assert attach.fetch(registry, repo, IMAGE, Kind.SBOM) == (first.digest, (sbom("first"),))
        second = attach.push(registry, repo, IMAGE, Kind.SBOM, sbom("second"))
        assert registry.manifest_digest(repo, first.tag) == second.digest != first.digest

        _point(registry, ImageRef.parse(f"{token_registry.host}/{repo}:{first.tag}"), first.digest)

        assert registry.manifest_digest(repo, first.tag) == first.digest
        assert registry.manifest(repo, first.digest).digest == first.digest
    # one token per scope, reused by every later request (the push asks first: it uploads without asking
    # whether the blob is there)
    assert token_registry.service.asked[asked:] == [
        (f"repository:{repo}:pull,push",),
        (f"repository:{repo}:pull",),
    ]


def test_promote_copies_mount_within_the_registry_and_stream_across(token_registry: TokenRegistry) -> None:
    """A mount needs pull on the source repository too; a blob from the Basic-auth registry is streamed in."""
    source, dest = f"bearer-{secrets.token_hex(4)}/source", f"bearer-{secrets.token_hex(4)}/dest"
    with login(token_registry, "pusher") as src, login(token_registry, "pusher") as dst:
        pushed = attach.push(src, source, IMAGE, Kind.SBOM, sbom("mounted"))
        manifest = src.manifest(source, pushed.digest)
        for blob in blobs_of(manifest.raw):
            assert dst.copy_blob(src, source, dest, blob)
        dst.put_manifest(dest, pushed.tag, manifest.raw, manifest.media_type)
        assert dst.manifest_digest(dest, pushed.tag) == pushed.digest
    assert (f"repository:{dest}:pull,push", f"repository:{source}:pull") in token_registry.service.asked

    basic_repo = f"hookbuild-test-bearer-{secrets.token_hex(4)}/source"
    with Registry("127.0.0.1:5001", auth=registry_auth()) as basic, login(token_registry, "pusher") as dst:
        pushed = attach.push(basic, basic_repo, IMAGE, Kind.SBOM, sbom("streamed"))
        manifest = basic.manifest(basic_repo, pushed.digest)
        for blob in blobs_of(manifest.raw):
            assert dst.copy_blob(basic, basic_repo, dest, blob)
        dst.put_manifest(dest, "streamed", manifest.raw, manifest.media_type)
        assert attach.fetch(dst, dest, IMAGE, Kind.SBOM)[1] == (sbom("mounted"),)
        assert dst.blob(dest, blobs_of(manifest.raw)[1]) == sbom("streamed")


def blobs_of(raw: bytes) -> list[str]:
    import json

    body = json.loads(raw)
    return [body["config"]["digest"], *(layer["digest"] for layer in body["layers"])]


def test_an_expired_token_is_renewed(token_registry: TokenRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker Hub's tokens last 300 s: a long promote outlives the first one."""
    repo = f"bearer-{secrets.token_hex(4)}/expiring"
    monkeypatch.setattr(token_registry.service, "lifetime", -58)  # the registry's 60 s leeway: ~2 s to live
    with login(token_registry, "pusher") as registry:
        pushed = attach.push(registry, repo, IMAGE, Kind.SBOM, sbom("expiring"))
        asked = len(token_registry.service.asked)
        time.sleep(3)
        assert registry.manifest_digest(repo, pushed.tag) == pushed.digest
    assert token_registry.service.asked[asked:] == [(f"repository:{repo}:pull",)]


def refusal(call: object, caplog: pytest.LogCaptureFixture, service: token_server.TokenService) -> str:
    """The one line a refused call fails with; no secret in it, nor in anything logged meanwhile."""
    assert callable(call)
    with caplog.at_level(logging.DEBUG), pytest.raises(RegistryError) as caught:
        call()
    assert caught.value.exit_code == ExitCode.IMAGE
    line = caught.value.line()
    for secret in (PASSWORD, *service.issued):
        assert secret not in line
        assert secret not in caplog.text
    return line


def test_wrong_password_is_one_line_naming_the_user(
    token_registry: TokenRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = secrets.token_hex(16)
    with login(token_registry, "pusher", wrong) as registry:
        line = refusal(
            lambda: registry.manifest_digest("bearer/any", "latest"), caplog, token_registry.service
        )
    assert wrong not in line
    assert "refused" in line and "'pusher'" in line and "HTTP 401" in line, line
    assert "docker login" in line, line


def test_a_refused_push_is_one_line_naming_the_scope(
    token_registry: TokenRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    repo = f"bearer-{secrets.token_hex(4)}/readonly"
    with login(token_registry, "pusher") as registry:
        pushed = attach.push(registry, repo, IMAGE, Kind.SBOM, sbom("readonly"))
    with login(token_registry, "reader") as registry:
        assert registry.manifest_digest(repo, pushed.tag) == pushed.digest
        line = refusal(
            lambda: attach.push(registry, repo, IMAGE, Kind.SBOM, sbom("no")), caplog, token_registry.service
        )
    assert "insufficient_scope" in line and f"repository:{repo}:pull,push" in line, line
    # a service that answers a refused scope with 403 rather than a lesser token
    with login(token_registry, "strict") as registry:
        assert registry.manifest_digest(repo, pushed.tag) == pushed.digest
        line = refusal(
            lambda: attach.push(registry, repo, IMAGE, Kind.SBOM, sbom("no")), caplog, token_registry.service
        )
    assert "'strict'" in line and "HTTP 403" in line and f"repository:{repo}:pull,push" in line, line
    with login(token_registry, "pusher") as registry:
        assert registry.manifest_digest(repo, pushed.tag) == pushed.digest


def test_no_password_goes_to_a_plain_http_token_service_off_loopback(
    token_registry: TokenRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A registry naming an http:// realm elsewhere would have the password cross the network in clear."""
    binary = shutil.which("docker-registry")
    assert binary is not None
    realm = "http://192.0.2.1/token"  # TEST-NET-1: nothing answers there, and nothing is sent
    with (
        token_server.registry(binary, tmp_path, realm, token_registry.service) as host,
        Registry(host, auth={"username": "pusher", "password": PASSWORD}) as registry,
    ):
        line = refusal(
            lambda: registry.manifest_digest("bearer/any", "latest"), caplog, token_registry.service
        )
    assert realm in line and "not HTTPS" in line, line


def test_an_identity_token_from_the_docker_config_gets_tokens_by_the_oauth2_refresh_grant(
    token_registry: TokenRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What `docker login` keeps for a registry whose token service gave a refresh token (Azure's): read
    from the Docker config by the connector a release uses, exchanged by POST, never sent anywhere else."""
    service = token_registry.service
    identity = service.identity_token("pusher")
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {token_registry.host: {"identitytoken": identity}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("HOOKBUILD_REGISTRY_PASSWORD", raising=False)
    repo = f"bearer-{secrets.token_hex(4)}/identity"
    asked, clients = len(service.asked), len(service.clients)
    with caplog.at_level(logging.DEBUG), connector(None)(token_registry.host) as registry:
        pushed = attach.push(registry, repo, IMAGE, Kind.SBOM, sbom("identity"))
        assert attach.fetch(registry, repo, IMAGE, Kind.SBOM) == (pushed.digest, (sbom("identity"),))
    assert service.asked[asked:] == [(f"repository:{repo}:pull,push",), (f"repository:{repo}:pull",)]
    assert service.clients[clients:] == ["hookbuild", "hookbuild"]
    assert identity not in caplog.text

    # a revoked or expired one: the service's invalid_grant, as one line asking for a new login
    del service.refresh_tokens[identity]
    with Registry(token_registry.host, auth={"identitytoken": identity}) as registry:
        line = refusal(lambda: registry.manifest_digest(repo, pushed.tag), caplog, service)
    assert identity not in line and identity not in caplog.text
    assert "identity token" in line and "invalid_grant" in line and "docker login" in line, line


def refused_push(client: docker.DockerClient, ref: ImageRef, auth: dict[str, str]) -> str:
    """The engine's refusal as its one line. The error's traceback and this frame refer to each other, so
    they are left to the cyclic collector, as in any test using pytest.raises: the push has closed its
    stream (its connection to the engine) itself by then."""
    with pytest.raises(ImageError) as caught:
        push(client, ref, auth=auth, on_progress=lambda _layer, _status: None)
    return caught.value.line()


@pytest.mark.docker
def test_the_engine_pushes_there_too(
    token_registry: TokenRegistry, docker_client: docker.DockerClient
) -> None:
    """The release's push stage (the Docker engine answers the challenge itself), read back through
    registry_api as the stage does, and by another user; the engine's refusal of a wrong password is one
    line without it."""
    ref = ImageRef.parse(f"{token_registry.host}/bearer-{secrets.token_hex(4)}/busybox:1")
    docker_client.images.get("hookbuild/busybox:1").tag(ref.name, ref.tag)
    try:
        wrong = {"username": "pusher", "password": secrets.token_hex(16)}
        line = refused_push(docker_client, ref, wrong)
        gc.collect()  # a stream the refused push left open fails here: an unclosed socket to the engine
        assert wrong["password"] not in line and "\n" not in line
        auth = {"username": "pusher", "password": PASSWORD}
        digest = push(docker_client, ref, auth=auth, on_progress=lambda _layer, _status: None)
        with login(token_registry, "pusher") as api:
            require_pushed(api, ref, digest)
            with pytest.raises(ImageError, match="another push raced this one"):
                require_pushed(api, ref, "sha256:" + "0" * 64)
    finally:
        docker_client.images.remove(str(ref))
    with login(token_registry, "reader") as api:
        assert api.manifest_digest(ref.repository, ref.tag) == digest


@pytest.mark.docker
def test_the_engine_pushes_with_an_identity_token(
    token_registry: TokenRegistry, docker_client: docker.DockerClient
) -> None:
    """The auth config credentials() gives for an identity token is one the engine takes: it runs the same
    OAuth2 grant (as client "docker") with it."""
    service = token_registry.service
    ref = ImageRef.parse(f"{token_registry.host}/bearer-{secrets.token_hex(4)}/busybox:1")
    docker_client.images.get("hookbuild/busybox:1").tag(ref.name, ref.tag)
    clients = len(service.clients)
    try:
        auth = {"identitytoken": service.identity_token("pusher"), "serveraddress": token_registry.host}
        digest = push(docker_client, ref, auth=auth, on_progress=lambda _layer, _status: None)
    finally:
        docker_client.images.remove(str(ref))
    assert "docker" in service.clients[clients:]
    with login(token_registry, "reader") as api:
        assert api.manifest_digest(ref.repository, ref.tag) == digest
