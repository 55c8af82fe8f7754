"""Edits of the version record: the one locked, atomic write path, and the writers built on it.

A writer reads the record once (parse and validate), decides the new state of one entry from it, and
writes only that entry's lines: a new entry is appended after its variant's last one, a changed one is
edited in place with tomlkit on its own lines (comments and layout survive). The changed lines are parsed
back and checked as an entry, and its relations against the record, before the file is replaced; every
other byte stays as it was. So a write costs one parse and one validation, whatever the record's size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import tomli

from hookbuild import fsutil
from hookbuild.errors import RecordConflict, RecordError, UsageError
from hookbuild.record.model import SCHEMA, Change, Entry, Provenance, Record, Status, iso
from hookbuild.record.schema import check_in, entry_from_table, load_text, loads, read_text
from hookbuild.record.toml_text import Header, entry_span, headers, split_trailer, top_level_line
from hookbuild.version import Version

if TYPE_CHECKING:
    import tomlkit

T = TypeVar("T")

LOCK_TIMEOUT = 60.0


# --- rendering an entry as TOML text (new entries look like hand-written ones) ---------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Version | enum.Enum):
        return _toml_value(str(value.value) if isinstance(value, enum.Enum) else str(value))
    if isinstance(value, str):
        # A JSON string is a TOML basic string, except that TOML wants DEL escaped too.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
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


_ALWAYS = frozenset({"version", "status", "verified", "summary", "features", "packages"})


def render_entry(entry: Entry) -> str:
    """The `[[variant]]` table (and `[variant.release]`) for one entry, ending with a blank line."""
    lines = [f"[[{entry.variant}]]"]
    for f in fields(entry):
        value = getattr(entry, f.name)
        if f.name == "release" or not f.metadata.get("toml", True) or value is None:
            continue
        if value == () and f.name not in _ALWAYS:
            continue
        lines.append(f"{f.name} = {_toml_value(value)}")
    if entry.release is not None:
        lines += ["", f"[{entry.variant}.release]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in _set_fields(entry.release)]
    return "\n".join(lines) + "\n\n"


# --- the one write path -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path, timeout: float) -> Iterator[None]:
    def busy() -> RecordError:
        return RecordConflict(
            f"{path} is locked by another writer (waited {timeout:.0f}s for {path}.lock)",
            hint="wait for the other invoke to finish; the lock is released when its process ends",
        )

    def waiting() -> None:
        logging.getLogger("hookbuild").info("waiting for another writer of %s (%s.lock)", path, path)

    with fsutil.locked(Path(f"{path}.lock"), timeout=timeout, on_wait=waiting, on_timeout=busy):
        # Temp files left by a writer that was killed: only the lock holder writes, so they are stale.
        for stale in path.parent.glob(fsutil.temp_prefix(path) + "*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
        yield


def write_entry(
    path: Path,
    decide: Callable[[Record], tuple[Entry, T]],
    *,
    dry_run: bool = False,
    timeout: float = LOCK_TIMEOUT,
) -> T:
    """Under the lock: load the record, let `decide` return an entry's new state (new or changed) and a
    result, write that entry's lines atomically. The file is untouched on any error and with dry_run."""
    path = Path(path)
    with _locked(path, timeout):
        text = read_text(path)
        # Validated (once per content): never build on a broken record. A miss is not cached: this text is
        # about to be replaced (pickling a 10,000-entry record would cost a tenth of the edit).
        record = load_text(text, path=path, store=dry_run)
        entry, result = decide(record)
        check_in(record, entry)
        new_text = _with_entry(text, record, entry)
        if not dry_run and new_text != text:
            _write_atomic(path, new_text)
        return result


def update(
    path: Path,
    change: Callable[[tomlkit.TOMLDocument], T],
    *,
    dry_run: bool = False,
    timeout: float = LOCK_TIMEOUT,
) -> T:
    """Any change of the whole document (tomlkit, in place), validated once before it replaces the file.

    For edits that are not one entry's; it costs a tomlkit round trip of the whole file.
    """
    import tomlkit

    path = Path(path)
    with _locked(path, timeout):
        text = read_text(path)
        doc = tomlkit.parse(text)
        result = change(doc)
        new_text = tomlkit.dumps(doc)
        loads(new_text, path=path)
        if not dry_run and new_text != text:
            _write_atomic(path, new_text)
        return result


def _write_atomic(path: Path, text: str) -> None:
    try:
        fsutil.atomic_write(path, text)
    except OSError as exc:  # disk full, read-only, quota: the old file is still there, intact
        raise RecordError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint="free space or fix permissions in that directory and retry; the record was left unchanged",
        ) from None


