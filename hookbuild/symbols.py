"""Hookpoints of an Envoy binary: what the seed got from `nm envoy | grep hookpoint`, and what uprobes need.

`read_binary()` returns a frozen `BinaryInfo` (sha256, build-id, stripped, PIE) with one `Hookpoint` per
matching function symbol: mangled and demangled name, virtual address, file offset, and whether any code
calls it (an `-O2` build can delete the calls to an empty hookpoint and leave the symbol behind).
`diff()` compares two binaries the way a recorded uprobe script sees them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hookbuild import elf
from hookbuild.errors import SymbolError

log = logging.getLogger("hookbuild")

DEFAULT_PATTERN = "hookpoint"


@dataclass(frozen=True, kw_only=True)
class Hookpoint:
    name: str
    """Mangled, exactly as in the symbol table (what uprobes attach to)."""
    demangled: str
    address: int
    """st_value: the virtual address (bcc's `addr=`, bpftrace's address probes)."""
    size: int
    section: str
    file_offset: int
    """st_value - p_vaddr + p_offset of the executable PT_LOAD holding it: where the uprobe goes."""
    table: str
    """"symtab" or "dynsym" (exported symbols survive `strip`)."""
    called: bool
    """A direct call/jmp in the code targets it; False means a probe on it never fires."""

    @property
    def function(self) -> str:
        """The demangled name without parameters: equal across a signature change."""
        return function_name(self.demangled)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "demangled": self.demangled,
            "address": f"{self.address:#x}",
            "size": self.size,
            "section": self.section,
            "file_offset": f"{self.file_offset:#x}",
            "table": self.table,
            "called": self.called,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hookpoint:
        try:
            return cls(
                name=str(data["name"]),
                demangled=str(data.get("demangled", data["name"])),
                address=_int(data["address"]),
                size=_int(data.get("size", 0)),
                section=str(data.get("section", "")),
                file_offset=_int(data["file_offset"]),
                table=str(data.get("table", "symtab")),
                called=bool(data.get("called", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SymbolError(f"malformed hookpoint record {dict(data)!r}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class BinaryInfo:
    path: Path
    sha256: str
    build_id: str | None
    stripped: bool
    """No .symtab: only hookpoints exported in .dynsym are visible (or those of `debug_binary`)."""
    machine: str
    pie: bool
    hookpoints: tuple[Hookpoint, ...]
    pattern: str = DEFAULT_PATTERN
    debug_binary: Path | None = None

    @property
    def dead(self) -> tuple[Hookpoint, ...]:
        """Hookpoints no code calls: a uprobe on them never fires."""
        return tuple(h for h in self.hookpoints if not h.called)

    def warnings(self) -> tuple[str, ...]:
        """What a user should hear about before tracing this binary."""
        notes: list[str] = []
        if self.stripped and self.debug_binary is None:
            notes.append(
                f"{self.path} is stripped (no .symtab): only hookpoints exported in .dynsym are "
                f"listed ({len(self.hookpoints)}); pass --debug-binary with the unstripped build"
            )
        notes.extend(
            f"hookpoint {h.demangled} ({h.name}) has no call site in the code: a probe on it never fires "
            '(the compiler deleted its calls; put asm volatile("" ::: "memory") in its body)'
            for h in self.dead
        )
        by_address: dict[int, list[Hookpoint]] = {}
        for h in self.hookpoints:
            by_address.setdefault(h.address, []).append(h)
        notes.extend(
            f"hookpoints {', '.join(h.demangled for h in same)} share address {address:#x} (identical code "
            "folding): each probe also counts the others' hits; give each body distinct code"
            for address, same in by_address.items()
            if len(same) > 1
        )
        return tuple(notes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "build_id": self.build_id,
            "stripped": self.stripped,
            "machine": self.machine,
            "pie": self.pie,
            "pattern": self.pattern,
            "debug_binary": None if self.debug_binary is None else str(self.debug_binary),
            "hookpoints": [h.to_dict() for h in self.hookpoints],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BinaryInfo:
        try:
            debug = data.get("debug_binary")
            return cls(
                path=Path(data["path"]),
                sha256=str(data["sha256"]),
                build_id=data.get("build_id"),
                stripped=bool(data["stripped"]),
                machine=str(data.get("machine", "x86-64")),
                pie=bool(data.get("pie", False)),
                pattern=str(data.get("pattern", DEFAULT_PATTERN)),
                debug_binary=Path(debug) if debug else None,
                hookpoints=tuple(Hookpoint.from_dict(h) for h in data["hookpoints"]),
            )
        except (KeyError, TypeError) as exc:
            raise SymbolError(f"malformed binary record: missing or bad {exc}") from None


@dataclass(frozen=True, kw_only=True)
class SymbolDiff:
    added: tuple[Hookpoint, ...] = ()
    removed: tuple[Hookpoint, ...] = ()
    signature_changed: tuple[tuple[Hookpoint, Hookpoint], ...] = ()
    """(old, new): same function, new mangled name; a script probing the old name no longer attaches."""
    moved: tuple[tuple[Hookpoint, Hookpoint], ...] = field(default=())
    """(old, new): same mangled name at another address (breaks only address-based scripts)."""

    @property
    def breaking(self) -> bool:
        """A script recorded for the old binary fails to attach to (some of) the new one."""
        return bool(self.removed or self.signature_changed)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.signature_changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "breaking": self.breaking,
            "added": [h.to_dict() for h in self.added],
            "removed": [h.to_dict() for h in self.removed],
            "signature_changed": [
                {"function": old.function, "old": old.to_dict(), "new": new.to_dict()}
                for old, new in self.signature_changed
            ],
            "moved": [
                {"name": old.name, "old": f"{old.address:#x}", "new": f"{new.address:#x}"}
                for old, new in self.moved
            ],
        }


def read_binary(
    path: Path,
    *,
    pattern: str = DEFAULT_PATTERN,
    debug_binary: Path | None = None,
    cache_dir: Path | None = None,
) -> BinaryInfo:
    """Hookpoints of the ELF binary at `path` (function symbols whose mangled name contains `pattern`).

    For a stripped binary, `debug_binary` (its unstripped build, or an `objcopy --only-keep-debug` file) gives
    the names; it must hold the same code (build-id alone is not trusted: Envoy stamps it from git HEAD).

    With `cache_dir` (e.g. `default_cache_dir()`), the result is kept there, keyed on the identity of the
    file(s) (device, inode, size, mtime and ctime in ns), the pattern and hookbuild's reader; any change to
    the binary (rewrite, `touch`, rename over it) is a miss and reads it afresh.
    """
    if not pattern:
        raise SymbolError("empty hookpoint pattern", hint="pass --pattern, e.g. --pattern hookpoint")
    if cache_dir is None:
        return _read_binary(path, pattern=pattern, debug_binary=debug_binary)
    key = _cache_key(path, pattern, debug_binary)
    if key is not None:
        cached = _cache_get(cache_dir, key)
        if cached is not None:
            log.debug("%s: hookpoints from the cache in %s", path, cache_dir)
            return dataclasses.replace(cached, path=path, debug_binary=debug_binary)
    info = _read_binary(path, pattern=pattern, debug_binary=debug_binary)
    if key is not None and _cache_key(path, pattern, debug_binary) == key and not _racy(key):
        _cache_put(cache_dir, key, info)
    return info


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/hookbuild/symbols, else ~/.cache/hookbuild/symbols."""
    from hookbuild.config import cache_home

    return cache_home() / "symbols"


