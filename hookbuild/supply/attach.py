"""Attachments next to an image, under cosign's tag conventions, so cosign-aware tools find them.

Debian's registry 2.8 has no OCI referrers API, so (like cosign) an attachment is an OCI image manifest
tagged `<repo>:sha256-<hex of the image digest>.<kind>`: `.att` holds a DSSE envelope
(application/vnd.dsse.envelope.v1+json, annotated with its predicateType), `.sbom` the SBOM document
(application/vnd.cyclonedx+json). The config is the empty image config cosign writes, whose only diff_id
is the layer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hookbuild.errors import VerifyError
from hookbuild.images.registry_api import OCI_MANIFEST, Registry

DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
CYCLONEDX_MEDIA_TYPE = "application/vnd.cyclonedx+json"
_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
_ZERO_TIME = "0001-01-01T00:00:00Z"


class Kind(StrEnum):
    ATTESTATION = "att"
    SBOM = "sbom"

    @property
    def media_type(self) -> str:
        return DSSE_MEDIA_TYPE if self is Kind.ATTESTATION else CYCLONEDX_MEDIA_TYPE


def tag_for(image_digest: str, kind: Kind) -> str:
    """`sha256:abc...` -> `sha256-abc....att`: cosign's tag for an attachment of that image."""
    algorithm, _, hexdigest = image_digest.partition(":")
    return f"{algorithm}-{hexdigest}.{kind.value}"


@dataclass(frozen=True, kw_only=True)
class Attached:
    kind: Kind
    tag: str
    digest: str
    """Digest of the attachment's manifest: what the record keeps and `verify` compares."""


def push(
    registry: Registry,
    repo: str,
    image_digest: str,
    kind: Kind,
    document: bytes,
    *,
    annotations: Mapping[str, str] | None = None,
) -> Attached:
    """Push one document as the only layer of `<repo>:sha256-<hex>.<kind>` (replacing what was there)."""
    layer = registry.push_blob(repo, document)
    config = _json(
        {
            "architecture": "",
            "created": _ZERO_TIME,
            "history": [{"created": _ZERO_TIME}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer]},
            "config": {},
        }
    )
    config_digest = registry.push_blob(repo, config)
    descriptor: dict[str, Any] = {"mediaType": kind.media_type, "size": len(document), "digest": layer}
    if annotations:
        descriptor["annotations"] = dict(annotations)
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": _CONFIG_MEDIA_TYPE, "size": len(config), "digest": config_digest},
            "layers": [descriptor],
        }
    )
    tag = tag_for(image_digest, kind)
    return Attached(kind=kind, tag=tag, digest=registry.put_manifest(repo, tag, manifest, OCI_MANIFEST))


def fetch(registry: Registry, repo: str, image_digest: str, kind: Kind) -> tuple[str, tuple[bytes, ...]]:
    """The attachment manifest's digest and every layer of the kind's media type; VerifyError if absent."""
    tag = tag_for(image_digest, kind)
    where = f"{registry.host}/{repo}:{tag}"
    manifest = registry.manifest_or_none(repo, tag)
    if manifest is None:
        raise VerifyError(f"no {kind.value} attached: {where} does not exist", hint=_MISSING_HINT)
    try:
        layers = json.loads(manifest.raw)["layers"]
        digests = [str(layer["digest"]) for layer in layers if layer.get("mediaType") == kind.media_type]
    except (ValueError, KeyError, TypeError):
        raise VerifyError(f"{where} is not an OCI manifest", hint=_MISSING_HINT) from None
    if not digests:
        raise VerifyError(f"{where} holds no {kind.media_type} layer", hint=_MISSING_HINT)
    return manifest.digest, tuple(registry.blob(repo, digest) for digest in digests)


_MISSING_HINT = "the release was made with --no-sign, or the attachment was deleted; release again"


def _json(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
