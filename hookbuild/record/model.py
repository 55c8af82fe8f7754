"""The version record (versions.toml) as data: frozen entries with their queries, validated once on load.

Reading uses tomli (tomllib's compiled upstream), never tomlkit, so queries stay fast; edits live in
`record.edit` (tomlkit), validation and loading in `record.schema`. Never imports docker, git or numpy.

Schema (see the header of versions.toml): `[variants.NAME]` declares a variant; each variant's versions are
an array of tables `[[NAME]]`, one per version, with an optional `[NAME.release]` sub-table holding the
provenance that `invoke release` records. A version's status changes are appended to its `history`, never
overwritten; `bump` makes a version `planned`, and only a release makes it `working`. Schema 1 files (no
history, no `planned`, no `checked`) read as they are; the first write makes them schema 2.

The schema is derived from the dataclasses below: to extend it, add a field with a default (and, if needed,
a `check` in its metadata); loading, validation, JSON and rendering follow.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hookbuild.errors import RecordConflict, VersionError
from hookbuild.images import reference
from hookbuild.record.features import problem as unknown_feature
from hookbuild.version import Version

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)

NAME = re.compile(r"[a-z][a-z0-9-]*")
PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_KEY_ID = _DIGEST  # a key id is the sha256 of the public key's DER SubjectPublicKeyInfo
_BUILD_ID = re.compile(r"(?:[0-9a-f]{2}){4,64}")
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._:-]*(?:/[a-z0-9][a-z0-9._-]*)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_REPOSITORY = re.compile(r"[a-z0-9][a-z0-9._:-]*(?:/[a-z0-9][a-z0-9._-]*)+")


class Status(enum.StrEnum):
    PLANNED = "planned"
    WORKING = "working"
    DEPRECATED = "deprecated"
    TEST_ONLY = "test-only"


# --- field checks: return a problem (str) or None ------------------------------------------------------


def _matches(pattern: re.Pattern[str], what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if type(value) is str:  # most values: one string
            return None if pattern.fullmatch(value) else f"{value!r} is not {what}"
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, str) and not pattern.fullmatch(item):
                return f"{item!r} is not {what}"
        return None

    return check


def _check_ref(value: Any) -> str | None:
    try:
        parse_ref(value)
    except VersionError as exc:
        return exc.line()
    return None


def _check(fn: Callable[[Any], str | None]) -> dict[str, Any]:
    return {"check": fn}


# --- the record as data ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Hookpoint:
    mangled: str
    demangled: str


@dataclass(frozen=True, kw_only=True)
class Upstream:
    """Upstream versions a build is made from, as their projects spell them (e.g. Envoy 1.34.4)."""

    envoy: str | None = None
    istio: str | None = None
    cilium: str | None = None


@dataclass(frozen=True, kw_only=True)
class Change:
    """One status change: the new status, why, and when (`at` is absent in entries kept by hand)."""

    status: Status
    reason: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """What `invoke release` published and from what. Absent for entries made before hookbuild."""

    image: str = field(metadata=_check(_matches(_IMAGE, "an image reference with a tag (registry/repo:tag)")))
    digest: str = field(metadata=_check(_matches(_DIGEST, "a digest 'sha256:<64 hex>'")))
    released_at: datetime
    envoy_commit: str = field(metadata=_check(_matches(_HEX40, "a 40-hex git commit")))
    proxy_commit: str | None = field(default=None, metadata=_check(_matches(_HEX40, "a 40-hex git commit")))
    dirty: bool = False
    binary_sha256: str = field(metadata=_check(_matches(_HEX64, "a sha256 (64 hex)")))
    build_id: str | None = field(default=None, metadata=_check(_matches(_BUILD_ID, "a hex GNU build-id")))
    hookpoints: tuple[Hookpoint, ...] = ()
    scripts: tuple[str, ...] = ()
    inputs_key: str | None = None
    """Hash of the release inputs (idempotent retries); None when the sources were dirty."""
    base_image: str
    dockerfile: str
    # Supply chain (issue 13). False for releases made with --no-sign and for those made before signing.
    signed: bool = False
    key_id: str | None = field(default=None, metadata=_check(_matches(_KEY_ID, "a key id 'sha256:<64 hex>'")))
    attestation: str | None = field(
        default=None, metadata=_check(_matches(_DIGEST, "a digest 'sha256:<64 hex>'"))
    )
    """Digest of the signed provenance's manifest at `<repo>:sha256-<hex>.att`."""
    sbom: str | None = field(default=None, metadata=_check(_matches(_DIGEST, "a digest 'sha256:<64 hex>'")))
    """Digest of the SBOM's manifest at `<repo>:sha256-<hex>.sbom`."""
    locations: tuple[str, ...] = field(
        default=(), metadata=_check(_matches(_IMAGE, "an image reference with a tag (registry/repo:tag)"))
    )
    """Every registry tag holding this digest: the release's own, then each `invoke promote`."""
    checked: tuple[str, ...] | None = field(default=None, metadata=_check(unknown_feature))
    """Features whose check passed in the built image before the push; None: released before checks."""

    @property
    def pinned(self) -> str:
        """The image pinned by digest: `registry/repo@sha256:...`."""
        return reference.pinned(self.image, self.digest)


