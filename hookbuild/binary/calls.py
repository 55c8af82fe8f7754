"""Which functions the code still calls: direct x86-64 `call`/`jmp rel32` sites, found at C speed.

An `-O2` build can delete every call to an empty hookpoint and keep its symbol: a probe on it never fires.
A target t counts as called when some byte at offset p of an executable section (loaded at `addr`) is E8 or
E9 and the little-endian int32 after it equals t - (addr + p + 5). That is a byte pattern, not a disassembly:
a match inside another instruction counts too, as it always has here.

The cost does not grow with the number of targets:

1. up to `NEARBY_TARGETS` targets are first looked for near themselves (callers usually sit in the same
   translation unit): 256 bytes each side, then 4 KiB, without importing numpy;
2. whatever is left is settled by one vectorized pass (numpy) over all the code, in chunks: every E8/E9
   byte, its rel32, its target, kept when the target is wanted (a bitmap of the wanted addresses).
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from hookbuild.binary.elf import ElfImage, Section

    Offsets = npt.NDArray[np.int64]

EM_X86_64 = 62
NEARBY_TARGETS = 16
"""Up to this many targets are looked for nearby first; more go straight to the one pass."""
NEARBY_REACH = (1 << 8, 1 << 12)
"""Windows (bytes each side of a target's own call-site offset) searched nearby, smallest first."""
CHUNK = 1 << 22
"""Bytes of code per vectorized step: bounds the temporary arrays (about 3x this) whatever the code size."""
BITMAP_SPAN = 1 << 28
"""Widest address span of the wanted targets kept as a bitmap (32 MiB); a wider one is searched instead."""
_OPCODE = re.compile(rb"[\xe8\xe9]")


def called(
    image: ElfImage,
    targets: Iterable[int],
    *,
    nearby_targets: int = NEARBY_TARGETS,
    bitmap_span: int = BITMAP_SPAN,
) -> set[int] | None:
    """Those of `targets` reached by a direct `call`/`jmp rel32` somewhere in the code; None when the
    machine is not x86-64 (no scanner for it). The keyword arguments only tune the method (tests force each
    path with them); the answer is the same."""
    wanted = set(targets)
    if image.e_machine != EM_X86_64:
        return None
    code = [s for s in image.sections if s.executable and s.has_data and s.size >= 5]
    hit: set[int] = set()
    if len(wanted) <= nearby_targets:
        hit = {t for t in wanted if any(_called_nearby(image.data, sec, t) for sec in code)}
    rest = wanted - hit
    if rest and code:
        hit |= _one_pass(image.data, code, rest, bitmap_span)
    return hit


def _called_nearby(data: mmap.mmap, sec: Section, target: int) -> bool:
    """A call site for `target` within the largest `NEARBY_REACH` of where its rel32 would be 0."""
    const = target - sec.addr - 5  # p + rel32, for every call site p (section offset) reaching the target
    for reach in NEARBY_REACH:
        lo, hi = max(0, const - reach), min(sec.size - 5, const + reach)
        if lo > hi:
            continue
        for match in _OPCODE.finditer(data, sec.offset + lo, sec.offset + hi + 1):
            at = match.start()
            if int.from_bytes(data[at + 1 : at + 5], "little", signed=True) == const - (at - sec.offset):
                return True
    return False


def _one_pass(data: mmap.mmap, code: list[Section], wanted: set[int], bitmap_span: int) -> set[int]:
    """The wanted targets some E8/E9 byte of `code` reaches, in one vectorized pass over it."""
    import numpy as np  # ~60 ms to import: only when the nearby search left something open

    targets = np.array(sorted(wanted), dtype=np.int64)
    first, span = int(targets[0]), int(targets[-1] - targets[0]) + 1
    is_wanted = _membership(targets - first, span, bitmap_span)
    reached = np.zeros(len(targets), dtype=np.bool_)
    # reused for every chunk: fresh 4 MiB temporaries each time cost more in page faults than the work
    low_bit_cleared, is_opcode = np.empty(CHUNK, dtype=np.uint8), np.empty(CHUNK, dtype=np.bool_)
    for sec in code:
        n = sec.size - 4  # call sites p = 0 .. size-5: the rel32 must lie inside the section
        ops = np.frombuffer(data, dtype=np.uint8, count=n, offset=sec.offset)
        # the rel32 at every p, read straight from the mapping (unaligned, stride 1): no copy of the code
        rels = np.ndarray(shape=(n,), dtype="<i4", buffer=data, offset=sec.offset + 1, strides=(1,))
        try:
            for lo in range(0, n, CHUNK):
                m = min(CHUNK, n - lo)
                np.bitwise_and(ops[lo : lo + m], 0xFE, out=low_bit_cleared[:m])
                np.equal(low_bit_cleared[:m], 0xE8, out=is_opcode[:m])  # E8 call, E9 jmp
                sites = np.flatnonzero(is_opcode[:m])
                sites += lo
                found = rels[sites] + (sites + (sec.addr + 5 - first))  # each site's target - first
                found = found[(found >= 0) & (found < span)]
                found = found[is_wanted(found)]
                reached[np.searchsorted(targets, found + first)] = True
        finally:
            del ops, rels  # views of the mapping: it cannot be closed while they live
    return {int(t) for t in targets[reached]}


def _membership(offsets: Offsets, span: int, bitmap_span: int) -> Callable[[Offsets], npt.NDArray[np.bool_]]:
    """A vectorized `x in offsets` for x in [0, span): a bitmap while it stays small, else a binary search."""
    import numpy as np

    if span <= bitmap_span:
        bits = np.zeros((span + 7) >> 3, dtype=np.uint8)
        np.bitwise_or.at(bits, offsets >> 3, np.left_shift(1, offsets & 7).astype(np.uint8))
        return lambda x: ((bits[x >> 3] >> (x & 7).astype(np.uint8)) & 1).astype(np.bool_)

    def in_sorted(x: Offsets) -> npt.NDArray[np.bool_]:
        at = np.minimum(np.searchsorted(offsets, x), len(offsets) - 1)
        inside: npt.NDArray[np.bool_] = offsets[at] == x
        return inside

    return in_sorted
