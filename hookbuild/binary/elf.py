"""The structure of a 64-bit little-endian ELF file, mapped read-only: sections, segments, build-id, PIE.

Envoy is hundreds of MB with a million symbols, so the file is mapped, never read whole, and its headers are
decoded with `struct` directly: pyelftools costs ~80 ms of import and ~190 ms of section parsing on a 100 MB
library in every cold `invoke symbols`. pyelftools is instead the oracle in the tests
(tests/test_elf_reference.py): on gcc-built files (PIE and not, -g and stripped, a shared library, more than
65,279 sections) and a system libLLVM, every section, segment, the build-id, the PIE flag and every function
symbol read here (and by `lookup`) must equal its reading. Every table is checked to lie inside the file
before it is read, so a truncated or mutated file gives a `SymbolError`, never another exception or a hang.
Symbols by name are in `lookup`, call sites in `calls`.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hookbuild.errors import SymbolError

SYM_SIZE = 24  # sizeof(Elf64_Sym)
SHDR_SIZE = 64
PHDR_SIZE = 56
SHT_SYMTAB, SHT_STRTAB, SHT_NOTE, SHT_NOBITS, SHT_DYNSYM, SHT_SYMTAB_SHNDX = 2, 3, 7, 8, 11, 18
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
PF_X = 0x1
ET_DYN = 3
SHN_UNDEF, SHN_ABS, SHN_XINDEX = 0, 0xFFF1, 0xFFFF
DT_FLAGS_1, DF_1_PIE = 0x6FFFFFFB, 0x08000000
NT_GNU_BUILD_ID = 3
MACHINES = {62: "x86-64", 183: "aarch64", 3: "i386", 40: "arm", 243: "riscv", 21: "ppc64", 22: "s390"}
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")  # name type flags addr offset size link info addralign entsize
_PHDR = struct.Struct("<IIQQQQQQ")  # type flags offset vaddr paddr filesz memsz align
_TABLES = {"symtab": SHT_SYMTAB, "dynsym": SHT_DYNSYM}
_BULK_TYPES = frozenset({SHT_SYMTAB, SHT_DYNSYM, SHT_STRTAB, SHT_NOTE, SHT_SYMTAB_SHNDX})


@dataclass(frozen=True, kw_only=True)
class Header:
    """The ELF header fields hookbuild uses, with extended numbering (counts kept in section 0) resolved."""

    e_type: int
    e_machine: int
    phoff: int
    phnum: int
    shoff: int
    shnum: int
    shstrndx: int


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


class ElfImage:
    """A 64-bit little-endian ELF file, mapped read-only. Use `open_image()`."""

    def __init__(
        self,
        path: Path,
        data: mmap.mmap,
        header: Header,
        sections: tuple[Section, ...],
        segments: tuple[Segment, ...],
    ) -> None:
        self.path = path
        self.data = data
        self.size = len(data)
        self.sections = sections
        self.segments = segments
        self.e_type = header.e_type
        self.e_machine = header.e_machine

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

    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


_PASS_BINARY = "pass the Envoy binary itself (e.g. bazel-bin/envoy)"
_DAMAGED = "the file is damaged or incomplete: copy or rebuild the binary"


@contextmanager
def open_image(path: Path) -> Iterator[ElfImage]:
    """Map `path` and parse its structure; every reason it cannot be read is a SymbolError."""
    with _open(path) as handle:
        try:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            raise SymbolError(f"{path}: empty file, not an ELF binary", hint=_DAMAGED) from None
        except OSError as exc:
            raise SymbolError(f"{path}: cannot map ({exc.strerror})", hint=_DAMAGED) from None
        try:
            try:
                header = _header(path, data)
                sections = _sections(path, data, header)
                segments = tuple(
                    Segment(type=t, flags=f, offset=o, vaddr=v, filesz=fs, memsz=ms)
                    for t, f, o, v, _p, fs, ms, _a in (
                        _PHDR.unpack_from(data, header.phoff + i * PHDR_SIZE) for i in range(header.phnum)
                    )
                )
            except SymbolError as exc:  # damaged or truncated: say how to get a good file
                if exc.hint is None:
                    exc.hint = _DAMAGED
                raise
            yield ElfImage(path, data, header, sections, segments)
        finally:
            data.close()


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise SymbolError(f"{path}: no such file", hint="check the path or build the binary first") from None
    except IsADirectoryError:
        raise SymbolError(f"{path}: is a directory, not an ELF binary", hint=_PASS_BINARY) from None
    except OSError as exc:
        raise SymbolError(
            f"{path}: cannot open ({exc.strerror})", hint="check the path and its permissions"
        ) from None


def _header(path: Path, data: mmap.mmap) -> Header:
    """The ELF header, checked: 64-bit little-endian, and every header table inside the file."""
    size = len(data)
    ident = data[:16]
    if ident[:4] != b"\x7fELF":
        raise SymbolError(
            f"{path}: not an ELF file (starts with {ident[:4]!r})",
            hint="pass the Envoy binary itself, not an archive, script or image",
        )
    if size < 6:  # the magic and nothing after it: no class, no byte order
        raise SymbolError(f"{path}: truncated ELF file ({size} bytes, shorter than the ELF header)")
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
    (_, e_type, e_machine, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, shstrndx) = (
        _EHDR.unpack_from(data)
    )
    if shoff:
        # Extended numbering keeps the real counts in section 0: read it, then check the whole table fits.
        if shoff + SHDR_SIZE > size:
            raise SymbolError(
                f"{path}: truncated ELF file: section headers at {shoff:#x} past the end ({size} bytes)"
            )
        if shentsize != SHDR_SIZE:
            raise SymbolError(f"{path}: malformed ELF header (e_shentsize={shentsize})")
        sec0_size, sec0_link, sec0_info = struct.unpack_from("<32xQII", data, shoff)
        shnum = shnum or sec0_size
        if shoff + shnum * SHDR_SIZE > size:
            raise SymbolError(
                f"{path}: truncated ELF file: {shnum} section headers at {shoff:#x} end past {size} bytes"
            )
        shstrndx = sec0_link if shstrndx == SHN_XINDEX else shstrndx
        if shnum and shstrndx >= shnum:
            raise SymbolError(f"{path}: malformed ELF header (e_shstrndx={shstrndx})")
        phnum = sec0_info if phnum == 0xFFFF else phnum
    else:
        shnum = 0
    if phnum:
        if phentsize != PHDR_SIZE:
            raise SymbolError(f"{path}: malformed ELF header (e_phentsize={phentsize})")
        if phoff + phnum * PHDR_SIZE > size:
            raise SymbolError(f"{path}: truncated ELF file: program headers end past {size} bytes")
    return Header(
        e_type=e_type,
        e_machine=e_machine,
        phoff=phoff,
        phnum=phnum,
        shoff=shoff,
        shnum=shnum,
        shstrndx=shstrndx,
    )


def _sections(path: Path, data: mmap.mmap, header: Header) -> tuple[Section, ...]:
    """Every section header with its name; the tables and code read in bulk later must lie in the file."""
    size = len(data)
    rows = [_SHDR.unpack_from(data, header.shoff + i * SHDR_SIZE) for i in range(header.shnum)]
    names_at = names_end = 0
    if 0 < header.shstrndx < len(rows):
        _, _, _, _, names_at, names_size, *_ = rows[header.shstrndx]
        names_end = min(names_at + names_size, size)
    sections = []
    for index, (name, sh_type, flags, addr, offset, sh_size, link, _, _, entsize) in enumerate(rows):
        text = ""
        if names_at + name < names_end:
            end = data.find(b"\0", names_at + name, names_end)
            text = data[names_at + name : names_end if end == -1 else end].decode("utf-8", "replace")
        sec = Section(
            index=index,
            name=text,
            type=sh_type,
            flags=flags,
            addr=addr,
            offset=offset,
            size=sh_size,
            link=link,
            entsize=entsize,
        )
        if (sh_type in _BULK_TYPES or sec.executable) and sec.has_data and offset + sh_size > size:
            raise SymbolError(
                f"{path}: truncated ELF file: section {text or index} ({offset:#x}+{sh_size:#x}) "
                f"ends past {size} bytes"
            )
        if sh_type in (SHT_SYMTAB, SHT_DYNSYM) and entsize not in (0, SYM_SIZE):
            raise SymbolError(f"{path}: malformed symbol table {text} (entry size {entsize})")
        sections.append(sec)
    return tuple(sections)
