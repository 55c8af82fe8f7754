from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookbuild.build.starlark import top_level_calls
from hookbuild.build.workspace import Edit, backup_path, local_envoy, plan_edit, restore_stale
from hookbuild.errors import WorkspaceError

DATA = Path(__file__).parent / "data" / "workspaces"


def checkout(tmp_path: Path, name: str, *, git: bool = True) -> Path:
    proxy = tmp_path / "proxy"
    proxy.mkdir()
    if git:
        (proxy / ".git").mkdir()
    (proxy / "WORKSPACE").write_bytes((DATA / name).read_bytes())
    return proxy


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("name", "function", "line"),
    [
        ("istio-1.26.WORKSPACE", "http_archive", 20),
        ("tricky.WORKSPACE", "http_archive", 12),
        ("cilium.WORKSPACE", "git_repository", 12),
    ],
)
def test_rewrite_replaces_only_the_envoy_rule(tmp_path: Path, name: str, function: str, line: int) -> None:
    proxy = checkout(tmp_path, name)
    original = (proxy / "WORKSPACE").read_text()
    edit = plan_edit(proxy)
    assert f'{function}(name = "envoy")' in edit.describes and f"WORKSPACE:{line}:" in edit.describes
    rewritten = edit.apply(original)
    before, after = original[: edit.start], original[edit.end :]
    assert rewritten == before + 'local_repository(\n    name = "envoy",\n    path = "/envoy",\n)' + after
    assert rewritten.count('name = "envoy"') == 1 or name == "tricky.WORKSPACE"
    # Upstream tooling reads the pin: it must survive the edit.
    if "ENVOY_SHA =" in original:
        assert [ln for ln in original.splitlines() if ln.startswith("ENVOY_SHA =")] == [
            ln for ln in rewritten.splitlines() if ln.startswith("ENVOY_SHA =")
        ]
    envoy_rules = [c for c in top_level_calls(rewritten) if c.kwargs.get("name") == "envoy"]
    assert [c.function for c in envoy_rules] == ["local_repository"]


def test_tricky_strings_and_comments_are_not_rules(tmp_path: Path) -> None:
    calls = top_level_calls((DATA / "tricky.WORKSPACE").read_text())
    assert [(c.function, c.kwargs.get("name")) for c in calls] == [
        ("workspace", "tricky"),
        ("load", None),
        ("http_archive", "envoy_api"),
        ("http_archive", "envoy"),
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("two-rules.WORKSPACE", "2 rules declare the envoy repository (lines 2, 3)"),
        ("no-envoy.WORKSPACE", 'no repository rule named "envoy"'),
        ("unbalanced.WORKSPACE", "WORKSPACE:2: bracket opened here is never closed"),
        ("unterminated.WORKSPACE", "WORKSPACE:3: unterminated string"),
    ],
)
def test_bad_workspaces_are_clear_errors(tmp_path: Path, name: str, message: str) -> None:
    proxy = checkout(tmp_path, name)
    with pytest.raises(WorkspaceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_edit(proxy)


def test_missing_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="no repository rule named"):
        plan_edit(tmp_path)


def test_bzlmod_gets_local_path_override(tmp_path: Path) -> None:
    (tmp_path / "MODULE.bazel").write_text(
        'module(name = "proxy")\nbazel_dep(name = "envoy", version = "1.36.0")\n'
    )
    edit = plan_edit(tmp_path)
    text = edit.apply((tmp_path / "MODULE.bazel").read_text())
    assert text.endswith('local_path_override(\n    module_name = "envoy",\n    path = "/envoy",\n)\n')
    (tmp_path / "MODULE.bazel").write_text(text)
    again = plan_edit(tmp_path)  # an existing override is replaced, not duplicated
    assert again.apply(text) == text


def test_restored_after_a_failed_build(tmp_path: Path) -> None:
    proxy = checkout(tmp_path, "istio-1.26.WORKSPACE")
    before = digest(proxy / "WORKSPACE")
    edit = plan_edit(proxy)
    with pytest.raises(RuntimeError), local_envoy(proxy, edit):
        assert 'local_repository(\n    name = "envoy"' in (proxy / "WORKSPACE").read_text()
        assert backup_path(proxy, proxy / "WORKSPACE").is_file()
        raise RuntimeError("bazel failed")
    assert digest(proxy / "WORKSPACE") == before
    assert not backup_path(proxy, proxy / "WORKSPACE").exists()
    assert sorted(p.name for p in proxy.iterdir()) == [".git", "WORKSPACE"]


