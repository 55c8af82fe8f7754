"""What a release may claim: its tag still holds the recorded digest (a retry), and each feature it would
carry holds in the built image (checked before the push)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from hookbuild import record
from hookbuild.errors import ImageError, RegistryDrift, RegistryError
from hookbuild.images.reference import ImageRef
from hookbuild.record import features
from hookbuild.release.plan import Plan

if TYPE_CHECKING:
    import docker

    from hookbuild.binary.symbols import BinaryInfo
    from hookbuild.images.registry_api import Registry
    from hookbuild.release.stages import Run

log = logging.getLogger("hookbuild")


def still_tagged(
    plan: Plan, ref: str, release: record.Provenance, *, connect: Callable[[str], Registry]
) -> None:
    """A retry reports a recorded release only if its tag still holds the recorded digest (or, with
    --repair, once the tag is pointed back at it): the record must not claim what the registry denies."""
    image = ImageRef.parse(release.image)
    with connect(image.registry) as registry:
        found = registry.manifest_digest(image.repository, image.tag)
        if found == release.digest:
            return
        now = f"holds {found}" if found else "is gone from the registry"
        if not plan.repair:
            raise RegistryDrift(
                f"{ref} is recorded as {release.digest}, but its tag {image} {now}",
                hint="pass --repair to point the tag back at the recorded digest, or bump and release a new version",
            )
        _point(registry, image, release.digest)
    log.warning("%s: the tag %s %s; pointed it back at the recorded %s", ref, image, now, release.digest)


def _point(registry: Registry, image: ImageRef, digest: str) -> None:
    """Put the recorded manifest, byte for byte, under the tag again: its digest is exactly the recorded one
    (a pull, tag and push through the engine could re-encode it)."""
    manifest = registry.manifest_or_none(image.repository, digest)
    if manifest is None:
        raise RegistryError(
            f"the registry no longer holds {image.pinned(digest)}: the tag cannot be pointed back at it",
            hint="the recorded image is gone; release a new version (`invoke bump`, then `invoke release`)",
        )
    registry.put_manifest(image.repository, image.tag, manifest.raw, manifest.media_type)
    held = registry.manifest_digest(image.repository, image.tag)
    if held != digest:
        raise RegistryError(
            f"{image} holds {held} after pointing it at {digest}", hint="another push raced this one"
        )


def describe_features(plan: Plan) -> list[str]:
    checks = [f"{tag} ({features.FEATURES[tag].check or 'no check: kept by hand'})" for tag in plan.features]
    return [f"features: check {', '.join(checks) or 'none'} in the image; only those that hold are recorded"]


def features_stage(run: Run) -> None:
    assert run.image_id is not None and run.info is not None
    run.verdict = check_features(run.plan, run.docker, run.image_id, run.info)


def check_features(
    plan: Plan, client: docker.DockerClient, image_id: str, info: BinaryInfo
) -> features.Verdict:
    """Each feature's check on the built image (commands in a throwaway container, symbols of the binary);
    a feature whose check fails is said, and is not recorded."""
    from hookbuild.images import engine

    def runs(command: tuple[str, ...]) -> str | None:
        try:
            engine.check(client, image_id, command)
        except ImageError as exc:
            return exc.message
        return None

    verdict = features.verify(
        plan.features, run=runs, hookpoints=[h.demangled for h in info.hookpoints], stripped=info.stripped
    )
    for tag, why in verdict.failed.items():
        log.warning("feature %s is not recorded for %s: %s", tag, plan.ref, why)
    return verdict
