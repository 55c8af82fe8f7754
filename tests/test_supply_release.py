"""The supply chain on real components: a signed sample release in the local registry, verified, tampered
with for real (a moved tag, an altered envelope, the wrong key), promoted to the second registry by digest.

Every test pushes into its own namespace (hookbuild-test-supply-<random>) and writes its own record copy.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import token_server
from conftest import (
    ROOT,
    SAMPLE_ISTIO_BUILDARGS,
    Ran,
    istio_image_context,
    make_signing_key,
    registry_auth,
    run_invoke,
)

from hookbuild import config, record, variants
from hookbuild.errors import ExitCode, RegistryError
from hookbuild.images.reference import ImageRef
from hookbuild.images.registry_api import Registry
from hookbuild.release.execute import execute
from hookbuild.release.plan import plan
from hookbuild.release.request import Request
from hookbuild.supply import attach
from hookbuild.supply.attach import Kind

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.bazel]

PROMOTE_REGISTRY = "127.0.0.1:5001"


@dataclass(frozen=True)
class Released:
    ref: str
    namespace: str
    dist: Path
    key: Path
    result: dict[str, object]

    @property
    def versions(self) -> Path:
        return self.dist / "sample" / "versions.toml"

    def entry(self) -> record.Entry:
        return record.load(self.versions).get(self.ref)

    def invoke(self, *args: str) -> Ran:
        return run_invoke(*args, "--versions-file", str(self.versions), env=self.env)

    @property
    def env(self) -> dict[str, str]:
        return {
            "HOOKBUILD_DIST": str(self.dist),
            "HOOKBUILD_NAMESPACE": self.namespace,
            "HOOKBUILD_SIGNING_KEY": str(self.key),
        }


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Released]:
    """One signed sample release (after a first attempt whose attachment the registry refused)."""
    work = tmp_path_factory.mktemp("supply")
    namespace = f"hookbuild-test-supply-{uuid.uuid4().hex[:8]}"
    key, dist = make_signing_key(work / "signing.pem"), work / "dist"
    env = {"HOOKBUILD_DIST": str(dist), "HOOKBUILD_NAMESPACE": namespace, "HOOKBUILD_SIGNING_KEY": str(key)}
    settings = config.load(ROOT, env=env)
    the_plan = plan(Request(variant=variants.get("istio"), version=None, sample=True), settings)
    ref = the_plan.ref
    # The registry refuses the attachment (bad credentials for it alone): the release fails, records nothing.
    refused = {"username": "hookbuild", "password": "not-the-password"}
    with pytest.raises(RegistryError, match="refused"):
        execute(the_plan, connect=lambda host: Registry(host, auth=refused))
    entry = record.load(the_plan.versions_file).find("istio", the_plan.version)
    assert entry is None or entry.release is None  # nothing recorded
    client = docker.from_env()
    assert str(the_plan.image) not in [t for image in client.images.list() for t in image.tags]
    ran = run_invoke("release", "--variant", "istio", "--sample", "--json", env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    yield Released(ref=ref, namespace=namespace, dist=dist, key=key, result=json.loads(ran.stdout))
    client.images.remove(str(the_plan.image), noprune=True)  # the recorded release's local tag
    client.close()


def test_the_registry_holds_a_signed_attestation_and_an_sbom(released: Released) -> None:
    release = released.entry().release
    assert release is not None and release.signed
    image = ImageRef.parse(release.image)
    hexdigest = release.digest.removeprefix("sha256:")
    with Registry(image.registry, auth=registry_auth()) as registry:
        assert registry.manifest_digest(image.repository, f"sha256-{hexdigest}.att") == release.attestation
        assert registry.manifest_digest(image.repository, f"sha256-{hexdigest}.sbom") == release.sbom
        _, (envelope,) = attach.fetch(registry, image.repository, release.digest, Kind.ATTESTATION)
        _, (bom,) = attach.fetch(registry, image.repository, release.digest, Kind.SBOM)
    data = json.loads(envelope)
    assert data["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(data["payload"]))
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert {"sha256": hexdigest} in [s["digest"] for s in statement["subject"]]
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["variant"] == "istio"
    assert any("make build_envoy" in c for c in definition["internalParameters"]["buildCommands"])
    dependencies = definition["resolvedDependencies"]
    assert {d["digest"].get("gitCommit") for d in dependencies} >= {release.envoy_commit}
    # the image the build ran in, seen while it ran (istio's build container, chosen by the checkout)
    assert "docker-image://hookbuild-sample/build-tools-proxy:sample" in [d["uri"] for d in dependencies]
    components = json.loads(bom)["components"]
    envoy = next(c for c in components if c["name"] == "envoy")
    assert envoy["hashes"] == [{"alg": "SHA-256", "content": release.binary_sha256}]
    assert any(c.get("purl", "").startswith("pkg:deb/debian/") for c in components)  # read from the image


def test_verify_passes_and_prints_the_public_key(released: Released) -> None:
    ran = released.invoke("verify", released.ref, "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    public = subprocess.run(
        ["openssl", "pkey", "-in", str(released.key), "-pubout"], capture_output=True, text=True, check=True
    )
    assert result["ok"] and result["public_key"].strip() == public.stdout.strip()
    assert result["key_id"] == released.entry().release.key_id  # type: ignore[union-attr]
    assert {c["name"] for c in result["checks"]} == {"tag", "signature", "subject", "attestation", "sbom"}


def test_the_wrong_key_fails(released: Released, tmp_path: Path) -> None:
    other = make_signing_key(tmp_path / "other.pem")
    ran = released.invoke("verify", released.ref, "--key", str(other))
    assert ran.returncode != 0
    lines = ran.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and "no signature checks with key" in lines[-1]
    assert "Traceback" not in ran.stderr


def test_an_altered_envelope_fails(released: Released) -> None:
    release = released.entry().release
    assert release is not None
    image = ImageRef.parse(release.image)
    tag = attach.tag_for(release.digest, Kind.ATTESTATION)
    with Registry(image.registry, auth=registry_auth()) as registry:
        original = registry.manifest(image.repository, tag)
        _, (envelope,) = attach.fetch(registry, image.repository, release.digest, Kind.ATTESTATION)
        data = json.loads(envelope)
        statement = json.loads(base64.b64decode(data["payload"]))
        statement["predicate"]["buildDefinition"]["externalParameters"]["version"] = "99.9"
        data["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()  # signature kept
        attach.push(registry, image.repository, release.digest, Kind.ATTESTATION, json.dumps(data).encode())
        try:
            ran = released.invoke("verify", released.ref)
        finally:
            registry.put_manifest(image.repository, tag, original.raw, original.media_type)
    assert ran.returncode != 0
    assert "no signature checks with key" in ran.stderr.strip().splitlines()[-1]
    assert released.invoke("verify", released.ref).returncode == 0  # restored: the same bytes verify again


def test_promote_copies_by_digest_with_attachments_and_a_retry_is_a_no_op(released: Released) -> None:
    target = f"{PROMOTE_REGISTRY}/{released.namespace}"
    ran = released.invoke("promote", released.ref, "--to", target, "--json")
    assert ran.returncode == 0, ran.stderr
    promotion = json.loads(ran.stdout)
    release = released.entry().release
    assert release is not None
    dest = ImageRef.parse(promotion["location"])
    assert dest.registry == PROMOTE_REGISTRY and set(promotion["copied"]) == {"image", "att", "sbom"}
    with Registry(PROMOTE_REGISTRY, auth=registry_auth()) as registry:
        assert registry.manifest_digest(dest.repository, dest.tag) == release.digest
        assert (
            registry.manifest_digest(dest.repository, attach.tag_for(release.digest, Kind.ATTESTATION))
            == release.attestation
        )
    assert release.locations == (release.image, str(dest))
    again = released.invoke("promote", released.ref, "--to", target, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["copied"] == []
    assert released.entry().release == release  # the record did not change
    verified = released.invoke("verify", released.ref, "--json")
    assert verified.returncode == 0, verified.stderr
    assert {c["location"] for c in json.loads(verified.stdout)["checks"]} == set(release.locations)


def promote_and_verify(released: Released, host: str, env: dict[str, str]) -> tuple[Ran, Ran]:
    """Promote the release to `host` with everything copied, then verify it there too."""
    argv = ("promote", released.ref, "--to", f"{host}/{released.namespace}", "--json")
    ran = run_invoke(*argv, "--versions-file", str(released.versions), env=env)
    assert ran.returncode == 0, ran.stderr
    assert set(json.loads(ran.stdout)["copied"]) == {"image", "att", "sbom"}
    verified = run_invoke(
        "verify", released.ref, "--json", "--versions-file", str(released.versions), env=env
    )
    assert verified.returncode == 0, verified.stderr
    checked = {c["location"] for c in json.loads(verified.stdout)["checks"]}
    assert json.loads(ran.stdout)["location"] in checked
    return ran, verified


def test_promote_to_a_token_registry_and_verify_there(released: Released, tmp_path: Path) -> None:
    """Docker Hub, ghcr.io and quay.io challenge for a Bearer token: promote and verify go through a token
    service (tests/token_server.py) there, with the one user and password hookbuild is given."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed; run scripts/setup.sh")
    password = registry_auth()["password"]
    grants = {f"{released.namespace}/": "pull,push"}
    service = token_server.TokenService(users={"hookbuild": token_server.User(password, grants)})
    env = {**released.env, "HOOKBUILD_REGISTRY_USER": "hookbuild", "HOOKBUILD_REGISTRY_PASSWORD": password}
    saved = (
        released.versions.read_bytes()
    )  # the token registry goes away with this test: so does its location
    try:
        with (
            token_server.serve(service) as realm,
            token_server.registry(binary, tmp_path, realm, service) as host,
        ):
            ran, verified = promote_and_verify(released, host, env)
            output = ran.stdout + ran.stderr + verified.stdout + verified.stderr
            assert all(secret not in output for secret in (password, *service.issued))
            assert service.issued  # the tokens were asked for and used
    finally:
        released.versions.write_bytes(saved)


