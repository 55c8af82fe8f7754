"""One meaning per short flag across every task, `-h` is help everywhere (issue 12).

The collection is walked as `invoke` loads it from tasks.py, so a task added later is held to the same
rules without touching this file.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import ROOT, run_invoke, run_process
from invoke.collection import Collection
from invoke.loader import FilesystemLoader
from invoke.tasks import Task

from hookbuild.cli.task import HookbuildTask

# The only short flags, chosen deliberately; anything else needs its long name.
CHOSEN = {"v": "variant", "r": "release", "f": "file", "o": "output", "b": "binary"}


def _collection() -> Collection:
    """The collection exactly as `invoke` finds it: tasks.py from the project root."""
    module, _ = FilesystemLoader(start=str(ROOT)).load("tasks")
    return Collection.from_module(module)


def _tasks() -> dict[str, Task]:  # type: ignore[type-arg]
    collection = _collection()
    return {name: collection[name] for name in collection.task_names}


def test_every_task_goes_through_the_decorator() -> None:
    tasks = _tasks()
    assert len(tasks) >= 8
    for name, task in tasks.items():
        assert isinstance(task, HookbuildTask), f"{name} is not made by hookbuild.cli.task.task"
        assert task.auto_shortflags is False, name


def test_no_letter_means_two_things() -> None:
    meanings: dict[str, set[str]] = defaultdict(set)
    for name, task in _tasks().items():
        for argument in task.get_arguments():
            long_names = [n for n in argument.names if len(n) > 1]
            for short in (n for n in argument.names if len(n) == 1):
                meanings[short].add(long_names[0])
                assert short != "h", f"{name}: -h is help, not --{long_names[0]}"
    assert {letter: names for letter, names in meanings.items() if len(names) > 1} == {}
    for letter, names in meanings.items():
        assert CHOSEN.get(letter) in names, f"-{letter} ({names}) is not one of the chosen short flags"


@pytest.mark.parametrize("name", sorted(_tasks()))
def test_dash_h_is_help(name: str) -> None:
    ran = run_invoke(name, "-h")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("Usage: inv") and f"[--core-opts] {name} [--options]" in ran.stdout


@pytest.mark.parametrize("name", ["deprecate", "symbols"])
def test_dash_h_is_help_before_a_positional_argument(name: str) -> None:
    """Invoke hands a missing positional argument the next word, `-h` too: the real CLI still prints help."""
    ran = run_process(name, "-h")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(f"Usage: inv[oke] [--core-opts] {name} [--options]"), ran.stdout[:200]


def test_the_wrong_file_is_never_written_by_a_letter(tmp_path: Path) -> None:
    """The issue's case: `-e mine.toml` meant --versions-file in some tasks and --reason in `deprecate`, so
    the default record was deprecated with the reason "mine.toml". Now -e means nothing anywhere."""
    default, mine = tmp_path / "default.toml", tmp_path / "mine.toml"
    shutil.copyfile(ROOT / "versions.toml", default)
    shutil.copyfile(ROOT / "versions.toml", mine)
    before = default.read_bytes()
    ran = run_invoke(
        "deprecate", "istio@11.8", "-e", str(mine), env={"HOOKBUILD_VERSIONS_FILE": str(default)}
    )
    assert ran.returncode != 0
    assert default.read_bytes() == before and mine.read_bytes() == before
