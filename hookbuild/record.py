"""The version record (versions.toml) as data: frozen entries, validated once; one locked atomic writer.

Reading uses only the standard library (tomllib), so queries stay fast; tomlkit (which keeps comments, order
and layout) and filelock are imported by the write path only. Never imports docker, git or pyelftools.

Schema (see the header of versions.toml): `[variants.NAME]` declares a variant; each variant's versions are
an array of tables `[[NAME]]`, one per version, with an optional `[NAME.release]` sub-table holding the
provenance that `invoke release` records. The schema is derived from the dataclasses below: to extend it,
add a field with a default (and, if needed, a `check` in its metadata); loading, validation, JSON and
rendering follow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import re
import tempfile
import tomllib
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Union, get_args, get_origin, get_type_hints

from hookbuild.errors import RecordError, UsageError, VersionError
from hookbuild.version import Version

if TYPE_CHECKING:
    import tomlkit

T = TypeVar("T")

SCHEMA = 1
LOCK_TIMEOUT = 60.0

_NAME = re.compile(r"[a-z][a-z0-9-]*")
_FEATURE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_BUILD_ID = re.compile(r"(?:[0-9a-f]{2}){4,64}")
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._:-]*(?:/[a-z0-9][a-z0-9._-]*)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_REPOSITORY = re.compile(r"[a-z0-9][a-z0-9._:-]*(?:/[a-z0-9][a-z0-9._-]*)+")


class Status(enum.StrEnum):
    WORKING = "working"
    DEPRECATED = "deprecated"
    TEST_ONLY = "test-only"


# --- field checks: return a problem (str) or None ------------------------------------------------------


def _matches(pattern: re.Pattern[str], what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
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

    @property
    def pinned(self) -> str:
        """The image pinned by digest: `registry/repo@sha256:...`."""
        return f"{self.image.rsplit(':', 1)[0]}@{self.digest}"


@dataclass(frozen=True, kw_only=True)
class Variant:
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
    features: tuple[str, ...] = field(
        default=(), metadata=_check(_matches(_FEATURE, "a feature tag (lowercase, digits, '-', '_', '.')"))
    )
    packages: tuple[str, ...] = field(
        default=(), metadata=_check(_matches(_PACKAGE, "a Debian package name"))
    )
    upstream: Upstream | None = None
    based_on: str | None = field(default=None, metadata=_check(_check_ref))
    supersedes: Version | None = None
    status_reason: str | None = None
    image: str | None = field(
        default=None, metadata=_check(_matches(_IMAGE, "an image reference with a tag (registry/repo:tag)"))
    )
    notes: str | None = None
    release: Provenance | None = None

    @property
    def ref(self) -> str:
        return f"{self.variant}@{self.version}"

    @property
    def deprecated_reason(self) -> str | None:
        return self.status_reason if self.status is Status.DEPRECATED else None

    @property
    def digest(self) -> str | None:
        return self.release.digest if self.release else None

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
        return data


@dataclass(frozen=True, kw_only=True)
class Record:
    path: Path | None
    declared: Mapping[str, Variant]
    entries: tuple[Entry, ...]
    """Grouped by variant (declaration order), oldest first within a variant."""

    def variants(self) -> tuple[str, ...]:
        return tuple(self.declared)

    def variant(self, name: str) -> Variant:
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
        return tuple(sorted(chosen, key=lambda e: e.version, reverse=True))

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
        """Entries tagged with `feature`, newest first per variant; deprecated ones only with include_all."""
        return tuple(
            entry
            for name in self.declared
            for entry in self.of(name)
            if feature in entry.features and (include_all or entry.status is not Status.DEPRECATED)
        )

    def find_release(self, variant: str, inputs_key: str) -> Entry | None:
        """The entry already released from the same inputs (idempotent CI retries), if any."""
        for entry in self.of(variant):
            if entry.release is not None and entry.release.inputs_key == inputs_key:
                return entry
        return None

    def next_version(self, variant: str, part: str) -> Version:
        """The version after the highest one ever recorded (any status: numbers are never reused)."""
        entries = self.of(variant)
        if part not in ("major", "minor"):
            raise VersionError(f"unknown version part {part!r}", hint="use major or minor")
        if not entries:
            return Version(1, 0) if part == "major" else Version(0, 1)
        top = entries[0].version
        return top.bump_major() if part == "major" else top.bump_minor()


def parse_ref(ref: str) -> tuple[str, Version]:
    """`istio@12.0` -> ("istio", Version(12, 0))."""
    if not isinstance(ref, str) or ref.count("@") != 1:
        raise VersionError(
            f"invalid release reference {ref!r}", hint="write VARIANT@MAJOR.MINOR, e.g. istio@12.0"
        )
    variant, _, version = ref.partition("@")
    if not _NAME.fullmatch(variant):
        raise VersionError(
            f"invalid variant name {variant!r} in {ref!r}", hint="write VARIANT@MAJOR.MINOR, e.g. istio@12.0"
        )
    return variant, Version.parse(version)


# --- loading and validation -----------------------------------------------------------------------------


def load(path: Path) -> Record:
    """Read and validate versions.toml; RecordError naming file, line and field on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError(
            f"version record {path} does not exist",
            hint="pass --versions-file, or set versions_file in [tool.hookbuild]",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"cannot read version record {path}: {exc}", hint="check the file") from exc
    return loads(text, path=path)