_CACHE_FORMAT = 1
_CACHE_KEEP = 256
_RACY_NS = 2_000_000_000
"""A file changed less than this long ago may change again without a new mtime/ctime (coarse clocks):
its result is not stored (git's "racily clean" rule)."""


def _identity(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _cache_key(path: Path, pattern: str, debug_binary: Path | None) -> dict[str, Any] | None:
    """What a stored result must match; None when a file cannot be stat'ed (reading it gives the error)."""
    try:
        return {
            "format": _CACHE_FORMAT,
            # the reader itself: an edited or upgraded hookbuild never serves an older result
            "reader": [os.stat(elf.__file__).st_mtime_ns, os.stat(__file__).st_mtime_ns],
            "pattern": pattern,
            "binary": _identity(path),
            "debug_binary": None if debug_binary is None else _identity(debug_binary),
        }
    except OSError:
        return None


def _racy(key: dict[str, Any]) -> bool:
    stamps: list[int] = [ns for ident in (key["binary"], key["debug_binary"]) if ident for ns in ident[3:]]
    return time.time_ns() - max(stamps) < _RACY_NS


def _cache_file(cache_dir: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache_dir / f"{digest[:32]}.json"


def _cache_get(cache_dir: Path, key: dict[str, Any]) -> BinaryInfo | None:
    """The stored result for `key`, checked against the key stored inside; anything unreadable is a miss."""
    try:
        entry = json.loads(_cache_file(cache_dir, key).read_bytes())
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        return BinaryInfo.from_dict(entry["info"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError, SymbolError):
        return None


def _cache_put(cache_dir: Path, key: dict[str, Any], info: BinaryInfo) -> None:
    """Store atomically (temporary file + rename); a cache that cannot be written is only logged."""
    import tempfile

    target = _cache_file(cache_dir, key)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile("w", dir=cache_dir, suffix=".tmp", delete=False) as out:
            try:
                json.dump({"key": key, "info": info.to_dict()}, out)
                out.close()
                os.replace(out.name, target)
            except BaseException:
                os.unlink(out.name)
                raise
        entries = sorted(cache_dir.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        for old in entries[: max(0, len(entries) - _CACHE_KEEP)]:
            old.unlink(missing_ok=True)
    except OSError as exc:
        log.debug("symbols cache %s not written: %s", cache_dir, exc)


def _read_binary(path: Path, *, pattern: str, debug_binary: Path | None) -> BinaryInfo:
    with elf.open_image(path) as image:
        digest = _Digest(image)
        try:
            stripped = not image.has_symtab
            if debug_binary is not None:
                with elf.open_image(debug_binary) as debug:
                    _check_same_build(image, debug)
                    raw = debug.symbols(pattern, "symtab") + image.symbols(pattern, "dynsym")
            else:
                raw = image.symbols(pattern, "symtab") + image.symbols(pattern, "dynsym")
            hookpoints = _hookpoints(image, raw)
            info = BinaryInfo(
                path=path,
                sha256="",
                build_id=image.build_id,
                stripped=stripped,
                machine=image.machine,
                pie=image.pie,
                hookpoints=hookpoints,
                pattern=pattern,
                debug_binary=debug_binary,
            )
        finally:
            sha256 = digest.result()
    log.debug("%s: %d hookpoints matching %r", path, len(hookpoints), pattern)
    return dataclasses.replace(info, sha256=sha256)


class _Digest:
    """sha256 of the mapped file on a second thread: hashlib drops the GIL, so it overlaps the scan."""

    def __init__(self, image: elf.ElfImage) -> None:
        self._value = ""
        self._thread = threading.Thread(target=self._run, args=(image,), name="hookbuild-sha256", daemon=True)
        self._thread.start()

    def _run(self, image: elf.ElfImage) -> None:
        self._value = image.sha256()

    def result(self) -> str:
        self._thread.join()
        return self._value


def _check_same_build(image: elf.ElfImage, debug: elf.ElfImage) -> None:
    if not debug.has_symtab:
        raise SymbolError(
            f"debug binary {debug.path} has no .symtab either",
            hint="pass the unstripped build (bazel-bin/.../envoy before strip)",
        )
    if image.build_id and debug.build_id and image.build_id != debug.build_id:
        raise SymbolError(
            f"debug binary {debug.path} (build-id {debug.build_id}) is not a build of {image.path} "
            f"(build-id {image.build_id})"
        )
    mine, theirs = image.code_digest(), debug.code_digest()
    if mine is not None and theirs is not None:
        if mine != theirs:
            raise SymbolError(
                f"debug binary {debug.path} has different code than {image.path}",
                hint="build-ids can match for different trees (Envoy stamps git HEAD); "
                "pass the unstripped binary of this very build",
            )
    elif image.layout() != debug.layout():
        raise SymbolError(f"debug binary {debug.path} has a different section layout than {image.path}")


def _hookpoints(image: elf.ElfImage, raw: Sequence[elf.RawSymbol]) -> tuple[Hookpoint, ...]:
    unique: dict[tuple[str, int], elf.RawSymbol] = {}
    for sym in raw:  # .symtab first: a symbol exported to .dynsym is reported once
        unique.setdefault((sym.name, sym.value), sym)
    called = image.call_targets(sym.value for sym in unique.values())
    if called is None:
        log.warning(
            "%s: no call-site scanner for %s; hookpoints are assumed called", image.path, image.machine
        )
    demangle = _demangler()
    out = []
    for sym in unique.values():
        offset = image.file_offset(sym.value)
        if offset is None:
            raise SymbolError(
                f"{image.path}: hookpoint {sym.name} at {sym.value:#x} lies in no PT_LOAD segment",
                hint="is --debug-binary a build of this binary?",
            )
        out.append(
            Hookpoint(
                name=sym.name,
                demangled=demangle(sym.name),
                address=sym.value,
                size=sym.size,
                section=sym.section,
                file_offset=offset,
                table=sym.table,
                called=True if called is None else sym.value in called,
            )
        )
    return tuple(sorted(out, key=lambda h: (h.address, h.name)))


def _demangler() -> Callable[[str], str]:
    """`__cxa_demangle` of libstdc++ through ctypes, loaded by soname (cxxfilt's import runs ldconfig)."""
    import ctypes

    try:
        libcxx = ctypes.CDLL("libstdc++.so.6")
    except OSError:
        import ctypes.util

        found = ctypes.util.find_library("stdc++") or ctypes.util.find_library("c++")
        if found is None:
            hint = "apt-get install libstdc++6"
            raise SymbolError("cannot load libstdc++ to demangle names", hint=hint) from None
        libcxx = ctypes.CDLL(found)
    cxa_demangle = libcxx.__cxa_demangle
    cxa_demangle.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    cxa_demangle.restype = ctypes.c_void_p
    free = ctypes.CDLL(None).free
    free.argtypes = [ctypes.c_void_p]
    free.restype = None
    status = ctypes.c_int()

    def demangle(name: str) -> str:
        base, dot, suffix = name.partition(".")  # GCC clones: foo.constprop.0, foo.cold
        text = base
        if base.startswith("_Z"):  # external C++ names only, like c++filt
            out = cxa_demangle(base.encode(), None, None, ctypes.byref(status))
            if not out:  # not a valid mangled name (status -2) or out of memory
                return name
            try:
                text = ctypes.string_at(out).decode("utf-8", "replace")
            finally:
                free(out)
            if status.value != 0:
                return name
        return f"{text} [clone .{suffix}]" if dot else text

    return demangle


def function_name(demangled: str) -> str:
    """`Envoy::Http::hookpointDecode(int) const` -> `Envoy::Http::hookpointDecode` (templates kept)."""
    text = demangled.split(" [clone ", 1)[0]
    end = len(text)
    # Drop the parameter list: the last top-level "(...)" and any cv/ref qualifiers after it.
    depth, close = 0, -1
    for i in range(end - 1, -1, -1):
        char = text[i]
        if char == ")":
            if depth == 0:
                close = i
            depth += 1
        elif char == "(":
            depth -= 1
            if depth == 0 and close != -1:
                text = text[:i]
                break
    # Drop a return type (function templates spell it): the part before the last top-level space.
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        char = text[i]
        if char in ">)":
            depth += 1
        elif char in "<(":
            depth -= 1
        elif char == " " and depth == 0 and not text[:i].endswith("operator"):
            return text[i + 1 :]
    return text


def require_hookpoints(info: BinaryInfo) -> None:
    """A binary to trace must show hookpoints: say why not (stripped, or nothing matches the pattern)."""
    if info.hookpoints:
        return
    if info.stripped and info.debug_binary is None:
        raise SymbolError(
            f"{info.path} is stripped (no .symtab) and exports no symbol matching {info.pattern!r} in .dynsym",
            hint="pass --debug-binary with the unstripped build of the same sources",
        )
    raise SymbolError(
        f"no function symbol matching {info.pattern!r} in {info.path}",
        hint="check --pattern (a substring of the mangled name)",
    )


def diff(old: BinaryInfo, new: BinaryInfo) -> SymbolDiff:
    """What changed for a uprobe script written against `old`'s hookpoints when run on `new`."""
    old_by_name = {h.name: h for h in old.hookpoints}
    new_by_name = {h.name: h for h in new.hookpoints}
    removed = [h for name, h in old_by_name.items() if name not in new_by_name]
    added = [h for name, h in new_by_name.items() if name not in old_by_name]
    moved = tuple(
        (h, new_by_name[name])
        for name, h in old_by_name.items()
        if name in new_by_name and new_by_name[name].address != h.address
    )
    changed: list[tuple[Hookpoint, Hookpoint]] = []
    for gone in sorted(removed, key=lambda h: h.name):
        twin = next((h for h in sorted(added, key=lambda h: h.name) if h.function == gone.function), None)
        if twin is not None:
            changed.append((gone, twin))
            added.remove(twin)
    paired = {id(old_h) for old_h, _ in changed}
    return SymbolDiff(
        added=tuple(sorted(added, key=lambda h: h.name)),
        removed=tuple(sorted((h for h in removed if id(h) not in paired), key=lambda h: h.name)),
        signature_changed=tuple(changed),
        moved=moved,
    )


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("boolean is not an address")
    return value if isinstance(value, int) else int(str(value), 0)
