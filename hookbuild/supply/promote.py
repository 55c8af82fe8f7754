"""`promote`: copy a recorded release to another registry by digest, with its attachments; no rebuild.

The image's manifest travels as its exact bytes and its blobs as they are stored (same registry: mounted;
another: streamed), so the digest at the destination is the digest recorded and signed. The attestation
and the SBOM follow under their cosign tags, but only if they are still the ones recorded. A destination
already holding it all is left alone: a retry is a no-op. The record then lists the new location.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hookbuild import record
from hookbuild.errors import SupplyError, UsageError
from hookbuild.images.reference import ImageRef
from hookbuild.images.registry_api import DOCKER_LIST, OCI_INDEX, Registry
from hookbuild.supply import attach
from hookbuild.supply.attach import Kind

log = logging.getLogger("hookbuild")


@dataclass(frozen=True, kw_only=True)
class Promotion:
    ref: str
    source: str
    location: str
    digest: str
    copied: tuple[str, ...]  # what moved: "image", "att", "sbom"; empty for a retry
    locations: tuple[str, ...]  # every location the record lists now

    def as_json(self) -> dict[str, object]:
        return {**self.__dict__, "copied": list(self.copied), "locations": list(self.locations)}


def destination(image: str, target: str) -> ImageRef:
    """`127.0.0.1:5001/prod` + `127.0.0.1:5000/hookbuild/istio-proxy:12.1` -> `127.0.0.1:5001/prod/istio-proxy:12.1`."""
    source = ImageRef.parse(image)
    registry, _, namespace = target.strip("/").partition("/")
    name = source.repository.rsplit("/", 1)[-1]
    # A registry host has a '.' or a ':' (or is localhost), as in Docker's own rule; a namespace is required.
    is_host = "." in registry or ":" in registry or registry == "localhost"
    parsed = _parsed(f"{registry}/{namespace}/{name}:{source.tag}") if is_host and namespace else None
    if parsed is None or parsed.registry != registry:
        raise UsageError(
            f"invalid promotion target {target!r}",
            hint="write REGISTRY/NAMESPACE, e.g. 127.0.0.1:5001/hookbuild",
        )
    return parsed


def _parsed(text: str) -> ImageRef | None:
    try:
        return ImageRef.parse(text)
    except UsageError:
        return None


def promote(
    entry: record.Entry, target: str, *, versions_file: Path, connect: Callable[[str], Registry]
) -> Promotion:
    release = entry.release
    if release is None:
        raise UsageError(
            f"{entry.ref} was not released by hookbuild: no digest to promote",
            hint="promote a release made by `invoke release`",
        )
    source, dest = ImageRef.parse(release.image), destination(release.image, target)
    if dest.name == source.name:
        raise UsageError(
            f"{dest} is where {entry.ref} already lives", hint="promote to another registry or namespace"
        )
    src, dst = connect(source.registry), connect(dest.registry)
    copied = []
    if _copy_manifest(src, source.repository, dst, dest.repository, release.digest, tag=dest.tag):
        copied.append("image")
    if release.signed:
        for kind, recorded in ((Kind.ATTESTATION, release.attestation), (Kind.SBOM, release.sbom)):
            assert recorded is not None
            tag = attach.tag_for(release.digest, kind)
            held = src.manifest_digest(source.repository, tag)
            if held != recorded:
                raise SupplyError(
                    f"{source.name}:{tag} holds {held or 'nothing'}, the record says {recorded}",
                    hint=f"run `invoke verify {entry.ref}`: the release was tampered with; nothing more was copied",
                )
            if _copy_manifest(src, source.repository, dst, dest.repository, recorded, tag=tag):
                copied.append(kind.value)
    from hookbuild.record import edit

    updated = edit.add_location(versions_file, entry.ref, str(dest))
    assert updated.release is not None
    log.info("promoted %s to %s (%s)", entry.ref, dest, ", ".join(copied) or "already there")
    return Promotion(
        ref=entry.ref,
        source=release.image,
        location=str(dest),
        digest=release.digest,
        copied=tuple(copied),
        locations=updated.release.locations,
    )


def _copy_manifest(
    src: Registry, src_repo: str, dst: Registry, dst_repo: str, digest: str, *, tag: str | None
) -> bool:
    """Make `dst_repo` hold manifest `digest` (under `tag`, if given) with all it references; False if it did."""
    held = dst.manifest_digest(dst_repo, tag or digest)
    if held == digest:
        return False
    if tag is not None and held is not None and not tag.startswith("sha256-"):
        raise SupplyError(
            f"{dst.host}/{dst_repo}:{tag} already holds another image ({held})",
            hint="promote to another namespace; hookbuild never moves a release tag",
        )
    manifest = src.manifest(src_repo, digest)
    body = json.loads(manifest.raw)
    if manifest.media_type in (OCI_INDEX, DOCKER_LIST):
        for child in body.get("manifests", ()):
            _copy_manifest(src, src_repo, dst, dst_repo, child["digest"], tag=None)
    else:
        for blob in (body["config"], *body.get("layers", ())):
            if dst.copy_blob(src, src_repo, dst_repo, blob["digest"]):
                log.info("  → %s/%s@%s", dst.host, dst_repo, blob["digest"][:19])
    dst.put_manifest(dst_repo, tag or digest, manifest.raw, manifest.media_type)
    return True
