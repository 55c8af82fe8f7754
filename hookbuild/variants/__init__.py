"""Variants: one recipe per line of the record (istio, cilium, envoy, istio-perf), in one typed table.

A recipe is data: where the sample sources are, which build system drives it, which dockerfile and base
image make the image, where the binary goes. Adding a variant is one module here (listed in `VARIANTS`),
one dockerfile and one section of the record.
"""

from __future__ import annotations

from hookbuild.errors import UsageError
from hookbuild.variants import cilium, envoy, istio, istio_perf
from hookbuild.variants.variant import Variant

VARIANTS: dict[str, Variant] = {
    v.name: v for v in (istio.VARIANT, cilium.VARIANT, envoy.VARIANT, istio_perf.VARIANT)
}
NAMES = tuple(VARIANTS)


def get(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise UsageError(f"unknown variant {name!r}", hint=f"choose one of: {', '.join(NAMES)}") from None


def choices(separator: str = ", ") -> str:
    """The variant names for help strings and hints."""
    return separator.join(NAMES)


__all__ = ["NAMES", "VARIANTS", "Variant", "choices", "get"]