def loads(text: str, *, path: Path | None = None) -> Record:
    name = str(path) if path else "<record>"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecordError(
            f"{name}: invalid TOML: {exc}", hint="fix the syntax at that line; nothing was written"
        ) from None
    return _Validator(text, name, path).record(data)


class _Problem(Exception):
    def __init__(self, keypath: tuple[str | int, ...], problem: str, hint: str) -> None:
        super().__init__(problem)
        self.keypath = keypath
        self.problem = problem
        self.hint = hint


class _Validator:
    def __init__(self, text: str, name: str, path: Path | None) -> None:
        self.text = text
        self.name = name
        self.path = path

    def record(self, data: Mapping[str, Any]) -> Record:
        try:
            return self._record(data)
        except _Problem as problem:
            line = _line_of(self.text, problem.keypath)
            where = f"{self.name}:{line}" if line else self.name
            raise RecordError(
                f"{where}: {_dotted(problem.keypath)}: {problem.problem}",
                hint=f"{problem.hint}; nothing was written",
            ) from None

    def _record(self, data: Mapping[str, Any]) -> Record:
        schema = data.get("schema")
        if schema != SCHEMA:
            raise _Problem(
                ("schema",), f"schema must be {SCHEMA}, got {schema!r}", f"set `schema = {SCHEMA}`"
            )
        raw_variants = data.get("variants", {})
        if not isinstance(raw_variants, dict):
            raise _Problem(("variants",), "must be a table", "declare variants as [variants.NAME] tables")
        declared: dict[str, Variant] = {}
        for name, raw in raw_variants.items():
            if not _NAME.fullmatch(name):
                raise _Problem(
                    ("variants", name), "invalid variant name", "use lowercase letters, digits and '-'"
                )
            if name in ("schema", "variants"):
                raise _Problem(("variants", name), "reserved name", "pick another variant name")
            declared[name] = _build(Variant, raw, ("variants", name), {"name": name})
        entries: list[Entry] = []
        for key, value in data.items():
            if key in ("schema", "variants"):
                continue
            if key not in declared:
                raise _Problem(
                    (key,),
                    "unknown key",
                    f"known keys: schema, variants, {', '.join(declared)}; "
                    f"declare [variants.{key}] for a new variant",
                )
            if not isinstance(value, list):
                raise _Problem(
                    (key,), "must be an array of tables", f"write each version as a [[{key}]] table"
                )
            seen: dict[Version, int] = {}
            for index, raw in enumerate(value):
                entry = _build(Entry, raw, (key, index), {"variant": key})
                if entry.version in seen:
                    raise _Problem(
                        (key, index, "version"),
                        f"version {entry.version} is recorded twice",
                        "each version appears once; bump to get a new one",
                    )
                seen[entry.version] = index
                entries.append(entry)
        self._relations(entries, declared, data)
        order = {name: i for i, name in enumerate(declared)}
        entries.sort(key=lambda e: (order[e.variant], e.version))
        return Record(path=self.path, declared=declared, entries=tuple(entries))

    def _relations(
        self, entries: list[Entry], declared: Mapping[str, Variant], data: Mapping[str, Any]
    ) -> None:
        known = {(e.variant, e.version) for e in entries}
        index_of: dict[tuple[str, Version], int] = {}
        for key in declared:
            for i, raw in enumerate(data.get(key, [])):
                index_of[(key, Version.parse(raw["version"]))] = i
        for entry in entries:
            at = (entry.variant, index_of[(entry.variant, entry.version)])
            if entry.based_on is not None and parse_ref(entry.based_on) not in known:
                raise _Problem(
                    (*at, "based_on"),
                    f"{entry.based_on} is not in the record",
                    "based_on must name a recorded VARIANT@MAJOR.MINOR",
                )
            if entry.supersedes is not None:
                if (entry.variant, entry.supersedes) not in known:
                    raise _Problem(
                        (*at, "supersedes"),
                        f"{entry.variant}@{entry.supersedes} is not in the record",
                        "supersedes must name an older recorded version of the same variant",
                    )
                if not entry.supersedes < entry.version:
                    raise _Problem(
                        (*at, "supersedes"),
                        f"{entry.supersedes} is not older than {entry.version}",
                        "a version can only supersede an older one",
                    )
            if entry.status is Status.DEPRECATED and not entry.status_reason:
                raise _Problem(
                    (*at, "status_reason"),
                    "a deprecated version needs a reason",
                    'add status_reason = "why it should not be used"',
                )


