"""Just enough of a Starlark reader to find top-level calls in WORKSPACE and MODULE.bazel files.

A tokenizer that knows strings (all quote forms, raw/byte prefixes), comments and brackets, so a `)` inside
a string or a comment never ends a call. Spans are byte-exact, so an edit keeps the rest of the file intact.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from hookbuild.errors import WorkspaceError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING_START = re.compile(r"(?i:[rb]{0,2})(\"\"\"|'''|\"|')")
_CLOSERS = {"(": ")", "[": "]", "{": "}"}
_SYNTAX_HINT = "fix the Starlark syntax (Bazel would reject this file too)"


@dataclass(frozen=True)
class Token:
    kind: str  # "name", "string", "op"
    value: str
    start: int
    end: int


@dataclass(frozen=True, kw_only=True)
class Call:
    function: str
    start: int  # offset of the function name
    end: int  # offset just past the closing parenthesis
    line: int
    kwargs: dict[str, str] = field(default_factory=dict)  # keyword arguments that are one string literal
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)  # ... that are a list of string literals


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def tokens(text: str, path: str) -> Iterator[Token]:
    i, size = 0, len(text)
    while i < size:
        char = text[i]
        if char.isspace() or char == "\\":
            i += 1
        elif char == "#":
            newline = text.find("\n", i)
            i = size if newline < 0 else newline
        elif (string := _STRING_START.match(text, i)) and (char in "\"'" or not _in_name(text, i)):
            end, value = _string_end(text, string, path)
            yield Token("string", value, i, end)
            i = end
        elif name := _NAME.match(text, i):
            yield Token("name", name.group(0), i, name.end())
            i = name.end()
        else:
            yield Token("op", char, i, i + 1)
            i += 1


def _in_name(text: str, i: int) -> bool:
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")


def _string_end(text: str, match: re.Match[str], path: str) -> tuple[int, str]:
    quote = match.group(1)
    i = match.end()
    while i < len(text):
        if text[i] == "\\":  # in raw strings too, a backslash keeps the next quote from closing the string
            i += 2
        elif text.startswith(quote, i):
            return i + len(quote), text[match.end() : i]
        elif text[i] == "\n" and len(quote) == 1:
            break
        else:
            i += 1
    raise WorkspaceError(f"{path}:{line_of(text, match.start())}: unterminated string", hint=_SYNTAX_HINT)


def top_level_calls(text: str, path: str = "WORKSPACE") -> list[Call]:
    """Every call at the top level of the file (`name(...)`, not `module.name(...)`), in order."""
    toks = list(tokens(text, path))
    calls: list[Call] = []
    depth_openers: list[Token] = []
    for index, tok in enumerate(toks):
        if tok.kind != "op":
            continue
        if tok.value in _CLOSERS:
            if not depth_openers and tok.value == "(" and _call_name(toks, index):
                calls.append(_read_call(text, toks, index, path))
            depth_openers.append(tok)
        elif tok.value in ")]}":
            if not depth_openers or _CLOSERS[depth_openers[-1].value] != tok.value:
                raise WorkspaceError(
                    f"{path}:{line_of(text, tok.start)}: unbalanced {tok.value!r}", hint=_SYNTAX_HINT
                )
            depth_openers.pop()
    if depth_openers:
        raise WorkspaceError(
            f"{path}:{line_of(text, depth_openers[-1].start)}: bracket opened here is never closed",
            hint=_SYNTAX_HINT,
        )
    return calls


def _call_name(toks: list[Token], paren: int) -> bool:
    if paren == 0 or toks[paren - 1].kind != "name":
        return False
    return paren < 2 or toks[paren - 2].value != "."


def _read_call(text: str, toks: list[Token], paren: int, path: str) -> Call:
    name = toks[paren - 1]
    kwargs: dict[str, str] = {}
    lists: dict[str, tuple[str, ...]] = {}
    depth, i = 0, paren
    while i < len(toks):
        tok = toks[i]
        if tok.kind == "op" and tok.value in _CLOSERS:
            depth += 1
        elif tok.kind == "op" and tok.value in ")]}":
            depth -= 1
            if depth == 0:
                return Call(
                    function=name.value,
                    start=name.start,
                    end=tok.end,
                    line=line_of(text, name.start),
                    kwargs=kwargs,
                    lists=lists,
                )
        elif depth == 1 and tok.kind == "name" and _is(toks, i + 1, "=") and not _is(toks, i + 2, "="):
            value = _literal(toks, i + 2)
            if isinstance(value, str):
                kwargs[tok.value] = value
            elif value is not None:
                lists[tok.value] = value
        i += 1
    raise WorkspaceError(
        f"{path}:{line_of(text, name.start)}: bracket opened here is never closed", hint=_SYNTAX_HINT
    )


def _is(toks: list[Token], i: int, op: str) -> bool:
    return i < len(toks) and toks[i].kind == "op" and toks[i].value == op


def _literal(toks: list[Token], i: int) -> str | tuple[str, ...] | None:
    """A string, or a list of strings, standing alone as an argument's value; anything else is None."""
    if i < len(toks) and toks[i].kind == "string" and (_is(toks, i + 1, ",") or _is(toks, i + 1, ")")):
        return toks[i].value
    if not _is(toks, i, "["):
        return None
    items: list[str] = []
    i += 1
    while i < len(toks) and toks[i].kind == "string":
        items.append(toks[i].value)
        i += 1
        if _is(toks, i, ","):
            i += 1
    return tuple(items) if _is(toks, i, "]") else None