def test_promote_to_a_plain_http_registry_off_loopback_and_verify_there(
    released: Released, tmp_path: Path
) -> None:
    """A registry the engine lists in `insecure-registries` (minikube's, an in-house one): promote and verify
    read it over HTTP once insecure_registries lists it; unlisted, promote fails in one line saying so."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed; run scripts/setup.sh")
    saved = released.versions.read_bytes()  # the registry goes away with this test: so does its location
    try:
        with token_server.plain_registry(binary, tmp_path, token_server.non_loopback_address()) as host:
            argv = ("promote", released.ref, "--to", f"{host}/{released.namespace}", "--json")
            refused = run_invoke(*argv, "--versions-file", str(released.versions), env=released.env)
            assert refused.returncode == ExitCode.IMAGE, refused.stderr
            assert "HOOKBUILD_INSECURE_REGISTRIES" in refused.stderr and refused.stderr.count("\n") == 1
            promote_and_verify(released, host, {**released.env, "HOOKBUILD_INSECURE_REGISTRIES": host})
    finally:
        released.versions.write_bytes(saved)


def test_a_moved_tag_fails(released: Released, docker_client: docker.DockerClient) -> None:
    """Last: pushes another image over the release's tag."""
    release = released.entry().release
    assert release is not None
    image = ImageRef.parse(release.image)
    with Registry(image.registry, auth=registry_auth()) as registry:
        original = registry.manifest(image.repository, release.digest)
        other = registry.manifest(
            image.repository, attach.tag_for(release.digest, Kind.SBOM)
        )  # any other manifest
        registry.put_manifest(image.repository, image.tag, other.raw, other.media_type)
        try:
            ran = released.invoke("verify", released.ref)
        finally:
            registry.put_manifest(image.repository, image.tag, original.raw, original.media_type)
    assert ran.returncode != 0
    line = ran.stderr.strip().splitlines()[-1]
    assert line.startswith("error: tag moved:") and release.digest in line


