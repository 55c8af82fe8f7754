"""Variants: one recipe per line of the record (istio, cilium, envoy, istio-perf), in one typed table.

A recipe is data: where the sample sources are, which build system drives it, which dockerfile and base
image make the image, where the binary goes. Adding a variant is one module here (listed in `_LOADERS`),
one dockerfile and one section of the record. A variant's module (and its build system) is imported only
when that variant is asked for: help strings need the names alone, and a release only its own variant.
"""

from __future__ import annotations

from collections.abc import Callable

from hookbuild.errors import UsageError
from hookbuild.variants.variant import Variant


def _istio() -> Variant:
    from hookbuild.variants.istio import VARIANT

    return VARIANT


def _cilium() -> Variant:
    from hookbuild.variants.cilium import VARIANT

    return VARIANT


def _envoy() -> Variant:
    from hookbuild.variants.envoy import VARIANT

    return VARIANT


def _istio_perf() -> Variant:
    from hookbuild.variants.istio_perf import VARIANT

    return VARIANT


_LOADERS: dict[str, Callable[[], Variant]] = {
    "istio": _istio,
    "cilium": _cilium,
    "envoy": _envoy,
    "istio-perf": _istio_perf,
}
NAMES = tuple(_LOADERS)


def get(name: str) -> Variant:
    load = _LOADERS.get(name)
    if load is None:
        raise UsageError(f"unknown variant {name!r}", hint=f"choose one of: {', '.join(NAMES)}")
    return load()


def choices(separator: str = ", ") -> str:
    """The variant names for help strings and hints."""
    return separator.join(NAMES)


__all__ = ["NAMES", "Variant", "choices", "get"]
