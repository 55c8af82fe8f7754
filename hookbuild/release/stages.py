"""The release as one ordered tuple of stages: `STAGES` is both what `execute` runs and what `--dry-run` prints.

    sources (+ registry truth of a recorded release) -> base image -> patch -> workspace -> (debug build)
            -> build | copy -> hookpoints -> scripts -> image -> check -> features -> push -> sign -> record

Each stage says whether it applies to a plan, describes itself from the plan alone (the dry run), and runs
against a `Run` that carries what earlier stages learnt. A variant that builds on a recorded release
(istio-perf) copies its binary out of that release's image instead of building. The image, check and push
stages live in image.py, features in truth.py, sign in supply/stage.py; the order is this tuple's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from hookbuild import record
from hookbuild.errors import BuildFailed, CommandFailed, HookbuildError
from hookbuild.images.reference import ImageRef
from hookbuild.record import features
from hookbuild.release import image, truth, warm
from hookbuild.release.identity import Origin, inputs_key, origin_of, recorded
from hookbuild.release.plan import Plan
from hookbuild.supply import stage as supply_stage

if TYPE_CHECKING:
    from concurrent.futures import Future

    import docker

    from hookbuild.binary.symbols import BinaryInfo
    from hookbuild.build.spec import BuildSpec
    from hookbuild.images.engine import LocalImage
    from hookbuild.images.registry_api import Registry
    from hookbuild.supply.sbom import Draft
    from hookbuild.supply.stage import BuildImage, Signed

log = logging.getLogger("hookbuild")


@dataclass(kw_only=True)
class Run:
    """What a running release has learnt so far; each stage reads it and adds to it."""

    plan: Plan
    now: Callable[[], datetime]
    stack: ExitStack  # closed when the run ends, whatever happens: edits restored, temporary tags removed
    client: docker.DockerClient | None = None
    base: LocalImage | None = None  # the base image on the engine, as the base image stage found it
    durations: dict[str, float] = field(default_factory=dict)
    origin: Origin | None = None
    key: str | None = None
    existing: record.Provenance | None = None  # set by `sources` when this release is already recorded
    workspace: ExitStack | None = None  # the WORKSPACE edit, held from `workspace` to the end of `build`
    info: BinaryInfo | None = None
    scripts: tuple[Path, ...] = ()  # every script the release made (the record names them)
    shipped: tuple[Path, ...] = ()  # those the image carries: of its binary only, not of the release
    released_at: datetime | None = None
    image_id: str | None = None
    digest: str | None = None
    started: datetime | None = None
    connect: Callable[[str], Registry] | None = None  # registry clients (default: real; see registries())
    sbom: Future[Draft] | None = None  # the SBOM but for the image's digest, made beside the push
    signed: Signed | None = None  # what the sign stage attached; None for --no-sign
    build_images: list[BuildImage] = field(default_factory=list)  # seen running the build (supply.builder)
    verdict: features.Verdict | None = None  # the features' checks in the built image
    recorded: bool = False

    @property
    def docker(self) -> docker.DockerClient:
        """The engine's client, connected when first needed: normally after the build, whose imports thread
        (release.warm) has imported the SDK meanwhile. Closed as the run's last undo (see execute)."""
        if self.client is None:
            from hookbuild.images import engine

            self.client = engine.connect()
        return self.client

    def close_engine(self) -> None:
        if self.client is not None:
            self.client.close()

    def registries(self) -> Callable[[str], Registry]:
        """Registry clients for the run: the caller's (tests), else real ones with the release's credentials,
        one connector for the whole run, so its sessions share what each registry granted."""
        if self.connect is None:
            from hookbuild.images.registry_api import connector

            self.connect = connector(self.plan.registry_user, self.plan.insecure_registries)
        return self.connect

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        import time

        started = time.monotonic()
        log.info("▶ %s", name)
        try:
            yield
        finally:
            self.durations[name] = round(self.durations.get(name, 0.0) + time.monotonic() - started, 2)


