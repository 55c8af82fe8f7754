"""Flame graphs of istio-perf's profiles: `perf script` output folded into stacks, drawn as inline SVG.

hookbuild-perf-fifo leaves `perf record -g` files; `perf script -i FILE.data > DIR/NAME.perf.txt` puts one
beside the trace files, and `trace-report DIR` folds it (as Brendan Gregg's stackcollapse-perf does: one
line per sample, frames root first, offsets and module names dropped) and draws it in the same page. Nothing
is fetched: the SVG is computed here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

PROFILE_SUFFIX = ".perf.txt"
WIDTH, ROW = 720, 16
_FRAME = re.compile(r"^\s+[0-9a-fA-F]+\s+(.+?)(?:\+0x[0-9a-fA-F]+)?\s+\((.*)\)\s*$")


@dataclass(frozen=True, kw_only=True)
class Profile:
    name: str
    stacks: Mapping[tuple[str, ...], int]
    """Folded stacks, root first: (command, outermost, ..., leaf) -> samples."""

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    def leaves(self, count: int = 5) -> list[tuple[str, int]]:
        """The functions the most samples were in (self time)."""
        own: dict[str, int] = {}
        for stack, samples in self.stacks.items():
            own[stack[-1]] = own.get(stack[-1], 0) + samples
        return sorted(own.items(), key=lambda item: (-item[1], item[0]))[:count]

    def to_dict(self) -> dict[str, Any]:
        top = [{"function": name, "samples": samples} for name, samples in self.leaves()]
        return {"name": self.name, "samples": self.samples, "top": top}


def load(directory: Path) -> tuple[Profile, ...]:
    """Every `*.perf.txt` in `directory`, folded."""
    return tuple(
        Profile(name=path.name.removesuffix(PROFILE_SUFFIX), stacks=fold(path.read_text(errors="replace")))
        for path in sorted(directory.glob(f"*{PROFILE_SUFFIX}"))
    )


def fold(text: str) -> dict[tuple[str, ...], int]:
    """`perf script` text (header line, then frames leaf first, a blank line per sample) into stacks."""
    stacks: dict[tuple[str, ...], int] = {}
    command, frames = "", list[str]()
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if command:
                stack = (command, *reversed(frames))
                stacks[stack] = stacks.get(stack, 0) + 1
            command, frames = "", []
        elif not line[0].isspace():
            command = line.split()[0]
        elif match := _FRAME.match(line):
            symbol = match.group(1)
            frames.append(f"[{Path(match.group(2)).name}]" if symbol == "[unknown]" else symbol)
    return stacks


def svg(profile: Profile) -> str:
    """A flame graph: the root at the bottom, each frame as wide as its share of the samples."""
    total = profile.samples
    if not total:
        return "<p>No samples.</p>"
    rows: list[tuple[int, float, float, str, int]] = []  # depth, x, width, name, samples
    _layout(profile.stacks.items(), 0, 0.0, WIDTH / total, rows)
    depth = max(row[0] for row in rows) + 1
    height = depth * ROW + 4
    shapes = []
    for level, x, width, name, samples in rows:
        y = height - (level + 1) * ROW
        label = escape(name) if width > 7 * len(name) else escape(name[: max(0, int(width / 7) - 1)])
        shapes.append(
            f'<g class="frame"><title>{escape(name)}: {samples} samples ({100 * samples / total:.1f}%)</title>'
            f'<rect x="{x:.1f}" y="{y}" width="{max(width - 0.5, 0.5):.1f}" height="{ROW - 1}" '
            f'fill="{_colour(name)}"/><text x="{x + 2:.1f}" y="{y + ROW - 4}">{label}</text></g>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="flame" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img"><title>flame graph of {escape(profile.name)}</title>'
        f"{''.join(shapes)}</svg>"
    )


def _layout(
    stacks: Iterable[tuple[tuple[str, ...], int]], depth: int, x: float, scale: float, rows: list[Any]
) -> None:
    """Merge stacks by their frame at `depth`, alphabetically (as flamegraph.pl), and recurse."""
    children: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    for stack, samples in stacks:
        if len(stack) > depth:
            children.setdefault(stack[depth], []).append((stack, samples))
    for name in sorted(children):
        group = children[name]
        samples = sum(count for _stack, count in group)
        rows.append((depth, x, samples * scale, name, samples))
        _layout(group, depth + 1, x, scale, rows)
        x += samples * scale


def _colour(name: str) -> str:
    """Warm colours, stable per name (flamegraph.pl's palette, hashed instead of random)."""
    seed = sum(ord(char) * (index + 1) for index, char in enumerate(name))
    return f"rgb({205 + seed % 50},{(seed // 7) % 180 + 40},{(seed // 13) % 55})"
