"""The release pipeline: plan (printable for --dry-run), then execute, then record.

    sources -> WORKSPACE -> build -> locate -> hookpoints -> scripts -> image -> push -> record

A variant that builds on a recorded release (istio-perf) takes its binary from that release's image instead
of building. Each stage lives in its own module; this one orders them and decides what a release is. Nothing
is recorded unless every stage succeeded; a retry with the same inputs reports the existing record at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from hookbuild import record
from hookbuild.artifacts import release_dir
from hookbuild.buildsys import BazelOptions, BuildInputs, BuildSpec, remote_headers
from hookbuild.config import Settings
from hookbuild.errors import HookbuildError, RecordError, UsageError
from hookbuild.images import ImageRef, validate_registry
from hookbuild.variants import Variant
from hookbuild.version import Version
from hookbuild.workspace import Edit

if TYPE_CHECKING:
    import docker

    from hookbuild.symbols import BinaryInfo

log = logging.getLogger("hookbuild")


class EnvoyMode(StrEnum):
    REWRITE = "rewrite"  # the seed's WORKSPACE edit
    OVERRIDE = "override"  # istio/proxy's documented --override_repository, edits no file


@dataclass(frozen=True, kw_only=True)
class Request:
    """What the user asked for, before anything is looked at."""

    variant: Variant
    version: Version | None
    envoy: Path | None = None
    proxy: Path | None = None
    sample: bool = False
    envoy_mode: EnvoyMode = EnvoyMode.REWRITE
    base_image: str | None = None
    based_on: str | None = None  # VARIANT@X.Y, for variants that build on a recorded release
    packages: tuple[str, ...] | None = None  # extra image packages (default: the record's)
    allow_dirty: bool = False
    force: bool = False
    stripped: bool = False  # ship the stripped release build; uprobes use a debug build's addresses


@dataclass(frozen=True, kw_only=True)
class Origin:
    """The sources a binary comes from: checkout commits, or those a recorded release was built from."""

    commits: dict[str, str]  # role ("envoy", "proxy") -> commit
    dirty: bool


@dataclass(frozen=True, kw_only=True)
class Plan:
    variant: Variant
    version: Version
    envoy: Path | None
    proxy: Path | None
    envoy_mode: EnvoyMode
    edit: Edit | None
    build: BuildSpec | None  # None: the binary comes from the based_on release's image
    debug_build: BuildSpec | None  # same sources with symbols, for the addresses of a stripped build
    based_on: record.Entry | None
    packages: tuple[str, ...]
    dist: Path
    image: ImageRef
    base_image: str
    dockerfile: Path
    versions_file: Path
    sample: bool
    allow_dirty: bool
    force: bool
    registry_user: str | None = None

    @property
    def binary(self) -> Path:
        return self.dist / "envoy"

    @property
    def debug_binary(self) -> Path | None:
        return self.dist / "envoy.debug" if self.debug_build else None

    @property
    def build_log(self) -> Path:
        return self.dist / "build.log"

    def steps(self) -> list[str]:
        """Every step with its command, path or tag, for --dry-run."""
        steps = []
        if self.build is None:
            assert self.based_on is not None
            steps += [
                f"sources: those of {self.based_on.ref} (the release this one builds on)",
                f"locate: copy {self.variant.binary_in_image} out of {self.base_image} -> {self.binary}",
            ]
        else:
            sources = f"envoy {self.envoy}" + (f", proxy {self.proxy}" if self.proxy else "")
            steps.append(
                f"sources: check {sources} (commit, dirty{' allowed' if self.allow_dirty else ' refused'})"
            )
            if self.build.envoy_copy:
                patches = ", ".join(p.name for p in self.build.envoy_patches) or "no patches"
                steps.append(f"patch: copy envoy to {self.build.envoy_copy} and apply {patches}")
            if self.proxy is not None:
                steps.append(
                    f"workspace: {self.edit.describes} (restored after the build)"
                    if self.edit
                    else f"workspace: no file edited, --override_repository=envoy={self.build.envoy_path}"
                )
            if self.debug_build and self.debug_binary:
                steps += [
                    f"debug build: (cd {self.debug_build.command.cwd} && {self.debug_build.command.display()})",
                    f"locate: {self.debug_build.describe_output()} -> {self.debug_binary}",
                ]
            steps += [
                f"build: (cd {self.build.command.cwd} && {self.build.command.display()}), log {self.build_log}",
                f"locate: {self.build.describe_output()} -> {self.binary}",
            ]
        packages = f" with packages {' '.join(self.packages)}" if self.packages else ""
        steps += [
            f"hookpoints: the stripped binary's addresses from {self.debug_binary} (same code, checked)"
            if self.debug_build
            else "hookpoints: read the binary's hookpoint symbols; none, or a stripped binary, fails the release",
            f"scripts: uprobe scripts, hookpoints.json and trace_all.sh into {self.dist}",
            f"image: build {self.dockerfile.name} FROM {self.base_image}{packages} as {self.image}",
        ]
        if self.variant.check_command:
            steps.append(f"check: run `{' '.join(self.variant.check_command)}` in the image")
        return [
            *steps,
            f"push: {self.image} (credentials from HOOKBUILD_REGISTRY_* or the Docker config), "
            "then read the tag's digest back from the registry",
            f"record: {self.variant.name}@{self.version} with its digest into {self.versions_file}",
        ]


@dataclass(frozen=True, kw_only=True)
class Result:
    variant: str
    version: str
    image: str
    digest: str
    binary: Path
    binary_sha256: str
    binary_size: int
    hookpoints: int
    reused: bool  # a retry found the same release already recorded
    durations: dict[str, float] = field(default_factory=dict)

    @property
    def pinned(self) -> str:
        return f"{self.image.rsplit(':', 1)[0]}@{self.digest}"


def sample_versions_file(settings: Settings) -> Path:
    """A scratch copy of the record for sample releases: the real record is never touched by them."""
    scratch = settings.dist / "sample" / "versions.toml"
    if not scratch.exists():
        scratch.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(settings.versions_file, scratch)
    return scratch


def plan(request: Request, settings: Settings) -> Plan:
    """Turn a request and settings into a complete plan. Reads files; writes only scratch sample copies."""
    variant = request.variant
    _check_request(request, settings)
    versions_file = sample_versions_file(settings) if request.sample else settings.versions_file
    the_record = record.load(versions_file)
    version = request.version or _next_version(settings.versions_file, variant.name, request.sample)
    envoy = proxy = build = debug_build = edit = based_on = None
    if variant.builds_on:
        based_on = _based_on(the_record, variant, request.based_on)
        assert based_on.release is not None
        base_image = request.base_image or based_on.release.pinned
    else:
        envoy, proxy = _checkouts(request, settings)
        base_image = request.base_image or (
            variant.sample_base_image if request.sample else variant.base_image
        )
        build, debug_build = _build_specs(request, settings, envoy, proxy)
        if proxy is not None:
            from hookbuild import workspace

            workspace.restore_stale(proxy)
            if request.envoy_mode is EnvoyMode.REWRITE:
                edit = workspace.plan_edit(proxy, envoy_path=build.envoy_path)
    try:  # checked here, so --dry-run refuses it too
        ImageRef.parse_any(base_image)
    except UsageError:
        raise UsageError(
            f"invalid base image {base_image!r}",
            hint="write [REGISTRY/]NAME[:TAG] or NAME@sha256:DIGEST in lowercase, "
            "e.g. docker.io/istio/proxyv2:1.28.0",
        ) from None
    return Plan(
        variant=variant,
        version=version,
        envoy=envoy,
        proxy=proxy,
        envoy_mode=request.envoy_mode,
        edit=edit,
        build=build,
        debug_build=debug_build,
        based_on=based_on,
        packages=_packages(request, the_record, variant, version, based_on),
        dist=release_dir(settings, versions_file, variant.name, version),
        image=ImageRef.parse(f"{settings.registry}/{settings.namespace}/{variant.image_name}:{version}"),
        base_image=base_image,
        dockerfile=settings.root / "dockerfiles" / variant.dockerfile,
        versions_file=versions_file,
        sample=request.sample,
        allow_dirty=request.allow_dirty,
        force=request.force,
        registry_user=settings.registry_user,
    )


def _check_request(request: Request, settings: Settings) -> None:
    variant = request.variant
    validate_registry(settings.registry)
    if request.stripped and not variant.can_strip:
        raise UsageError(f"--stripped is not offered by variant {variant.name}", hint="drop --stripped")
    if request.sample and (request.envoy or request.proxy):
        raise UsageError("--sample builds the bundled sources", hint="drop --envoy/--proxy, or drop --sample")
    if variant.builds_on and (request.envoy or request.proxy):
        raise UsageError(
            f"{variant.name} builds on a recorded release, not on checkouts",
            hint="drop --envoy/--proxy; choose the release with --based-on",
        )
    if request.based_on and not variant.builds_on:
        raise UsageError(
            f"--based-on is for variants that build on a release, not {variant.name}", hint="drop --based-on"
        )
    remote_headers()  # a malformed header fails here, before anything runs (and it is masked from now)


def _checkouts(request: Request, settings: Settings) -> tuple[Path, Path | None]:
    """The Envoy and proxy checkouts: given, configured, or fresh copies of the bundled samples."""
    variant = request.variant
    if request.sample:
        from hookbuild.sources import materialize_sample

        src, examples = settings.dist / "sample" / "src" / variant.name, settings.root / "examples"
        envoy = materialize_sample(examples / variant.samples["envoy"], src / "envoy")
        proxy = (
            materialize_sample(examples / variant.samples["proxy"], src / "proxy")
            if variant.needs_proxy
            else None
        )
        return envoy, proxy
    envoy = _required_path(request.envoy or settings.envoy, "envoy")
    proxy = _required_path(request.proxy or settings.proxy, "proxy") if variant.needs_proxy else None
    return envoy, proxy


def _build_specs(
    request: Request, settings: Settings, envoy: Path, proxy: Path | None
) -> tuple[BuildSpec, BuildSpec | None]:
    """The build, and for --stripped the debug build of the same sources whose addresses the scripts use."""
    variant = request.variant
    assert variant.build_system is not None
    module = import_module(f"hookbuild.buildsys.{variant.build_system}")
    bazel = BazelOptions(
        remote_cache=settings.bazel_remote_cache,
        remote_executor=settings.bazel_remote_executor,
        disk_cache=str(settings.bazel_disk_cache) if settings.bazel_disk_cache else None,
        configs=settings.bazel_configs,
    )

    def spec(symbols: bool) -> BuildSpec:
        built = module.spec(
            BuildInputs(
                envoy=envoy,
                proxy=proxy,
                target=variant.target,
                symbols_config=variant.symbols_config,
                override=request.envoy_mode is EnvoyMode.OVERRIDE,
                bazel=bazel,
                workdir=_workdir(variant, envoy),
                symbols=symbols,
            )
        )
        assert isinstance(built, BuildSpec)
        return built

    return spec(symbols=not request.stripped), spec(symbols=True) if request.stripped else None


def _workdir(variant: Variant, envoy: Path) -> Path:
    """Build state kept between releases (Envoy's build dir, cilium's patched copy), per checkout.

    Outside the repo and dist/: Bazel's own logs there record every option, --remote_header too.
    """
    from hookbuild.config import cache_home

    return cache_home() / "build" / variant.name / hashlib.sha256(str(envoy).encode()).hexdigest()[:16]


def _required_path(path: Path | None, role: str) -> Path:
    if path is None:
        raise UsageError(
            f"no {role} checkout given",
            hint=f"pass --{role} PATH, set {role} in [tool.hookbuild], or HOOKBUILD_{role.upper()}; or use --sample",
        )
    return path.expanduser().resolve()


def _next_version(versions_file: Path, variant: str, sample: bool) -> Version:
    """A sample release defaults to the real record's next minor, so running the demo again is a retry."""
    if not sample:
        raise UsageError("no --version given", hint="pass --version MAJOR.MINOR (see `invoke bump`)")
    return record.load(versions_file).next_version(variant, "minor")