@dataclass(frozen=True, kw_only=True)
class Stage:
    name: str
    describe: Callable[[Plan], list[str]]
    run: Callable[[Run], None]
    applies: Callable[[Plan], bool] = lambda plan: True


# --- sources ---------------------------------------------------------------------------------------------


def _describe_sources(plan: Plan) -> list[str]:
    if plan.based_on is not None:
        return [f"sources: those of {plan.based_on.ref} (the release this one builds on)"]
    sources = f"envoy {plan.envoy}" + (f", proxy {plan.proxy}" if plan.proxy else "")
    return [f"sources: check {sources} (commit, dirty{' allowed' if plan.allow_dirty else ' refused'})"]


def _sources(run: Run) -> None:
    run.origin = origin_of(run.plan)
    run.key = inputs_key(run.plan, run.origin)
    existing = recorded(run.plan, run.key)
    if existing is not None and existing.release is not None:
        truth.still_tagged(run.plan, existing.ref, existing.release, connect=run.registries())
    run.existing = existing.release if existing is not None else None


# --- the base image and the binary ---------------------------------------------------------------------


def _describe_base_image(plan: Plan) -> list[str]:
    return [f"base image: {plan.base_image} on the Docker engine (pulled if missing)"]


def _base_image(run: Run) -> None:
    from hookbuild.images import engine, registry

    plan = run.plan
    hint = (
        "run scripts/setup.sh, which makes the sample base images"
        if plan.sample
        else f"pull or build {plan.base_image} on the engine, or pass --base-image"
    )
    host = ImageRef.parse_any(plan.base_image).registry
    run.base = engine.ensure(
        plan.base_image,
        client=lambda: run.docker,
        # the environment's password is for where the release goes, not for upstream's registry
        auth=lambda: registry.credentials(
            host, user=plan.registry_user, from_env=host == plan.image.registry
        ),
        hint=hint,
    )


def _builds(plan: Plan) -> bool:
    return plan.build is not None


def _describe_patch(plan: Plan) -> list[str]:
    assert plan.build is not None
    patches = ", ".join(p.name for p in plan.build.envoy_patches) or "no patches"
    return [f"patch: copy envoy to {plan.build.envoy_copy} and apply {patches}"]


def _patch(run: Run) -> None:
    from hookbuild.build import sources

    build, envoy = run.plan.build, run.plan.envoy
    assert build is not None and build.envoy_copy is not None and envoy is not None
    sources.patched_copy(envoy, build.envoy_patches, build.envoy_copy)


def _describe_workspace(plan: Plan) -> list[str]:
    assert plan.build is not None
    if plan.edit:
        return [f"workspace: {plan.edit.describes} (restored after the build)"]
    return [f"workspace: no file edited, --override_repository=envoy={plan.build.envoy_path}"]


def _workspace(run: Run) -> None:
    """Hold the checkout (and apply the edit) until the last build is done; restored on any exit."""
    from hookbuild.build import workspace

    plan = run.plan
    run.workspace = run.stack.enter_context(ExitStack())
    if plan.edit is not None and plan.proxy is not None:
        run.workspace.enter_context(workspace.local_envoy(plan.proxy, plan.edit))


def _describe_build(spec: BuildSpec, binary: Path, build_log: Path, label: str) -> list[str]:
    return spec.describe(label, binary=binary, build_log=build_log)