def _build(cls: type[T], raw: Any, keypath: tuple[str | int, ...], given: Mapping[str, Any]) -> T:
    """Construct dataclass `cls` from a TOML table, checking keys, types and field checks."""
    if not isinstance(raw, dict):
        raise _Problem(keypath, "must be a table", "see the schema in the file's header comment")
    hints = get_type_hints(cls)
    toml_fields = [f for f in fields(cls) if f.metadata.get("toml", True)]  # type: ignore[arg-type]
    names = {f.name for f in toml_fields}
    for key in raw:
        if key not in names:
            raise _Problem((*keypath, key), "unknown key", f"allowed keys here: {', '.join(sorted(names))}")
    values: dict[str, Any] = dict(given)
    for f in toml_fields:
        if f.name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _Problem(keypath, f"missing required key {f.name!r}", f"add `{f.name} = ...`")
            continue
        value = _convert(raw[f.name], hints[f.name], (*keypath, f.name))
        check = f.metadata.get("check")
        if check is not None:
            problem = check(value)
            if problem:
                raise _Problem((*keypath, f.name), problem, "correct the value")
        values[f.name] = value
    return cls(**values)


def _convert(value: Any, tp: Any, keypath: tuple[str | int, ...]) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [arg for arg in get_args(tp) if arg is not type(None)]
        return _convert(value, inner[0], keypath)
    if origin is tuple:
        if not isinstance(value, list):
            raise _Problem(keypath, f"must be an array, got {_kind(value)}", 'write ["a", "b"]')
        item_type = get_args(tp)[0]
        items = tuple(_convert(item, item_type, (*keypath, i)) for i, item in enumerate(value))
        if len(set(items)) != len(items):
            raise _Problem(keypath, "has duplicate items", "list each item once")
        return items
    if tp is Version:
        if not isinstance(value, str):
            raise _Problem(keypath, f"must be a string, got {_kind(value)}", 'quote it: "12.0"')
        try:
            return Version.parse(value)
        except VersionError as exc:
            raise _Problem(keypath, exc.message, exc.hint or "") from None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = [str(m.value) for m in tp]
        if value not in allowed:
            raise _Problem(
                keypath, f"{value!r} is not one of {', '.join(allowed)}", "use one of those values"
            )
        return tp(value)
    if tp is datetime:
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise _Problem(
                keypath, "must be a date-time with offset", "write e.g. 2026-08-01T12:00:00Z (unquoted)"
            )
        return value.astimezone(UTC)
    if tp is bool:
        if not isinstance(value, bool):
            raise _Problem(keypath, f"must be true or false, got {_kind(value)}", "write true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _Problem(keypath, f"must be a string, got {_kind(value)}", "quote the value")
        if not value.strip():
            raise _Problem(keypath, "must not be empty", "give a value or remove the key")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, keypath, {})
    raise TypeError(f"record schema: unsupported field type {tp!r}")  # a bug in this module, not in the file


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _dotted(keypath: tuple[str | int, ...]) -> str:
    out = ""
    for part in keypath:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEYLINE = re.compile(
    r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*="""
)
_PART = re.compile(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""")


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(next(g for g in m.groups() if g is not None) for m in _PART.finditer(dotted))


