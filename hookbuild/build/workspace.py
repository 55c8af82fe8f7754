"""Point a proxy checkout's `envoy` repository at a local Envoy: the seed's WORKSPACE edit, made safe.

The edit replaces only the envoy rule's bytes (upstream tooling still reads the `ENVOY_SHA = ...` line), the
original is kept in a backup outside the work tree, and it is put back after the build whatever happens.
A run killed outright leaves the backup, which the next run restores before anything else.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from hookbuild import fsutil
from hookbuild.build.starlark import top_level_calls
from hookbuild.errors import WorkspaceError

log = logging.getLogger("hookbuild")

ENVOY_MOUNT = "/envoy"
_WORKSPACE_NAMES = ("WORKSPACE", "WORKSPACE.bazel")
_REPOSITORY_RULES = {
    "http_archive",
    "git_repository",
    "new_git_repository",
    "local_repository",
    "new_local_repository",
    "envoy_http_archive",
}
_MODULE_OVERRIDES = {"local_path_override", "git_override", "archive_override", "single_version_override"}


@dataclass(frozen=True, kw_only=True)
class Edit:
    """Replace bytes [start, end) of `file` with `text`."""

    file: Path
    start: int
    end: int
    text: str
    describes: str
    envoy_path: str = ENVOY_MOUNT

    def apply(self, original: str) -> str:
        return original[: self.start] + self.text + original[self.end :]


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkspaceError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})", hint="save the file as UTF-8"
        ) from exc


def plan_edit(proxy: Path, *, envoy_path: str = ENVOY_MOUNT) -> Edit:
    """Find the one `envoy` rule and say how to point it at `envoy_path`. Reads, never writes."""
    workspace = next((proxy / name for name in _WORKSPACE_NAMES if (proxy / name).is_file()), None)
    module = proxy / "MODULE.bazel"
    if workspace is not None:
        text = _read(workspace)
        rules = [
            call
            for call in top_level_calls(text, str(workspace))
            if call.function in _REPOSITORY_RULES and call.kwargs.get("name") == "envoy"
        ]
        if len(rules) > 1:
            lines = ", ".join(str(rule.line) for rule in rules)
            raise WorkspaceError(
                f"{workspace}: {len(rules)} rules declare the envoy repository (lines {lines})",
                hint='keep exactly one `name = "envoy"` rule',
            )
        if rules:
            rule = rules[0]
            replacement = f'local_repository(\n    name = "envoy",\n    path = "{envoy_path}",\n)'
            return Edit(
                envoy_path=envoy_path,
                file=workspace,
                start=rule.start,
                end=rule.end,
                text=replacement,
                describes=f'{workspace.name}:{rule.line}: {rule.function}(name = "envoy") -> '
                f'local_repository(path = "{envoy_path}")',
            )
    if module.is_file():
        return _plan_module_edit(module, envoy_path)
    where = workspace or proxy / "WORKSPACE"
    raise WorkspaceError(
        f'{where}: no repository rule named "envoy" (looked for {", ".join(sorted(_REPOSITORY_RULES))})',
        hint="point --proxy at an istio/proxy or cilium/proxy checkout, or use --envoy-mode override",
    )


def _plan_module_edit(module: Path, envoy_path: str) -> Edit:
    text = _read(module)
    calls = top_level_calls(text, str(module))
    if not any(c.function == "bazel_dep" and c.kwargs.get("name") == "envoy" for c in calls):
        raise WorkspaceError(
            f'{module}: no bazel_dep(name = "envoy") and no WORKSPACE envoy rule',
            hint="point --proxy at a checkout that depends on envoy",
        )
    overrides = [
        c for c in calls if c.function in _MODULE_OVERRIDES and c.kwargs.get("module_name") == "envoy"
    ]
    if len(overrides) > 1:
        raise WorkspaceError(f"{module}: {len(overrides)} overrides of module envoy", hint="keep at most one")
    replacement = f'local_path_override(\n    module_name = "envoy",\n    path = "{envoy_path}",\n)'
    if overrides:
        call = overrides[0]
        return Edit(
            envoy_path=envoy_path,
            file=module,
            start=call.start,
            end=call.end,
            text=replacement,
            describes=f"MODULE.bazel:{call.line}: {call.function}(envoy) -> local_path_override",
        )
    tail = "" if text.endswith("\n") or not text else "\n"
    return Edit(
        envoy_path=envoy_path,
        file=module,
        start=len(text),
        end=len(text),
        text=f"{tail}\n{replacement}\n",
        describes='MODULE.bazel: add local_path_override(module_name = "envoy")',
    )


def backup_path(proxy: Path, file: Path) -> Path:
    """Inside `.git` when there is one: invisible to `git status`, and it survives a crash."""
    git_dir = proxy / ".git"
    folder = git_dir / "hookbuild" if git_dir.is_dir() else proxy
    return folder / f"{file.name}.hookbuild-backup"


@contextmanager
def checkout_lock(proxy: Path, *, wait: bool = True) -> Iterator[bool]:
    """One run at a time edits (and builds with) a checkout; yields False when `wait` is off and it is taken.

    An flock: the kernel releases it when its process dies, so a killed run never blocks the next one. It
    is `.git/hookbuild/checkout.lock` in a git checkout; without a `.git` directory, the checkout directory
    itself, so nothing is added to the checkout and no lock file per checkout piles up elsewhere.
    """

    def waiting() -> None:
        log.info("waiting for another hookbuild run that builds in %s", proxy)

    git_dir = proxy / ".git"
    lock: AbstractContextManager[bool]
    if git_dir.is_dir():
        (git_dir / "hookbuild").mkdir(exist_ok=True)
        lock = fsutil.locked(git_dir / "hookbuild" / "checkout.lock", wait=wait, on_wait=waiting)
    elif proxy.is_dir():
        lock = fsutil.locked_directory(proxy, wait=wait, on_wait=waiting)
    else:  # no checkout there: nothing to edit or restore, and plan_edit says so
        lock = nullcontext(True)
    with lock as held:
        yield held


def restore_stale(proxy: Path) -> list[Path]:
    """Put back any file a killed run left edited. Returns what was restored.

    A backup that a live run holds (it is building) is not stale: it is left to that run.
    """
    with checkout_lock(proxy, wait=False) as ours:
        return _restore_stale(proxy) if ours else []


def _restore_stale(proxy: Path) -> list[Path]:
    restored = []
    for name in (*_WORKSPACE_NAMES, "MODULE.bazel"):
        file = proxy / name
        backup = backup_path(proxy, file)
        if backup.is_file():
            os.replace(backup, file)
            log.warning("restored %s from the backup an interrupted run left behind", file)
            restored.append(file)
    return restored


@contextmanager
def local_envoy(proxy: Path, edit: Edit) -> Iterator[None]:
    """Apply `edit` for the duration of the block; the original bytes come back on any exit.

    Holds the checkout's lock throughout: a second release using the same checkout waits, then edits the
    original file again (re-planned, since the file it planned from may have been the first run's edit).
    """
    with checkout_lock(proxy):
        _restore_stale(proxy)
        edit = plan_edit(proxy, envoy_path=edit.envoy_path)
        with _edited(proxy, edit):
            yield


@contextmanager
def _edited(proxy: Path, edit: Edit) -> Iterator[None]:
    original = edit.file.read_bytes()
    backup = backup_path(proxy, edit.file)
    backup.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write(backup, original)
    shutil.copymode(edit.file, backup)  # the restore moves the backup into place: keep the file's mode
    try:
        fsutil.atomic_write(edit.file, edit.apply(original.decode("utf-8")))
        log.info("%s", edit.describes)
        yield
    finally:
        os.replace(backup, edit.file)
        log.info("restored %s", edit.file)
