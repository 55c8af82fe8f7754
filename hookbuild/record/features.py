"""Feature tags and what makes each one true of a released image: claims are checked facts, not copies.

Each tag declares its check: a command that must run in the built image (`perf --version`), a hookpoint the
binary must carry, or whether the shipped binary keeps its symbol table. A release runs the checks of the
features it would carry on the built image before the push and records only those that passed (in
`[NAME.release] checked`). A tag without a check describes the code (e.g. `grpc`): nothing in an image can
prove it, so it stays a claim kept by hand, shown as such. Entries made before hookbuild are all "by hand".

To add a tag: one row in FEATURES. An unknown tag is an error everywhere (record, --feature, --supports).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from hookbuild.errors import UsageError


@dataclass(frozen=True, kw_only=True)
class Feature:
    name: str
    description: str
    runs: tuple[str, ...] | None = None
    """A command that must exit 0 in the built image."""
    hookpoint: str | None = None
    """A substring of a hookpoint's demangled name that the binary must carry ("" : any hookpoint)."""
    stripped: bool | None = None
    """The shipped binary must be stripped (True) or keep its symbol table (False)."""

    @property
    def check(self) -> str | None:
        """What makes the tag true of an image, in words; None when nothing can check it."""
        if self.runs is not None:
            return f"`{' '.join(self.runs)}` runs in the image"
        if self.hookpoint is not None:
            return f"the binary has a hookpoint{f' named *{self.hookpoint}*' if self.hookpoint else ''}"
        if self.stripped is not None:
            return "the binary is stripped" if self.stripped else "the binary keeps its symbol table"
        return None


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature(name="hookpoints", description="hookpoint* functions to attach uprobes to", hookpoint=""),
        Feature(
            name="router-hookpoint",
            description="a hookpoint before the router decodes headers",
            hookpoint="Router::",
        ),
        Feature(name="perf", description="perf in the image", runs=("perf", "--version")),
        Feature(
            name="perf-fifo",
            description="hookbuild-perf-fifo starts perf when Envoy writes to its FIFO",
            runs=("sh", "-c", "command -v hookbuild-perf-fifo"),
        ),
        Feature(name="bpftrace", description="bpftrace in the image", runs=("bpftrace", "--version")),
        Feature(name="symbols", description="the shipped Envoy keeps its symbols", stripped=False),
        Feature(
            name="release-binary",
            description="the stripped release binary, probed by debug-build addresses",
            stripped=True,
        ),
        Feature(name="envoy-trace-full", description="fits the envoy_trace_full tracer"),
        Feature(name="absolute-time", description="hookpoints record the absolute time of filters"),
        Feature(name="grpc", description="usable on gRPC applications"),
        Feature(name="x-request-id", description="traces filters by x-request-id"),
        Feature(name="unmodified-envoy", description="Envoy without hookbuild's patches"),
        Feature(name="http-parsing", description="perf around HTTP parsing"),
    )
}


def known(names: str = ", ") -> str:
    return names.join(sorted(FEATURES))


def problem(tag: object) -> str | None:
    """Why `tag` is not a feature tag, or None (a field check of the record's `features`)."""
    items = tag if isinstance(tag, tuple) else (tag,)
    for item in items:
        if isinstance(item, str) and item not in FEATURES:
            return f"unknown feature {item!r} (known: {known()})"
    return None


def require(tag: str, *, flag: str) -> Feature:
    """The feature named by a flag's value; a UsageError naming the flag and the known tags otherwise."""
    if tag not in FEATURES:
        raise UsageError(
            f"{flag} {tag!r}: unknown feature",
            hint=f"known features: {known()}; tags are lowercase, a new one is a row in hookbuild/record/features.py",
        )
    return FEATURES[tag]


@dataclass(frozen=True, kw_only=True)
class Verdict:
    asked: tuple[str, ...]
    passed: tuple[str, ...]
    """Features whose check passed (recorded in `checked`)."""
    failed: dict[str, str]
    """Feature -> why its check failed (not recorded)."""
    unchecked: tuple[str, ...]
    """Features nothing can check (carried as claims kept by hand)."""

    @property
    def kept(self) -> tuple[str, ...]:
        """What the release may claim, in the order asked."""
        return tuple(name for name in self.asked if name not in self.failed)


def verify(
    tags: Iterable[str],
    *,
    run: Callable[[tuple[str, ...]], str | None],
    hookpoints: Sequence[str],
    stripped: bool,
) -> Verdict:
    """Check each tag against the built image: `run(command)` returns a problem or None; `hookpoints` are the
    binary's demangled hookpoint names, `stripped` whether the shipped binary is."""
    asked = tuple(tags)
    passed: list[str] = []
    failed: dict[str, str] = {}
    unchecked: list[str] = []
    for name in asked:
        feature = FEATURES[name]
        if feature.runs is not None:
            why = run(feature.runs)
        elif feature.hookpoint is not None:
            found = any(feature.hookpoint in point for point in hookpoints)
            why = None if found else f"no hookpoint named *{feature.hookpoint}* in the binary"
        elif feature.stripped is not None:
            why = None if stripped == feature.stripped else f"{feature.check}: it is not"
        else:
            unchecked.append(name)
            continue
        if why is None:
            passed.append(name)
        else:
            failed[name] = why
    return Verdict(asked=asked, passed=tuple(passed), failed=failed, unchecked=tuple(unchecked))
