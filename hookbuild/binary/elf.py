"""Bulk ELF reading for hookpoint lookup in Envoy-sized binaries (a million symbols, hundreds of MB).

pyelftools parses the structure (header, section and program headers); the symbol tables, string tables and
code are read in bulk from an mmap, because walking a million symbols one construct object at a time takes
seconds. The string table is searched for the pattern first and only symbols whose name lands in a match
are decoded.

Every check that pyelftools would trip over on a damaged file (tables past the end, absurd counts) is done
first, so a truncated or mutated file gives a `SymbolError`, never another exception or a hang.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hookbuild.errors import SymbolError

SYM_SIZE = 24  # sizeof(Elf64_Sym)
SHDR_SIZE = 64
PHDR_SIZE = 56
SHT_SYMTAB, SHT_STRTAB, SHT_NOTE, SHT_NOBITS, SHT_DYNSYM, SHT_SYMTAB_SHNDX = 2, 3, 7, 8, 11, 18
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
PF_X = 0x1
ET_DYN = 3
EM_X86_64 = 62
STT_NOTYPE, STT_FUNC, STT_GNU_IFUNC = 0, 2, 10
SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON, SHN_XINDEX = 0, 0xFF00, 0xFFF1, 0xFFF2, 0xFFFF
DT_FLAGS_1, DF_1_PIE = 0x6FFFFFFB, 0x08000000
NT_GNU_BUILD_ID = 3
MACHINES = {62: "x86-64", 183: "aarch64", 3: "i386", 40: "arm", 243: "riscv", 21: "ppc64", 22: "s390"}
_SYM = struct.Struct("<IBBHQQ")
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_TABLES = {"symtab": SHT_SYMTAB, "dynsym": SHT_DYNSYM}
_BULK_TYPES = frozenset({SHT_SYMTAB, SHT_DYNSYM, SHT_STRTAB, SHT_NOTE, SHT_SYMTAB_SHNDX})


@dataclass(frozen=True, kw_only=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)

    @property
    def has_data(self) -> bool:
        return self.type != SHT_NOBITS


@dataclass(frozen=True, kw_only=True)
class Segment:
    type: int
    flags: int
    vaddr: int
    offset: int
    filesz: int
    memsz: int


@dataclass(frozen=True, kw_only=True)
class RawSymbol:
    """One decoded Elf64_Sym whose name matched the pattern."""

    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int
    section: str
    table: str  # "symtab" | "dynsym"


class ElfImage:
    """A 64-bit little-endian ELF file, mapped read-only. Use `open_image()`."""

    def __init__(
        self,
        path: Path,
        data: mmap.mmap,
        header: dict[str, Any],
        sections: tuple[Section, ...],
        segments: tuple[Segment, ...],
    ) -> None:
        self.path = path
        self.data = data
        self.size = len(data)
        self.sections = sections
        self.segments = segments
        self.e_type: int = header["e_type"]
        self.e_machine: int = header["e_machine"]

    # -- structure -------------------------------------------------------------------------------------

    @property
    def machine(self) -> str:
        return MACHINES.get(self.e_machine, f"EM_{self.e_machine}")

    def table(self, table: str) -> Section | None:
        wanted = _TABLES[table]
        return next((s for s in self.sections if s.type == wanted), None)

    @property
    def has_symtab(self) -> bool:
        return self.table("symtab") is not None

    @property
    def pie(self) -> bool:
        """ET_DYN with an interpreter or DF_1_PIE: a position-independent executable, not a library."""
        if self.e_type != ET_DYN:
            return False
        if any(seg.type == PT_INTERP for seg in self.segments):
            return True
        for seg in self.segments:
            if seg.type != PT_DYNAMIC:
                continue
            end = min(seg.offset + seg.filesz, self.size)
            for tag, value in struct.iter_unpack(
                "<qQ", self.data[seg.offset : end - (end - seg.offset) % 16]
            ):
                if tag == 0:
                    break
                if tag == DT_FLAGS_1 and value & DF_1_PIE:
                    return True
        return False

    @property
    def build_id(self) -> str | None:
        """The GNU build-id note as hex, from the SHT_NOTE sections."""
        for sec in self.sections:
            if sec.type != SHT_NOTE or not sec.has_data:
                continue
            pos, end = sec.offset, sec.offset + sec.size
            while pos + 12 <= end:
                namesz, descsz, ntype = struct.unpack_from("<III", self.data, pos)
                name_at = pos + 12
                desc_at = name_at + (namesz + 3) // 4 * 4
                pos = desc_at + (descsz + 3) // 4 * 4
                if pos > end:
                    break
                if ntype == NT_GNU_BUILD_ID and self.data[name_at : name_at + namesz] == b"GNU\0":
                    return self.data[desc_at : desc_at + descsz].hex()
        return None

    def load_segment(self, address: int) -> Segment | None:
        """The PT_LOAD segment whose file bytes hold `address`, preferring executable ones."""
        hits = [s for s in self.segments if s.type == PT_LOAD and s.vaddr <= address < s.vaddr + s.filesz]
        hits.sort(key=lambda s: not s.flags & PF_X)
        return hits[0] if hits else None

    def file_offset(self, address: int) -> int | None:
        """Where a uprobe goes: `st_value - p_vaddr + p_offset` of the PT_LOAD segment holding it."""
        seg = self.load_segment(address)
        return None if seg is None else address - seg.vaddr + seg.offset

    def section_name(self, shndx: int) -> str:
        if shndx == SHN_ABS:
            return "*ABS*"
        if 0 < shndx < len(self.sections):
            return self.sections[shndx].name
        return "*UND*" if shndx == SHN_UNDEF else f"*{shndx:#x}*"

    def code_digest(self) -> str | None:
        """sha256 over the executable sections' bytes: what `strip` keeps identical in a binary."""
        code = [s for s in self.sections if s.executable and s.has_data and s.size]
        if not code:
            return None
        digest = hashlib.sha256()
        for sec in code:
            digest.update(sec.name.encode())
            digest.update(self.data[sec.offset : sec.offset + sec.size])
        return digest.hexdigest()

    def layout(self) -> tuple[tuple[str, int, int], ...]:
        """(name, address, size) of every allocated section: equal for a binary and its debug file."""
        return tuple((s.name, s.addr, s.size) for s in self.sections if s.flags & SHF_ALLOC)

    # -- bulk symbol search ----------------------------------------------------------------------------

    def symbols(self, pattern: str, table: str = "symtab") -> list[RawSymbol]:
        """Defined function symbols of `table` whose name contains `pattern` (a substring, like grep)."""
        symtab = self.table(table)
        if symtab is None or not pattern:
            return []
        if not 0 < symtab.link < len(self.sections) or self.sections[symtab.link].type != SHT_STRTAB:
            raise SymbolError(f"{self.path}: .{table} links to section {symtab.link}, not a string table")
        strtab = self.sections[symtab.link]
        intervals = self._matching_names(pattern.encode(), strtab)
        if not intervals:
            return []
        count = symtab.size // SYM_SIZE
        end = symtab.offset + count * SYM_SIZE
        # st_name is the first word of each 24-byte record: copy them out as one contiguous uint32 array.
        with memoryview(self.data) as whole, whole[symtab.offset : end] as raw, raw.cast("I") as words:
            names = words[::6].tobytes()
        indexes = sorted(set(_find_in_ranges(names, intervals)))
        found: list[RawSymbol] = []
        xindex: Section | None = None
        for index in indexes:
            if index == 0:
                continue
            st_name, info, _other, shndx, value, size = _SYM.unpack_from(
                self.data, symtab.offset + index * 24
            )
            kind, bind = info & 0xF, info >> 4
            if shndx in (SHN_UNDEF, SHN_COMMON):
                continue
            if shndx == SHN_XINDEX:
                xindex = xindex or next(
                    (s for s in self.sections if s.type == SHT_SYMTAB_SHNDX and s.link == symtab.index), None
                )
                if xindex is None or xindex.offset + index * 4 + 4 > self.size:
                    raise SymbolError(f"{self.path}: symbol {index} needs a missing SHT_SYMTAB_SHNDX entry")
                (shndx,) = struct.unpack_from("<I", self.data, xindex.offset + index * 4)
            executable = 0 < shndx < len(self.sections) and self.sections[shndx].executable
            if not (kind in (STT_FUNC, STT_GNU_IFUNC) or (kind == STT_NOTYPE and executable)):
                continue
            start = strtab.offset + st_name
            end = self.data.find(b"\0", start, strtab.offset + strtab.size)
            name = self.data[start : end if end != -1 else strtab.offset + strtab.size]
            found.append(
                RawSymbol(
                    name=name.decode("utf-8", "replace"),
                    value=value,
                    size=size,
                    type=kind,
                    bind=bind,
                    shndx=shndx,
                    section=self.section_name(shndx),
                    table=table,
                )
            )
        return found

    def _matching_names(self, pattern: bytes, strtab: Section) -> list[tuple[int, int]]:
        """[first, last] st_name values naming a string that contains `pattern` (suffix sharing included)."""
        base, limit = strtab.offset, strtab.offset + strtab.size
        data = self.data
        out: list[tuple[int, int]] = []
        pos = data.find(pattern, base, limit)
        while pos != -1:
            start = data.rfind(b"\0", base, pos) + 1 or base
            start = max(start, base)
            end = data.find(b"\0", pos, limit)
            end = limit if end == -1 else end
            last = data.rfind(pattern, pos, end)
            out.append((start - base, last - base))
            pos = data.find(pattern, end, limit)
        return out

    # -- call sites ------------------------------------------------------------------------------------

    def call_targets(self, targets: Iterable[int]) -> set[int] | None:
        """Those of `targets` reached by a direct `call`/`jmp rel32` somewhere in the code; None when the
        machine is not x86-64 (no scanner for it)."""
        wanted = set(targets)
        if self.e_machine != EM_X86_64:
            return None
        hit: set[int] = set()
        if not wanted:
            return hit
        for sec in self.sections:
            if not (sec.executable and sec.has_data and sec.size >= 5):
                continue
            with memoryview(self.data) as whole, whole[sec.offset : sec.offset + sec.size] as view:
                code = view.tobytes() if sec.size <= (64 << 20) else view
                hit.update(t for t in wanted - hit if _calls(code, sec.addr, t))
        return hit

    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _find_in_ranges(names: bytes, intervals: list[tuple[int, int]]) -> Iterator[int]:
    """Indexes i with intervals[k][0] <= names[i] <= intervals[k][1] (names is a packed uint32 array).

    Searching the three high bytes of the wanted values narrows a million entries to a handful at C speed.
    """
    for first, last in intervals:
        for high in range(first >> 8, (last >> 8) + 1):
            needle = (high << 8).to_bytes(4, "little")[1:]
            at = names.find(needle)
            while at != -1:
                if at % 4 == 1:
                    value = int.from_bytes(names[at - 1 : at + 3], "little")
                    if first <= value <= last:
                        yield at // 4
                at = names.find(needle, at + 1)


