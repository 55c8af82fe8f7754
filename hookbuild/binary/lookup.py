"""Function symbols whose name contains a pattern, like `nm | grep`, read in bulk from the mapped file.

Walking a million symbols one at a time takes seconds, so the work goes the other way round: the string
table is searched for the pattern first (C-speed `find`), which gives, for each matching string, the range
of `st_name` values that name it (suffix sharing included); then the symbols whose `st_name` falls in one of
those ranges are picked out of the table at C speed, and only they are decoded:

- a few ranges: `find` of each range's high bytes in the packed `st_name` column;
- many ranges (thousands of matches): one vectorized pass (numpy) that places every `st_name` among the
  sorted ranges by binary search, in chunks, so the cost does not grow with the number of matches.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from hookbuild.binary.elf import (
    SHN_UNDEF,
    SHN_XINDEX,
    SHT_STRTAB,
    SHT_SYMTAB_SHNDX,
    SYM_SIZE,
    ElfImage,
    Section,
)
from hookbuild.errors import SymbolError

STT_NOTYPE, STT_FUNC, STT_GNU_IFUNC = 0, 2, 10
SHN_COMMON = 0xFFF2
FEW_NEEDLES = 64
"""Up to this many `find`s over the st_name column, the ranges are searched one by one; more: one pass."""
CHUNK = 1 << 20
"""Symbols per vectorized step: bounds its temporary arrays (~20 MB) whatever the table size."""
_SYM = struct.Struct("<IBBHQQ")


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


def functions(
    image: ElfImage, pattern: str, table: str = "symtab", *, few: int = FEW_NEEDLES
) -> list[RawSymbol]:
    """Defined function symbols of `table` whose name contains `pattern` (a substring, like grep).

    `few` only picks the method (tests force each with it); the answer is the same."""
    symtab = image.table(table)
    if symtab is None or not pattern:
        return []
    if not 0 < symtab.link < len(image.sections) or image.sections[symtab.link].type != SHT_STRTAB:
        raise SymbolError(f"{image.path}: .{table} links to section {symtab.link}, not a string table")
    strtab = image.sections[symtab.link]
    ranges = _matching_names(image.data, pattern.encode(), strtab)
    if not ranges:
        return []
    count = symtab.size // SYM_SIZE
    needles = sum((last >> 8) - (first >> 8) + 1 for first, last in ranges)
    if needles <= few:
        indexes = sorted(set(_find_in_ranges(_st_names(image.data, symtab.offset, count), ranges)))
    else:
        indexes = _in_ranges_vectorized(image.data, symtab.offset, count, ranges)
    found = []
    for index in indexes:
        sym = _decode(image, symtab, strtab, index, table) if index else None
        if sym is not None:
            found.append(sym)
    return found


def _decode(image: ElfImage, symtab: Section, strtab: Section, index: int, table: str) -> RawSymbol | None:
    """Symbol `index` of `symtab` if it is a defined function (what nm shows as T, t, W, w or i)."""
    st_name, info, _other, shndx, value, size = _SYM.unpack_from(image.data, symtab.offset + index * SYM_SIZE)
    kind, bind = info & 0xF, info >> 4
    if shndx in (SHN_UNDEF, SHN_COMMON):
        return None
    if shndx == SHN_XINDEX:
        xindex = next(
            (s for s in image.sections if s.type == SHT_SYMTAB_SHNDX and s.link == symtab.index), None
        )
        if xindex is None or xindex.offset + index * 4 + 4 > image.size:
            raise SymbolError(f"{image.path}: symbol {index} needs a missing SHT_SYMTAB_SHNDX entry")
        (shndx,) = struct.unpack_from("<I", image.data, xindex.offset + index * 4)
    executable = 0 < shndx < len(image.sections) and image.sections[shndx].executable
    if not (kind in (STT_FUNC, STT_GNU_IFUNC) or (kind == STT_NOTYPE and executable)):
        return None
    start, limit = strtab.offset + st_name, strtab.offset + strtab.size
    end = image.data.find(b"\0", start, limit)
    return RawSymbol(
        name=image.data[start : limit if end == -1 else end].decode("utf-8", "replace"),
        value=value,
        size=size,
        type=kind,
        bind=bind,
        shndx=shndx,
        section=image.section_name(shndx),
        table=table,
    )


def _matching_names(data: mmap.mmap, pattern: bytes, strtab: Section) -> list[tuple[int, int]]:
    """[first, last] st_name values naming a string that contains `pattern` (suffix sharing included),
    sorted and disjoint."""
    base, limit = strtab.offset, strtab.offset + strtab.size
    out: list[tuple[int, int]] = []
    pos = data.find(pattern, base, limit)
    while pos != -1:
        start = max(data.rfind(b"\0", base, pos) + 1 or base, base)
        end = data.find(b"\0", pos, limit)
        end = limit if end == -1 else end
        last = data.rfind(pattern, pos, end)
        out.append((start - base, last - base))
        pos = data.find(pattern, end, limit)
    return out


def _st_names(data: mmap.mmap, offset: int, count: int) -> bytes:
    """The st_name column (the first word of each 24-byte record) as one packed uint32 array."""
    with memoryview(data) as whole, whole[offset : offset + count * SYM_SIZE] as raw, raw.cast("I") as words:
        return words[::6].tobytes()


def _find_in_ranges(names: bytes, ranges: list[tuple[int, int]]) -> Iterator[int]:
    """Indexes i with ranges[k][0] <= names[i] <= ranges[k][1] (names is a packed uint32 array).

    Searching the three high bytes of the wanted values narrows a million entries to a handful at C speed.
    """
    for first, last in ranges:
        for high in range(first >> 8, (last >> 8) + 1):
            needle = (high << 8).to_bytes(4, "little")[1:]
            at = names.find(needle)
            while at != -1:
                if at % 4 == 1:
                    value = int.from_bytes(names[at - 1 : at + 3], "little")
                    if first <= value <= last:
                        yield at // 4
                at = names.find(needle, at + 1)


def _in_ranges_vectorized(
    data: mmap.mmap, offset: int, count: int, ranges: list[tuple[int, int]]
) -> list[int]:
    """The same indexes as `_find_in_ranges`, sorted, in one vectorized pass over the st_name column."""
    import numpy as np  # ~60 ms to import: only for thousands of matches

    firsts = np.array([first for first, _ in ranges], dtype=np.int64)
    lasts = np.array([last for _, last in ranges], dtype=np.int64)
    # st_name of every symbol, read in place from the mapping (stride 24): no copy of the table
    names = np.ndarray(shape=(count,), dtype="<u4", buffer=data, offset=offset, strides=(SYM_SIZE,))
    found = []
    try:
        for lo in range(0, count, CHUNK):
            part = names[lo : lo + CHUNK].astype(np.int64)
            k = np.searchsorted(firsts, part, side="right") - 1  # the last range starting at or before
            inside = (k >= 0) & (part <= lasts[np.maximum(k, 0)])
            found.extend((np.flatnonzero(inside) + lo).tolist())
    finally:
        del names  # a view of the mapping: it cannot be closed while it lives
    return found
