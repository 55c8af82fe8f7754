"""A plan's build command, run for real with stand-ins for docker and bazel, never tells Bazel to strip.

`tests/shims/build/` holds a `docker` that records each run and then runs its command here (volumes mapped to
their host paths, the environment it was given through `--env-file` and `-e`), a `bazel` that records its argv,
and refusing `apt`/`sudo`/`wget`... so a Makefile's host-install recipe can never touch this machine. The
recorded Bazel command line is judged against the checkout's own `.bazelrc` (configs expanded in place).

The bundled samples always run; the real upstream branches run from the mirrors in
$HOOKBUILD_UPSTREAM_MIRRORS (`<owner>+<repo>/repo` git directories, as the tool library fetches them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import ROOT, run_task

from hookbuild.build import bazelrc

SHIMS = ROOT / "tests" / "shims" / "build"
MIRRORS = Path(os.environ.get("HOOKBUILD_UPSTREAM_MIRRORS", "/work/.mirror"))
ISTIO = [f"release-1.{minor}" for minor in range(10, 32)] + ["master"]
CILIUM = [f"v1.{minor}" for minor in range(22, 38)] + ["main"]
LABELS = {"istio": ("//src/envoy:envoy", "//:envoy"), "cilium": ("//:cilium-envoy",)}


def plan(tmp_path: Path, variant: str, proxy: Path, envoy: Path) -> dict[str, object]:
    ran = run_task(
        "release", "--variant", variant, "--version", "9.1", "--proxy", str(proxy), "--envoy", str(envoy),
        "--envoy-mode", "override", "--build-image", "stand-in/builder:1", "--dry-run", "--json",
        env={"HOOKBUILD_DIST": str(tmp_path / "dist")},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    result: dict[str, object] = json.loads(ran.stdout)
    return result


def run_build(tmp_path: Path, build: dict[str, object], proxy: Path) -> list[dict[str, object]]:
    """Run the plan's build as `release` would (SOURCE_VERSION first for cilium), with the stand-ins."""
    record = tmp_path / "record.jsonl"
    record.unlink(missing_ok=True)
    (proxy / "SOURCE_VERSION").write_text("0" * 40 + "\n")  # the build stage writes the proxy commit
    env = build["env"]
    argv = build["argv"]
    assert isinstance(env, dict) and isinstance(argv, list)
    ran = subprocess.run(
        argv,
        cwd=str(build["cwd"]),
        env={
            **os.environ,
            **env,
            "PATH": f"{SHIMS}:{os.environ['PATH']}",
            "STANDIN_RECORD": str(record),
            "STANDIN_UP_TO_DATE": "clang.bazelrc",  # the builder image's clang setup
        },
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    assert "stand-in: refusing" not in ran.stderr
    return [json.loads(line) for line in record.read_text().splitlines()]


def bazel_build(calls: list[dict[str, object]], variant: str) -> list[str]:
    """The recorded `bazel [startup] build ... LABEL ...` of the binary, as Bazel received it."""
    for call in calls:
        argv = call["argv"]
        assert isinstance(argv, list)
        if call["tool"] == "bazel" and "build" in argv and any(label in argv for label in LABELS[variant]):
            return [str(word) for word in argv[argv.index("build") + 1 :]]
    raise AssertionError(f"no bazel build of {LABELS[variant]} in {calls}")


def check(tmp_path: Path, variant: str, proxy: Path, envoy: Path, output: str) -> list[str]:
    planned = plan(tmp_path, variant, proxy, envoy)
    builds = planned["builds"]
    assert isinstance(builds, list) and len(builds) == 1
    build = builds[0]
    assert build["output"] == str(proxy / "bazel-bin" / output) and build["keeps_symbols"] is True
    options = bazel_build(run_build(tmp_path, build, proxy), variant)
    outcome = bazelrc.evaluate(options, bazelrc.read(proxy))
    assert outcome.keeps_symbols, f"{proxy.name}: {options} strips ({outcome.strips_because})"
    assert "--override_repository=envoy=" in " ".join(options)  # BAZEL_BUILD_ARGS/OPTS reached Bazel
    return options


def copy(tmp_path: Path, sample: str) -> Path:
    dest = tmp_path / sample
    shutil.copytree(ROOT / "examples" / sample, dest, ignore=shutil.ignore_patterns("bazel-*", "out"))
    return dest


@pytest.mark.parametrize(
    ("variant", "sample", "output"),
    [
        ("istio", "proxy", "envoy"),
        ("istio", "proxy-1.13", "src/envoy/envoy"),
        ("cilium", "cilium-proxy", "cilium-envoy"),
        ("cilium", "cilium-proxy-1.33", "cilium-envoy"),
    ],
)
def test_sample_builds_do_not_strip(tmp_path: Path, variant: str, sample: str, output: str) -> None:
    check(tmp_path, variant, copy(tmp_path, sample), copy(tmp_path, "envoy"), output)


def upstream_checkout(tmp_path: Path, repo: str, branch: str) -> Path:
    git_dir = MIRRORS / repo / "repo"
    if not git_dir.is_dir():
        pytest.fail(f"no upstream mirror at {git_dir}: set HOOKBUILD_UPSTREAM_MIRRORS (fetch github:{repo})")
    dest = tmp_path / branch
    dest.mkdir()
    archive = subprocess.run(
        ["git", "--git-dir", str(git_dir), "archive", branch], capture_output=True, check=True
    ).stdout
    archive_path = tmp_path / f"{branch}.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(dest, filter="tar")
    archive_path.unlink()
    return dest


@pytest.mark.upstream
@pytest.mark.slow
@pytest.mark.parametrize("branch", ISTIO)
def test_istio_upstream_branch(tmp_path: Path, branch: str) -> None:
    proxy = upstream_checkout(tmp_path, "istio+proxy", branch)
    minor = int(branch.split(".")[1]) if branch != "master" else 99
    options = check(
        tmp_path, "istio", proxy, copy(tmp_path, "envoy"), "src/envoy/envoy" if minor <= 16 else "envoy"
    )
    assert options[-1] == ("//src/envoy:envoy" if minor <= 16 else "//:envoy") or "--" in options


@pytest.mark.upstream
@pytest.mark.slow
@pytest.mark.parametrize("branch", CILIUM)
def test_cilium_upstream_branch(tmp_path: Path, branch: str) -> None:
    proxy = upstream_checkout(tmp_path, "cilium+proxy", branch)
    options = check(tmp_path, "cilium", proxy, copy(tmp_path, "envoy"), "cilium-envoy")
    minor = int(branch.split(".")[1]) if branch != "main" else 99
    expected = (
        "--config=release_debug" if minor >= 34 else "-c" if minor >= 24 else "--linkopt=-Wl,--strip-debug"
    )
    assert expected in options
