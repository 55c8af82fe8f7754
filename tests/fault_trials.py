"""Interrupt a real sample release at random points and check what it leaves behind.

Shared by tests/test_faults.py and benchmarks/bench_faults.py. Everything is real: the `invoke release`
process, Bazel in the build container, the Docker engine, the local registry. A trial starts a sample
release, sends SIGINT (Ctrl-C) or SIGKILL to the invoke process after a random delay within the release's
duration, waits for the engine to settle, inspects the world, then re-runs the same release, which must
succeed, and inspects again.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
INVOKE = Path(sys.executable).parent / "invoke"
REGISTRY = "127.0.0.1:5000"
BUILD_IMAGE = "hookbuild-sample/build-tools-proxy:sample"
BASE_IMAGE = "hookbuild-sample/proxyv2:sample"
PASSWORD_FILE = Path("/etc/hookbuild/registry-password")
SETTLE_SECONDS = 40.0


def registry_auth() -> dict[str, str]:
    if not PASSWORD_FILE.is_file():
        raise RuntimeError(f"{PASSWORD_FILE} is missing; run scripts/setup.sh")
    return {"username": "hookbuild", "password": PASSWORD_FILE.read_text().strip()}


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class SampleRelease:
    """Sample releases into a scratch dist and a registry namespace of their own."""

    dist: Path
    namespace: str
    registry: str = REGISTRY
    base_image: str = BASE_IMAGE
    """A base image of these trials' own (see own_base_image): containers built on it are theirs alone."""

    @property
    def env(self) -> dict[str, str]:
        return {
            "HOOKBUILD_DIST": str(self.dist),
            "HOOKBUILD_NAMESPACE": self.namespace,
            "HOOKBUILD_REGISTRY": self.registry,
        }

    @property
    def record(self) -> Path:
        return self.dist / "sample" / "versions.toml"

    @property
    def proxy(self) -> Path:
        return self.dist / "sample" / "src" / "istio" / "proxy"

    @property
    def envoy(self) -> Path:
        return self.dist / "sample" / "src" / "istio" / "envoy"

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.namespace}/istio-proxy"

    def start(
        self, version: str, *, env: dict[str, str] | None = None, log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        log = log or self.dist / "logs" / f"{version}-{time.monotonic_ns()}"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{log}.out", "wb") as out, open(f"{log}.err", "wb") as err:
            proc = subprocess.Popen(
                [
                    *(str(INVOKE), "release", "--variant", "istio", "--sample", "--version", version),
                    *("--base-image", self.base_image, "--json"),
                ],
                cwd=ROOT,
                env={**os.environ, **self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        proc.log = log  # type: ignore[attr-defined]
        return proc

    def run(self, version: str, *, env: dict[str, str] | None = None, timeout: float = 600) -> Ran:
        proc = self.start(version, env=env)
        proc.wait(timeout=timeout)
        return output_of(proc)


def output_of(proc: subprocess.Popen[bytes]) -> Ran:
    log = proc.log  # type: ignore[attr-defined]
    return Ran(
        proc.returncode,
        Path(f"{log}.out").read_text(errors="replace"),
        Path(f"{log}.err").read_text(errors="replace"),
    )


@dataclass
class World:
    """What a (possibly interrupted) release left behind."""

    record_error: str | None = None
    recorded: dict[str, str] = field(
        default_factory=dict
    )  # version -> digest, of this sample's istio entries
    partial: list[str] = field(
        default_factory=list
    )  # recorded without a release, or with a digest the registry lacks
    workspace_original: bool = True
    workspace_backup: bool = False
    leftover_tags: list[str] = field(default_factory=list)  # local tags of versions that are not recorded
    leftover_containers: list[str] = field(default_factory=list)
    temp_files: list[str] = field(
        default_factory=list
    )  # the record's or the WORKSPACE's write-in-progress files

    @property
    def record_ok(self) -> bool:
        return self.record_error is None and not self.partial


def pristine_workspace() -> bytes:
    return (ROOT / "examples" / "proxy" / "WORKSPACE").read_bytes()


def _created(container: Any) -> float:
    text = str(container.attrs["Created"])
    text = re.sub(r"(\.\d{6})\d*", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def _listed(client: Any, ancestor: str) -> list[Any]:
    """`containers.list`, which inspects each container it lists: one removed in between (a release cleaning
    up after its Ctrl-C) is a NotFound for the whole list, so list again."""
    import docker.errors

    for _ in range(20):
        try:
            return list(client.containers.list(all=True, filters={"ancestor": ancestor}))
        except docker.errors.NotFound:
            time.sleep(0.1)
    return list(client.containers.list(all=True, filters={"ancestor": ancestor}))


def our_containers(client: Any, sample: SampleRelease, since: float) -> list[str]:
    """Containers this sample's releases created since `since` that still exist: build container, docker
    build steps, image checks. (Attributed by creation time and image, or by the mounted sample checkout.)"""
    found = {}
    for ancestor in (BUILD_IMAGE, sample.base_image):
        for container in _listed(client, ancestor):
            try:
                if _created(container) < since - 1:
                    continue
                mounts = " ".join(str(m.get("Source", "")) for m in container.attrs.get("Mounts", []))
            except Exception:  # removed while we looked
                continue
            if ancestor == BUILD_IMAGE and str(sample.dist) not in mounts:
                continue  # another run's build container
            found[container.short_id] = f"{container.short_id} ({ancestor}, {container.status})"
    return sorted(found.values())


def settle(client: Any, sample: SampleRelease, since: float, timeout: float = SETTLE_SECONDS) -> list[str]:
    """Wait until no container of ours remains (a SIGKILLed run's build container finishes on its own)."""
    deadline = time.monotonic() + timeout
    while True:
        left = our_containers(client, sample, since)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def inspect_world(client: Any, sample: SampleRelease, *, since: float, versions: set[str]) -> World:
    """Check the record, the WORKSPACE, local tags and containers. `versions`: those the trials release."""
    import docker.errors

    from hookbuild import record
    from hookbuild.errors import HookbuildError

    world = World()
    try:
        entries = record.load(sample.record).of("istio")
    except HookbuildError as exc:
        world.record_error = exc.line()
        entries = ()
    auth = registry_auth()
    for entry in entries:
        version = str(entry.version)
        if version not in versions:
            continue
        if entry.release is None:
            world.partial.append(f"{version}: recorded without a release")
            continue
        world.recorded[version] = entry.release.digest
        try:
            client.images.get_registry_data(f"{sample.repository}@{entry.release.digest}", auth_config=auth)
        except docker.errors.APIError as exc:
            world.partial.append(f"{version}: {entry.release.digest} is not in the registry ({exc})")
    workspace = sample.proxy / "WORKSPACE"
    world.workspace_original = workspace.read_bytes() == pristine_workspace() and (
        workspace.stat().st_mode & 0o777 == (ROOT / "examples" / "proxy" / "WORKSPACE").stat().st_mode & 0o777
    )
    world.workspace_backup = any((sample.proxy / ".git" / "hookbuild").glob("*.hookbuild-backup"))
    for image in client.images.list(name=sample.repository):
        for tag in image.tags:
            version = tag.rsplit(":", 1)[1]
            if version in versions and version not in world.recorded:
                world.leftover_tags.append(tag)
    world.leftover_containers = our_containers(client, sample, since)
    world.temp_files = sorted(
        str(p)
        for p in [*sample.record.parent.glob(".versions.toml.*.tmp"), *sample.proxy.glob(".WORKSPACE.*")]
    )
    return world


def last_stage(stderr: str) -> str:
    stages = re.findall(r"▶ (\S+(?: build)?)", stderr)
    return stages[-1] if stages else "start"


@dataclass
class Trial:
    number: int
    signal: str
    delay: float
    target: str
    version: str
    killed: Ran
    stage: str
    after_kill: World
    rerun: Ran
    after_rerun: World
    lost: list[str]

    @property
    def killed_rc(self) -> int:
        return self.killed.returncode

    @property
    def survived(self) -> bool:
        """Record parses and holds no partial release, right after the kill."""
        return self.after_kill.record_ok

    @property
    def rerun_ok(self) -> bool:
        return self.rerun.returncode == 0

    @property
    def leftovers(self) -> list[str]:
        """Left after the re-run (a SIGKILLed process cannot clean up; the next run must)."""
        world = self.after_rerun
        return [*world.leftover_tags, *world.leftover_containers, *world.temp_files] + (
            ["WORKSPACE backup"] if world.workspace_backup else []
        )

    @property
    def interrupt_leftovers(self) -> list[str]:
        """Left right after a SIGINT (the process had every chance to clean up)."""
        world = self.after_kill
        return [*world.leftover_tags, *world.leftover_containers, *world.temp_files]

    def row(self) -> str:
        kill_ws = "orig" if self.after_kill.workspace_original else "edited"
        rerun_ws = "orig" if self.after_rerun.workspace_original else "EDITED"
        return (
            f"{self.number:>3} {self.signal:7} {self.target:>11}{self.delay:4.2f}s -> {self.stage:11} "
            f"rc={self.killed_rc:<4} "
            f"record={'ok' if self.survived else 'BROKEN'} ws={kill_ws}->{rerun_ws} "
            f"rerun={'ok' if self.rerun_ok else 'FAILED'} leftovers={len(self.leftovers)}"
        )


LATE_STAGES = ("locate", "hookpoints", "image", "push", "record")


def schedule(rng: random.Random, number: int, duration: float) -> tuple[signal.Signals, str | None, float]:
    """Signal, stage and delay of trial `number`: SIGINT on odd trials, SIGKILL on even ones. Half the trials
    land anywhere within a release's `duration` (mostly in the build, the longest stage); the other half
    shortly after a later stage starts, so image, push and record are hit too."""
    sig = signal.SIGINT if number % 2 else signal.SIGKILL
    if number % 4 in (1, 2):
        return sig, None, rng.uniform(0.1, duration * 0.9)
    return sig, rng.choice(LATE_STAGES), rng.uniform(0.0, 0.4)


def run_trial(
    client: Any,
    sample: SampleRelease,
    *,
    number: int,
    sig: signal.Signals,
    delay: float,
    version: str,
    versions: set[str],
    known: dict[str, str],
    stage: str | None = None,
) -> Trial:
    """One trial; `known` (version -> digest recorded so far) is checked for loss and then updated.

    The signal comes `delay` seconds after the start, or after `stage` began (e.g. "push") when given.
    """
    since = time.time()
    proc = sample.start(version)
    if stage:  # wait for the stage to begin, then `delay` more
        err = Path(f"{proc.log}.err")  # type: ignore[attr-defined]
        while proc.poll() is None and f"▶ {stage}" not in err.read_text(errors="replace"):
            time.sleep(0.02)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(timeout=180)
    killed = output_of(proc)
    settle(client, sample, since)
    after_kill = inspect_world(client, sample, since=since, versions=versions)
    rerun = sample.run(version)
    settle(client, sample, since)
    after_rerun = inspect_world(client, sample, since=since, versions=versions)
    lost = [v for v, digest in known.items() if after_rerun.recorded.get(v) != digest]
    if rerun.returncode == 0 and version not in after_rerun.recorded:
        lost.append(f"{version} (the re-run reported success)")
    known.update(after_rerun.recorded)
    return Trial(
        number=number,
        signal=sig.name,
        delay=delay,
        target=f"{stage}+" if stage else "start+",
        version=version,
        killed=killed,
        stage=last_stage(killed.stderr),
        after_kill=after_kill,
        rerun=rerun,
        after_rerun=after_rerun,
        lost=lost,
    )


def own_base_image(client: Any, namespace: str) -> str:
    """The sample base image plus one label: a distinct image ID, so `docker ps --filter ancestor=` finds
    exactly the containers these trials' releases made (docker build steps), not other runs' ones."""
    import io

    reference = f"hookbuild-faults/proxyv2:{namespace}"
    dockerfile = f"FROM {BASE_IMAGE}\nLABEL io.hookbuild.fault-trials={namespace}\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=reference, rm=True, pull=False)
    return reference


def remove_tags(client: Any, sample: SampleRelease) -> None:
    """Drop this sample's local tags (the registry keeps what was pushed; the namespace is unique)."""
    for image in client.images.list(name=sample.repository):
        for tag in image.tags:
            with contextlib.suppress(Exception):
                client.images.remove(tag, noprune=True)


def remove_base_image(client: Any, sample: SampleRelease) -> None:
    if sample.base_image != BASE_IMAGE:
        with contextlib.suppress(Exception):
            client.images.remove(sample.base_image, noprune=True)
