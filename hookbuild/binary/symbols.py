"""Hookpoints of an Envoy binary: what the seed got from `nm envoy | grep hookpoint`, and what uprobes need.

`read_binary()` returns a frozen `BinaryInfo` (sha256, build-id, stripped, PIE) with one `Hookpoint` per
matching function symbol: mangled and demangled name, virtual address, file offset, and whether any code
calls it (an `-O2` build can delete the calls to an empty hookpoint and leave the symbol behind).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hookbuild.binary import cache, calls, elf, lookup
from hookbuild.binary.demangle import demangler, function_name
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

    With `cache_dir` (e.g. `cache.default_dir()`), the result is kept there, keyed on the identity of the
    file(s) (device, inode, size, mtime and ctime in ns), the pattern and hookbuild's reader; any change to
    the binary (rewrite, `touch`, rename over it) is a miss and reads it afresh.
    """
    if not pattern:
        raise SymbolError("empty hookpoint pattern", hint="pass --pattern, e.g. --pattern hookpoint")
    if cache_dir is None:
        return _read_binary(path, pattern=pattern, debug_binary=debug_binary)
    key = cache.key(path, pattern, debug_binary)
    if key is not None:
        cached = cache.get(cache_dir, key, BinaryInfo.from_dict)
        if cached is not None:
            log.debug("%s: hookpoints from the cache in %s", path, cache_dir)
            return dataclasses.replace(cached, path=path, debug_binary=debug_binary)
    info = _read_binary(path, pattern=pattern, debug_binary=debug_binary)
    if key is not None and cache.key(path, pattern, debug_binary) == key and not cache.racy(key):
        cache.put(cache_dir, key, info)
    return info


def _read_binary(path: Path, *, pattern: str, debug_binary: Path | None) -> BinaryInfo:
    with elf.open_image(path) as image:
        digest = _Digest(image)
        try:
            stripped = not image.has_symtab
            if debug_binary is not None:
                with elf.open_image(debug_binary) as debug:
                    _check_same_build(image, debug)
                    raw = lookup.functions(debug, pattern, "symtab") + lookup.functions(
                        image, pattern, "dynsym"
                    )
            else:
                raw = lookup.functions(image, pattern, "symtab") + lookup.functions(image, pattern, "dynsym")
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


def _hookpoints(image: elf.ElfImage, raw: Sequence[lookup.RawSymbol]) -> tuple[Hookpoint, ...]:
    unique: dict[tuple[str, int], lookup.RawSymbol] = {}
    for sym in raw:  # .symtab first: a symbol exported to .dynsym is reported once
        unique.setdefault((sym.name, sym.value), sym)
    called = calls.called(image, (sym.value for sym in unique.values()))
    if called is None:
        log.warning(
            "%s: no call-site scanner for %s; hookpoints are assumed called", image.path, image.machine
        )
    demangle = demangler()
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


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("boolean is not an address")
    return value if isinstance(value, int) else int(str(value), 0)
