"""Registry truth on the real local registry: a retry of a recorded release whose tag moved fails (or is
repaired with --repair), and `invoke versions --check-registry` reports the drift (issue 12).

Everything goes into a namespace and a record of this test's own; nothing is built: the recorded release
is made from the sample's sources (the same inputs key a retry computes) and a small image pushed here.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest
from conftest import registry_auth, run_invoke

from hookbuild import config, record, variants
from hookbuild.errors import ExitCode
from hookbuild.images.reference import ImageRef
from hookbuild.images.registry_api import Registry
from hookbuild.record import edit
from hookbuild.release.identity import inputs_key, origin_of
from hookbuild.release.plan import plan
from hookbuild.release.request import Request
from hookbuild.version import Version

pytestmark = [pytest.mark.docker, pytest.mark.registry]

REGISTRY = "127.0.0.1:5000"


def push(client: docker.DockerClient, ref: ImageRef, label: str) -> str:
    """Build a one-layer image from the local busybox with a unique label, push it to `ref`, return its digest."""
    _image, _ = client.images.build(
        fileobj=io.BytesIO(f'FROM hookbuild/busybox:1\nLABEL test="{label}"\n'.encode()),
        tag=str(ref),
        rm=True,
    )
    try:
        for chunk in client.api.push(
            ref.name, tag=ref.tag, auth_config=registry_auth(), stream=True, decode=True
        ):
            assert "error" not in chunk, chunk
    finally:
        client.images.remove(str(ref), force=True)
    digest = held(ref)
    assert digest is not None
    return digest


def held(ref: ImageRef) -> str | None:
    with Registry(ref.registry, auth=registry_auth()) as registry:
        return registry.manifest_digest(ref.repository, ref.tag)


@pytest.fixture
def recorded(tmp_path: Path, docker_client: docker.DockerClient) -> tuple[dict[str, str], ImageRef, str]:
    """A sample istio@12.1 recorded as released (the inputs a retry computes) with its image pushed."""
    namespace = f"hookbuild-test-record-{secrets.token_hex(4)}"
    env = {"HOOKBUILD_DIST": str(tmp_path / "dist"), "HOOKBUILD_NAMESPACE": namespace}
    settings = config.load(env={**os.environ, **env})  # the session's signing key too
    the_plan = plan(Request(variant=variants.get("istio"), version=Version(12, 1), sample=True), settings)
    digest = push(docker_client, the_plan.image, "recorded")
    provenance = record.Provenance(
        image=str(the_plan.image),
        digest=digest,
        released_at=datetime.now(UTC).replace(microsecond=0),
        envoy_commit=origin_of(the_plan).commits["envoy"],
        binary_sha256="d" * 64,
        inputs_key=inputs_key(the_plan, origin_of(the_plan)),
        base_image=the_plan.base_image,
        dockerfile=the_plan.dockerfile.name,
        checked=("hookpoints",),
    )
    edit.add_release(the_plan.versions_file, "istio", "12.1", provenance, features=("hookpoints",))
    return env, the_plan.image, digest


RETRY = ("release", "--variant", "istio", "--sample", "--version", "12.1")


def test_a_retry_checks_the_tag_then_repairs_it(
    recorded: tuple[dict[str, str], ImageRef, str], docker_client: docker.DockerClient
) -> None:
    env, image, digest = recorded
    record_file = Path(env["HOOKBUILD_DIST"]) / "sample" / "versions.toml"
    check = ("versions", "--check-registry", "--json", "--versions-file", str(record_file))

    same = run_invoke(*RETRY, "--json", env=env)
    assert same.returncode == 0, same.stderr[-2000:]
    assert json.loads(same.stdout)["reused"] is True
    assert run_invoke(*check, env=env).returncode == 0

    moved = push(docker_client, image, "another push to the same tag")
    before = record_file.read_bytes()
    failed = run_invoke(*RETRY, env=env)
    assert failed.returncode == ExitCode.REGISTRY_DRIFT, failed.stderr[-2000:]
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert (
        len(errors) == 1 and f"holds {moved}" in errors[0] and digest in errors[0] and "--repair" in errors[0]
    )
    assert "already released" not in failed.stdout
    as_json = run_invoke(*RETRY, "--json", env=env)
    assert (
        json.loads(as_json.stdout)
        == {
            "error": json.loads(as_json.stdout)["error"],
            "hint": json.loads(as_json.stdout)["hint"],
            "exit": ExitCode.REGISTRY_DRIFT,
        }
        and f"holds {moved}" in json.loads(as_json.stdout)["error"]
    )
    report = run_invoke(*check, env=env)
    assert report.returncode == ExitCode.REGISTRY_DRIFT
    assert json.loads(report.stdout) == [
        {"ref": "istio@12.1", "image": str(image), "recorded": digest, "found": moved, "holds": False}
    ]
    assert record_file.read_bytes() == before  # the record is the truth; the tag is what gets fixed

    repaired = run_invoke(*RETRY, "--repair", "--json", env=env)
    assert repaired.returncode == 0, repaired.stderr[-2000:]
    assert json.loads(repaired.stdout)["digest"] == digest
    assert held(image) == digest
    assert run_invoke(*check, env=env).returncode == 0


def test_a_deleted_tag_is_drift_too(recorded: tuple[dict[str, str], ImageRef, str]) -> None:
    env, image, _digest = recorded
    gone = ImageRef(registry=image.registry, repository=image.repository + "-gone", tag=image.tag)
    record_file = Path(env["HOOKBUILD_DIST"]) / "sample" / "versions.toml"
    text = record_file.read_text()
    record_file.write_text(text.replace(f'image = "{image}"', f'image = "{gone}"'))
    ran = run_invoke("versions", "--check-registry", "--versions-file", str(record_file), env=env)
    assert ran.returncode == ExitCode.REGISTRY_DRIFT
    assert f"MOVED  istio@12.1  {gone} is gone" in ran.stdout
