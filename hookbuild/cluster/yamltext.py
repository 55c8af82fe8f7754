"""Edit YAML and JSON text in place: new entries become new lines, nothing that is there is re-flowed.

A round trip through a YAML library re-indents, reflows flow lists, drops `null`s and turns JSON into YAML.
Here the stream is only *read* by a YAML parser (PyYAML's libyaml composer, which gives every node's exact
start and end in the text), and the changes are made as text edits at those positions: an entry appended
to a block list or mapping is rendered as new lines in that list's own indentation and dash offset; one
added to a flow list or JSON goes inside its brackets in flow style; a scalar that must change is replaced
in its own quoting style. Comments, anchors, quoting, `null`s and line endings of everything else stay as
they were, byte for byte.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from hookbuild.errors import InjectError

# Strings that may stay unquoted: no indicator first, nothing YAML 1.1 would read as another type.
_PLAIN = re.compile(r"[A-Za-z0-9_./@-][A-Za-z0-9_./@:+=-]*")
_FLOW_PLAIN = re.compile(r"[A-Za-z_./-][A-Za-z0-9_./-]*")
_NOT_A_STRING = re.compile(
    r"(?i)y|yes|n|no|true|false|on|off|null|~|[-+]?(\.?[0-9][0-9_]*)(\.[0-9_]*)?(e[-+]?[0-9]+)?|[-+]?0[xob][0-9a-f_]+|="
    r"|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?|[-+]?\.(inf|nan)"
)


@dataclass(frozen=True, kw_only=True)
class Layout:
    """How one document is written: what new lines copy so that they look like their neighbours."""

    indent: int  # columns a nested block mapping is indented by
    offset: int  # columns a block list's dashes sit right of its key (kubectl: 0)
    gap: int  # columns from a dash to its item (`- a`: 2, `-   a`: 4)
    newline: str
    json: bool  # a JSON document: new entries are JSON too
    step: int  # JSON: the pretty-printer's indent (0: written on one line)


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    depth: int  # inserts at one position: the deeper collection's first (its lines belong inside)
    order: int  # then in the order they were planned in
    text: str


_STR = "tag:yaml.org,2002:str"
# Plain words YAML 1.1 reads as something other than a string.
_WORDS = frozenset(["y", "yes", "n", "no", "true", "false", "on", "off", "null"])


# libyaml when PyYAML has it (it is ten times faster); the pure-Python loader gives the same positions.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Shared(Exception):
    """An edit would land in a node a YAML alias also uses: it would change every place that uses it."""

    def __init__(self, node: Node) -> None:
        super().__init__(f"line {node.start_mark.line + 1}")
        self.node = node


class _Loader(_Base):  # type: ignore[misc]
    """libyaml's composer with a shortcut for the common plain word, which is always a string."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if (
            kind is ScalarNode
            and implicit[0]
            and value
            and value[0].isalpha()
            and value.lower() not in _WORDS
        ):
            return _STR
        return super().resolve(kind, value, implicit)


