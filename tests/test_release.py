"""The whole release on real components: Bazel in the build container, the engine, the local registry, git."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import docker
import git
import pytest
from conftest import NAMESPACE, ROOT, Ran, registry_auth, run_invoke, run_process, signing_env

from hookbuild import config, variants
from hookbuild.binary import symbols
from hookbuild.errors import ExitCode, ImageError
from hookbuild.images import engine
from hookbuild.release.plan import plan
from hookbuild.release.request import EnvoyMode, Request
from hookbuild.release.stages import Run, _base_image, steps
from hookbuild.version import Version

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.bazel]

REGISTRY = "127.0.0.1:5000"


def sample_repo(tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    shutil.copytree(ROOT / "examples" / name, dest, ignore=shutil.ignore_patterns("bazel-*", "out"))
    repo = git.Repo.init(dest)
    repo.git.add(A=True)
    repo.git.commit(m="sample", author="t <t@example.invalid>")
    repo.close()
    return dest


def release_checkouts(tmp_path: Path, envoy: Path, proxy: Path, versions: Path, *extra: str) -> Ran:
    """`invoke release` of istio 13.0 from real checkouts onto the sample base image."""
    return run_process(
        "release", "--version", "13.0", "--envoy", str(envoy), "--proxy", str(proxy),
        "--base-image", "hookbuild-sample/proxyv2:sample", "--versions-file", str(versions), *extra,
        env={"HOOKBUILD_DIST": str(tmp_path / "dist")},
    )  # fmt: skip


def empty_record(tmp_path: Path) -> Path:
    """A record declaring the variants but no versions: nothing to carry (no packages to install)."""
    path = tmp_path / "versions.toml"
    path.write_text(
        "schema = 1\n"
        + "".join(
            f'\n[variants.{name}]\ntitle = "{name}"\nimage = "docker.io/hookbuild/{name}"\n'
            for name in ("istio", "cilium", "envoy", "istio-perf")
        )
    )
    return path


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_plan_of_the_sample_is_complete_and_changes_nothing(tmp_path: Path) -> None:
    settings = config.load(ROOT, env={"HOOKBUILD_DIST": str(tmp_path), **signing_env()})
    before = digest_of(ROOT / "versions.toml")
    release_plan = plan(
        Request(variant=variants.get("istio"), version=Version(12, 1), envoy=None, proxy=None, sample=True),
        settings,
    )
    described = "\n".join(steps(release_plan))
    assert "make build_envoy BUILD_WITH_CONTAINER=1" in described
    assert (
        "BAZEL_CONFIG_REL='$(BAZEL_CONFIG) --config=release-symbol'" in described
    )  # the checkout's, swapped
    assert "build_envoy -> //:envoy" in described and "keeps symbols" in described
    assert f"{REGISTRY}/hookbuild/istio-proxy:12.1" in described
    assert 'http_archive(name = "envoy") -> local_repository(path = "/envoy")' in described
    assert release_plan.versions_file == tmp_path / "sample" / "versions.toml"
    assert digest_of(ROOT / "versions.toml") == before
    override = plan(
        Request(
            variant=variants.get("istio"),
            version=Version(12, 1),
            envoy=None,
            proxy=None,
            sample=True,
            envoy_mode=EnvoyMode.OVERRIDE,
        ),
        settings,
    )
    assert override.edit is None
    assert "--override_repository=envoy=/envoy" in override.build.command.env["BAZEL_BUILD_ARGS"]


def test_dry_run_prints_the_plan(tmp_path: Path) -> None:
    env = {"HOOKBUILD_DIST": str(tmp_path)}
    ran = run_process("release", "--variant", "istio", "--sample", "--dry-run", env=env)
    assert ran.returncode == 0, ran.stderr
    assert "dry run, nothing changed" in ran.stdout
    assert "12. sign: SLSA v1 provenance" in ran.stdout and "13. record:" in ran.stdout
    assert "9. features: check hookpoints (the binary has a hookpoint)" in ran.stdout  # before the push
    assert not (tmp_path / "sample" / "istio").exists()
    planned = json.loads(run_invoke("release", "--sample", "--dry-run", "--json", env=env).stdout)["steps"]
    names = [step.split(":", 1)[0] for step in planned]
    assert names == [
        "sources", "base image", "workspace", "build", "locate", "hookpoints", "scripts", "image", "features",
        "push", "sbom", "sign", "record",
    ]  # fmt: skip


def test_sample_release_end_to_end_then_retry(tmp_path: Path, docker_client: docker.DockerClient) -> None:
    env = {"HOOKBUILD_DIST": str(tmp_path)}
    ran = run_process("release", "--variant", "istio", "--sample", "--version", "12.1", "--json", env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads(ran.stdout)
    assert result["image"] == f"{REGISTRY}/{NAMESPACE}/istio-proxy:12.1" and not result["reused"]
    assert "│" in ran.stderr  # the build log streamed live
    assert (tmp_path / "sample" / "istio" / "12.1" / "build.log").read_text().count("\n") > 3
    # What ran is what the plan said: the dry run and the run come from the same stages.
    planned = run_invoke("release", "--sample", "--version", "12.1", "--dry-run", "--json", env=env).stdout
    assert set(result["durations"]) == {step.split(":", 1)[0] for step in json.loads(planned)["steps"]}

    # The registry holds the pushed digest, and the image's Envoy is the traced binary.
    registry_data = docker_client.images.get_registry_data(result["image"], auth_config=registry_auth())
    assert registry_data.id == result["digest"]
    docker_client.images.remove(result["image"], noprune=True)
    docker_client.images.pull(f"{REGISTRY}/{NAMESPACE}/istio-proxy", tag="12.1", auth_config=registry_auth())
    envoy = engine.copy_file(
        docker_client, result["pinned"], "/usr/local/bin/envoy", tmp_path / "envoy-in-image"
    )
    info = symbols.read_binary(envoy)
    assert not info.stripped
    names = {h.demangled.split("(")[0] for h in info.hookpoints}
    assert {"Envoy::Http::hookpointDecodeHeaders", "Envoy::Router::hookpointRouterDecodeHeaders"} <= names
    assert info.sha256 == result["binary_sha256"]
    dist = tmp_path / "sample" / "istio" / "12.1"
    assert {p.name for p in dist.iterdir()} >= {
        "envoy",
        "build.log",
        "trace.bt",
        "trace_bcc.py",
        "hookpoints.json",
        "trace_all.sh",
    }
    scripts = engine.copy_file(
        docker_client, result["pinned"], "/usr/local/share/hookbuild/trace.bt", tmp_path / "t.bt"
    )
    assert scripts.read_text() == (dist / "trace.bt").read_text()
    # What the image carries is of its binary only, so the same binary released again reuses that layer.
    for name in ("trace.bt", "trace_bcc.py", "hookpoints.json"):
        text = (dist / name).read_text()
        assert str(tmp_path) not in text and "istio@12.1" not in text, name
    assert "istio@12.1" in (dist / "trace_all.sh").read_text()  # the operator's script, in dist/ only
    with pytest.raises(ImageError, match=r"has no /usr/local/share/hookbuild/trace_all\.sh"):
        engine.copy_file(
            docker_client, result["pinned"], "/usr/local/share/hookbuild/trace_all.sh", tmp_path / "x"
        )

    # Recorded in the scratch record, never in the real one.
    recorded = tomllib.loads((tmp_path / "sample" / "versions.toml").read_text())
    entry = next(e for e in recorded["istio"] if e["version"] == "12.1")
    assert entry["release"]["digest"] == result["digest"]
    assert {h["mangled"] for h in entry["release"]["hookpoints"]} == {h.name for h in info.hookpoints}
    assert "12.1" not in [e["version"] for e in tomllib.loads((ROOT / "versions.toml").read_text())["istio"]]

    # Features are checked facts: the sample image has no perf, so 12.1 does not claim it (12.0 did, by hand).
    assert {"hookpoints", "router-hookpoint"} <= set(entry["release"]["checked"])
    assert "perf" not in entry["features"] and "perf" not in entry["release"]["checked"]
    assert "absolute-time" in entry["features"]  # nothing can check it: carried, shown as kept by hand
    sample_record = str(tmp_path / "sample" / "versions.toml")
    perf = json.loads(
        run_invoke("versions", "--supports", "perf", "--json", "--versions-file", sample_record).stdout
    )
    assert [item["ref"] for item in perf] == ["istio@12.0"] and perf[0]["claim"] == "by hand"
    hookpoints = run_invoke(
        "versions", "--supports", "hookpoints", "--json", "--versions-file", sample_record
    )
    first = json.loads(hookpoints.stdout)[0]
    assert first["ref"] == "istio@12.1" and first["claim"] == "verified"  # verified claims first
    assert [h["status"] for h in first["history"]] == ["working"]

    # A CI retry with the same inputs reports the record and does nothing.
    again = run_process("release", "--variant", "istio", "--sample", "--version", "12.1", "--json", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    retried = json.loads(again.stdout)
    assert retried["reused"] and retried["digest"] == result["digest"]
    assert "build" not in retried["durations"] and "push" not in retried["durations"]


def test_override_mode_edits_no_file(tmp_path: Path, docker_client: docker.DockerClient) -> None:
    envoy, proxy = sample_repo(tmp_path, "envoy"), sample_repo(tmp_path, "proxy")
    workspace = digest_of(proxy / "WORKSPACE")
    versions = empty_record(tmp_path)
    ran = release_checkouts(tmp_path, envoy, proxy, versions, "--envoy-mode", "override", "--json")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert digest_of(proxy / "WORKSPACE") == workspace
    assert (
        "--override_repository=envoy=/envoy"
        in (tmp_path / "dist" / "istio" / "13.0" / "build.log").read_text()
    )
    assert json.loads(ran.stdout)["hookpoints"] >= 4


def test_failed_build_restores_workspace_and_records_nothing(tmp_path: Path) -> None:
    envoy, proxy = sample_repo(tmp_path, "envoy"), sample_repo(tmp_path, "proxy")
    main = next((envoy / "source").rglob("main.cc"))
    main.write_text(main.read_text() + "\nthis is not C++;\n")
    repo = git.Repo(envoy)
    repo.git.commit(a=True, m="break the build")
    repo.close()
    workspace = digest_of(proxy / "WORKSPACE")
    versions = tmp_path / "versions.toml"
    shutil.copyfile(ROOT / "versions.toml", versions)
    record_before = digest_of(versions)
    ran = release_checkouts(tmp_path, envoy, proxy, versions, "--json")
    assert ran.returncode == ExitCode.BUILD
    failed = json.loads(ran.stdout)  # --json: the failure as JSON too
    assert set(failed) == {"error", "hint", "exit"} and failed["exit"] == ExitCode.BUILD
    error_lines = [line for line in ran.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "the build failed" in error_lines[0] and "build.log" in error_lines[0]
    assert "Traceback" not in ran.stderr
    assert digest_of(proxy / "WORKSPACE") == workspace
    assert not git.Repo(proxy).is_dirty(untracked_files=True)
    assert digest_of(versions) == record_before


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"HOOKBUILD_REGISTRY_USER": "hookbuild", "HOOKBUILD_REGISTRY_PASSWORD": "wrong-password-123"},
            "unauthorized",
        ),
        (
            {"HOOKBUILD_REGISTRY": "127.0.0.1:5999"},
            f"push of 127.0.0.1:5999/{NAMESPACE}/istio-proxy:14.3 failed",
        ),
    ],
    ids=["wrong-password", "registry-down"],
)
def test_failed_push_records_nothing(
    tmp_path: Path, docker_client: docker.DockerClient, env: dict[str, str], expected: str
) -> None:
    ran = run_process(
        "release", "--sample", "--version", "14.3", "--json", env={"HOOKBUILD_DIST": str(tmp_path), **env}
    )
    assert ran.returncode == ExitCode.IMAGE, ran.stderr[-2000:]
    assert expected in ran.stderr and "Traceback" not in ran.stderr
    failed = json.loads(ran.stdout)  # --json: the failure as JSON too
    assert (
        set(failed) == {"error", "hint", "exit"}
        and failed["exit"] == ExitCode.IMAGE
        and expected in failed["error"]
    )
    assert "wrong-password-123" not in ran.stderr + ran.stdout
    recorded = tomllib.loads((tmp_path / "sample" / "versions.toml").read_text())
    assert "14.3" not in [e["version"] for e in recorded["istio"]]
    registry = env.get("HOOKBUILD_REGISTRY", REGISTRY)
    tags = [tag for image in docker_client.images.list() for tag in image.tags]
    assert f"{registry}/{NAMESPACE}/istio-proxy:14.3" not in tags  # no tag left behind


def test_dirty_sources_are_refused(tmp_path: Path) -> None:
    envoy, proxy = sample_repo(tmp_path, "envoy"), sample_repo(tmp_path, "proxy")
    (envoy / "scratch.txt").write_text("uncommitted")
    versions = tmp_path / "versions.toml"
    shutil.copyfile(ROOT / "versions.toml", versions)
    ran = release_checkouts(tmp_path, envoy, proxy, versions)
    assert ran.returncode == 1
    assert "uncommitted changes in envoy" in ran.stderr and "--allow-dirty" in ran.stderr


def test_a_build_stopped_between_create_and_start_leaves_no_container(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """What an interrupted `docker run --rm` leaves (created, never started) is removed when it mounts the
    build's checkouts and was made during the build; anything else on the engine is left alone."""
    import time

    checkout, other = tmp_path / "proxy", tmp_path / "elsewhere"
    (checkout / "src").mkdir(parents=True)
    other.mkdir()

    def created(source: Path) -> str:
        volume = {str(source): {"bind": "/work", "mode": "rw"}}
        return str(docker_client.containers.create("hookbuild/busybox:1", ["true"], volumes=volume).id)

    before = created(checkout)
    time.sleep(1.1)  # the engine counts creation in whole seconds
    since = time.time()
    ours, inside, theirs = created(checkout), created(checkout / "src"), created(other)
    try:
        engine.remove_unstarted(docker_client, {str(checkout.resolve())}, since=since)
        left = {c.id for c in docker_client.containers.list(all=True)}
        assert ours not in left and inside not in left
        assert before in left and theirs in left
    finally:
        for container in (before, ours, inside, theirs):
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.api.remove_container(container, force=True)