def _calls(code: bytes | memoryview, base: int, target: int) -> bool:
    """Whether a `call`/`jmp rel32` at some p in `code` (loaded at `base`) reaches `target`.

    rel32 = target - (base + p + 5) is different at every p, but its top two bytes stay the same over 64 KiB
    runs of p: one C-speed find of that 2-byte needle per run, then a check of the few hits. The two runs
    next to the target (rel32 within +-64 KiB, top bytes 00 00 / ff ff, which are everywhere in code) are
    searched by their top three bytes over 256-byte runs instead. Runs are visited nearest first: callers
    usually sit in the same translation unit, so a called hookpoint is found early; a dead one costs a
    full pass.
    """
    const = target - base - 5  # rel32 + p
    size = len(code)
    runs = range(max((const - (size - 5)) >> 16, -(1 << 15)), min(const >> 16, (1 << 15) - 1) + 1)
    for k in sorted(runs, key=lambda k: abs(2 * k + 1)):
        lo, hi = max(0, const - ((k + 1) << 16) + 1), min(size - 5, const - (k << 16))
        if k in (0, -1):
            for j in sorted(range((const - hi) >> 8, ((const - lo) >> 8) + 1), key=lambda j: abs(2 * j + 1)):
                sub_lo, sub_hi = max(lo, const - ((j + 1) << 8) + 1), min(hi, const - (j << 8))
                if _run_hits(code, const, (j & 0xFFFFFF).to_bytes(3, "little"), 1, sub_lo, sub_hi):
                    return True
        elif _run_hits(code, const, (k & 0xFFFF).to_bytes(2, "little"), 2, lo, hi):
            return True
    return False