def _based_on(the_record: record.Record, variant: Variant, ref: str | None) -> record.Entry:
    """The release to build on: the one named, else the newest working release of the base variant."""
    assert variant.builds_on is not None
    if ref:
        entry = the_record.get(ref)
        if entry.variant != variant.builds_on:
            raise UsageError(
                f"{variant.name} builds on {variant.builds_on} releases, not on {ref}",
                hint=f"pass --based-on {variant.builds_on}@X.Y",
            )
    else:
        released = [e for e in the_record.of(variant.builds_on, working_only=True) if e.release is not None]
        if not released:
            raise UsageError(
                f"no {variant.builds_on} release made by hookbuild to build {variant.name} on",
                hint=f"release {variant.builds_on} first (`invoke release --variant {variant.builds_on}`)",
            )
        entry = released[0]
    if entry.release is None:
        raise UsageError(
            f"{entry.ref} predates hookbuild: no pushed image digest or source commits are recorded",
            hint=f"build on a release made by `invoke release --variant {variant.builds_on}`",
        )
    return entry


def _packages(
    request: Request,
    the_record: record.Record,
    variant: Variant,
    version: Version,
    based_on: record.Entry | None,
) -> tuple[str, ...]:
    """Extra image packages: asked for, else the record's for this version (bumped) or the latest working."""
    if request.packages is not None:
        return request.packages
    if request.sample:
        return variant.sample_packages
    entry = the_record.find(variant.name, version) or the_record.latest(variant.name)
    if entry is not None and entry.packages:
        return entry.packages
    return based_on.packages if based_on is not None else ()