@dataclass(frozen=True, kw_only=True)
class VariantSection:
    """A `[variants.NAME]` table of the record: how the variant is shown (its recipe is `variants.Variant`)."""

    name: str = field(metadata={"toml": False})
    title: str
    image: str = field(
        metadata=_check(_matches(_REPOSITORY, "an image repository (registry/namespace/name)"))
    )
    description: str | None = None


@dataclass(frozen=True, kw_only=True)
class Entry:
    variant: str = field(metadata={"toml": False})
    version: Version
    status: Status = Status.WORKING
    verified: bool = False
    summary: str
    features: tuple[str, ...] = field(default=(), metadata=_check(unknown_feature))
    packages: tuple[str, ...] = field(default=(), metadata=_check(_matches(PACKAGE, "a Debian package name")))
    upstream: Upstream | None = None
    based_on: str | None = field(default=None, metadata=_check(_check_ref))
    supersedes: Version | None = None
    status_reason: str | None = None
    """The reason of a status set by hand (schema 1); hookbuild's changes go to `history`."""
    history: tuple[Change, ...] = ()
    image: str | None = field(
        default=None, metadata=_check(_matches(_IMAGE, "an image reference with a tag (registry/repo:tag)"))
    )
    notes: str | None = None
    release: Provenance | None = None

    @property
    def ref(self) -> str:
        return f"{self.variant}@{self.version}"

    @property
    def digest(self) -> str | None:
        return self.release.digest if self.release else None

    @property
    def changes(self) -> tuple[Change, ...]:
        """Every status the entry had, oldest first: its history, or the one status set by hand."""
        return self.history or (Change(status=self.status, reason=self.status_reason),)

    @property
    def reason(self) -> str | None:
        """Why the entry has its current status (the last of `changes`, without making them)."""
        return self.history[-1].reason if self.history else self.status_reason

    def claim(self, feature: str) -> str | None:
        """How `feature` is known to hold: "verified" (its check passed before the push), "by hand", "to check"
        (a planned version: its release will check it), or None."""
        if feature not in self.features:
            return None
        if self.status is Status.PLANNED:
            return "to check"  # the release checks it in the built image
        checked = self.release.checked if self.release is not None else None
        return "verified" if checked is not None and feature in checked else "by hand"

    @property
    def reference(self) -> str | None:
        """The image to deploy: pinned by digest when released by hookbuild, else the recorded tag."""
        if self.release is not None:
            return self.release.pinned
        return self.image

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ref": self.ref, "variant": self.variant}
        data.update(_to_plain(self))
        data["digest"] = self.digest
        data["reference"] = self.reference
        data["reason"] = self.reason
        data["claims"] = {feature: self.claim(feature) for feature in self.features}
        return data