def test_the_base_image_is_found_through_the_cli_as_the_sdk_sees_it(
    docker_client: docker.DockerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docker CLI answers for the engine the SDK talks to; without the CLI the SDK answers the same."""
    reference = "hookbuild-sample/proxyv2:sample"
    image = docker_client.images.get(reference)
    expected = engine.LocalImage(id=image.id, repo_digests=tuple(image.attrs.get("RepoDigests") or ()))
    asked: list[str] = []

    def client() -> docker.DockerClient:
        asked.append("sdk")
        return docker_client

    def ensure() -> engine.LocalImage:
        return engine.ensure(reference, client=client, auth=lambda: None, hint="make it")

    assert ensure() == expected and asked == []  # the CLI knew
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker CLI
    assert ensure() == expected and asked == ["sdk"]


def test_a_missing_base_image_is_pulled_and_a_failed_pull_says_what_to_do(
    docker_client: docker.DockerClient,
) -> None:
    reference = f"127.0.0.1:5000/{NAMESPACE}/no-such-base:1"
    credentials: list[str] = []

    def auth() -> dict[str, str]:
        credentials.append("looked up")
        return registry_auth()

    with pytest.raises(ImageError) as failed:
        engine.ensure(reference, client=lambda: docker_client, auth=auth, hint="build it first")
    assert f"image {reference} is neither on the Docker engine nor pullable" in failed.value.message
    assert failed.value.hint == "build it first" and credentials == ["looked up"]  # only for the pull


def test_a_base_image_from_another_registry_is_pulled_without_the_environments_password(
    docker_client: docker.DockerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HOOKBUILD_REGISTRY_PASSWORD is for where the release goes: a base image elsewhere (upstream's registry,
    here the second local one) is pulled with the Docker config's login for it, never with that password."""
    base = f"127.0.0.1:5001/{NAMESPACE}/base-{tmp_path.name[-8:].lower()}:1"
    docker_client.images.get("hookbuild/busybox:1").tag(base)
    for line in docker_client.api.push(base, auth_config=registry_auth(), stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(base)
    monkeypatch.setenv("HOOKBUILD_REGISTRY_PASSWORD", "not-the-password-of-5001")
    settings = config.load(
        ROOT, env={"HOOKBUILD_DIST": str(tmp_path), "HOOKBUILD_REGISTRY_USER": "hookbuild"}
    )
    request = Request(
        variant=variants.get("istio"),
        version=Version(12, 1),
        envoy=None,
        proxy=None,
        sample=True,
        base_image=base,
        no_sign=True,
    )
    release_plan = plan(request, settings)
    assert release_plan.image.registry == REGISTRY != "127.0.0.1:5001"
    with contextlib.ExitStack() as stack:
        run = Run(plan=release_plan, now=lambda: datetime.now(UTC), stack=stack, client=docker_client)
        try:
            _base_image(run)
            assert run.base is not None and run.base.id == docker_client.images.get(base).id
        finally:
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(base)


def test_scratch_containers_of_killed_runs_are_swept_by_the_next_one(
    docker_client: docker.DockerClient,
) -> None:
    """A SIGKILL while a file is read out of an image leaves its scratch container: the next scratch removes
    it, and only it (a live process's stays)."""
    import socket
    import subprocess

    ended = subprocess.Popen(["true"])
    ended.wait()  # reaped: its PID names no process now
    dead = f"{socket.gethostname()}:{ended.pid}"

    def made(owner: str) -> str:
        return str(
            docker_client.api.create_container(
                "hookbuild/busybox:1", entrypoint=["/nonexistent"], labels={engine.SCRATCH_LABEL: owner}
            )["Id"]
        )

    killed, live, elsewhere = made(dead), made(f"{socket.gethostname()}:1"), made(f"other-host:{2**22 + 7}")
    try:
        with engine.scratch(docker_client, "hookbuild/busybox:1") as mine:
            left = {c.id for c in docker_client.containers.list(all=True)}
            assert killed not in left and {live, elsewhere, mine} <= left
        assert mine not in {c.id for c in docker_client.containers.list(all=True)}
    finally:
        for container in (killed, live, elsewhere):
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.api.remove_container(container, force=True)