def _build(run: Run, spec: BuildSpec, binary: Path, build_log: Path, label: str) -> None:
    import time

    from hookbuild import command
    from hookbuild.build import bazel, outputs
    from hookbuild.images import engine
    from hookbuild.supply import builder

    system = run.plan.variant.build_system
    assert system is not None and run.origin is not None
    spec.prepare(proxy_commit=run.origin.commits.get("proxy"))
    checkouts = (run.plan.proxy, run.plan.envoy, spec.envoy_copy)  # what a build container mounts
    started = time.time()
    with bazel.secret_bazelrc(bazel.remote_headers()) as rc, builder.watching(checkouts) as images:
        build = system.with_bazelrc(spec.command, rc) if rc else spec.command
        try:  # a failed build has its own exit code: CI tells a broken build from a broken push
            command.run(
                build, log_file=build_log, on_line=lambda out: log.info("  │ %s", out), what=f"the {label}"
            )
        except BaseException as exc:
            mounted = {str(path.resolve()) for path in checkouts if path is not None}
            engine.remove_unstarted(run.docker, mounted, since=started)
            if isinstance(exc, CommandFailed):
                raise BuildFailed(exc.message, hint=exc.hint) from None
            raise
    run.build_images += images  # the containers the build ran in, for the provenance
    with run.timed("locate"):
        built = outputs.resolve_link(spec.output_link, client=run.docker) / spec.output_name
        if spec.archive_member:
            outputs.extract(built, spec.archive_member, binary)
        else:
            outputs.collect(built, binary)


def _describe_debug_build(plan: Plan) -> list[str]:
    assert plan.debug_build is not None and plan.debug_binary is not None
    return _describe_build(plan.debug_build, plan.debug_binary, plan.debug_build_log, "debug build")


def _debug_build(run: Run) -> None:
    plan = run.plan
    assert plan.debug_build is not None and plan.debug_binary is not None
    _build(run, plan.debug_build, plan.debug_binary, plan.debug_build_log, "debug build")


def _describe_main_build(plan: Plan) -> list[str]:
    assert plan.build is not None
    return _describe_build(plan.build, plan.binary, plan.build_log, "build")


def _main_build(run: Run) -> None:
    assert run.plan.build is not None
    warm.import_later_stages()  # during the build, off the critical path
    try:
        _build(run, run.plan.build, run.plan.binary, run.plan.build_log, "build")
    finally:
        if run.workspace is not None:  # the last build is done: the checkout is restored and released
            run.workspace.close()


def _describe_copy(plan: Plan) -> list[str]:
    return [f"copy: {plan.variant.binary_in_image} out of {plan.base_image} -> {plan.binary}"]


def _copy(run: Run) -> None:
    from hookbuild.images import engine

    engine.copy_file(run.docker, run.plan.base_image, run.plan.variant.binary_in_image, run.plan.binary)


# --- what the binary offers -----------------------------------------------------------------------------


def _describe_hookpoints(plan: Plan) -> list[str]:
    if plan.debug_build:
        return [f"hookpoints: the stripped binary's addresses from {plan.debug_binary} (same code, checked)"]
    return ["hookpoints: read the binary's hookpoint symbols; none, or a stripped binary, fails the release"]


def _hookpoints(run: Run) -> None:
    from hookbuild.binary import symbols

    plan = run.plan
    info = symbols.read_binary(plan.binary, debug_binary=plan.debug_binary)
    if not info.hookpoints:
        reason = "is stripped" if info.stripped and info.debug_binary is None else "has no hookpoint symbols"
        config = f" (--config={plan.variant.symbols_config})" if plan.variant.symbols_config else ""
        raise HookbuildError(
            f"{plan.binary} {reason}: an image built from it could not be traced",
            hint=f"build with symbols{config} and add hookpoint* functions to Envoy",
        )
    for warning in info.warnings():
        log.warning("%s", warning)
    run.info = info


def _describe_scripts(plan: Plan) -> list[str]:
    return [
        f"scripts: uprobe scripts and hookpoints.json into {plan.dist} and the image; trace_all.sh into {plan.dist}"
    ]


