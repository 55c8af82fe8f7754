"""Source checkouts (Envoy, istio/proxy, cilium/proxy): which commit, and whether the tree is dirty.

Every release and every CI retry reads a checkout's commit and dirty state first: that is asked of `git`
itself (`rev-parse`, `status`), two short commands, because importing GitPython alone costs more than both
(~0.13 s, a fifth of a retry). What writes a repository (a sample's commit, cilium's patches) is rarer and
goes through GitPython.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hookbuild import command, fsutil
from hookbuild.build import workspace
from hookbuild.errors import SourceError


@dataclass(frozen=True, kw_only=True)
class SourceState:
    role: str  # "envoy" or "proxy"
    path: Path
    commit: str
    dirty: bool


def _git(cwd: Path, *args: str) -> command.Answer:
    """`git ARGS` in `cwd`, its output captured; the caller reads the exit status."""
    return command.ask(command.Command(argv=("git", *args), cwd=cwd))


def _dirty(path: Path) -> bool:
    """Staged or unstaged changes, or untracked files (ignored ones aren't): what `git status` lists.

    --no-optional-locks: a status that only reads never rewrites the checkout's index.
    """
    return bool(_git(path, "--no-optional-locks", "status", "--porcelain").stdout.strip())


def inspect(path: Path, *, role: str) -> SourceState:
    """The checkout's commit and dirty state, from one `git status` when `path` is a repository's top with
    a commit (the usual case); otherwise asked step by step, to say exactly what is wrong."""
    if not path.is_dir():
        raise SourceError(
            f"{role} checkout {path} does not exist", hint=f"pass --{role} PATH to a git checkout"
        )
    if (path / ".git").exists():  # git finds this very .git: `path` is its top level
        status = _git(path, "--no-optional-locks", "status", "--porcelain=v2", "--branch")
        lines = status.stdout.splitlines()
        oid = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), None)
        if status.returncode == 0 and oid is not None and oid != "(initial)":
            dirty = any(not line.startswith("#") for line in lines if line.strip())
            return SourceState(role=role, path=path.resolve(), commit=oid, dirty=dirty)
    top = _git(path, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise SourceError(
            f"{role} checkout {path} is not a git repository",
            hint=f"pass --{role} PATH to a git checkout (releases record the commit they were built from)",
        )
    if Path(top.stdout.strip()).resolve() != path.resolve():
        raise SourceError(
            f"{role} path {path} is inside a repository but not its top level ({top.stdout.strip()})",
            hint=f"pass the top of the {role} checkout",
        )
    head = _git(path, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if head.returncode != 0:
        raise SourceError(f"{role} checkout {path} has no commits", hint="commit the sources first")
    return SourceState(role=role, path=path.resolve(), commit=head.stdout.strip(), dirty=_dirty(path))


def require_clean(states: list[SourceState], *, allow_dirty: bool) -> None:
    dirty = [state for state in states if state.dirty]
    if dirty and not allow_dirty:
        names = ", ".join(f"{state.role} ({state.path})" for state in dirty)
        raise SourceError(
            f"uncommitted changes in {names}",
            hint="commit them, or pass --allow-dirty (the release is then recorded as dirty)",
        )


_SAMPLE_IDENTITY = {
    "GIT_AUTHOR_NAME": "hookbuild sample",
    "GIT_AUTHOR_EMAIL": "sample@hookbuild.invalid",
    "GIT_AUTHOR_DATE": "1767225600 +0000",
    "GIT_COMMITTER_NAME": "hookbuild sample",
    "GIT_COMMITTER_EMAIL": "sample@hookbuild.invalid",
    "GIT_COMMITTER_DATE": "1767225600 +0000",
}


def materialize_sample(source: Path, dest: Path) -> Path:
    """Copy a bundled sample tree into a git repository with a reproducible commit.

    Same content gives the same commit SHA on every machine, so retries of a sample release are recognised.
    A copy that already holds exactly this content, unmodified, is kept as it is; so is one that another run
    builds from (holding its checkout lock), whose WORKSPACE edit is that run's to restore.
    """
    if not source.is_dir():
        raise SourceError(
            f"sample sources {source} are missing", hint="reinstall hookbuild from a full checkout"
        )
    ignore = shutil.ignore_patterns("bazel-*", "out", "__pycache__")
    stamp = dest / ".git" / "hookbuild-sample"
    content = _tree_digest(source, ignore)
    if stamp.is_file() and stamp.read_text() == content:
        with workspace.checkout_lock(dest, wait=False) as free:
            if not free or not _dirty(dest):  # changed by a run building from it: its edit, it restores it
                return dest
            return _materialize(source, dest, ignore, stamp, content)
    with workspace.checkout_lock(dest):  # never from under a build
        return _materialize(source, dest, ignore, stamp, content)


def _materialize(
    source: Path, dest: Path, ignore: Callable[[str, list[str]], set[str]], stamp: Path, content: str
) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    # Links are followed: an older-shape sample links the newest one's unchanged folders (examples/envoy-2022).
    shutil.copytree(source, dest, symlinks=False, ignore=ignore)
    import git

    try:
        with git.Repo.init(dest, initial_branch="main") as repo:
            repo.git.add(A=True)
            repo.git.commit(m=f"hookbuild sample: {source.name}", no_verify=True, env=_SAMPLE_IDENTITY)
    except git.GitCommandError as exc:
        raise SourceError(
            f"cannot make the sample repository {dest}: {str(exc.stderr).strip()[-300:]}",
            hint="check that git works here and the folder is writable",
        ) from None
    fsutil.atomic_write(stamp, content)
    return dest


def _tree_digest(root: Path, ignore: Callable[[str, list[str]], set[str]]) -> str:
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root, followlinks=True):
        skipped = ignore(folder, [*dirs, *files])
        dirs[:] = sorted(d for d in dirs if d not in skipped)
        for name in sorted(f for f in files if f not in skipped):
            path = Path(folder) / name
            digest.update(f"{path.relative_to(root)}\0{path.stat().st_mode & 0o111}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def patched_copy(source: Path, patches: tuple[Path, ...], dest: Path) -> Path:
    """A copy of `source` with `patches` applied (cilium/proxy patches Envoy before building it).

    A patch that is already in the source (applies in reverse) is skipped, so a checkout that carries
    cilium's patches itself works too. The source checkout is never modified.
    """
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, symlinks=True, ignore=shutil.ignore_patterns("bazel-*"))
    import git

    with git.Repo(dest) as repo:
        for patch in patches:
            if not patch.is_file():
                raise SourceError(f"patch {patch} is missing", hint="check the proxy checkout's patches/")
            try:
                repo.git.apply("--check", "--reverse", str(patch))
                continue  # already applied
            except git.GitCommandError:
                pass
            try:
                repo.git.apply(str(patch))
            except git.GitCommandError as exc:
                raise SourceError(
                    f"patch {patch.name} does not apply to the envoy checkout {source}: {exc.stderr.strip()}",
                    hint="check out the Envoy commit the proxy pins (ENVOY_SHA / ENVOY_VERSION)",
                ) from exc
    return dest
