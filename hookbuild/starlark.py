"""Just enough of a Starlark reader to find top-level calls in WORKSPACE and MODULE.bazel files.

It tokenizes strings (all quote forms, raw/byte prefixes), comments and brackets, so a `)` inside a string
or a comment never ends a call. Spans are byte-exact, so an edit can keep the rest of the file untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hookbuild.errors import WorkspaceError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING_START = re.compile(r"(?i:[rb]{0,2})(\"\"\"|'''|\"|')")
_OPEN = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True, kw_only=True)
class Call:
    function: str
    start: int  # offset of the function name
    end: int  # offset just past the closing parenthesis
    line: int
    kwargs: dict[str, str]  # keyword arguments whose value is a plain string literal


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _string_end(text: str, pos: int, path: str) -> tuple[int, str]:
    """`pos` is at a string's prefix or quote; return the offset past it and its (unescaped-ish) value."""
    match = _STRING_START.match(text, pos)
    assert match is not None
    quote = match.group(1)
    i = match.end()
    while i < len(text):
        char = text[i]
        if char == "\\":  # in raw strings too, a backslash keeps the next quote from closing the string
            i += 2
            continue
        if text.startswith(quote, i):
            return i + len(quote), text[match.end() : i]
        if char == "\n" and len(quote) == 1:
            break
        i += 1
    raise WorkspaceError(
        f"{path}:{_line(text, pos)}: unterminated string",
        hint="fix the Starlark syntax (Bazel would reject this file too)",
    )


def top_level_calls(text: str, path: str = "WORKSPACE") -> list[Call]:
    calls: list[Call] = []
    stack: list[tuple[str, int]] = []
    current: dict[str, object] | None = None  # the top-level call being read
    i = 0
    previous_ident: tuple[str, int] | None = None
    pending_kw: str | None = None
    expect_value_for: str | None = None
    while i < len(text):
        char = text[i]
        if char == "#":
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        if char in "\"'" or (char in "rRbB" and _STRING_START.match(text, i) and not _continues_identifier(text, i)):
            i, value = _string_end(text, i, path)
            if current is not None and len(stack) == 1 and expect_value_for is not None:
                after = _skip_blank(text, i)
                if after < len(text) and text[after] in ",)":
                    kwargs = current["kwargs"]
                    assert isinstance(kwargs, dict)
                    kwargs[expect_value_for] = value
            expect_value_for = None
            previous_ident = None
            continue
        if char in _OPEN:
            if char == "(" and not stack and previous_ident is not None:
                current = {"function": previous_ident[0], "start": previous_ident[1], "kwargs": {}}
            stack.append((_OPEN[char], i))
            previous_ident = None
            expect_value_for = None
            i += 1
            continue
        if char in ")]}":
            if not stack or stack[-1][0] != char:
                raise WorkspaceError(
                    f"{path}:{_line(text, i)}: unbalanced {char!r}",
                    hint="fix the Starlark syntax (Bazel would reject this file too)",
                )
            stack.pop()
            if not stack and current is not None and char == ")":
                start = current["start"]
                assert isinstance(start, int)
                kwargs = current["kwargs"]
                assert isinstance(kwargs, dict)
                calls.append(
                    Call(
                        function=str(current["function"]),
                        start=start,
                        end=i + 1,
                        line=_line(text, start),
                        kwargs=kwargs,
                    )
                )
                current = None
            previous_ident = None
            i += 1
            continue
        ident = _IDENT.match(text, i)
        if ident:
            previous_ident = (ident.group(0), i) if not _dotted(text, i) else None
            pending_kw = ident.group(0) if len(stack) == 1 else None
            expect_value_for = None
            i = ident.end()
            continue
        if char == "=" and pending_kw is not None and text[i + 1 : i + 2] != "=":
            expect_value_for = pending_kw
            pending_kw = None
            i += 1
            continue
        if not char.isspace():
            previous_ident = None
            pending_kw = None
            if char != "=":
                expect_value_for = None
        i += 1
    if stack:
        opener_line = _line(text, stack[-1][1])
        raise WorkspaceError(
            f"{path}:{opener_line}: bracket opened here is never closed",
            hint="fix the Starlark syntax (Bazel would reject this file too)",
        )
    return calls


def _continues_identifier(text: str, i: int) -> bool:
    """True when the r/b at `i` continues an identifier rather than prefixing a string."""
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")


def _dotted(text: str, i: int) -> bool:
    return i > 0 and text[i - 1] == "."


def _skip_blank(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i
