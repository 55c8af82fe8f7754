"""A registry off loopback that speaks plain HTTP (a minikube registry, an in-house one the engine lists in
`insecure-registries`): read over HTTP when the insecure_registries setting lists it, else one line saying
to list it. Loopback registries are always plain HTTP (the other registry tests)."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import token_server

from hookbuild import config
from hookbuild.errors import ExitCode, RegistryError
from hookbuild.images.registry_api import Registry, connector
from hookbuild.supply import attach
from hookbuild.supply.attach import Kind

pytestmark = pytest.mark.registry

IMAGE = "sha256:" + "cd" * 32


@pytest.fixture(scope="module")
def plain_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed; run scripts/setup.sh")
    address = token_server.non_loopback_address()
    with token_server.plain_registry(binary, tmp_path_factory.mktemp("plain-http"), address) as host:
        yield host


def test_listed_it_is_read_over_http_and_unlisted_it_says_how_to_list_it(plain_http: str) -> None:
    repo = f"plain-{secrets.token_hex(4)}/istio"
    document = b'{"bomFormat": "CycloneDX", "specVersion": "1.5"}'
    with Registry(plain_http, auth=None) as registry, pytest.raises(RegistryError) as caught:
        attach.push(registry, repo, IMAGE, Kind.SBOM, document)
    line = caught.value.line()
    assert caught.value.exit_code == ExitCode.IMAGE and "\n" not in line
    assert f"registry {plain_http}: no TLS connection" in line and "HOOKBUILD_INSECURE_REGISTRIES" in line, (
        line
    )

    with connector(None, insecure=[plain_http])(plain_http) as registry:
        pushed = attach.push(registry, repo, IMAGE, Kind.SBOM, document)
        assert attach.fetch(registry, repo, IMAGE, Kind.SBOM) == (pushed.digest, (document,))


def test_the_setting_is_a_list_from_the_environment_or_the_pyproject(tmp_path: Path) -> None:
    env = {"HOOKBUILD_INSECURE_REGISTRIES": "10.0.0.5:5000, registry.lan:5000"}
    assert config.load(tmp_path, env=env).insecure_registries == ("10.0.0.5:5000", "registry.lan:5000")
    (tmp_path / "pyproject.toml").write_text('[tool.hookbuild]\ninsecure_registries = ["minikube:5000"]\n')
    (tmp_path / "tasks.py").write_text("")
    assert config.load(tmp_path, env={}).insecure_registries == ("minikube:5000",)