# --- one entry's lines ------------------------------------------------------------------------------------


def _with_entry(text: str, record: Record, entry: Entry) -> str:
    """`text` with `entry` appended (a new version) or its table changed in place; schema line upgraded."""
    lines = text.split("\n")
    if record.schema != SCHEMA and (number := top_level_line(text, "schema")) is not None:
        lines[number] = f"schema = {SCHEMA}"
    found = headers(text)
    old = record.find(entry.variant, entry.version)
    if old is None:
        return _append(lines, found, record, entry)
    index = record.positions[(entry.variant, entry.version)]
    span = entry_span(found, len(lines), entry.variant, index)
    if span is None:
        raise RecordError(
            f"cannot find the [[{entry.variant}]] table of {entry.ref} in {record.path}",
            hint="write its header on a line of its own, `[[" + entry.variant + "]]`",
        )
    own = split_trailer(lines[span.start : span.end]) + span.start
    piece = _changed_table("\n".join(lines[span.start : own]) + "\n", old, entry)
    _require_same(piece, entry)
    head = "\n".join(lines[: span.start])
    tail = "\n".join(lines[own:])
    return head + ("\n" if head else "") + piece[:-1] + ("\n" + tail if own < len(lines) else "")


def _append(lines: list[str], found: list[Header], record: Record, entry: Entry) -> str:
    """After the variant's last entry, before the comments that open the next section (or at the end)."""
    piece = render_entry(entry)
    _require_same(piece, entry)
    count = sum(1 for e in record.entries if e.variant == entry.variant)
    span = entry_span(found, len(lines), entry.variant, count - 1) if count else None
    if span is None:
        head = "\n".join(lines).rstrip("\n")
        return f"{head}\n\n{piece}".rstrip("\n") + "\n"
    at = split_trailer(lines[span.start : span.end]) + span.start
    before = "\n".join(lines[:at]).rstrip("\n")
    after = "\n".join(lines[at:])
    return f"{before}\n\n{piece}{after}".rstrip("\n") + "\n"


def _changed_table(piece: str, old: Entry, new: Entry) -> str:
    """The entry's own lines edited with tomlkit: only the fields that changed are touched."""
    import tomlkit

    doc = tomlkit.parse(piece)
    table = doc[new.variant][0]
    fresh = tomlkit.parse(render_entry(new))[new.variant][0]
    for f in fields(Entry):
        if not f.metadata.get("toml", True) or getattr(old, f.name) == getattr(new, f.name):
            continue
        if f.name not in fresh:
            if f.name in table:
                del table[f.name]
        elif f.name == "release" and "release" not in table:
            _ensure_blank_line(table)
            table.append("release", fresh["release"])
        else:
            table[f.name] = fresh[f.name]
    return tomlkit.dumps(doc)


def _ensure_blank_line(table: Any) -> None:
    import tomlkit
    from tomlkit.items import Table

    if not table.as_string().endswith("\n\n"):
        while table.value.body and isinstance(table.value.body[-1][1], Table):
            table = table.value.body[-1][1]
        table.value.body.append((None, tomlkit.nl()))


def _require_same(piece: str, entry: Entry) -> None:
    """The lines about to be written read back as exactly `entry` (the check of what an edit writes)."""
    try:
        data = tomli.loads(piece)  # the reader of `schema.loads`, so the check reads as a query will
    except tomli.TOMLDecodeError as exc:
        raise RecordError(
            f"the edit of {entry.ref} is not valid TOML: {exc}", hint="report this bug"
        ) from None
    written = entry_from_table(data[entry.variant][0], variant=entry.variant, label=entry.ref)
    if written != entry:
        raise RecordError(f"the edit of {entry.ref} does not read back as intended", hint="report this bug")


