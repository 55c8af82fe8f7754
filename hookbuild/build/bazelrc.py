"""A checkout's `.bazelrc` configs, and whether a Bazel command line would strip the binary it links.

Bazel expands `--config=NAME` in place (every `build:NAME`/`common:NAME` line of every rc file, imports
followed; `build:linux` too under `--enable_platform_specific_config`), so the last value of an option
wins. What strips: `--strip=always`, the default `--strip=sometimes` in a fastbuild, and a linker option
`-Wl,--strip-all`/`-Wl,-s` that no later `-Wl,--strip-debug`/`-Wl,-S` replaces (GNU ld and lld keep one
strip mode: the last one given; `--strip-debug` keeps the symbol table uprobes need).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_COMMANDS = ("common", "always", "build")  # the rc sections a `bazel build` reads
_MAX_DEPTH = 20  # imports and nested configs deeper than this are a loop
_LINKER_ALL = ("--strip-all", "-s")
_LINKER_DEBUG = ("--strip-debug", "-S")


@dataclass(frozen=True, kw_only=True)
class Rc:
    """The options a workspace's rc files give every build, and each `--config`'s options."""

    plain: tuple[str, ...] = ()
    configs: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def has_config(self, name: str) -> bool:
        return name in self.configs


def read(workspace: Path) -> Rc:
    """The rc files Bazel reads for this workspace: `.bazelrc` and what it imports (missing ones skipped)."""
    plain: list[str] = []
    configs: dict[str, list[str]] = {}

    def load(path: Path, depth: int) -> None:
        if depth > _MAX_DEPTH or not path.is_file():
            return
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                words = shlex.split(raw, comments=True)
            except ValueError:
                continue  # Bazel rejects such a line too; it cannot decide what hookbuild plans
            if not words:
                continue
            head, rest = words[0], words[1:]
            if head in ("import", "try-import") and rest:
                load(Path(rest[0].replace("%workspace%", str(workspace))), depth + 1)
                continue
            command, _, config = head.partition(":")
            if command in _COMMANDS:
                (configs.setdefault(config, []) if config else plain).extend(rest)

    load(workspace / ".bazelrc", 0)
    return Rc(plain=tuple(plain), configs={name: tuple(opts) for name, opts in configs.items()})


def expand(options: Iterable[str], rc: Rc) -> list[str]:
    """The options in the order Bazel applies them: the rc's, then the command line's, configs in place."""
    out: list[str] = []
    given = [*rc.plain, *options]
    if "--enable_platform_specific_config" in given:
        given = ["--config=linux", *given]

    def walk(words: Sequence[str], depth: int) -> None:
        index = 0
        while index < len(words):
            word = words[index]
            if word == "--config" and index + 1 < len(words):
                index += 1
                word = f"--config={words[index]}"
            if word.startswith("--config="):
                if depth < _MAX_DEPTH:
                    walk(rc.configs.get(word.split("=", 1)[1], ()), depth + 1)
            else:
                out.append(word)
            index += 1

    walk(given, 0)
    return out


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a Bazel command line decides about the linked binary."""

    compilation_mode: str
    strip: str
    linker_strip: str | None  # "all", "debug" or None: the last strip option passed to the linker

    @property
    def keeps_symbols(self) -> bool:
        return not self.strips_because

    @property
    def strips_because(self) -> str:
        """Why the binary would lose its symbols ("" when it keeps them)."""
        if self.linker_strip == "all":
            return "it links with -Wl,--strip-all"
        if self.strip == "always":
            return "--strip=always"
        if self.strip == "sometimes" and self.compilation_mode == "fastbuild":
            return "a fastbuild with --strip=sometimes"
        return ""

    def describe(self) -> str:
        linker = f", linker {self.linker_strip}" if self.linker_strip else ""
        return f"-c {self.compilation_mode}, --strip={self.strip}{linker}"


def evaluate(options: Iterable[str], rc: Rc) -> Outcome:
    """How a `bazel build OPTIONS` in this workspace treats symbols (last value of each option wins)."""
    words = expand(options, rc)
    mode, strip, linker = "fastbuild", "sometimes", None
    for name, value in _pairs(words):
        if name in ("-c", "--compilation_mode"):
            mode = value
        elif name == "--strip":
            strip = value
        elif name == "--linkopt":
            parts = value.split(",")[1:] if value.startswith("-Wl,") else [value]
            for part in parts:
                linker = "all" if part in _LINKER_ALL else "debug" if part in _LINKER_DEBUG else linker
    return Outcome(compilation_mode=mode, strip=strip, linker_strip=linker)


def _pairs(words: list[str]) -> Iterable[tuple[str, str]]:
    """(option, value) for the options that take one, in either `--opt=value` or `--opt value` form."""
    takes_value = ("-c", "--compilation_mode", "--strip", "--linkopt")
    index = 0
    while index < len(words):
        word = words[index]
        name, sep, value = word.partition("=")
        if sep and name in takes_value:
            yield name, value
        elif word in takes_value and index + 1 < len(words):
            index += 1
            yield word, words[index]
        index += 1
