"""Checking a parsed versions.toml against the record's dataclasses: keys, types, field checks, relations.

Every problem becomes one RecordError naming the file, the line and the field, and how to fix it. The
checks are derived from the dataclasses once per class (type hints, converters) and then applied to every
entry: a 10,000-entry record costs a fraction of its TOML parse.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
from collections.abc import Callable, Mapping
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import tomli

from hookbuild.collector import paused_gc
from hookbuild.errors import RecordError, VersionError
from hookbuild.record.model import (
    NAME,
    READABLE_SCHEMAS,
    SCHEMA,
    Entry,
    Record,
    Status,
    VariantSection,
    parse_ref,
)
from hookbuild.record.toml_text import KeyPath, line_of
from hookbuild.version import Version

T = TypeVar("T")
Convert = Callable[[Any], Any]
"""A converter raises _Problem with a key path relative to its value; callers prefix where it is."""


class _Problem(Exception):
    def __init__(self, keypath: KeyPath, problem: str, hint: str) -> None:
        super().__init__(problem)
        self.keypath = keypath
        self.problem = problem
        self.hint = hint

    def within(self, prefix: KeyPath) -> _Problem:
        """The same problem, its key path made relative to an enclosing table."""
        self.keypath = (*prefix, *self.keypath)
        return self


def validate(data: Mapping[str, Any], *, text: str, name: str, path: Path | None) -> Record:
    try:
        return _record(data, path)
    except _Problem as problem:
        line = line_of(text, problem.keypath)
        where = f"{name}:{line}" if line else name
        raise RecordError(
            f"{where}: {_dotted(problem.keypath)}: {problem.problem}",
            hint=f"{problem.hint}; nothing was written",
        ) from None


def entry_from_table(raw: Mapping[str, Any], *, variant: str, label: str) -> Entry:
    """One `[[variant]]` table as an Entry (an edit's new entry is checked this way before it is written)."""
    try:
        entry = build(Entry, raw, (), {"variant": variant})
        _entry_rules(entry, ())
        return entry
    except _Problem as problem:
        raise RecordError(
            f"{label}: {_dotted(problem.keypath)}: {problem.problem}",
            hint=f"{problem.hint}; nothing was written",
        ) from None


def check_in(record: Record, entry: Entry) -> None:
    """An edited or new entry's relations to the record: what it names exists; a new version is new."""
    index_of = dict(record.positions)
    index_of.setdefault((entry.variant, entry.version), len(index_of))
    try:
        _relations([entry], index_of)
    except _Problem as problem:
        raise RecordError(
            f"{record.path or 'the record'}: {entry.ref}: {_dotted(problem.keypath[2:])}: {problem.problem}",
            hint=f"{problem.hint}; nothing was written",
        ) from None


def _record(data: Mapping[str, Any], path: Path | None) -> Record:
    schema = data.get("schema")
    if schema not in READABLE_SCHEMAS:
        readable = " or ".join(map(str, READABLE_SCHEMAS))
        raise _Problem(("schema",), f"schema must be {readable}, got {schema!r}", f"set `schema = {SCHEMA}`")
    raw_variants = data.get("variants", {})
    if not isinstance(raw_variants, dict):
        raise _Problem(("variants",), "must be a table", "declare variants as [variants.NAME] tables")
    declared: dict[str, VariantSection] = {}
    for name, raw in raw_variants.items():
        if not NAME.fullmatch(name):
            raise _Problem(
                ("variants", name), "invalid variant name", "use lowercase letters, digits and '-'"
            )
        if name in ("schema", "variants"):
            raise _Problem(("variants", name), "reserved name", "pick another variant name")
        declared[name] = build(VariantSection, raw, ("variants", name), {"name": name})
    entries: list[Entry] = []
    index_of: dict[tuple[str, Version], int] = {}
    for key, value in data.items():
        if key in ("schema", "variants"):
            continue
        if key not in declared:
            raise _Problem(
                (key,),
                "unknown key",
                f"known keys: schema, variants, {', '.join(declared)}; declare [variants.{key}] for a new variant",
            )
        if not isinstance(value, list):
            raise _Problem((key,), "must be an array of tables", f"write each version as a [[{key}]] table")
        for index, raw in enumerate(value):
            entry = build(Entry, raw, (key, index), {"variant": key})
            if (key, entry.version) in index_of:
                raise _Problem(
                    (key, index, "version"),
                    f"version {entry.version} is recorded twice",
                    "each version appears once; bump to get a new one",
                )
            index_of[(key, entry.version)] = index
            _entry_rules(entry, (key, index))
            entries.append(entry)
    _relations(entries, index_of)
    order = {name: i for i, name in enumerate(declared)}
    entries.sort(key=lambda e: (order[e.variant], e.version.major, e.version.minor))
    return Record(path=path, declared=declared, entries=tuple(entries), schema=schema, positions=index_of)


def _entry_rules(entry: Entry, at: KeyPath) -> None:
    """Rules within one entry: its status agrees with its history; a deprecation says why; checked claims."""
    if entry.history:
        if entry.status_reason is not None:
            raise _Problem(
                (*at, "status_reason"),
                "status_reason and history both given",
                "put the reason in the history item of that status",
            )
        if entry.history[-1].status is not entry.status:
            raise _Problem(
                (*at, "status"),
                f"is {entry.status} but the last history item says {entry.history[-1].status}",
                "append a history item { status, reason, at } for each change",
            )
        times = [change.at for change in entry.history if change.at is not None]
        if times != sorted(times):
            raise _Problem((*at, "history"), "is not in time order", "append new items at the end")
    if entry.status is Status.DEPRECATED and not entry.reason:
        raise _Problem(
            (*at, "history" if entry.history else "status_reason"),
            "a deprecated version needs a reason",
            'add status_reason = "why it should not be used"',
        )
    checked = entry.release.checked if entry.release is not None else None
    if checked is not None:
        from hookbuild.record.features import FEATURES

        unproven = [f for f in entry.features if FEATURES[f].check is not None and f not in checked]
        if unproven:
            raise _Problem(
                (*at, "features"),
                f"claims {', '.join(unproven)} but the release's checks did not pass for it",
                "a released version carries a checked feature only if release.checked lists it",
            )


def _relations(entries: list[Entry], index_of: Mapping[tuple[str, Version], int]) -> None:
    for entry in entries:
        if entry.based_on is None and entry.supersedes is None:
            continue  # most entries name no other
        at = (entry.variant, index_of[(entry.variant, entry.version)])
        if entry.based_on is not None and parse_ref(entry.based_on) not in index_of:
            raise _Problem(
                (*at, "based_on"),
                f"{entry.based_on} is not in the record",
                "based_on must name a recorded VARIANT@MAJOR.MINOR",
            )
        if entry.supersedes is not None:
            if (entry.variant, entry.supersedes) not in index_of:
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


# --- from TOML tables to dataclasses: converters made once per class and field type ----------------------


@functools.cache
def _maker(cls: type) -> Callable[[Any, Mapping[str, Any]], Any]:
    """The function that makes a `cls` from a TOML table: its fields' converters and checks, in the order the
    dataclass declares them (so the first problem reported is the same whatever the file's key order)."""
    hints = get_type_hints(cls)
    stored = [f for f in fields(cls) if f.metadata.get("toml", True)]
    steps = tuple(
        (
            f.name,
            _converter(hints[f.name]),
            f.metadata.get("check"),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in stored
    )
    names = frozenset(f.name for f in stored)
    new = _instance_maker(cls)

    def make(raw: Any, given: Mapping[str, Any]) -> Any:
        if not isinstance(raw, dict):
            raise _Problem((), "must be a table", "see the schema in the file's header comment")
        if not names.issuperset(raw):
            key = next(k for k in raw if k not in names)
            raise _Problem((key,), "unknown key", f"allowed keys here: {', '.join(sorted(names))}")
        values: dict[str, Any] = dict(given)
        for name, convert, check, required in steps:
            if name not in raw:
                if required:
                    raise _Problem((), f"missing required key {name!r}", f"add `{name} = ...`")
                continue
            try:
                value = convert(raw[name])
            except _Problem as problem:
                raise problem.within((name,)) from None
            if check is not None and (wrong := check(value)):
                raise _Problem((name,), wrong, "correct the value")
            values[name] = value
        return new(values)

    return make


def _instance_maker(cls: type) -> Callable[[dict[str, Any]], Any]:
    """`cls(**values)` for values already checked. A frozen dataclass's __init__ sets each field through
    object.__setattr__ (a tenth of a validation); the instance's dict is filled at once instead, as
    unpickling does. Classes with a __post_init__, a default factory or slots keep their __init__."""
    all_fields = fields(cls)
    if (
        hasattr(cls, "__post_init__")
        or hasattr(cls, "__slots__")
        or any(f.default_factory is not dataclasses.MISSING for f in all_fields)
    ):
        return lambda values: cls(**values)
    defaults = {f.name: f.default for f in all_fields if f.default is not dataclasses.MISSING}

    def new(values: dict[str, Any]) -> Any:
        instance: Any = object.__new__(cls)
        instance.__dict__.update(defaults, **values)
        return instance

    return new


def build(cls: type[T], raw: Any, keypath: KeyPath, given: Mapping[str, Any]) -> T:
    """Construct dataclass `cls` from a TOML table, checking keys, types and field checks."""
    try:
        made: T = _maker(cls)(raw, given)  # type: ignore[arg-type]  # a class is hashable; mypy's Hashable is not type[T]
    except _Problem as problem:
        raise problem.within(keypath) from None
    return made


@functools.cache
def _converter(tp: Any) -> Convert:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _converter(next(arg for arg in get_args(tp) if arg is not type(None)))
    if origin is tuple:
        return _tuple_of(_converter(get_args(tp)[0]))
    if tp is Version:
        return _version
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_of(tp)
    if tp is datetime:
        return _datetime
    if tp is bool:
        return _bool
    if tp is int:
        return _int
    if tp is str:
        return _str
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        make = _maker(tp)
        return lambda value: make(value, {})
    raise TypeError(f"record schema: unsupported field type {tp!r}")  # a bug in this module, not in the file


def _tuple_of(item: Convert) -> Convert:
    def convert(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _Problem((), f"must be an array, got {_kind(value)}", 'write ["a", "b"]')
        try:
            items = tuple(map(item, value))
        except _Problem:
            for index, element in enumerate(value):  # again, one by one, to say which item
                try:
                    item(element)
                except _Problem as problem:
                    raise problem.within((index,)) from None
            raise
        if len(set(items)) != len(items):
            raise _Problem((), "has duplicate items", "list each item once")
        return items

    return convert


def _version(value: Any) -> Version:
    if not isinstance(value, str):
        raise _Problem((), f"must be a string, got {_kind(value)}", 'quote it: "12.0"')
    try:
        return Version.parse(value)
    except VersionError as exc:
        raise _Problem((), exc.message, exc.hint or "") from None


def _enum_of(tp: type[enum.Enum]) -> Convert:
    members = {str(m.value): m for m in tp}

    def convert(value: Any) -> enum.Enum:
        if not isinstance(value, str) or value not in members:
            raise _Problem((), f"{value!r} is not one of {', '.join(members)}", "use one of those values")
        return members[value]

    return convert


def _datetime(value: Any) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise _Problem((), "must be a date-time with offset", "write e.g. 2026-08-01T12:00:00Z (unquoted)")
    return value.astimezone(UTC)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Problem((), f"must be true or false, got {_kind(value)}", "write true or false")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Problem((), f"must be an integer, got {_kind(value)}", "write a number without quotes")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Problem((), f"must be a string, got {_kind(value)}", "quote the value")
    if not value.strip():
        raise _Problem((), "must not be empty", "give a value or remove the key")
    return value


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _dotted(keypath: KeyPath) -> str:
    out = ""
    for part in keypath:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


# --- loading ---------------------------------------------------------------------------------------------


def load(path: Path) -> Record:
    """Read and validate versions.toml; RecordError naming file, line and field on any problem."""
    return load_text(read_text(path), path=path)


def load_text(text: str, *, path: Path | None, store: bool = True) -> Record:
    """`loads`, parsed and validated once per content (the validated record is cached by its text; a miss
    is stored unless `store` is False, for a text about to be replaced)."""
    from hookbuild.record.cache import cached

    with paused_gc():
        return cached(text, path, lambda: loads(text, path=path), store=store)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError(
            f"version record {path} does not exist",
            hint="pass --versions-file, or set versions_file in [tool.hookbuild]",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"cannot read version record {path}: {exc}", hint="check the file") from exc


def loads(text: str, *, path: Path | None = None) -> Record:
    name = str(path) if path else "<record>"
    try:
        # tomli is tomllib's upstream (the standard library vendors it), compiled: the same parse and the
        # same messages at a third of the cost. Reads stay on this parser; only edits use tomlkit.
        data = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        raise RecordError(
            f"{name}: invalid TOML: {exc}", hint="fix the syntax at that line; nothing was written"
        ) from None
    return validate(data, text=text, name=name, path=path)
