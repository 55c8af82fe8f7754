"""Checking a parsed versions.toml against the record's dataclasses: keys, types, field checks, relations.

Every problem becomes one RecordError naming the file, the line and the field, and how to fix it.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import tomllib
import types
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from hookbuild.errors import RecordError, VersionError
from hookbuild.record.model import NAME, SCHEMA, Entry, Record, Status, Variant, parse_ref
from hookbuild.version import Version

T = TypeVar("T")


def validate(data: Mapping[str, Any], *, text: str, name: str, path: Path | None) -> Record:
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
            if not NAME.fullmatch(name):
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
    return validate(data, text=text, name=name, path=path)