def origin_of(plan: Plan) -> Origin:
    if plan.based_on is not None:
        release = plan.based_on.release
        assert release is not None
        commits = {"envoy": release.envoy_commit}
        if release.proxy_commit:
            commits["proxy"] = release.proxy_commit
        return Origin(commits=commits, dirty=release.dirty)
    from hookbuild import sources

    assert plan.envoy is not None
    states = [sources.inspect(plan.envoy, role="envoy")]
    if plan.proxy is not None:
        states.append(sources.inspect(plan.proxy, role="proxy"))
    sources.require_clean(states, allow_dirty=plan.allow_dirty)
    return Origin(commits={s.role: s.commit for s in states}, dirty=any(s.dirty for s in states))


def inputs_key(plan: Plan, origin: Origin) -> str | None:
    """What makes two releases the same. A dirty tree is never the same as anything."""
    if origin.dirty:
        return None
    patches = plan.build.envoy_patches if plan.build else ()
    data = {
        "variant": plan.variant.name,
        "sources": origin.commits,
        "envoy_mode": plan.envoy_mode.value,
        "build": plan.build.command.display() if plan.build else None,
        "debug_build": plan.debug_build.command.display() if plan.debug_build else None,
        "patches": [hashlib.sha256(p.read_bytes()).hexdigest() for p in patches if p.is_file()],
        "base_image": plan.base_image,
        "packages": list(plan.packages),
        "dockerfile": hashlib.sha256(plan.dockerfile.read_bytes()).hexdigest(),
        "image": str(plan.image),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _existing(plan: Plan, key: str | None) -> record.Entry | None:
    """The recorded release this one repeats, if any; refuse a different release under the same version.

    A version recorded without a release (made by `invoke bump`) is what the release fills in.
    """
    entry = record.load(plan.versions_file).find(plan.variant.name, plan.version)
    if entry is None or entry.release is None:
        return None
    if key is not None and entry.release.inputs_key == key:
        return entry
    if plan.force:
        log.warning(
            "%s@%s is recorded with other inputs; --force replaces it", plan.variant.name, plan.version
        )
        return None
    raise RecordError(
        f"{plan.variant.name}@{plan.version} is already recorded in {plan.versions_file} with other inputs",
        hint="release a new version (`invoke bump`), or pass --force to replace the record",
    )


@contextmanager
def _stage(name: str, durations: dict[str, float]) -> Iterator[None]:
    started = time.monotonic()
    log.info("▶ %s", name)
    try:
        yield
    finally:
        durations[name] = round(durations.get(name, 0.0) + time.monotonic() - started, 2)


def execute(
    plan: Plan,
    *,
    client: docker.DockerClient | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Result:
    """Run the plan. One release of a variant@version at a time: a second one started meanwhile waits, then
    finds the first one's record (same inputs: reported, nothing pushed) instead of moving the pushed tag."""
    from filelock import FileLock, Timeout

    plan.dist.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(plan.dist / ".release.lock"))  # an flock: a killed run never blocks the next
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another release of %s@%s to finish", plan.variant.name, plan.version)
        lock.acquire()
    try:
        return _execute(plan, client=client, now=now)
    finally:
        lock.release()


def _execute(plan: Plan, *, client: docker.DockerClient | None, now: Callable[[], datetime]) -> Result:
    from hookbuild import images, probes, record_edit, symbols, trace_all

    durations: dict[str, float] = {}
    with _stage("sources", durations):
        origin = origin_of(plan)
        key = inputs_key(plan, origin)
        existing = _existing(plan, key)
    if existing is not None and existing.release is not None:
        log.info(
            "%s@%s is already released from these inputs: nothing to do", plan.variant.name, plan.version
        )
        return _result_from_record(plan, existing.release, durations)

    client = client or images.connect()
    auth = images.credentials(plan.image.registry, user=plan.registry_user)
    base_auth = images.credentials(ImageRef.parse_any(plan.base_image).registry, user=plan.registry_user)
    images.ensure(client, plan.base_image, auth=base_auth, hint=_base_hint(plan))
    plan.dist.mkdir(parents=True, exist_ok=True)
    _produce_binary(plan, client, durations)
    with _stage("hookpoints", durations):
        info = symbols.read_binary(plan.binary, debug_binary=plan.debug_binary)
        _require_traceable(plan, info)
    with _stage("scripts", durations):
        release_ref = f"{plan.variant.name}@{plan.version}"
        scripts = (
            *probes.write_scripts(info, plan.dist, binary=plan.variant.binary_in_image),
            trace_all.write(plan.dist, info, release=release_ref, binary=plan.variant.binary_in_image),
        )
    released_at = now().replace(microsecond=0)
    pushed = False
    with _stage("image", durations), _context(plan, scripts) as context:
        image_id = images.build(
            client,
            context=context,
            dockerfile=plan.dockerfile.name,
            buildargs={"BASE_IMAGE": plan.base_image, "PACKAGES": " ".join(plan.packages)},
            labels=_labels(plan, origin, info, released_at),
            on_line=lambda line: log.info("  %s", line),
        )
    if plan.variant.check_command:
        with _stage("check", durations):
            images.check(client, image_id, plan.variant.check_command)
    with _stage("push", durations), images.tagged(client, image_id, plan.image, keep=lambda: pushed):
        digest = images.push(client, plan.image, auth=auth, on_progress=_ProgressLog().line)
        images.require_pushed(client, plan.image, digest, auth=auth)  # converged? only then record
        with _stage("record", durations):
            provenance = record.Provenance(
                image=str(plan.image),
                digest=digest,
                released_at=released_at,
                envoy_commit=origin.commits["envoy"],
                proxy_commit=origin.commits.get("proxy"),
                dirty=origin.dirty,
                binary_sha256=info.sha256,
                build_id=info.build_id,
                hookpoints=tuple(
                    record.Hookpoint(mangled=h.name, demangled=h.demangled) for h in info.hookpoints
                ),
                scripts=tuple(path.name for path in scripts),
                inputs_key=key,
                base_image=plan.base_image,
                dockerfile=plan.dockerfile.name,
            )
            record_edit.add_release(
                plan.versions_file,
                plan.variant.name,
                plan.version,
                provenance,
                replace=plan.force,
                based_on=plan.based_on.ref if plan.based_on else None,
                packages=plan.packages,
            )
        pushed = True
    log.info("released %s@%s: %s@%s", plan.variant.name, plan.version, plan.image.name, digest)
    return Result(
        variant=plan.variant.name,
        version=str(plan.version),
        image=str(plan.image),
        digest=digest,
        binary=plan.binary,
        binary_sha256=info.sha256,
        binary_size=plan.binary.stat().st_size,
        hookpoints=len(info.hookpoints),
        reused=False,
        durations=durations,
    )


def _produce_binary(plan: Plan, client: docker.DockerClient, durations: dict[str, float]) -> None:
    """Build (with the WORKSPACE edit in place), or copy the binary out of the release built on."""
    from hookbuild import buildsys, command, images, outputs, sources, workspace

    if plan.build is None:
        with _stage("locate", durations):
            images.copy_file(client, plan.base_image, plan.variant.binary_in_image, plan.binary)
        return
    if plan.build.envoy_copy:
        assert plan.envoy is not None
        with _stage("patch", durations):
            sources.patched_copy(plan.envoy, plan.build.envoy_patches, plan.build.envoy_copy)
    builds = [(plan.build, plan.binary, plan.build_log)]
    if plan.debug_build and plan.debug_binary:
        builds.insert(0, (plan.debug_build, plan.debug_binary, plan.dist / "build-debug.log"))
    module = import_module(f"hookbuild.buildsys.{plan.variant.build_system}")
    editing = workspace.local_envoy(plan.proxy, plan.edit) if plan.edit and plan.proxy else nullcontext()
    with editing, buildsys.secret_bazelrc(buildsys.remote_headers()) as rc:
        for spec, binary, build_log in builds:
            build = module.with_bazelrc(spec.command, rc) if rc else spec.command
            with _stage("build" if spec is plan.build else "debug build", durations):
                command.run(build, log_file=build_log, on_line=_build_line, what="the build")
            with _stage("locate", durations):
                built = outputs.resolve_link(spec.output_link, client=client) / spec.output_name
                if spec.archive_member:
                    outputs.extract(built, spec.archive_member, binary)
                else:
                    outputs.collect(built, binary)


def _base_hint(plan: Plan) -> str:
    if plan.sample:
        return "run scripts/setup.sh, which makes the sample base images"
    return f"pull or build {plan.base_image} on the engine, or pass --base-image"


def _require_traceable(plan: Plan, info: BinaryInfo) -> None:
    if not info.hookpoints:
        reason = "is stripped" if info.stripped and info.debug_binary is None else "has no hookpoint symbols"
        raise HookbuildError(
            f"{plan.binary} {reason}: an image built from it could not be traced",
            hint="build with symbols"
            + (f" (--config={plan.variant.symbols_config})" if plan.variant.symbols_config else "")
            + " and add hookpoint* functions to Envoy",
        )
    for warning in info.warnings():
        log.warning("%s", warning)


def _labels(plan: Plan, origin: Origin, info: BinaryInfo, released_at: datetime) -> dict[str, str]:
    labels = {
        "org.opencontainers.image.version": str(plan.version),
        "org.opencontainers.image.created": released_at.isoformat(),
        "org.opencontainers.image.revision": origin.commits["envoy"],
        "org.opencontainers.image.base.name": plan.base_image,
        "org.opencontainers.image.title": f"hookbuild {plan.variant.name}",
        "io.hookbuild.variant": plan.variant.name,
        "io.hookbuild.hookpoints": str(len(info.hookpoints)),
        "io.hookbuild.binary.sha256": info.sha256,
        "io.hookbuild.dirty": str(origin.dirty).lower(),
    }
    labels.update({f"io.hookbuild.{role}.commit": commit for role, commit in origin.commits.items()})
    if info.build_id:
        labels["io.hookbuild.binary.build-id"] = info.build_id
    if plan.based_on:
        labels["io.hookbuild.based-on"] = plan.based_on.ref
    return labels


@contextmanager
def _context(plan: Plan, scripts: tuple[Path, ...]) -> Iterator[Path]:
    """A minimal build context: the Dockerfile, the binary, the scripts, the variant's extra files."""
    for stale in plan.dist.glob("hookbuild-context-*"):  # left by a killed run; we hold the release lock
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="hookbuild-context-", dir=plan.dist) as tmp:
        context = Path(tmp)
        shutil.copyfile(plan.dockerfile, context / plan.dockerfile.name)
        os.link(plan.binary, context / "envoy")
        (context / "tracing").mkdir()
        for script in scripts:
            shutil.copy2(script, context / "tracing" / script.name)
        for name in plan.variant.context_files:
            shutil.copy2(plan.dockerfile.parent / name, context / name)
        yield context


def _result_from_record(plan: Plan, provenance: record.Provenance, durations: dict[str, float]) -> Result:
    return Result(
        variant=plan.variant.name,
        version=str(plan.version),
        image=provenance.image,
        digest=provenance.digest,
        binary=plan.binary,
        binary_sha256=provenance.binary_sha256,
        binary_size=plan.binary.stat().st_size if plan.binary.exists() else 0,
        hookpoints=len(provenance.hookpoints),
        reused=True,
        durations=durations,
    )


def _build_line(line: str) -> None:
    log.info("  │ %s", line)


class _ProgressLog:
    """Push progress: one line per layer state change, not one per byte count."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def line(self, layer: str | None, status: str) -> None:
        if layer is None:
            log.info("  ↑ %s", status)
        elif self._last.get(layer) != status:
            self._last[layer] = status
            log.info("  ↑ %s %s", layer, status)
