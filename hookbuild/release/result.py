"""What a release reports when it is done (or found done by an earlier run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hookbuild.images import reference


@dataclass(frozen=True, kw_only=True)
class Result:
    variant: str
    version: str
    image: str
    digest: str
    binary: Path
    binary_sha256: str
    binary_size: int
    hookpoints: int
    reused: bool  # a retry found the same release already recorded
    durations: dict[str, float] = field(default_factory=dict)
    key_id: str | None = None  # the signing key; None: unsigned (--no-sign)
    attestation: str | None = None  # manifest digest of <repo>:sha256-<hex>.att
    sbom: str | None = None  # manifest digest of <repo>:sha256-<hex>.sbom

    @property
    def pinned(self) -> str:
        return reference.pinned(self.image, self.digest)

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "binary": str(self.binary), "pinned": self.pinned}