def compose(text: str, source: str) -> list[Node]:
    """The stream's documents as position-carrying nodes (empty documents left out)."""
    try:
        return [node for node in yaml.compose_all(text, Loader=_Loader) if node is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise InjectError(
            f"{source}: invalid YAML{where}: {problem}",
            hint="fix the manifest; `kubectl apply --dry-run=client -f FILE` shows the same",
        ) from None
    except yaml.YAMLError as exc:
        raise InjectError(f"{source}: invalid YAML: {exc}", hint="fix the manifest") from None


def layout(root: Node, near: Sequence[tuple[Node, Node]], newline: str) -> Layout:
    """Indentation facts of a document, read from entries `near` the edit (a pod template's)."""
    if isinstance(root, MappingNode) and root.flow_style:
        step = 0
        if root.value and root.value[0][0].start_mark.line > root.start_mark.line:
            step = root.value[0][0].start_mark.column - root.start_mark.column
        return Layout(indent=2, offset=0, gap=2, newline=newline, json=True, step=step)
    indent: int | None = None
    offset: int | None = None
    gap = 2
    for key, value in near:
        if isinstance(value, MappingNode) and not value.flow_style and indent is None:
            indent = value.start_mark.column - key.start_mark.column
        elif isinstance(value, SequenceNode) and not value.flow_style and offset is None:
            offset = value.start_mark.column - key.start_mark.column
            first = value.value[0]
            if (
                first.start_mark.line == value.start_mark.line
                and first.start_mark.column > value.start_mark.column
            ):
                gap = first.start_mark.column - value.start_mark.column
    return Layout(indent=indent or 2, offset=offset or 0, gap=gap, newline=newline, json=False, step=0)


# --- rendering new values -----------------------------------------------------------------------------


def scalar(value: Any, *, flow: bool = False, json_mode: bool = False, style: str | None = None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if json_mode or style == '"':
        return json.dumps(text)
    if style == "'":
        return "'" + text.replace("'", "''") + "'"
    if (_FLOW_PLAIN if flow else _PLAIN).fullmatch(text) and not _NOT_A_STRING.fullmatch(text):
        return text
    if "'" not in text and "\n" not in text:
        return "'" + text + "'"  # JSON in an annotation reads best this way
    return json.dumps(text)


def flow(value: Any, *, json_mode: bool) -> str:
    """One line: `{a: b, c: [d]}` (JSON: `{"a": "b", "c": ["d"]}`)."""
    if json_mode:
        return json.dumps(value, separators=(", ", ": "))
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{scalar(k, flow=True)}: {flow(v, json_mode=False)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list):
        return "[" + ", ".join(flow(item, json_mode=False) for item in value) + "]"
    return scalar(value, flow=True)


def _pretty(value: Any, column: int, step: int, newline: str) -> str:
    return json.dumps(value, indent=step).replace("\n", newline + " " * column)


def block_entry(key: str, value: Any, column: int, lay: Layout) -> list[str]:
    pad = " " * column
    if isinstance(value, dict) and value:
        return [f"{pad}{scalar(key)}:", *block_mapping(value, column + lay.indent, lay)]
    if isinstance(value, list) and value:
        return [f"{pad}{scalar(key)}:", *block_sequence(value, column + lay.offset, lay.gap, lay)]
    rendered = flow(value, json_mode=False) if isinstance(value, dict | list) else scalar(value)
    return [f"{pad}{scalar(key)}: {rendered}"]


def block_mapping(value: dict[str, Any], column: int, lay: Layout) -> list[str]:
    return [line for key, item in value.items() for line in block_entry(key, item, column, lay)]


def block_sequence(items: Sequence[Any], dash: int, gap: int, lay: Layout) -> list[str]:
    return list(_block_sequence(json.dumps(items), dash, gap, lay))


@functools.lru_cache(maxsize=256)
def _block_sequence(items_json: str, dash: int, gap: int, lay: Layout) -> tuple[str, ...]:
    """The same container is rendered for every workload of a manifest: render it once per place."""
    items = json.loads(items_json)
    lines: list[str] = []
    for item in items:
        if isinstance(item, dict) and item:
            inner = block_mapping(item, dash + gap, lay)
        elif isinstance(item, list) and item:
            inner = block_sequence(item, dash + gap, lay.gap, lay)
        else:
            rendered = flow(item, json_mode=False) if isinstance(item, dict | list) else scalar(item)
            inner = [" " * (dash + gap) + rendered]
        inner[0] = " " * dash + "-" + " " * (gap - 1) + inner[0][dash + gap :]
        lines.extend(inner)
    return tuple(lines)


# --- where things are ---------------------------------------------------------------------------------


def end(node: Node) -> int:
    """Where a node's own text ends (a block collection ends with its last descendant)."""
    while isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1][1] if isinstance(node, MappingNode) else node.value[-1]
        if last.start_mark.index < node.start_mark.index:
            # An alias (`*name`) ends the collection: its node is the anchor's, written before; where the
            # alias itself ends is not known, so nothing can be placed after it.
            raise Shared(node)
        node = last
    return int(node.end_mark.index)


class Editor:
    """Collects edits to one stream; `result()` applies them all at once."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.edits: list[Edit] = []
        self._filled: set[int] = set()  # empty flow collections something was put into
        self._shared: set[int] = set()  # nodes reached through an alias as well as their anchor
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.strip_final_newline = False  # --remove: the line break inject gave the last line goes again

    def share(self, root: Node) -> None:
        """Note the nodes of a document that aliases reach (edits there are refused: see `Shared`)."""
        if "*" not in self.text[root.start_mark.index : root.end_mark.index]:
            return  # no alias at all: the common case costs one substring search
        seen: set[int] = set()
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, inherited = stack.pop()
            shared = inherited or id(node) in seen
            if shared:
                self._shared.add(id(node))
            seen.add(id(node))
            if isinstance(node, MappingNode):
                stack.extend((child, shared) for pair in node.value for child in pair)
            elif isinstance(node, SequenceNode):
                stack.extend((child, shared) for child in node.value)

    def _guard(self, node: Node) -> None:
        if id(node) in self._shared:
            raise Shared(node)

    def _line_start(self, index: int) -> int:
        return self.text.rfind("\n", 0, index) + 1

    def _line_after(self, index: int) -> int:
        if index > 0 and self.text[index - 1] == "\n":
            return index  # a block scalar ends at the start of the next line
        found = self.text.find("\n", index)
        return len(self.text) if found < 0 else found + 1

    def _edit(self, start: int, stop: int, text: str, depth: int = 0) -> None:
        self.edits.append(Edit(start, stop, depth, len(self.edits), text))

    def _insert_lines(self, index: int, lines: list[str], lay: Layout, depth: int) -> None:
        self._edit(index, index, "".join(line + lay.newline for line in lines), depth)

    def appends_to_last_line(self, since: int = 0) -> bool:
        """True when edits (from the `since`th on) add lines after a last line that has no line break."""
        return not self.text.endswith("\n") and any(e.start == len(self.text) for e in self.edits[since:])

    # --- adding -------------------------------------------------------------------------------------

    def append(self, sequence: SequenceNode, items: Sequence[Any], lay: Layout, depth: int) -> None:
        """Add `items` at the list's end, in the list's own style; `depth` is how deep the list is nested."""
        self._guard(sequence)
        if sequence.flow_style:
            for item in items:
                self._flow_add(
                    sequence, lambda column, item=item: self._flow_text(item, column, lay), lay, depth
                )
            return
        dash = sequence.start_mark.column
        first = sequence.value[0]
        same_line = first.start_mark.line == sequence.start_mark.line
        gap = first.start_mark.column - dash if same_line and first.start_mark.column > dash else 2
        lines = block_sequence(items, dash, gap, lay)
        self._insert_lines(self._line_after(end(sequence)), lines, lay, depth)

    def put(
        self, mapping: MappingNode, key: str, value: Any, lay: Layout, depth: int, *, first: bool = False
    ) -> None:
        """Add the entry `key: value` (absent so far) at the mapping's end, or first if it starts a line."""
        self._guard(mapping)
        if mapping.flow_style:
            name = json.dumps(key) if lay.json else scalar(key, flow=True)
            self._flow_add(
                mapping, lambda column: f"{name}: {self._flow_text(value, column, lay)}", lay, depth
            )
            return
        column = mapping.start_mark.column
        lines = block_entry(key, value, column, lay)
        if first:
            at = self._line_start(mapping.value[0][0].start_mark.index)
            if self.text[at : mapping.value[0][0].start_mark.index].strip() == "":
                self._insert_lines(at, lines, lay, depth)
                return
        self._insert_lines(self._line_after(end(mapping)), lines, lay, depth)

    def fill(
        self, key: ScalarNode, null: Node, value: Any, lay: Layout, parent_flow: bool, depth: int
    ) -> None:
        """Give a key whose value is null (`volumes:` or `volumes: null`) a collection."""
        self._guard(null)
        if parent_flow or null.start_mark.index != null.end_mark.index or not value:
            self._edit(null.start_mark.index, null.end_mark.index, self._flow_text(value, 0, lay))
            return
        column = key.start_mark.column
        if isinstance(value, dict):
            lines = block_mapping(value, column + lay.indent, lay)
        else:
            lines = block_sequence(value, column + lay.offset, lay.gap, lay)
        self._insert_lines(self._line_after(null.end_mark.index), lines, lay, depth)

    def replace(self, node: ScalarNode, value: Any, lay: Layout) -> None:
        """A scalar's new value, in the quoting style it was written in."""
        self._guard(node)
        style = node.style if node.style in ('"', "'") else None
        text = scalar(value, json_mode=lay.json, style=style)
        self._edit(node.start_mark.index, node.end_mark.index, text)

    def _flow_text(self, value: Any, column: int, lay: Layout) -> str:
        if lay.json and lay.step and isinstance(value, dict | list) and column:
            return _pretty(value, column, lay.step, lay.newline)
        if isinstance(value, dict | list):
            return flow(value, json_mode=lay.json)
        return scalar(value, flow=True, json_mode=lay.json)

    def _flow_add(self, node: MappingNode | SequenceNode, render: Any, lay: Layout, depth: int) -> None:
        closing = node.end_mark.index - 1  # the `]` or `}`
        if not node.value:
            self._edit(closing, closing, (", " if id(node) in self._filled else "") + render(0), depth)
            self._filled.add(id(node))
            return
        last = node.value[-1][1] if isinstance(node, MappingNode) else node.value[-1]
        start = node.value[-1][0] if isinstance(node, MappingNode) else node.value[-1]
        if start.start_mark.line > node.start_mark.line:  # one element per line: a new line for ours
            column = start.start_mark.column
            self._edit(end(last), end(last), "," + lay.newline + " " * column + render(column), depth)
        else:
            self._edit(end(last), end(last), ", " + render(0), depth)

    # --- taking out again ---------------------------------------------------------------------------

    def delete(self, parent: MappingNode | SequenceNode, indices: Sequence[int]) -> None:
        """Remove elements (list items, or mapping entries) with the lines or separators they brought."""
        elements = [(e[0], e[1]) if isinstance(e, tuple) else (e, e) for e in parent.value]
        if not parent.flow_style:
            for index in indices:
                head, tail = elements[index]
                self._edit(self._line_start(head.start_mark.index), self._line_after(end(tail)), "")
            return
        for first, last in _runs(sorted(indices)):
            if first > 0:  # `, x` after the element before
                self._edit(end(elements[first - 1][1]), end(elements[last][1]), "")
            elif last < len(elements) - 1:  # `x, ` before the element after
                self._edit(elements[first][0].start_mark.index, elements[last + 1][0].start_mark.index, "")
            else:
                self._edit(elements[first][0].start_mark.index, end(elements[last][1]), "")

    def restore(self, node: Node, text: str) -> None:
        self._edit(node.start_mark.index, end(node), text)

    def source(self, node: Node) -> str:
        return self.text[node.start_mark.index : end(node)]

    def result(self) -> str:
        pieces: list[str] = []
        position = len(self.text)
        edits = list(self.edits)
        if self.appends_to_last_line():  # new lines after it: the last line gets its line break first
            edits.append(Edit(len(self.text), len(self.text), 1 << 30, -1, self.newline))
        for edit in sorted(edits, key=lambda e: (e.start, e.end, -e.depth, e.order), reverse=True):
            if edit.end > position:
                raise AssertionError(f"overlapping edits at {edit.start}")
            pieces.append(self.text[edit.end : position])
            pieces.append(edit.text)
            position = edit.start
        pieces.append(self.text[:position])
        result = "".join(reversed(pieces))
        if self.strip_final_newline and result.endswith(self.newline):
            result = result[: -len(self.newline)]
        return result


def _runs(indices: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Consecutive stretches of sorted indices, as (first, last)."""
    start = previous = indices[0]
    for index in indices[1:]:
        if index != previous + 1:
            yield start, previous
            start = index
        previous = index
    yield start, previous