def _editor(proxy: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A real process that holds the edit (as a build would) for a minute; it logs when it has to wait."""
    script = textwrap.dedent(f"""
        import logging, time
        from pathlib import Path
        from hookbuild.build.workspace import local_envoy, plan_edit
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        proxy = Path({str(proxy)!r})
        with local_envoy(proxy, plan_edit(proxy)):
            print("edited", flush=True)
            time.sleep(60)
    """)
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _while_edited(proxy: Path, stop: signal.Signals) -> None:
    """A real process holds the edit (as a build would) until it gets `stop`."""
    with _editor(proxy) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "edited"
        time.sleep(0.1)
        os.kill(proc.pid, stop)
        proc.wait(timeout=10)


def test_killed_run_is_restored_by_the_next(tmp_path: Path) -> None:
    proxy = checkout(tmp_path, "istio-1.26.WORKSPACE")
    before = digest(proxy / "WORKSPACE")
    _while_edited(proxy, signal.SIGKILL)
    assert digest(proxy / "WORKSPACE") != before
    assert restore_stale(proxy) == [proxy / "WORKSPACE"]
    assert digest(proxy / "WORKSPACE") == before


def test_sigint_restores(tmp_path: Path) -> None:
    proxy = checkout(tmp_path, "cilium.WORKSPACE", git=False)
    before = digest(proxy / "WORKSPACE")
    _while_edited(proxy, signal.SIGINT)
    assert digest(proxy / "WORKSPACE") == before
    assert sorted(p.name for p in proxy.iterdir()) == ["WORKSPACE"]


def test_runs_on_a_checkout_without_git_take_turns(tmp_path: Path) -> None:
    """Without `.git`, the lock is the checkout directory itself: a second run waits for the first (and a
    restore leaves the first one's backup alone), and no lock file is left in the checkout or in TMPDIR."""
    proxy = checkout(tmp_path, "cilium.WORKSPACE", git=False)
    before = digest(proxy / "WORKSPACE")
    env = {"TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    with _editor(proxy, env) as first:
        assert first.stdout is not None and first.stdout.readline().strip() == "edited"
        with _editor(proxy, env) as second:
            assert second.stdout is not None and second.stderr is not None
            while "waiting for another hookbuild run that builds in" not in (
                line := second.stderr.readline()
            ):
                assert line, "the second run neither waited nor failed"
            assert not select.select([second.stdout], [], [], 1)[0]  # still waiting: it has not edited
            assert restore_stale(proxy) == []  # the live run's backup is not stale
            assert digest(proxy / "WORKSPACE") != before
            first.send_signal(signal.SIGINT)  # the first run ends (restoring the file): the second goes on
            first.wait(timeout=10)
            assert second.stdout.readline().strip() == "edited"
            second.send_signal(signal.SIGINT)
            second.wait(timeout=10)
    assert digest(proxy / "WORKSPACE") == before
    assert sorted(p.name for p in proxy.iterdir()) == ["WORKSPACE"]
    assert not list((tmp_path / "tmp").iterdir())


def test_a_missing_checkout_is_an_error_not_a_lock(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-proxy"
    assert restore_stale(missing) == []
    with (
        pytest.raises(WorkspaceError, match="no repository rule named"),
        local_envoy(missing, Edit(file=missing / "WORKSPACE", start=0, end=0, text="", describes="")),
    ):
        pass
    assert not missing.exists()


_starlark_text = st.lists(
    st.sampled_from(
        [
            'http_archive(\n    name = "envoy",\n    url = "u",\n)\n',
            "# comment ) (\n",
            'X = "a)b"\n',
            "Y = '''\n(\n'''\n",
            'load("@x//:y.bzl", "z")\n',
            "z(name = 'other', deps = [1, (2)])\n",
            "\n",
            'ENVOY_SHA = "abc"\n',
        ]
    ),
    min_size=1,
    max_size=12,
).filter(lambda parts: sum('name = "envoy"' in p for p in parts) == 1)


@settings(max_examples=60, deadline=None)
@given(parts=_starlark_text)
def test_rewrite_then_restore_round_trips(tmp_path_factory: pytest.TempPathFactory, parts: list[str]) -> None:
    proxy = tmp_path_factory.mktemp("proxy")
    original = "".join(parts).encode()
    (proxy / "WORKSPACE").write_bytes(original)
    edit = plan_edit(proxy)
    rewritten = edit.apply(original.decode())
    assert rewritten[: edit.start] == original.decode()[: edit.start]
    with local_envoy(proxy, edit):
        assert (proxy / "WORKSPACE").read_text() == rewritten
    assert (proxy / "WORKSPACE").read_bytes() == original
