"""The OCI labels a release image carries: what it is and what it was built from, readable without the record."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hookbuild.binary.symbols import BinaryInfo
    from hookbuild.release.identity import Origin
    from hookbuild.release.plan import Plan


def labels(plan: Plan, origin: Origin, info: BinaryInfo, released_at: datetime) -> dict[str, str]:
    labels = {
        "org.opencontainers.image.version": str(plan.version),
        "org.opencontainers.image.created": released_at.isoformat(),
        "org.opencontainers.image.revision": origin.commits["envoy"],
        "org.opencontainers.image.base.name": plan.base_image,
        "org.opencontainers.image.title": f"hookbuild {plan.variant.name}",
        "io.hookbuild.variant": plan.variant.name,
        "io.hookbuild.hookpoints": str(len(info.hookpoints)),
        "io.hookbuild.binary.sha256": info.sha256,
        "io.hookbuild.dirty": str(origin.dirty).lower(),
    }
    labels.update({f"io.hookbuild.{role}.commit": commit for role, commit in origin.commits.items()})
    if info.build_id:
        labels["io.hookbuild.binary.build-id"] = info.build_id
    if plan.based_on:
        labels["io.hookbuild.based-on"] = plan.based_on.ref
    return labels
