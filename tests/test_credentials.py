"""Registry credentials from the Docker config, in each form `docker login` and credential helpers leave them.

An `auths` entry (user and password), a credential helper (a real `docker-credential-*` program on PATH, as
desktop, pass, ecr-login and gcloud are), and an identity token (an OAuth2 refresh token: an `auths` entry's
`identitytoken`, or a helper's answer for the user `<token>`). Each used to be missed but the first, leaving a
logged-in user to push anonymously. Their use against a token service is in test_registry_bearer.py.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from pathlib import Path

import pytest

from hookbuild import secrets as hookbuild_secrets
from hookbuild.errors import ConfigError
from hookbuild.images.registry import credentials

HOST = "registry.example.test:5000"


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "docker"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.delenv("HOOKBUILD_REGISTRY_PASSWORD", raising=False)
    return config


def helper(directory: Path, name: str, username: str, secret: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A credential helper speaking Docker's protocol: `get` reads the server on stdin, answers JSON."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(exist_ok=True)
    program = bin_dir / f"docker-credential-{name}"
    answer = json.dumps({"Username": username, "Secret": secret})
    program.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 1\n'
        "read server\n"
        f'[ "$server" = "{HOST}" ] || {{ echo "credentials not found in native keychain"; exit 1; }}\n'
        f"echo '{answer}'\n"
    )
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return program


def test_an_auths_entry(docker_config: Path) -> None:
    password = secrets.token_hex(8)
    encoded = base64.b64encode(f"pusher:{password}".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {HOST: {"auth": encoded}}}))
    assert credentials(HOST, user=None) == {"username": "pusher", "password": password, "serveraddress": HOST}
    assert credentials("elsewhere.test", user=None) is None


@pytest.mark.parametrize("key", ["credHelpers", "credsStore"])
def test_a_credential_helper_gives_user_and_password(
    docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    password = secrets.token_hex(8)
    helper(tmp_path, "fake", "pusher", password, monkeypatch)
    (docker_config / "config.json").write_text(
        json.dumps({key: {HOST: "fake"} if key == "credHelpers" else "fake"})
    )
    assert credentials(HOST, user=None) == {"username": "pusher", "password": password, "serveraddress": HOST}
    assert hookbuild_secrets.redact(f"a {password} b") == f"a {hookbuild_secrets.MASK} b"


def test_identity_tokens_from_an_auths_entry_and_from_a_helper(
    docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = secrets.token_urlsafe(16)
    (docker_config / "config.json").write_text(json.dumps({"auths": {HOST: {"identitytoken": token}}}))
    assert credentials(HOST, user=None) == {"identitytoken": token, "serveraddress": HOST}
    assert hookbuild_secrets.redact(f"x {token} y") == f"x {hookbuild_secrets.MASK} y"

    other = secrets.token_urlsafe(16)
    helper(tmp_path, "tokens", "<token>", other, monkeypatch)  # the helpers' way of saying "identity token"
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {HOST: "tokens"}}))
    assert credentials(HOST, user=None) == {"identitytoken": other, "serveraddress": HOST}


def test_the_environment_comes_before_the_docker_config(docker_config: Path) -> None:
    (docker_config / "config.json").write_text(json.dumps({"auths": {HOST: {"identitytoken": "t"}}}))
    password = secrets.token_hex(8)
    got = credentials(HOST, user="ci", env={"HOOKBUILD_REGISTRY_PASSWORD": password})
    assert got == {"username": "ci", "password": password, "serveraddress": HOST}


def test_a_missing_or_failing_helper_is_one_line_naming_the_config(
    docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config copied from Docker Desktop names `desktop`, which a Linux CI runner does not have."""
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "nosuchhelper"}))
    with pytest.raises(ConfigError) as caught:
        credentials(HOST, user=None)
    line = caught.value.line()
    assert str(docker_config / "config.json") in line and HOST in line, line
    assert "docker-credential-nosuchhelper not installed" in line and "HOOKBUILD_REGISTRY_PASSWORD" in line, (
        line
    )

    program = helper(tmp_path, "broken", "pusher", "unused", monkeypatch)
    program.write_text(
        "#!/bin/sh\necho 'error getting credentials - err: exit status 1, out: locked keyring' >&2\nexit 1\n"
    )
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {HOST: "broken"}}))
    with pytest.raises(ConfigError, match="no credentials for"):
        credentials(HOST, user=None)


def test_a_registry_only_pulled_from_never_gets_the_environments_password(docker_config: Path) -> None:
    """An upstream base image's registry: the Docker config's login for it, or none."""
    env = {"HOOKBUILD_REGISTRY_PASSWORD": secrets.token_hex(8)}
    assert credentials(HOST, user="ci", env=env, from_env=False) is None
    (docker_config / "config.json").write_text(json.dumps({"auths": {HOST: {"identitytoken": "theirs"}}}))
    assert credentials(HOST, user="ci", env=env, from_env=False) == {
        "identitytoken": "theirs",
        "serveraddress": HOST,
    }
