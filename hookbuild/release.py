"""The release pipeline: plan (pure, printable for --dry-run), then execute, then record.

    sources -> WORKSPACE -> build -> locate -> hookpoints -> scripts -> image -> push -> record

Each stage lives in its own module; this one only orders them and decides what a release is. Nothing is
recorded unless every stage succeeded; a retry with the same inputs reports the existing record at once.
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
from hookbuild.buildsys import BazelOptions, BuildSpec
from hookbuild.config import Settings
from hookbuild.errors import HookbuildError, RecordError, UsageError
from hookbuild.images import ImageRef, validate_registry
from hookbuild.variants import Variant
from hookbuild.version import Version
from hookbuild.workspace import Edit

if TYPE_CHECKING:
    import docker

    from hookbuild.sources import SourceState
    from hookbuild.symbols import BinaryInfo

log = logging.getLogger("hookbuild")

SCRIPTS_IN_IMAGE = "/usr/local/share/hookbuild"


class EnvoyMode(StrEnum):
    REWRITE = "rewrite"  # the seed's WORKSPACE edit
    OVERRIDE = "override"  # istio/proxy's documented --override_repository, edits no file


@dataclass(frozen=True, kw_only=True)
class Request:
    """What the user asked for, before anything is looked at."""

    variant: Variant
    version: Version | None
    envoy: Path | None
    proxy: Path | None
    sample: bool = False
    envoy_mode: EnvoyMode = EnvoyMode.REWRITE
    base_image: str | None = None
    allow_dirty: bool = False
    force: bool = False
    stripped: bool = False  # ship the stripped release build; uprobes use a debug build's addresses


@dataclass(frozen=True, kw_only=True)
class Plan:
    variant: Variant
    version: Version
    envoy: Path
    proxy: Path | None
    envoy_mode: EnvoyMode
    edit: Edit | None
    build: BuildSpec
    debug_build: BuildSpec | None  # same sources with symbols, for the addresses of a stripped build
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
        sources = f"envoy {self.envoy}" + (f", proxy {self.proxy}" if self.proxy else "")
        edit = (
            self.edit.describes + " (restored after the build)"
            if self.edit
            else f"no file edited: --override_repository=envoy={self.build.envoy_path}"
        )
        steps = [f"sources: check {sources} (commit, dirty{' allowed' if self.allow_dirty else ' refused'})"]
        if self.build.envoy_copy:
            patches = ", ".join(p.name for p in self.build.envoy_patches) or "no patches"
            steps.append(f"patch: copy envoy to {self.build.envoy_copy} and apply {patches}")
        steps.append(f"workspace: {edit}")
        if self.debug_build and self.debug_binary:
            steps += [
                f"debug build: (cd {self.debug_build.command.cwd} && {self.debug_build.command.display()})",
                f"locate: {self.debug_build.describe_output()} -> {self.debug_binary}",
            ]
        hookpoints = (
            f"hookpoints: the stripped binary's addresses from {self.debug_binary} (same code, checked)"
            if self.debug_build
            else "hookpoints: read the binary's hookpoint symbols; none, or a stripped binary, fails the release"
        )
        return [
            *steps,
            f"build: (cd {self.build.command.cwd} && {self.build.command.display()}), log {self.build_log}",
            f"locate: {self.build.describe_output()} -> {self.binary}",
            hookpoints,
            f"scripts: uprobe scripts and trace_all.sh into {self.dist}",
            f"image: build {self.dockerfile.name} FROM {self.base_image} as {self.image}",
            f"push: {self.image} (credentials from HOOKBUILD_REGISTRY_* or the Docker config)",
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


def _examples(settings: Settings) -> Path:
    return settings.root / "examples"


def sample_versions_file(settings: Settings) -> Path:
    """A scratch copy of the record for sample releases: the real record is never touched by them."""
    scratch = settings.dist / "sample" / "versions.toml"
    if not scratch.exists():
        scratch.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(settings.versions_file, scratch)
    return scratch


def plan(request: Request, settings: Settings) -> Plan:
    """Turn a request and settings into a complete plan. Reads files, writes nothing but sample copies."""
    from hookbuild import buildsys, workspace
    from hookbuild.sources import materialize_sample

    variant = request.variant
    validate_registry(settings.registry)
    if request.sample:
        if request.envoy or request.proxy:
            raise UsageError("--sample builds the bundled sources", hint="drop --envoy/--proxy, or drop --sample")
        versions_file = sample_versions_file(settings)
        src = settings.dist / "sample" / "src" / variant.name
        envoy = materialize_sample(_examples(settings) / variant.samples["envoy"], src / "envoy")
        proxy = (
            materialize_sample(_examples(settings) / variant.samples["proxy"], src / "proxy")
            if variant.needs_proxy
            else None
        )
        base_image = request.base_image or variant.sample_base_image
    else:
        versions_file = settings.versions_file
        envoy = _required_path(request.envoy or settings.envoy, "envoy")
        proxy = _required_path(request.proxy or settings.proxy, "proxy") if variant.needs_proxy else None
        base_image = request.base_image or variant.base_image
    version = request.version or _next_version(settings.versions_file, variant.name, request.sample)
    if request.stripped and not variant.can_strip:
        raise UsageError(f"--stripped is not offered by variant {variant.name}", hint="drop --stripped")
    scratch = settings.dist / "sample" if request.sample else settings.dist
    module = import_module(f"hookbuild.buildsys.{variant.build_system}")

    def spec(symbols: bool) -> buildsys.BuildSpec:
        built = module.spec(
            proxy=proxy,
            envoy=envoy,
            target=variant.target,
            symbols_config=variant.symbols_config,
            override=request.envoy_mode is EnvoyMode.OVERRIDE,
            workdir=scratch / "build" / variant.name,
            bazel=BazelOptions(
                remote_cache=settings.bazel_remote_cache,
                remote_executor=settings.bazel_remote_executor,
                disk_cache=str(settings.bazel_disk_cache) if settings.bazel_disk_cache else None,
                configs=settings.bazel_configs,
            ),
            symbols=symbols,
        )
        assert isinstance(built, buildsys.BuildSpec)
        return built

    build = spec(symbols=not request.stripped)
    edit = None
    if proxy is not None:
        workspace.restore_stale(proxy)
        if request.envoy_mode is EnvoyMode.REWRITE:
            edit = workspace.plan_edit(proxy, envoy_path=build.envoy_path)
    image = ImageRef.parse(f"{settings.registry}/{settings.namespace}/{variant.image_name}:{version}")
    return Plan(
        variant=variant,
        version=version,
        envoy=envoy,
        proxy=proxy,
        envoy_mode=request.envoy_mode,
        edit=edit,
        build=build,
        debug_build=spec(symbols=True) if request.stripped else None,
        dist=scratch / variant.name / str(version),
        image=image,
        base_image=base_image,
        dockerfile=settings.root / "dockerfiles" / variant.dockerfile,
        versions_file=versions_file,
        sample=request.sample,
        allow_dirty=request.allow_dirty,
        force=request.force,
        registry_user=settings.registry_user,
    )


def _required_path(path: Path | None, role: str) -> Path:
    if path is None:
        raise UsageError(
            f"no {role} checkout given",
            hint=f"pass --{role} PATH, set {role} in [tool.hookbuild], or HOOKBUILD_{role.upper()}; or use --sample",
        )
    return path.expanduser().resolve()


def _next_version(versions_file: Path, variant: str, sample: bool) -> Version:
    if not sample:
        raise UsageError("no --version given", hint="pass --version MAJOR.MINOR (see `invoke bump`)")
    latest = record.load(versions_file).latest(variant, working_only=False)
    return latest.version.bump_minor() if latest else Version(0, 1)


def inputs_key(plan: Plan, states: list[SourceState]) -> str | None:
    """What makes two releases the same. A dirty tree is never the same as anything."""
    if any(state.dirty for state in states):
        return None
    data = {
        "variant": plan.variant.name,
        "sources": {state.role: state.commit for state in states},
        "envoy_mode": plan.envoy_mode.value,
        "build": plan.build.command.display(),
        "debug_build": plan.debug_build.command.display() if plan.debug_build else None,
        "patches": [hashlib.sha256(p.read_bytes()).hexdigest() for p in plan.build.envoy_patches if p.is_file()],
        "base_image": plan.base_image,
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
        log.warning("%s@%s is recorded with other inputs; --force replaces it", plan.variant.name, plan.version)
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
        durations[name] = round(time.monotonic() - started, 2)


def execute(
    plan: Plan,
    *,
    client: docker.DockerClient | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Result:
    from hookbuild import command, images, outputs, probes, sources, symbols, trace_all, workspace

    durations: dict[str, float] = {}
    with _stage("sources", durations):
        states = [sources.inspect(plan.envoy, role="envoy")]
        if plan.proxy is not None:
            states.append(sources.inspect(plan.proxy, role="proxy"))
        sources.require_clean(states, allow_dirty=plan.allow_dirty)
        key = inputs_key(plan, states)
        existing = _existing(plan, key)
    if existing is not None and existing.release is not None:
        log.info("%s@%s is already released from these inputs: nothing to do", plan.variant.name, plan.version)
        return _result_from_record(plan, existing.release, durations)

    client = client or images.connect()
    images.require_image(client, plan.base_image, hint=_base_hint(plan))
    auth = images.credentials(plan.image.registry, user=plan.registry_user)

    plan.dist.mkdir(parents=True, exist_ok=True)
    if plan.build.envoy_copy:
        with _stage("patch", durations):
            sources.patched_copy(plan.envoy, plan.build.envoy_patches, plan.build.envoy_copy)
    builds = [(plan.build, plan.binary, plan.build_log)]
    if plan.debug_build and plan.debug_binary:
        builds.insert(0, (plan.debug_build, plan.debug_binary, plan.dist / "build-debug.log"))
    editing = workspace.local_envoy(plan.proxy, plan.edit) if plan.edit and plan.proxy else nullcontext()
    with editing:
        for spec, binary, build_log in builds:
            with _stage("build" if spec is plan.build else "debug build", durations):
                command.run(spec.command, log_file=build_log, on_line=_build_line, what="the build")
            with _stage("locate", durations):
                built = outputs.resolve_link(spec.output_link, client=client) / spec.output_name
                if spec.archive_member:
                    outputs.extract(built, spec.archive_member, binary)
                else:
                    outputs.collect(built, binary)
    with _stage("hookpoints", durations):
        info = symbols.read_binary(plan.binary, debug_binary=plan.debug_binary)
        _require_traceable(plan, info)
    with _stage("scripts", durations):
        scripts_dir = plan.dist / "tracing"
        scripts = [
            *probes.write_scripts(info, scripts_dir, binary=plan.variant.binary_in_image),
            trace_all.write(scripts_dir, info, release=f"{plan.variant.name}@{plan.version}"),
        ]
    released_at = now()
    pushed = False
    with _stage("image", durations), _context(plan, scripts_dir) as context:
        image_id = images.build(
            client,
            context=context,
            dockerfile=plan.dockerfile.name,
            buildargs={"BASE_IMAGE": plan.base_image},
            labels=_labels(plan, states, info, released_at),
            on_line=lambda line: log.info("  %s", line),
        )
    with _stage("push", durations), images.tagged(client, image_id, plan.image, keep=lambda: pushed):
        digest = images.push(client, plan.image, auth=auth, on_progress=_ProgressLog().line)
        with _stage("record", durations):
            provenance = record.Provenance(
                image=str(plan.image),
                digest=digest,
                released_at=released_at.replace(microsecond=0),
                envoy_commit=states[0].commit,
                proxy_commit=states[1].commit if len(states) > 1 else None,
                dirty=any(state.dirty for state in states),
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
            record.add_release(plan.versions_file, plan.variant.name, plan.version, provenance, replace=plan.force)
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


def _base_hint(plan: Plan) -> str:
    if plan.sample:
        return "run scripts/setup.sh, which makes the sample base images"
    return f"pull or build {plan.base_image} on the engine, or pass --base-image"


def _require_traceable(plan: Plan, info: BinaryInfo) -> None:
    if (info.stripped and info.debug_binary is None) or not info.hookpoints:
        reason = "is stripped" if info.stripped and not info.hookpoints else "has no hookpoint symbols"
        raise HookbuildError(
            f"{plan.binary} {reason}: an image built from it could not be traced",
            hint="build with symbols"
            + (f" (--config={plan.variant.symbols_config})" if plan.variant.symbols_config else "")
            + " and add hookpoint* functions to Envoy",
        )
    dead = [h.demangled for h in info.hookpoints if not h.called]
    for name in dead:
        log.warning("hookpoint %s has no call site: the compiler removed its calls, a probe will never fire", name)


def _labels(plan: Plan, states: list[SourceState], info: BinaryInfo, released_at: datetime) -> dict[str, str]:
    labels = {
        "org.opencontainers.image.version": str(plan.version),
        "org.opencontainers.image.created": released_at.replace(microsecond=0).isoformat(),
        "org.opencontainers.image.revision": states[0].commit,
        "org.opencontainers.image.base.name": plan.base_image,
        "org.opencontainers.image.title": f"hookbuild {plan.variant.name}",
        "io.hookbuild.variant": plan.variant.name,
        "io.hookbuild.hookpoints": str(len(info.hookpoints)),
        "io.hookbuild.binary.sha256": info.sha256,
        "io.hookbuild.dirty": str(any(state.dirty for state in states)).lower(),
    }
    for state in states:
        labels[f"io.hookbuild.{state.role}.commit"] = state.commit
    if info.build_id:
        labels["io.hookbuild.binary.build-id"] = info.build_id
    return labels


@contextmanager
def _context(plan: Plan, scripts_dir: Path) -> Iterator[Path]:
    """A minimal build context: the Dockerfile, the binary, the scripts (hard links, no copies)."""
    with tempfile.TemporaryDirectory(prefix="hookbuild-context-", dir=plan.dist) as tmp:
        context = Path(tmp)
        shutil.copyfile(plan.dockerfile, context / plan.dockerfile.name)
        os.link(plan.binary, context / "envoy")
        shutil.copytree(scripts_dir, context / "tracing", copy_function=os.link)
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
