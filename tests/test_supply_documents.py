"""What gets signed and attached, without Docker: the SLSA statement, the CycloneDX SBOM, the refusal to
release unsigned by accident. The SBOM parser reads this machine's real dpkg database."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import run_task

from hookbuild import secrets
from hookbuild.errors import SigningError
from hookbuild.supply import provenance, sbom

DIGEST = "sha256:" + "ab" * 32
BINARY = "cd" * 32


def facts(**changes: object) -> provenance.BuildFacts:
    values: dict[str, object] = {
        "repository": "127.0.0.1:5000/ns/istio-proxy",
        "image_digest": DIGEST,
        "binary_sha256": BINARY,
        "binary_path": "/usr/local/bin/envoy",
        "build_id": "1cfa58981fafb8a03cffd3bdd7e4442b8eee79f3",
        "variant": "istio",
        "version": "12.1",
        "sample": False,
        "based_on": None,
        "commands": ("make build_envoy BUILD_WITH_CONTAINER=1",),
        "bazel_options": ("--remote_cache=http://builder:s3cret-token-77@cache.example:8080",),
        "dockerfile": "custom_istio.dockerfile",
        "packages": ("perf",),
        "dependencies": (
            provenance.Dependency(name="envoy", uri="git+file:///src/envoy", digest={"gitCommit": "a" * 40}),
            provenance.Dependency(
                name="patch 0001.patch", uri="file:0001.patch", digest={"sha256": "e" * 64}
            ),
        ),
        "builder": "urn:hookbuild:builder:ci",
        "started": datetime(2026, 12, 1, 10, 0, 0, 123, tzinfo=UTC),
        "finished": datetime(2026, 12, 1, 10, 5, 0, tzinfo=UTC),
    }
    values.update(changes)
    return provenance.BuildFacts(**values)  # type: ignore[arg-type]


def test_the_statement_is_slsa_v1_provenance_of_the_image_and_the_binary() -> None:
    statement = json.loads(provenance.payload(facts()))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert provenance.subject_digests(statement) == {DIGEST, f"sha256:{BINARY}"}
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"] == {"variant": "istio", "version": "12.1", "sample": False}
    assert definition["internalParameters"]["buildCommands"] == ["make build_envoy BUILD_WITH_CONTAINER=1"]
    assert [d["digest"] for d in definition["resolvedDependencies"]] == [
        {"gitCommit": "a" * 40},
        {"sha256": "e" * 64},
    ]
    metadata = statement["predicate"]["runDetails"]["metadata"]
    assert (metadata["startedOn"], metadata["finishedOn"]) == ("2026-12-01T10:00:00Z", "2026-12-01T10:05:00Z")


def test_no_secret_is_signed() -> None:
    text = provenance.payload(facts()).decode()
    assert "s3cret-token-77" not in text and "builder:s3cret" not in text  # user-info dropped from URLs
    assert "--remote_cache=http://cache.example:8080" in text
    secrets.register("hunter2-registry-password")
    redacted = provenance.payload(facts(commands=("make X=hunter2-registry-password",))).decode()
    assert "hunter2-registry-password" not in redacted
    with pytest.raises(SigningError, match="would contain a secret"):
        provenance.payload(facts(dockerfile="hunter2-registry-password.dockerfile"))


def test_the_dpkg_database_of_this_machine_parses() -> None:
    status = Path("/var/lib/dpkg/status").read_text(encoding="utf-8")
    packages = {p.name: p for p in sbom.parse_dpkg_status(status)}
    assert {"dpkg", "bash", "coreutils"} <= set(packages)
    assert packages["dpkg"].version and packages["dpkg"].architecture
    assert len(packages) == status.count("Status: install ok installed")


def test_removed_packages_are_not_components() -> None:
    text = (
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        "Package: here\nStatus: install ok installed\nVersion: 2.0-1\nArchitecture: amd64\nSource: src (2.0)\n"
        "Description: x\n continued line: with a colon\n"
    )
    assert [(p.name, p.version, p.source) for p in sbom.parse_dpkg_status(text)] == [("here", "2.0-1", "src")]


def test_the_sbom_names_the_binary_and_the_packages_and_is_deterministic() -> None:
    contents = sbom.ImageContents(
        distro="debian",
        distro_version="12",
        packages=(sbom.Package(name="libc6", version="2.36-9", architecture="amd64"),),
    )
    binary = sbom.BinaryFacts(
        path="/usr/local/bin/envoy",
        sha256=BINARY,
        build_id="1cfa58981fafb8a03cffd3bdd7e4442b8eee79f3",
        commits=(("envoy", "a" * 40), ("proxy", "b" * 40)),
        patches=(("0001.patch", "e" * 64),),
    )

    def make() -> bytes:
        created = datetime(2026, 12, 1, tzinfo=UTC)
        repo = "127.0.0.1:5000/ns/istio-proxy"
        return sbom.document(
            repository=repo, image_digest=DIGEST, created=created, contents=contents, binary=binary
        )

    document = make()
    assert document == make()
    # Rendered beside the push, before the digest is known: the very same bytes once it is.
    draft = sbom.draft(
        repository="127.0.0.1:5000/ns/istio-proxy",
        created=datetime(2026, 12, 1, tzinfo=UTC),
        contents=contents,
        binary=binary,
    )
    assert DIGEST.removeprefix("sha256:") not in draft.text and draft.for_image(DIGEST) == document
    assert sbom.names_binary(document, BINARY) and not sbom.names_binary(document, "0" * 64)
    bom = json.loads(document)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    envoy = next(c for c in bom["components"] if c["name"] == "envoy")
    assert [c["uid"] for c in envoy["pedigree"]["commits"]] == ["a" * 40, "b" * 40]
    libc = next(c for c in bom["components"] if c["name"] == "libc6")
    assert libc["purl"] == "pkg:deb/debian/libc6@2.36-9?arch=amd64&distro=debian-12"
    assert not sbom.names_binary(b"<not json>", BINARY)


def test_without_a_key_a_release_refuses_to_start(tmp_path: Path) -> None:
    env = {"HOOKBUILD_DIST": str(tmp_path), "HOOKBUILD_SIGNING_KEY": ""}
    ran = run_task("release", "--sample", "--version", "88.1", "--dry-run", env=env)
    assert ran.returncode == 2
    assert ran.stderr.startswith("error: no signing key") and "--no-sign" in ran.stderr
    ran = run_task("release", "--sample", "--version", "88.1", "--dry-run", "--no-sign", env=env)
    assert ran.returncode == 0, ran.stderr
    assert "sign: skipped (--no-sign): the release is recorded as unsigned" in ran.stdout
    missing = run_task(
        "release", "--sample", "--version", "88.1", "--signing-key", str(tmp_path / "nope.pem"), env=env
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not (tmp_path / "sample" / "istio" / "88.1" / "envoy").exists()  # nothing was built


def test_an_encrypted_key_signs_with_its_password_from_the_environment_and_it_is_never_shown(
    tmp_path: Path,
) -> None:
    password = "pw-for-the-signing-key-4711"
    key = tmp_path / "encrypted.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-aes-256-cbc", "-pass", "env:PW", "-out", str(key)],
        env={"PATH": "/usr/bin:/bin", "PW": password},
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)
    env = {"HOOKBUILD_DIST": str(tmp_path), "HOOKBUILD_SIGNING_KEY": str(key)}
    args = ("release", "--sample", "--version", "88.2", "--dry-run", "--verbose", "--json")
    refused = run_task(*args, env=env)
    assert refused.returncode == 2 and "HOOKBUILD_SIGNING_KEY_PASSWORD" in refused.stderr
    ran = run_task(*args, env={**env, "HOOKBUILD_SIGNING_KEY_PASSWORD": password})
    assert ran.returncode == 0, ran.stderr
    assert "DSSE-signed with key sha256:" in ran.stdout
    assert password not in ran.stdout + ran.stderr
    assert "HOOKBUILD_SIGNING_KEY_PASSWORD" in secrets.ENV_NAMES  # never inherited by the processes we start