def _line_of(text: str, keypath: tuple[str | int, ...]) -> int | None:
    """Best-effort line number of a key path like ("istio", 2, "release", "digest") in the TOML text."""
    best: tuple[int, int] | None = None  # (matched length, line)
    counts: dict[str, int] = {}
    current: tuple[str | int, ...] = ()
    in_multiline = False
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                in_multiline = False
            continue
        header = _HEADER.match(line)
        full: tuple[str | int, ...]
        if header:
            names = _parts(header.group(2))
            if header.group(1) == "[[":
                counts[names[0]] = counts.get(names[0], -1) + 1
                current = (names[0], counts[names[0]], *names[1:])
            elif names[0] in counts:
                current = (names[0], counts[names[0]], *names[1:])
            else:
                current = names
            full = current
        else:
            key = _KEYLINE.match(line)
            if not key:
                continue
            full = (*current, *_parts(key.group(1)))
            rest = line[key.end() :]
            if rest.count('"""') % 2 == 1 or rest.count("'''") % 2 == 1:
                in_multiline = True
        matched = 0
        for have, want in zip(full, keypath, strict=False):
            if have != want:
                break
            matched += 1
        if matched == min(len(full), len(keypath)) and (best is None or matched > best[0]):
            best = (matched, number)
    return best[1] if best else None


def _to_plain(obj: Any) -> Any:
    """A dataclass as JSON-friendly plain data (fields not stored in TOML, such as `variant`, left out)."""
    if isinstance(obj, Version | enum.Enum):
        return str(obj.value) if isinstance(obj, enum.Enum) else str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj) if f.metadata.get("toml", True)}
    if isinstance(obj, datetime):
        return _iso(obj)
    if isinstance(obj, tuple):
        return [_to_plain(item) for item in obj]
    return obj


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- rendering an entry as TOML text (used for appends, so new entries look like hand-written ones) -----


def _toml_value(value: Any) -> str:
    import tomlkit

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, Version | enum.Enum):
        return _toml_value(str(value.value) if isinstance(value, enum.Enum) else str(value))
    if isinstance(value, str):
        return tomlkit.string(value).as_string()
    if isinstance(value, tuple):
        if value and dataclasses.is_dataclass(value[0]):
            lines = "".join(f"  {_toml_value(item)},\n" for item in value)
            return f"[\n{lines}]"
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if dataclasses.is_dataclass(value):
        pairs = [f"{k} = {_toml_value(v)}" for k, v in _set_fields(value)]
        return "{ " + ", ".join(pairs) + " }" if pairs else "{}"
    raise TypeError(f"cannot render {value!r} as TOML")


def _set_fields(obj: Any) -> Iterator[tuple[str, Any]]:
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("toml", True) and value is not None:
            yield f.name, value


def render_entry(entry: Entry) -> str:
    """The `[[variant]]` table (and `[variant.release]`) for one entry, ending with a blank line."""
    lines = [f"[[{entry.variant}]]"]
    always = {"version", "status", "verified", "summary", "features", "packages"}
    for f in fields(entry):
        value = getattr(entry, f.name)
        if f.name == "release" or not f.metadata.get("toml", True) or value is None:
            continue
        if value == () and f.name not in always:
            continue
        lines.append(f"{f.name} = {_toml_value(value)}")
    if entry.release is not None:
        lines += ["", f"[{entry.variant}.release]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in _set_fields(entry.release)]
    return "\n".join(lines) + "\n\n"


# --- the one write path -----------------------------------------------------------------------------------


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}."


@contextlib.contextmanager
def _locked(path: Path, timeout: float) -> Iterator[None]:
    from filelock import FileLock, Timeout

    lock = FileLock(f"{path}.lock")
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise RecordError(
            f"{path} is locked by another writer (waited {timeout:.0f}s for {path}.lock)",
            hint="wait for the other invoke to finish; the lock is released when its process ends",
        ) from None
    try:
        yield
    finally:
        lock.release()


