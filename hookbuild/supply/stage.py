"""The release's sign stage, between push and record: SBOM, SLSA provenance, DSSE signature, attachments.

It runs only once the image is pushed and read back (the digest is what gets signed) and before anything is
recorded: a failure here fails the release and records nothing. `--no-sign` skips it and the release is
recorded as unsigned; without a key and without `--no-sign` the plan is refused before anything runs.
"""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hookbuild.errors import SupplyError
from hookbuild.supply import attach, provenance, sbom, signing
from hookbuild.supply.attach import Kind
from hookbuild.supply.builder import BuildImage

__all__ = ["BuildImage", "Signed", "build_facts", "describe", "prepare_sbom", "run"]

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    import docker

    from hookbuild.images.engine import LocalImage
    from hookbuild.images.reference import ImageRef
    from hookbuild.images.registry_api import Registry
    from hookbuild.release.plan import Plan
    from hookbuild.release.stages import Run

COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"


@dataclass(frozen=True, kw_only=True)
class Signed:
    """What the record keeps of the signing: the key's id and the attachments' manifest digests."""

    key_id: str
    attestation: str
    sbom: str


def describe(plan: Plan) -> list[str]:
    if plan.signer is None:
        return ["sign: skipped (--no-sign): the release is recorded as unsigned"]
    where = f"{plan.image.name}:sha256-<digest>"
    return [
        f"sbom: CycloneDX of the image's OS packages and envoy (sha256, build-id, commits, patches) -> {where}.sbom",
        f"sign: SLSA v1 provenance of the digest, DSSE-signed with key {plan.signer.key_id} -> {where}.att",
    ]


def prepare_sbom(run: Run, image: str) -> None:
    """Start the SBOM on a thread beside the release: read the OS packages in `image`'s files, then render
    the document but for the image's digest, which only the push tells (sbom.Draft).

    `image` is the built image, or the image its last step (the labels) started from: the same files. It
    needs only those (a created container, its dpkg database read out), the push only the engine's upload.
    The run's stack waits for the thread, so its container is gone before the release's local tag may be
    removed (a container keeps an image's last tag from being removed).
    """
    if run.plan.signer is None:
        return  # --no-sign: no SBOM
    from concurrent.futures import ThreadPoolExecutor

    assert run.released_at is not None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookbuild-sbom")
    run.stack.callback(pool.shutdown)
    run.sbom = pool.submit(
        _draft,
        run.docker,
        image,
        repository=run.plan.image.name,
        created=run.released_at,
        binary=_binary(run),
    )


def _draft(
    release_client: docker.DockerClient,
    image_id: str,
    *,
    repository: str,
    created: datetime,
    binary: sbom.BinaryFacts,
) -> sbom.Draft:
    from hookbuild.images import engine

    client = engine.connect(like=release_client)  # its own: the release's client stays on the main thread
    try:
        contents = sbom.image_contents(client, image_id)
    finally:
        client.close()
    return sbom.draft(repository=repository, created=created, contents=contents, binary=binary)


def _binary(run: Run) -> sbom.BinaryFacts:
    assert run.info is not None
    return sbom.BinaryFacts(
        path=run.plan.variant.binary_in_image,
        sha256=run.info.sha256,
        build_id=run.info.build_id,
        commits=tuple(run.origin.commits.items()) if run.origin else (),
        patches=_patches(run.plan),
    )


def run(run: Run) -> None:
    plan, signer = run.plan, run.plan.signer
    if signer is None:
        return  # --no-sign: recorded as unsigned
    assert run.digest is not None and run.sbom is not None
    from concurrent.futures import ThreadPoolExecutor

    facts = build_facts(run)
    envelope = signing.sign_envelope(signer, provenance.payload(facts))
    connect = run.registries()
    # The attestation and the SBOM go up side by side, each through a registry session of its own.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookbuild-attach") as pool:
        att = pool.submit(_attach, connect, plan.image, run.digest, Kind.ATTESTATION, envelope)
        with run.timed("sbom"):  # its own line in the plan, so its own time in the result
            document = run.sbom.result().for_image(run.digest)
        bom = _attach(connect, plan.image, run.digest, Kind.SBOM, document)
        run.signed = Signed(key_id=signer.key_id, attestation=att.result(), sbom=bom)