def test_no_sign_is_recorded_unsigned_and_verify_fails_closed(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    namespace = f"hookbuild-test-supply-{uuid.uuid4().hex[:8]}"
    env = {"HOOKBUILD_DIST": str(tmp_path), "HOOKBUILD_NAMESPACE": namespace}
    ran = run_invoke("release", "--variant", "istio", "--sample", "--no-sign", "--json", env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads(ran.stdout)
    assert result["key_id"] is None and "sign" in result["durations"]
    versions = tmp_path / "sample" / "versions.toml"
    ref = f"istio@{result['version']}"
    release = record.load(versions).get(ref).release
    assert release is not None and not release.signed and release.attestation is None
    image = ImageRef.parse(release.image)
    with Registry(image.registry, auth=registry_auth()) as registry:
        assert (
            registry.manifest_digest(image.repository, attach.tag_for(release.digest, Kind.ATTESTATION))
            is None
        )
    verified = run_invoke("verify", ref, "--versions-file", str(versions), env=env)
    docker_client.images.remove(release.image, noprune=True)
    assert verified.returncode != 0
    assert verified.stderr.strip().splitlines()[-1].startswith(f"error: {ref} is recorded as unsigned")


def test_the_image_the_label_step_starts_from_has_the_final_files(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """engine.build hands over the image its appended LABEL step starts from, once: the built image's layers
    without its labels, so the SBOM read from it is the built image's. No labels, no such image."""
    from hookbuild.images import engine
    from hookbuild.supply import sbom

    trace = f"// {uuid.uuid4().hex}\n"  # a step of its own
    unique = uuid.uuid4().hex
    early: list[str] = []
    built = engine.build(
        docker_client,
        context=istio_image_context(tmp_path / "labelled", trace),
        dockerfile="Dockerfile",
        buildargs=SAMPLE_ISTIO_BUILDARGS,
        labels={"io.hookbuild.test": unique},
        on_line=lambda _line: None,
        on_files=early.append,
    )
    try:
        assert len(early) == 1
        final, before = docker_client.images.get(built), docker_client.images.get(early[0])
        assert final.id != before.id and final.attrs["RootFS"] == before.attrs["RootFS"]
        assert final.labels["io.hookbuild.test"] == unique and "io.hookbuild.test" not in before.labels
        contents = sbom.image_contents(docker_client, early[0])
        assert contents.packages and contents == sbom.image_contents(docker_client, built)
    finally:
        docker_client.images.remove(built, force=True)
    plain = engine.build(
        docker_client,
        context=istio_image_context(tmp_path / "plain", trace),
        dockerfile="Dockerfile",
        buildargs=SAMPLE_ISTIO_BUILDARGS,
        labels={},
        on_line=lambda _line: None,
        on_files=early.append,
    )
    docker_client.images.remove(plain, force=True)
    assert len(early) == 1
