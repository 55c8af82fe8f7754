"""The validated record kept by its content, so a record is parsed and validated once, not on every query.

Keyed on the sha256 of the file's text and of the modules that turn text into a Record (model, schema,
features, toml_text, version): the same bytes read by the same code give the same Record, so an entry can
never be stale; any edit, by hand or by hookbuild, is a miss that tomli parses and validates as always. Stored in
$XDG_CACHE_HOME/hookbuild/record (0600, atomic; the last few kept). A broken or unreadable entry is a miss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import pickle
from collections.abc import Callable
from pathlib import Path

from hookbuild import fsutil
from hookbuild.record.model import Record

KEEP = 8
_CODE = (
    *(
        Path(__file__).with_name(f"{name}.py")
        for name in ("model", "schema", "features", "toml_text", "cache")
    ),
    Path(__file__).parent.parent / "version.py",
)


def _code_digest() -> bytes:
    digest = hashlib.sha256()
    for source in _CODE:
        digest.update(source.read_bytes())
    return digest.digest()


def directory() -> Path:
    from hookbuild.config import cache_home

    return cache_home() / "record"


def cached(text: str, path: Path | None, parse: Callable[[], Record], *, store: bool = True) -> Record:
    """The Record of `text`: from the cache, else `parse()` (which validates) and, if `store`, stored for
    the next time."""
    key = hashlib.sha256(_code_digest() + text.encode("utf-8")).hexdigest()
    entry = directory() / f"{key}.pickle"
    with contextlib.suppress(
        OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError
    ):
        found = pickle.loads(entry.read_bytes())  # our own 0600 file, named by the content it holds
        if isinstance(found, Record):
            return dataclasses.replace(found, path=path)
    record = parse()
    if not store:
        return record
    with contextlib.suppress(OSError, pickle.PicklingError):  # a cache that cannot be written is no cache
        entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = pickle.dumps(dataclasses.replace(record, path=None), protocol=5)
        fsutil.atomic_write(entry, data, mode=0o600, durable=False)  # lost in a power cut: a miss, no more
        _prune(entry.parent)
    return record


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob("*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        with contextlib.suppress(OSError):
            old.unlink()
