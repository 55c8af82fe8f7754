"""Edits of the version record: the one locked, atomic write path, and the writers built on it.

tomlkit keeps comments, order and layout; every result is validated by loading it back before it replaces
the file, so a failed edit leaves the file as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hookbuild import fsutil
from hookbuild.errors import RecordError, UsageError
from hookbuild.record.model import Entry, Provenance, Record, Status, Upstream, iso
from hookbuild.record.schema import load, loads
from hookbuild.version import Version

if TYPE_CHECKING:
    import tomlkit

T = TypeVar("T")

LOCK_TIMEOUT = 60.0


# --- rendering an entry as TOML text (used for appends, so new entries look like hand-written ones) -----


def _toml_value(value: Any) -> str:
    import tomlkit

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso(value)
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


@contextlib.contextmanager
def _locked(path: Path, timeout: float) -> Iterator[None]:
    def busy() -> RecordError:
        return RecordError(
            f"{path} is locked by another writer (waited {timeout:.0f}s for {path}.lock)",
            hint="wait for the other invoke to finish; the lock is released when its process ends",
        )

    with fsutil.locked(Path(f"{path}.lock"), timeout=timeout, on_timeout=busy):
        yield


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
        for stale in path.parent.glob(fsutil.temp_prefix(path) + "*.tmp"):
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
        fsutil.atomic_write(path, text)
    except OSError as exc:  # disk full, read-only, quota: the old file is still there, intact
        raise _unwritable(path, exc) from None


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


def add_location(path: Path, ref: str, location: str) -> Entry:
    """Add a registry tag holding a release's digest (`invoke promote`); already listed: nothing written."""

    def change(doc: tomlkit.TOMLDocument) -> Entry:
        entry = _current(doc).get(ref)
        if entry.release is None:
            raise RecordError(f"{ref} has no release to add a location to", hint="promote a released version")
        known = entry.release.locations or (entry.release.image,)
        if location in known:
            return entry
        locations = (*known, location)
        index = _entry_index(doc, entry.variant, entry.version)
        assert index is not None
        doc[entry.variant][index]["release"]["locations"] = list(locations)
        return dataclasses.replace(entry, release=dataclasses.replace(entry.release, locations=locations))

    entry = load(path).get(ref)
    if entry.release is not None and location in (entry.release.locations or (entry.release.image,)):
        return entry  # a retry: nothing to write, not even the lock is taken
    return update(path, change)