@dataclass(frozen=True, kw_only=True)
class Record:
    path: Path | None
    declared: Mapping[str, VariantSection]
    entries: tuple[Entry, ...]
    """Grouped by variant (declaration order), oldest first within a variant."""
    schema: int = SCHEMA
    """The schema the file declares (an older one is upgraded by the next write)."""
    positions: Mapping[tuple[str, Version], int] = field(default_factory=dict, compare=False, repr=False)
    """(variant, version) -> index of its `[[variant]]` table in the file, for edits."""

    def variants(self) -> tuple[str, ...]:
        return tuple(self.declared)

    def variant(self, name: str) -> VariantSection:
        if name not in self.declared:
            raise VersionError(
                f"unknown variant {name!r} in {self.path or 'the record'}",
                hint=f"known variants: {', '.join(self.declared) or '(none)'}",
            )
        return self.declared[name]

    def of(self, variant: str, *, working_only: bool = False) -> tuple[Entry, ...]:
        """A variant's entries, newest first."""
        self.variant(variant)
        chosen = [e for e in self.entries if e.variant == variant]
        if working_only:
            chosen = [e for e in chosen if e.status is Status.WORKING]
        return tuple(sorted(chosen, key=order, reverse=True))

    def find(self, variant: str, version: Version | str) -> Entry | None:
        wanted = Version.parse(version) if isinstance(version, str) else version
        for entry in self.entries:
            if entry.variant == variant and entry.version == wanted:
                return entry
        return None

    def get(self, ref: str) -> Entry:
        """The entry for `variant@MAJOR.MINOR`; VersionError if malformed or not in the record."""
        variant, version = parse_ref(ref)
        self.variant(variant)
        entry = self.find(variant, version)
        if entry is None:
            known = ", ".join(str(e.version) for e in self.of(variant)) or "(none)"
            raise VersionError(
                f"{ref} is not in {self.path or 'the record'}",
                hint=f"{variant} versions: {known}; run `invoke versions --variant {variant} --all`",
            )
        return entry

    def latest(self, variant: str, *, working_only: bool = True) -> Entry | None:
        entries = self.of(variant, working_only=working_only)
        return entries[0] if entries else None

    def supporting(self, feature: str, *, include_all: bool = False) -> tuple[Entry, ...]:
        """Entries claiming `feature`: verified claims first, then those kept by hand, each newest first per
        variant. Never a planned version (nothing is built yet); deprecated ones only with include_all."""
        chosen = [
            entry
            for name in self.declared
            for entry in self.of(name)
            if feature in entry.features
            and entry.status is not Status.PLANNED
            and (include_all or entry.status is not Status.DEPRECATED)
        ]
        return tuple(sorted(chosen, key=lambda e: e.claim(feature) != "verified"))  # stable: keeps order

    def planned(self, variant: str) -> Entry | None:
        """The variant's planned version (bumped, not yet released), if any."""
        return next((e for e in self.of(variant) if e.status is Status.PLANNED), None)

    def deployable(self, ref: str) -> Entry:
        """The entry of `ref` to deploy (inject); RecordConflict for a planned version, which has no image."""
        entry = self.get(ref)
        if entry.status is Status.PLANNED:
            working = self.latest(entry.variant)
            raise RecordConflict(
                f"{entry.ref} is planned, not released: it has no image yet",
                hint=f"release it first (`invoke release --variant {entry.variant} --version {entry.version}`)"
                + (f", or deploy {working.ref}" if working else ""),
            )
        return entry

    def next_version(self, variant: str, part: str) -> Version:
        """The version after the highest one ever recorded (any status: numbers are never reused)."""
        entries = self.of(variant)
        if part not in ("major", "minor"):
            raise VersionError(f"unknown version part {part!r}", hint="use major or minor")
        if not entries:
            return Version(1, 0) if part == "major" else Version(0, 1)
        top = entries[0].version
        return top.bump_major() if part == "major" else top.bump_minor()


def order(entry: Entry) -> tuple[int, int]:
    """Sort key of entries by version: MAJOR.MINOR compares like semver, without building semver objects."""
    return (entry.version.major, entry.version.minor)


def parse_ref(ref: str) -> tuple[str, Version]:
    """`istio@12.0` -> ("istio", Version(12, 0))."""
    if not isinstance(ref, str) or ref.count("@") != 1:
        raise VersionError(
            f"invalid release reference {ref!r}", hint="write VARIANT@MAJOR.MINOR, e.g. istio@12.0"
        )
    variant, _, version = ref.partition("@")
    if not NAME.fullmatch(variant):
        raise VersionError(
            f"invalid variant name {variant!r} in {ref!r}", hint="write VARIANT@MAJOR.MINOR, e.g. istio@12.0"
        )
    return variant, Version.parse(version)


@functools.cache
def _stored(cls: type) -> tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]:
    """The fields of `cls` kept in TOML, and a function reading their values in one call."""
    names = tuple(f.name for f in fields(cls) if f.metadata.get("toml", True))
    return names, lambda obj: tuple(map(getattr, itertools.repeat(obj), names))


_AS_IS = frozenset({str, bool, int, type(None)})
"""Exact types that are their own plain form: most values, so they skip the checks below (a query's JSON of
5,000 entries holds some 100,000 of them)."""


def _to_plain(obj: Any) -> Any:
    """A dataclass as JSON-friendly plain data (fields not stored in TOML, such as `variant`, left out)."""
    kind = type(obj)
    if kind in _AS_IS:
        return obj
    if kind is tuple:
        return [item if type(item) in _AS_IS else _to_plain(item) for item in obj]
    if obj is None or isinstance(obj, str | bool | int):
        return obj
    if isinstance(obj, Version | enum.Enum):
        return str(obj.value) if isinstance(obj, enum.Enum) else str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names, values_of = _stored(type(obj))
        return {
            name: value if type(value) in _AS_IS else _to_plain(value)
            for name, value in zip(names, values_of(obj), strict=True)
        }
    if isinstance(obj, datetime):
        return iso(obj)
    if isinstance(obj, tuple):
        return [_to_plain(item) for item in obj]
    return obj


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
