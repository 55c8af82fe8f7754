"""The symbols cache: a binary's hookpoints kept by the file's identity, so a second look is instant.

Keyed on (device, inode, size, mtime_ns, ctime_ns) of the binary and its debug file, the pattern and the
reader's format: any change to the file (rewrite, `touch`, rename over it) is a miss. A file changed within
the clock's granularity of its read is not cached at all (a racy entry could hide a later write).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from hookbuild import fsutil
from hookbuild.errors import SymbolError

T = TypeVar("T")


class Cacheable(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


log = logging.getLogger("hookbuild")

_CACHE_FORMAT = 1
_CACHE_KEEP = 256
RACY_NS = 2_000_000_000
"""A file changed less than this long ago may change again without a new mtime/ctime (coarse clocks):
its result is not stored (git's "racily clean" rule)."""


_READER = tuple(
    Path(__file__).with_name(f"{name}.py")
    for name in ("elf", "lookup", "calls", "demangle", "symbols", "cache")
)
"""The modules whose code decides a result."""


def default_dir() -> Path:
    """$XDG_CACHE_HOME/hookbuild/symbols, else ~/.cache/hookbuild/symbols."""
    from hookbuild.config import cache_home

    return cache_home() / "symbols"


def _identity(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def key(path: Path, pattern: str, debug_binary: Path | None) -> dict[str, Any] | None:
    """What a stored result must match; None when a file cannot be stat'ed (reading it gives the error)."""
    try:
        return {
            "format": _CACHE_FORMAT,
            # the reader itself: an edited or upgraded hookbuild never serves an older result
            "reader": [os.stat(module).st_mtime_ns for module in _READER],
            "pattern": pattern,
            "binary": _identity(path),
            "debug_binary": None if debug_binary is None else _identity(debug_binary),
        }
    except OSError:
        return None


def racy(key: dict[str, Any]) -> bool:
    stamps: list[int] = [ns for ident in (key["binary"], key["debug_binary"]) if ident for ns in ident[3:]]
    return time.time_ns() - max(stamps) < RACY_NS


def _file(cache_dir: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache_dir / f"{digest[:32]}.json"


def get(cache_dir: Path, key: dict[str, Any], load: Callable[[Any], T]) -> T | None:
    """The stored result for `key` made by `load`, checked against the key stored inside; anything
    unreadable is a miss."""
    try:
        entry = json.loads(_file(cache_dir, key).read_bytes())
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        return load(entry["info"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError, SymbolError):
        return None


def put(cache_dir: Path, key: dict[str, Any], info: Cacheable) -> None:
    """Store atomically (temporary file + rename); a cache that cannot be written is only logged."""
    target = _file(cache_dir, key)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # not durable: an entry lost to a power cut is a miss, and its fsyncs cost more than the rest of a hit
        text = json.dumps({"key": key, "info": info.to_dict()})
        fsutil.atomic_write(target, text, mode=0o600, durable=False)
        entries = sorted(cache_dir.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        for old in entries[: max(0, len(entries) - _CACHE_KEEP)]:
            old.unlink(missing_ok=True)
    except OSError as exc:
        log.debug("symbols cache %s not written: %s", cache_dir, exc)
