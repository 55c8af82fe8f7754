"""What a Makefile says about one target: its target-specific variables and its recipe lines.

Not a make interpreter: it finds, for a named target, the lines `target: NAME = VALUE` and the recipe under
`target:` (continuations joined), which is how istio/proxy and cilium/proxy spell their build interfaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_ASSIGN = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*(\?=|:=|\+=|=)\s*(.*)$")


@dataclass(frozen=True, kw_only=True)
class Rule:
    target: str
    variables: dict[str, str] = field(default_factory=dict)  # target-specific assignments
    prerequisites: tuple[str, ...] = ()
    recipe: tuple[str, ...] = ()  # continuations joined, leading tab removed


def read(path: Path) -> str:
    """The file's text, or "" when it does not exist (readers say what is missing)."""
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    return [*lines, pending] if pending else lines


def rule(text: str, target: str) -> Rule | None:
    """Every `target:` header of the file merged, as make merges them; None when there is none."""
    variables: dict[str, str] = {}
    prerequisites: list[str] = []
    recipe: list[str] = []
    found = False
    lines = logical_lines(text)
    head = re.compile(rf"^{re.escape(target)}\s*:(?!=)(.*)$")
    index = 0
    while index < len(lines):
        match = head.match(lines[index])
        index += 1
        if not match:
            continue
        found = True
        rest = match.group(1).split("#", 1)[0]
        if assign := _ASSIGN.match(rest):
            variables[assign.group(1)] = assign.group(3).strip()
            continue
        prerequisites += rest.split(";", 1)[0].split()
        while index < len(lines) and lines[index].startswith("\t"):
            if lines[index].strip():
                recipe.append(" ".join(lines[index].split()))
            index += 1
    if not found:
        return None
    return Rule(target=target, variables=variables, prerequisites=tuple(prerequisites), recipe=tuple(recipe))


def assignments(text: str, name: str) -> list[str]:
    """The values assigned to NAME anywhere in the file (any operator), in file order."""
    return [
        m.group(3).strip()
        for line in logical_lines(text)
        if (m := _ASSIGN.match(line)) and m.group(1) == name
    ]