def _scripts(run: Run) -> None:
    """The scripts the image carries describe its binary as the image holds it, not as this machine does:
    the same binary makes the same files, so a release of it reuses that image layer, on any machine.
    trace_all.sh names the release and runs kubectl from outside the cluster: it stays in dist/."""
    from dataclasses import replace

    from hookbuild.probes import scripts, trace_all

    plan, info = run.plan, run.info
    assert info is not None
    binary = plan.variant.binary_in_image
    debug = Path(info.debug_binary.name) if info.debug_binary else None
    run.shipped = scripts.write_scripts(
        replace(info, path=Path(binary), debug_binary=debug), plan.dist, binary=binary
    )
    run.scripts = (*run.shipped, trace_all.write(plan.dist, info, release=plan.ref, binary=binary))


def _describe_record(plan: Plan) -> list[str]:
    return [f"record: {plan.ref} with its digest into {plan.versions_file}"]


def _record(run: Run) -> None:
    from hookbuild.record import edit

    plan, origin, info = run.plan, run.origin, run.info
    assert origin is not None and info is not None and run.digest and run.released_at
    provenance = record.Provenance(
        image=str(plan.image),
        digest=run.digest,
        released_at=run.released_at,
        envoy_commit=origin.commits["envoy"],
        proxy_commit=origin.commits.get("proxy"),
        dirty=origin.dirty,
        binary_sha256=info.sha256,
        build_id=info.build_id,
        hookpoints=tuple(record.Hookpoint(mangled=h.name, demangled=h.demangled) for h in info.hookpoints),
        scripts=tuple(path.name for path in run.scripts),
        inputs_key=run.key,
        base_image=plan.base_image,
        dockerfile=plan.dockerfile.name,
        signed=run.signed is not None,
        key_id=run.signed.key_id if run.signed else None,
        attestation=run.signed.attestation if run.signed else None,
        sbom=run.signed.sbom if run.signed else None,
        locations=(str(plan.image),),
        checked=run.verdict.passed if run.verdict else (),
    )
    edit.add_release(
        plan.versions_file,
        plan.variant.name,
        plan.version,
        provenance,
        replace=plan.force,
        based_on=plan.based_on.ref if plan.based_on else None,
        packages=plan.packages,
        features=run.verdict.kept if run.verdict else (),
    )
    run.recorded = True


STAGES: tuple[Stage, ...] = (
    Stage(name="sources", describe=_describe_sources, run=_sources),
    Stage(name="base image", describe=_describe_base_image, run=_base_image),
    Stage(
        name="patch",
        describe=_describe_patch,
        run=_patch,
        applies=lambda plan: plan.build is not None and plan.build.envoy_copy is not None,
    ),
    Stage(
        name="workspace",
        describe=_describe_workspace,
        run=_workspace,
        applies=lambda plan: plan.build is not None and plan.proxy is not None,
    ),
    Stage(
        name="debug build",
        describe=_describe_debug_build,
        run=_debug_build,
        applies=lambda plan: plan.debug_build is not None,
    ),
    Stage(name="build", describe=_describe_main_build, run=_main_build, applies=_builds),
    Stage(name="copy", describe=_describe_copy, run=_copy, applies=lambda plan: plan.build is None),
    Stage(name="hookpoints", describe=_describe_hookpoints, run=_hookpoints),
    Stage(name="scripts", describe=_describe_scripts, run=_scripts),
    Stage(name="image", describe=image.describe_image, run=image.image),
    Stage(
        name="check",
        describe=image.describe_check,
        run=image.check,
        applies=lambda plan: plan.variant.check_command is not None,
    ),
    Stage(name="features", describe=truth.describe_features, run=truth.features_stage),
    Stage(name="push", describe=image.describe_push, run=image.push),
    Stage(name="sign", describe=supply_stage.describe, run=supply_stage.run),
    Stage(name="record", describe=_describe_record, run=_record),
)


def steps(plan: Plan) -> list[str]:
    """Every step of the plan with its command, path or tag: the dry run, from the same stages as the run."""
    return [line for stage in STAGES if stage.applies(plan) for line in stage.describe(plan)]