def _run_hits(code: bytes | memoryview, const: int, needle: bytes, skip: int, lo: int, hi: int) -> bool:
    """A `call`/`jmp rel32` with rel32 == const - p at some p in [lo, hi] whose rel32 ends with `needle`
    (the top bytes of rel32, at p + 1 + skip)."""
    at = _find(code, needle, lo + 1 + skip, hi + 5)
    while at != -1:
        p = at - 1 - skip
        rel = int.from_bytes(code[p + 1 : p + 5], "little", signed=True)
        if code[p] in (0xE8, 0xE9) and rel == const - p:
            return True
        at = _find(code, needle, at + 1, hi + 5)
    return False


def _find(code: bytes | memoryview, needle: bytes, start: int, end: int) -> int:
    if isinstance(code, bytes):
        return code.find(needle, start, end)
    at = bytes(code[start:end]).find(needle)  # huge sections stay mapped: copy only this 64 KiB run
    return -1 if at == -1 else at + start


_PASS_BINARY = "pass the Envoy binary itself (e.g. bazel-bin/envoy)"
_DAMAGED = "the file is damaged or incomplete: copy or rebuild the binary"


@contextmanager
def open_image(path: Path) -> Iterator[ElfImage]:
    """Map `path` and parse its structure; every reason it cannot be read is a SymbolError."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise SymbolError(f"{path}: no such file", hint="check the path or build the binary first") from None
    except IsADirectoryError:
        raise SymbolError(f"{path}: is a directory, not an ELF binary", hint=_PASS_BINARY) from None
    except OSError as exc:
        raise SymbolError(
            f"{path}: cannot open ({exc.strerror})", hint="check the path and its permissions"
        ) from None
    with handle:
        try:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            raise SymbolError(f"{path}: empty file, not an ELF binary", hint=_DAMAGED) from None
        except OSError as exc:
            raise SymbolError(f"{path}: cannot map ({exc.strerror})", hint=_DAMAGED) from None
        try:
            try:
                header, sections, segments = _parse(path, handle, data)
            except SymbolError as exc:  # damaged or truncated: say how to get a good file
                if exc.hint is None:
                    exc.hint = _DAMAGED
                raise
            yield ElfImage(path, data, header, sections, segments)
        finally:
            data.close()


def _parse(
    path: Path, handle: Any, data: mmap.mmap
) -> tuple[dict[str, Any], tuple[Section, ...], tuple[Segment, ...]]:
    size = len(data)
    ident = data[:16]
    if ident[:4] != b"\x7fELF":
        raise SymbolError(
            f"{path}: not an ELF file (starts with {ident[:4]!r})",
            hint="pass the Envoy binary itself, not an archive, script or image",
        )
    if ident[4] == 1:
        raise SymbolError(
            f"{path}: 32-bit ELF; hookbuild reads 64-bit binaries (x86-64, aarch64) only",
            hint="build Envoy for a 64-bit target",
        )
    if ident[4] != 2:
        raise SymbolError(f"{path}: malformed ELF header (EI_CLASS={ident[4]})")
    if ident[5] != 1:
        raise SymbolError(f"{path}: big-endian ELF is not supported (x86-64 and aarch64 are little-endian)")
    if size < _EHDR.size:
        raise SymbolError(f"{path}: truncated ELF file ({size} bytes, shorter than the ELF header)")
    (_, _, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, shstrndx) = _EHDR.unpack_from(
        data
    )
    # Extended numbering keeps the real counts in section 0; check every table lies inside the file before
    # pyelftools walks it (a huge count from a damaged header would otherwise read forever).
    if shoff:
        if shoff + SHDR_SIZE > size:
            raise SymbolError(
                f"{path}: truncated ELF file: section headers at {shoff:#x} past the end ({size} bytes)"
            )
        if shentsize != SHDR_SIZE:
            raise SymbolError(f"{path}: malformed ELF header (e_shentsize={shentsize})")
        sec0_size, sec0_link, sec0_info = struct.unpack_from("<32xQI I", data, shoff)
        real_shnum = shnum or sec0_size
        if shoff + real_shnum * SHDR_SIZE > size:
            raise SymbolError(
                f"{path}: truncated ELF file: {real_shnum} section headers at {shoff:#x} "
                f"end past {size} bytes"
            )
        real_shstrndx = sec0_link if shstrndx == SHN_XINDEX else shstrndx
        if real_shnum and real_shstrndx >= real_shnum:
            raise SymbolError(f"{path}: malformed ELF header (e_shstrndx={real_shstrndx})")
        if phnum == 0xFFFF:
            phnum = sec0_info
    else:
        real_shnum = 0
    if phnum:
        if phentsize != PHDR_SIZE:
            raise SymbolError(f"{path}: malformed ELF header (e_phentsize={phentsize})")
        if phoff + phnum * PHDR_SIZE > size:
            raise SymbolError(f"{path}: truncated ELF file: program headers end past {size} bytes")
    from elftools.elf.elffile import ELFFile  # imported here: pyelftools costs ~30 ms to import

    try:
        elffile = ELFFile(handle)
        header = {"e_type": _enum(elffile.header, "e_type"), "e_machine": _enum(elffile.header, "e_machine")}
        sections = (
            tuple(
                Section(
                    index=i,
                    name=sec.name,
                    type=_enum(sec.header, "sh_type"),
                    flags=sec["sh_flags"],
                    addr=sec["sh_addr"],
                    offset=sec["sh_offset"],
                    size=sec["sh_size"],
                    link=sec["sh_link"],
                    entsize=sec["sh_entsize"],
                )
                for i, sec in enumerate(elffile.iter_sections())
            )
            if real_shnum
            else ()
        )
        segments = tuple(
            Segment(
                type=_enum(seg.header, "p_type"),
                flags=seg["p_flags"],
                vaddr=seg["p_vaddr"],
                offset=seg["p_offset"],
                filesz=seg["p_filesz"],
                memsz=seg["p_memsz"],
            )
            for seg in elffile.iter_segments()
        )
    except SymbolError:
        raise
    except Exception as exc:
        raise SymbolError(f"{path}: malformed ELF ({type(exc).__name__}: {exc})") from None
    for sec in sections:
        read_in_bulk = sec.type in _BULK_TYPES or sec.executable
        if read_in_bulk and sec.has_data and sec.offset + sec.size > size:
            raise SymbolError(
                f"{path}: truncated ELF file: section {sec.name or sec.index} "
                f"({sec.offset:#x}+{sec.size:#x}) ends past {size} bytes"
            )
        if sec.type in (SHT_SYMTAB, SHT_DYNSYM) and sec.entsize not in (0, SYM_SIZE):
            raise SymbolError(f"{path}: malformed symbol table {sec.name} (entry size {sec.entsize})")
    return header, sections, segments


def _enum(header: Any, key: str) -> int:
    """The raw number of an enum field (pyelftools turns the values it knows into names)."""
    value = header[key]
    if isinstance(value, int):
        return value
    number = _enum_numbers().get((key, value))
    if number is None:
        raise SymbolError(f"unknown {key} {value!r}")
    return number


def _enum_numbers() -> dict[tuple[str, str], int]:
    global _ENUMS
    if _ENUMS is None:
        from elftools.elf import enums

        _ENUMS = {}
        for key, prefix in (
            ("e_type", "ENUM_E_TYPE"),
            ("e_machine", "ENUM_E_MACHINE"),
            ("sh_type", "ENUM_SH_TYPE_"),
            ("p_type", "ENUM_P_TYPE_"),
        ):
            for attr in dir(enums):
                if attr.startswith(prefix):
                    for name, number in getattr(enums, attr).items():
                        if isinstance(number, int):
                            _ENUMS.setdefault((key, name), number)
    return _ENUMS


_ENUMS: dict[tuple[str, str], int] | None = None
