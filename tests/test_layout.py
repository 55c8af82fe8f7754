"""The package's shape holds: small modules with a docstring, short functions, no import cycle, no extension
looked up by string, and the library neither prints nor starts processes outside `command`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "hookbuild"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 70


def _modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text(encoding="utf-8"), str(path))


MODULES = list(_modules())


@pytest.mark.parametrize(("name", "path", "tree"), MODULES, ids=[m[0] for m in MODULES])
def test_module_is_small_and_says_what_it_is_for(name: str, path: Path, tree: ast.Module) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name}: {lines} lines; split it by job"
    assert ast.get_docstring(tree), f"{name} has no module docstring"


def test_functions_are_short() -> None:
    long = [
        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"  # type: ignore[operator]
        for name, _path, tree in MODULES
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES  # type: ignore[operator]
    ]
    assert not long, long


def _imports(tree: ast.Module) -> set[str]:
    """hookbuild modules a module imports, at its top or inside functions (not under TYPE_CHECKING)."""
    found: set[str] = set()
    typing_only = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("hookbuild"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hookbuild"):
            found.add(node.module)
            # `from hookbuild.x import y` may import the submodule hookbuild.x.y
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_import_cycle() -> None:
    known = {name for name, _path, _tree in MODULES}
    graph = {name: {m for m in _imports(tree) if m in known and m != name} for name, _p, tree in MODULES}
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, cycles[:5]


def test_no_extension_found_by_string() -> None:
    for name, _path, tree in MODULES:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module",
                "__import__",
            ):
                pytest.fail(f"{name} imports by string; list the extension in a table instead")


def test_only_command_starts_processes() -> None:
    for name, _path, tree in MODULES:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if "subprocess" in names:
                    assert name == "hookbuild.command", f"{name} imports subprocess; use hookbuild.command"