def update(
    path: Path,
    change: Callable[[tomlkit.TOMLDocument], T],
    *,
    dry_run: bool = False,
    timeout: float = LOCK_TIMEOUT,
) -> T:
    """Apply `change` to the record under a lock, validate, write atomically; the file is untouched on error.

    The change edits the tomlkit document in place (comments and layout survive) and returns a value.
    With dry_run everything runs, including validation, except the write.
    """
    import tomlkit

    path = Path(path)
    with _locked(path, timeout):
        # Temp files left by a writer that was killed: only the lock holder writes, so they are stale.
        for stale in path.parent.glob(_tmp_prefix(path) + "*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
        before = load(path)  # validates what is there first: never build on a broken record
        del before
        text = path.read_text(encoding="utf-8")
        doc = tomlkit.parse(text)
        result = change(doc)
        new_text = tomlkit.dumps(doc)
        loads(new_text, path=path)
        if dry_run or new_text == text:
            return result
        _write_atomic(path, new_text)
        return result


def _write_atomic(path: Path, text: str) -> None:
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=".tmp")
    except OSError as exc:
        raise _unwritable(path, exc) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):
            tmp.chmod(path.stat().st_mode & 0o777)
        tmp.replace(path)  # atomic on POSIX: readers see the old or the new file
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):  # disk full, read-only, quota: the old file is still there, intact
            raise _unwritable(path, exc) from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _unwritable(path: Path, exc: OSError) -> RecordError:
    return RecordError(
        f"cannot write {path}: {exc.strerror or exc}",
        hint="free space or fix permissions in that directory and retry; the record was left unchanged",
    )


# --- tomlkit document helpers ---------------------------------------------------------------------------


def _current(doc: tomlkit.TOMLDocument) -> Record:
    import tomlkit

    return loads(tomlkit.dumps(doc))


def _entry_index(doc: tomlkit.TOMLDocument, variant: str, version: Version) -> int | None:
    for index, table in enumerate(doc.get(variant, [])):
        if table.get("version") == str(version):
            return index
    return None


def _parsed_table(entry: Entry) -> Any:
    import tomlkit

    return tomlkit.parse(render_entry(entry))[entry.variant][0]


def _deepest(table: Any) -> Any:
    """The container whose body ends the table's text (its last sub-table, recursively)."""
    from tomlkit.items import Table

    while table.value.body and isinstance(table.value.body[-1][1], Table):
        table = table.value.body[-1][1]
    return table


def _ensure_blank_line(table: Any) -> None:
    import tomlkit

    if not table.as_string().endswith("\n\n"):
        _deepest(table).value.body.append((None, tomlkit.nl()))


def _append(doc: tomlkit.TOMLDocument, entry: Entry) -> None:
    """Append an entry after the variant's last one, moving comments that belong to the next section."""
    import tomlkit
    from tomlkit.items import Comment, Whitespace

    table = _parsed_table(entry)
    if entry.variant not in doc:
        if not tomlkit.dumps(doc).endswith("\n\n"):
            doc.add(tomlkit.nl())
        aot = tomlkit.aot()
        aot.append(table)
        doc.append(entry.variant, aot)
        return
    aot = doc[entry.variant]
    tail = _deepest(aot[-1])
    body = tail.value.body
    trailing: list[tuple[Any, Any]] = []
    while body and body[-1][0] is None and isinstance(body[-1][1], Comment | Whitespace):
        trailing.insert(0, body.pop())
    first_comment = next(
        (i for i, (_, item) in enumerate(trailing) if isinstance(item, Comment)), len(trailing)
    )
    keep, move = trailing[:first_comment], trailing[first_comment:]
    body.extend(keep)
    _ensure_blank_line(aot[-1])
    aot.append(table)
    if move:
        _deepest(aot[-1]).value.body.extend(move)


# --- convenience writers ----------------------------------------------------------------------------------


