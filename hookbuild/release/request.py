"""What the user asked a release to be, before anything is looked at."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from hookbuild.variants import Variant
from hookbuild.version import Version


class EnvoyMode(StrEnum):
    REWRITE = "rewrite"  # the seed's WORKSPACE edit
    OVERRIDE = "override"  # istio/proxy's documented --override_repository, edits no file


@dataclass(frozen=True, kw_only=True)
class Request:
    variant: Variant
    version: Version | None
    envoy: Path | None = None
    proxy: Path | None = None
    sample: bool = False
    envoy_mode: EnvoyMode = EnvoyMode.REWRITE
    base_image: str | None = None
    based_on: str | None = None  # VARIANT@X.Y, for variants that build on a recorded release
    packages: tuple[str, ...] | None = None  # extra image packages (default: the record's)
    allow_dirty: bool = False
    force: bool = False
    repair: bool = False  # a retry whose tag moved points it back at the recorded digest
    stripped: bool = False  # ship the stripped release build; uprobes use a debug build's addresses
    no_sign: bool = False  # skip the SBOM and signed provenance; the release is recorded as unsigned
    build_image: str | None = None  # the build's image (else the variant's setting, else upstream's)
    sample_shape: str | None = None  # with sample: the bundled sample shaped like an older upstream