def _attach(
    connect: Callable[[str], Registry], image: ImageRef, digest: str, kind: Kind, document: bytes
) -> str:
    """Push one attachment of the image through a registry session of its own, and read it back."""
    annotations = (
        {COSIGN_SIGNATURE_ANNOTATION: "", "predicateType": provenance.PREDICATE_TYPE}
        if kind is Kind.ATTESTATION
        else None
    )
    repo = image.repository
    with connect(image.registry) as registry:
        attached = attach.push(registry, repo, digest, kind, document, annotations=annotations)
        held = registry.manifest_digest(repo, attached.tag)  # converged? only then record
    if held != attached.digest:
        raise SupplyError(
            f"{registry.host}/{repo}:{attached.tag} holds {held} right after hookbuild pushed {attached.digest}",
            hint="another push raced this one; release again (nothing was recorded)",
        )
    return attached.digest


def build_facts(run: Run) -> provenance.BuildFacts:
    plan, origin, info = run.plan, run.origin, run.info
    assert origin is not None and info is not None and run.digest is not None and run.started is not None
    builds = [spec for spec in (plan.debug_build, plan.build) if spec is not None]
    sources = {"envoy": plan.envoy, "proxy": plan.proxy}
    dependencies = [
        provenance.Dependency(
            name=role,
            uri=f"git+file://{sources[role]}" if sources.get(role) else f"git:{role}",
            digest={"gitCommit": commit},
        )
        for role, commit in origin.commits.items()
    ]
    dependencies += [
        provenance.Dependency(name=f"patch {name}", uri=f"file:{name}", digest={"sha256": digest})
        for name, digest in _patches(plan)
    ]
    assert run.base is not None
    dependencies.append(_image_dependency(run.base, plan.base_image, "base image"))
    dependencies += [
        provenance.Dependency(
            name="build image (local image ID)",
            uri=f"docker-image://{image.name}",
            digest={"sha256": image.image_id.removeprefix("sha256:")},
        )
        for image in run.build_images
        if image.image_id.startswith("sha256:")
    ]
    dependencies.append(
        provenance.Dependency(
            name="dockerfile",
            uri=f"file:dockerfiles/{plan.dockerfile.name}",
            digest={"sha256": hashlib.sha256(plan.dockerfile.read_bytes()).hexdigest()},
        )
    )
    return provenance.BuildFacts(
        repository=plan.image.name,
        image_digest=run.digest,
        binary_sha256=info.sha256,
        binary_path=plan.variant.binary_in_image,
        build_id=info.build_id,
        variant=plan.variant.name,
        version=str(plan.version),
        sample=plan.sample,
        based_on=plan.based_on.ref if plan.based_on else None,
        commands=tuple(spec.command.display() for spec in builds),
        bazel_options=plan.bazel_options,
        dockerfile=plan.dockerfile.name,
        packages=plan.packages,
        dependencies=tuple(dependencies),
        builder=f"urn:hookbuild:builder:{socket.gethostname()}",
        started=run.started,
        finished=run.now(),
    )


def _patches(plan: Plan) -> tuple[tuple[str, str], ...]:
    patches = plan.build.envoy_patches if plan.build else ()
    return tuple((p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in patches if p.is_file())


def _image_dependency(image: LocalImage, reference: str, name: str) -> provenance.Dependency:
    """An image by its registry digest when it came from a registry, else by its local image ID."""
    repo_digests = [d for d in image.repo_digests if "@sha256:" in d]
    if "@sha256:" in reference:
        digest = reference.rsplit("@", 1)[1]
    elif repo_digests:
        digest = repo_digests[0].rsplit("@", 1)[1]
    else:  # made on this engine (the sample stand-ins): its config digest is all there is
        digest = str(image.id)
        name = f"{name} (local image ID)"
    return provenance.Dependency(
        name=name, uri=f"docker-image://{reference}", digest={"sha256": digest.removeprefix("sha256:")}
    )