def add_release(
    path: Path,
    variant: str,
    version: Version | str,
    provenance: Provenance,
    *,
    replace: bool = False,
    dry_run: bool = False,
    summary: str | None = None,
    based_on: str | None = None,
    packages: tuple[str, ...] | None = None,
    upstream: Upstream | None = None,
) -> Entry:
    """Record a release: attach its provenance to the recorded version (e.g. one made by `bump`), or add
    the version, carrying the latest working version's features. A version already released needs
    replace=True. Given facts (based_on, packages, upstream) win over carried ones.
    """
    return _record_release(
        path,
        variant,
        version,
        provenance,
        replace=replace,
        dry_run=dry_run,
        summary=summary,
        based_on=based_on,
        packages=packages,
        upstream=upstream,
    )


def _record_release(
    path: Path,
    variant: str,
    version: Version | str,
    provenance: Provenance,
    *,
    replace: bool,
    dry_run: bool,
    summary: str | None,
    based_on: str | None = None,
    packages: tuple[str, ...] | None = None,
    upstream: Upstream | None = None,
) -> Entry:
    wanted = Version.parse(version) if isinstance(version, str) else version

    def change(doc: tomlkit.TOMLDocument) -> Entry:
        record = _current(doc)
        record.variant(variant)
        entry = record.find(variant, wanted)
        if entry is None:
            base = record.latest(variant)
            new = Entry(
                variant=variant,
                version=wanted,
                summary=summary or f"released by hookbuild from Envoy {provenance.envoy_commit[:12]}",
                features=base.features if base else (),
                packages=packages if packages is not None else (base.packages if base else ()),
                upstream=upstream or (base.upstream if base else None),
                based_on=based_on,
                image=provenance.image,
                release=provenance,
            )
            _append(doc, new)
            return new
        return _attach(doc, entry, provenance, replace=replace)

    return update(path, change, dry_run=dry_run)


def _attach(doc: tomlkit.TOMLDocument, entry: Entry, provenance: Provenance, *, replace: bool) -> Entry:
    if entry.release is not None and not replace:
        raise RecordError(
            f"{entry.ref} was already released as {entry.release.pinned}",
            hint="bump to a new version; re-releasing a version needs replace=True (--force)",
        )
    new = dataclasses.replace(entry, release=provenance, image=provenance.image)
    index = _entry_index(doc, entry.variant, entry.version)
    assert index is not None
    table = doc[entry.variant][index]
    table["image"] = provenance.image
    parsed = _parsed_table(new)["release"]
    if "release" in table:
        table["release"] = parsed
    else:
        _ensure_blank_line(table)
        table.append("release", parsed)
    return new


def bump(
    path: Path,
    variant: str,
    part: str,
    summary: str,
    *,
    features: Sequence[str] | None = None,
    packages: Sequence[str] | None = None,
    status: Status = Status.WORKING,
    upstream: Upstream | None = None,
    based_on: str | None = None,
    supersedes: str | None = None,
    notes: str | None = None,
    dry_run: bool = False,
) -> Entry:
    """Record the next version of a variant; features and packages carry over from the latest working one."""

    def change(doc: tomlkit.TOMLDocument) -> Entry:
        record = _current(doc)
        record.variant(variant)
        base = record.latest(variant)
        entry = Entry(
            variant=variant,
            version=record.next_version(variant, part),
            status=status,
            summary=summary,
            features=tuple(features) if features is not None else (base.features if base else ()),
            packages=tuple(packages) if packages is not None else (base.packages if base else ()),
            upstream=upstream if upstream is not None else (base.upstream if base else None),
            based_on=based_on,
            supersedes=Version.parse(supersedes) if supersedes else None,
            notes=notes,
        )
        _append(doc, entry)
        return entry

    return update(path, change, dry_run=dry_run)


def set_status(path: Path, ref: str, status: Status, reason: str) -> Entry:
    """Deprecate or mark test-only (or reinstate as working); entries are never deleted."""
    if not reason.strip():
        raise UsageError(f"changing {ref} to {status} needs a reason", hint="pass --reason TEXT")

    def change(doc: tomlkit.TOMLDocument) -> Entry:
        entry = _current(doc).get(ref)
        index = _entry_index(doc, entry.variant, entry.version)
        assert index is not None
        table = doc[entry.variant][index]
        table["status"] = str(status)
        table["status_reason"] = reason
        return dataclasses.replace(entry, status=status, status_reason=reason)

    return update(path, change)
