"""Where things are in the record's TOML text: the line of a key path (for errors), the span of an entry
(for edits that touch one entry and leave every other byte of the file as it was).

A best-effort scanner of headers and `key =` lines, not a TOML parser: the text it reads has already parsed
with tomli, and every edit built on it is validated before it is written.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

KeyPath = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEYLINE = re.compile(
    r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*="""
)
_PART = re.compile(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""")
_HEADER_START = re.compile(r"^[ \t]*\[", re.MULTILINE)


# A record's headers repeat a few names ("istio", "istio.release") thousands of times.
@functools.lru_cache(maxsize=1024)
def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(next(g for g in m.groups() if g is not None) for m in _PART.finditer(dotted))


@dataclass(frozen=True)
class Header:
    line: int
    """0-based line number."""
    path: KeyPath
    """("istio", 3) for the fourth `[[istio]]`, ("istio", 3, "release") for its `[istio.release]`."""


class _Paths:
    """Turns header names into key paths, counting array-of-tables elements."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def path(self, kind: str, names: tuple[str, ...]) -> KeyPath:
        if kind == "[[":
            self.counts[names[0]] = self.counts.get(names[0], -1) + 1
        if names[0] in self.counts:
            return (names[0], self.counts[names[0]], *names[1:])
        return names


def _lines(text: str) -> Iterator[tuple[int, str, bool]]:
    """(number, line, inside a multi-line string) for each line."""
    inside = False
    for number, line in enumerate(text.split("\n")):
        was = inside
        if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
            inside = not inside
        yield number, line, was


def headers(text: str) -> list[Header]:
    """Every table header, in order. Fast path (no multi-line strings): only lines starting with '['."""
    paths = _Paths()
    found: list[Header] = []
    if '"""' not in text and "'''" not in text:
        line = 0
        last = 0
        for match in _HEADER_START.finditer(text):
            line += text.count("\n", last, match.start())
            last = match.start()
            end = text.find("\n", match.start())
            header = _HEADER.match(text[match.start() : end if end >= 0 else len(text)])
            if header:
                found.append(Header(line, paths.path(header.group(1), _parts(header.group(2)))))
        return found
    for number, line_text, inside in _lines(text):
        header = None if inside else _HEADER.match(line_text)
        if header:
            found.append(Header(number, paths.path(header.group(1), _parts(header.group(2)))))
    return found


def line_of(text: str, keypath: KeyPath) -> int | None:
    """Best-effort 1-based line number of a key path like ("istio", 2, "release", "digest") in the text."""
    best: tuple[int, int] | None = None  # (matched length, line)
    paths = _Paths()
    current: KeyPath = ()
    for number, line, inside in _lines(text):
        if inside:
            continue
        header = _HEADER.match(line)
        full: KeyPath
        if header:
            current = paths.path(header.group(1), _parts(header.group(2)))
            full = current
        else:
            key = _KEYLINE.match(line)
            if not key:
                continue
            full = (*current, *_parts(key.group(1)))
        matched = 0
        for have, want in zip(full, keypath, strict=False):
            if have != want:
                break
            matched += 1
        if matched == min(len(full), len(keypath)) and (best is None or matched > best[0]):
            best = (matched, number + 1)
    return best[1] if best else None


@dataclass(frozen=True)
class Span:
    """Lines [start, end) of the text: an entry's `[[NAME]]` table with its sub-tables."""

    start: int
    end: int


def entry_span(found: list[Header], n_lines: int, variant: str, index: int) -> Span | None:
    """The lines of the `index`-th `[[variant]]` entry, up to the next header outside it."""
    start = None
    for position, header in enumerate(found):
        if header.path == (variant, index):
            start = position
            break
    if start is None:
        return None
    end = n_lines
    for header in found[start + 1 :]:
        if header.path[:2] != (variant, index):
            end = header.line
            break
    return Span(found[start].line, end)


def split_trailer(lines: list[str]) -> int:
    """Where an entry's own lines end: trailing comments (after blank lines) introduce the next section.

    Returns the index of the first trailing comment line, or len(lines) if the entry ends with no comment.
    """
    position = len(lines)
    while position > 0 and (not lines[position - 1].strip() or lines[position - 1].lstrip().startswith("#")):
        position -= 1
    for offset, line in enumerate(lines[position:]):
        if line.lstrip().startswith("#"):
            return position + offset
    return len(lines)


def top_level_line(text: str, key: str) -> int | None:
    """0-based line of a top-level `key = ...` (before the first table header), or None."""
    for number, line in enumerate(text.split("\n")):
        if _HEADER.match(line):
            return None
        found = _KEYLINE.match(line)
        if found and _parts(found.group(1)) == (key,):
            return number
    return None
