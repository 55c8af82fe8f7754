"""Checkout state (commit, dirty) on real git repositories, against what git's own plumbing says."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hookbuild.build import sources
from hookbuild.errors import SourceError

IDENTITY = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *IDENTITY, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "envoy"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / ".gitignore").write_text("bazel-*\n")
    (path / "source.cc").write_text("int main() {}\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    return path


def test_a_clean_checkout_is_its_head_and_clean(repo: Path) -> None:
    state = sources.inspect(repo, role="envoy")
    assert state.commit == git(repo, "rev-parse", "HEAD") and not state.dirty
    assert state.path == repo.resolve() and state.role == "envoy"
    (repo / "bazel-out").write_text("ignored")  # ignored files are not changes
    assert not sources.inspect(repo, role="envoy").dirty


@pytest.mark.parametrize("change", ["modified", "staged", "untracked", "deleted", "renamed"])
def test_every_kind_of_change_is_dirty(repo: Path, change: str) -> None:
    if change == "modified":
        (repo / "source.cc").write_text("int main() { return 1; }\n")
    elif change == "staged":
        (repo / "new.cc").write_text("x")
        git(repo, "add", "new.cc")
    elif change == "untracked":
        (repo / "scratch.txt").write_text("x")
    elif change == "deleted":
        (repo / "source.cc").unlink()
    else:
        git(repo, "mv", "source.cc", "main.cc")
    assert git(repo, "status", "--porcelain")  # git agrees it is dirty
    state = sources.inspect(repo, role="envoy")
    assert state.dirty and state.commit == git(repo, "rev-parse", "HEAD")


def test_a_worktree_checkout_reads_its_own_head(repo: Path, tmp_path: Path) -> None:
    """A linked worktree has a .git file, not a folder, and its own HEAD."""
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    tree = tmp_path / "tree"
    git(repo, "worktree", "add", "-q", "--detach", str(tree), "HEAD~1")
    state = sources.inspect(tree, role="envoy")
    assert state.commit == git(tree, "rev-parse", "HEAD") != git(repo, "rev-parse", "HEAD")
    assert not state.dirty


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "does not exist"),
        ("plain folder", "is not a git repository"),
        ("subfolder", "is inside a repository but not its top level"),
        ("no commits", "has no commits"),
    ],
)
def test_what_is_not_a_checkout_is_said(repo: Path, tmp_path: Path, case: str, message: str) -> None:
    path = {
        "missing": tmp_path / "nowhere",
        "plain folder": tmp_path / "plain",
        "subfolder": repo / "sub",
        "no commits": tmp_path / "empty",
    }[case]
    if case != "missing":
        path.mkdir()
    if case == "no commits":
        git(path, "init", "-q")
        (path / "file").write_text("x")
    with pytest.raises(SourceError, match=message):
        sources.inspect(path, role="envoy")


def test_a_sample_copy_another_run_builds_from_is_left_to_it(tmp_path: Path) -> None:
    """A second release's plan must not start the sample over under a first one's build: the first one's
    WORKSPACE edit (and its backup) stay until it restores them; a copy nobody holds is started over."""
    import sys

    root = Path(__file__).resolve().parent.parent
    source, dest = root / "examples" / "proxy", tmp_path / "proxy"
    sources.materialize_sample(source, dest)
    original = (dest / "WORKSPACE").read_bytes()
    (dest / "WORKSPACE").write_bytes(original + b"# the first run's edit\n")
    holder = subprocess.Popen(  # the first run, holding the checkout lock through its build
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from hookbuild.build import workspace\n"
            "with workspace.checkout_lock(pathlib.Path(sys.argv[1])):\n"
            "    print('held', flush=True); sys.stdin.read()",
            str(dest),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        sources.materialize_sample(source, dest)
        assert (dest / "WORKSPACE").read_bytes() == original + b"# the first run's edit\n"
    finally:
        holder.communicate("")
    sources.materialize_sample(source, dest)  # nobody builds from it now: changed, so made again
    assert (dest / "WORKSPACE").read_bytes() == original
    assert not sources.inspect(dest, role="proxy").dirty