# --- the writers ------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def bump(
    path: Path,
    variant: str,
    part: str,
    summary: str,
    *,
    features: Sequence[str] = (),
    no_features: Sequence[str] = (),
    packages: Sequence[str] | None = None,
    based_on: str | None = None,
    supersedes: str | None = None,
    again: bool = False,
    dry_run: bool = False,
    now: Callable[[], datetime] = _now,
) -> Entry:
    """Plan the next version of a variant: status `planned` until a release makes it `working`.

    Features: those of the latest working version, plus `features`, minus `no_features`; packages carry
    over unless given. While a version is planned, another one needs again=True.
    """

    def decide(record: Record) -> tuple[Entry, Entry]:
        record.variant(variant)
        planned = record.planned(variant)
        if planned is not None and not again:
            raise RecordConflict(
                f"{planned.ref} is planned and not released yet",
                hint=f"release it, deprecate it, or pass --again to plan {variant} "
                f"{record.next_version(variant, part)} as well",
            )
        base = record.latest(variant)
        carried = base.features if base else ()
        missing = [tag for tag in no_features if tag not in carried and tag not in features]
        if missing:
            raise UsageError(
                f"--no-feature {missing[0]}: {base.ref if base else variant} has no such feature to drop",
                hint=f"features carried over: {', '.join(carried) or '(none)'}",
            )
        chosen = tuple(dict.fromkeys(tag for tag in (*carried, *features) if tag not in no_features))
        entry = Entry(
            variant=variant,
            version=record.next_version(variant, part),
            status=Status.PLANNED,
            summary=summary,
            features=chosen,
            packages=tuple(packages) if packages is not None else (base.packages if base else ()),
            upstream=base.upstream if base else None,
            based_on=based_on,
            supersedes=Version.parse(supersedes) if supersedes else None,
            history=(Change(status=Status.PLANNED, reason="bumped", at=now()),),
        )
        return entry, entry

    return write_entry(path, decide, dry_run=dry_run)


def set_status(
    path: Path, ref: str, status: Status, reason: str, *, now: Callable[[], datetime] = _now
) -> Entry:
    """Deprecate, mark test-only or reinstate as working: appended to the entry's history, never overwritten.

    Only a release makes a planned version working.
    """
    if not reason.strip():
        raise UsageError(f"changing {ref} to {status} needs a reason", hint="pass --reason TEXT")
    if status is Status.PLANNED:
        raise UsageError(f"{ref} cannot become planned again", hint="bump plans new versions")

    def decide(record: Record) -> tuple[Entry, Entry]:
        entry = record.get(ref)
        if status is Status.WORKING and entry.status is Status.PLANNED:
            raise RecordConflict(
                f"{entry.ref} is planned: only a release makes it working",
                hint=f"invoke release --variant {entry.variant} --version {entry.version}",
            )
        changed = _with_change(entry, Change(status=status, reason=reason, at=now()))
        return changed, changed

    return write_entry(path, decide)


def _with_change(entry: Entry, change: Change) -> Entry:
    """The entry after a status change; a hand-kept status (schema 1) becomes the first history item."""
    history = entry.history or (Change(status=entry.status, reason=entry.status_reason),)
    return dataclasses.replace(entry, status=change.status, status_reason=None, history=(*history, change))


def add_release(
    path: Path,
    variant: str,
    version: Version | str,
    provenance: Provenance,
    *,
    replace: bool = False,
    based_on: str | None = None,
    packages: tuple[str, ...] | None = None,
    features: tuple[str, ...] | None = None,
) -> Entry:
    """Record a release: attach its provenance to the recorded version (a planned one becomes working), or
    add the version. `features` are those the release may claim (its checks passed, or nothing can check
    them); None carries the entry's or the latest working version's. A released version needs replace=True.
    """
    wanted = Version.parse(version) if isinstance(version, str) else version
    released = Change(
        status=Status.WORKING, reason=f"released as {provenance.pinned}", at=provenance.released_at
    )

    def decide(record: Record) -> tuple[Entry, Entry]:
        record.variant(variant)
        entry = record.find(variant, wanted)
        if entry is not None and entry.release is not None and not replace:
            raise RecordConflict(
                f"{entry.ref} was already released as {entry.release.pinned}",
                hint="bump to a new version; re-releasing a version needs replace=True (--force)",
            )
        if entry is None:
            base = record.latest(variant)
            entry = Entry(
                variant=variant,
                version=wanted,
                summary=f"released by hookbuild from Envoy {provenance.envoy_commit[:12]}",
                features=base.features if base else (),
                packages=base.packages if base else (),
                upstream=base.upstream if base else None,
                history=(released,),
            )
        elif entry.status is Status.PLANNED:
            entry = _with_change(entry, released)
        new = dataclasses.replace(
            entry,
            features=features if features is not None else entry.features,
            packages=packages if packages is not None else entry.packages,
            based_on=based_on or entry.based_on,
            image=provenance.image,
            release=provenance,
        )
        return new, new

    return write_entry(path, decide)


def add_location(path: Path, ref: str, location: str) -> Entry:
    """Add a registry tag holding a release's digest (`invoke promote`); already listed: nothing written."""

    def decide(record: Record) -> tuple[Entry, Entry]:
        entry = record.get(ref)
        if entry.release is None:
            raise RecordError(f"{ref} has no release to add a location to", hint="promote a released version")
        known = entry.release.locations or (entry.release.image,)
        if location in known:
            return entry, entry
        new = dataclasses.replace(
            entry, release=dataclasses.replace(entry.release, locations=(*known, location))
        )
        return new, new

    return write_entry(path, decide)
