"""Planning a release: a request and settings become a complete, frozen plan, before anything runs.

The plan names every path, command and tag; `--dry-run` prints it (through the stages in `stages.py`) and
`execute` runs it. Planning reads files and writes only scratch copies of the samples.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hookbuild import record
from hookbuild.build.bazel import BazelOptions, remote_headers
from hookbuild.build.spec import BuildInputs, BuildSpec
from hookbuild.build.workspace import Edit
from hookbuild.config import Settings
from hookbuild.errors import UsageError
from hookbuild.images.reference import ImageRef, validate_namespace, validate_registry
from hookbuild.release.artifacts import release_dir
from hookbuild.release.request import EnvoyMode, Request
from hookbuild.variants import Variant
from hookbuild.version import Version

if TYPE_CHECKING:
    from hookbuild.supply.signing import Signer


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
    features: tuple[
        str, ...
    ]  # claims to check in the built image: the version's (bumped) or latest working's
    dist: Path
    image: ImageRef
    base_image: str
    dockerfile: Path
    versions_file: Path
    sample: bool
    allow_dirty: bool
    force: bool
    repair: bool = False
    registry_user: str | None = None
    insecure_registries: tuple[str, ...] = ()  # read over plain HTTP off loopback (the setting)
    signer: Signer | None = None  # None: --no-sign, recorded as unsigned
    bazel_options: tuple[str, ...] = ()  # the scale-out flags every build gets, for the provenance

    @property
    def binary(self) -> Path:
        return self.dist / "envoy"

    @property
    def debug_binary(self) -> Path | None:
        return self.dist / "envoy.debug" if self.debug_build else None

    @property
    def build_log(self) -> Path:
        return self.dist / "build.log"

    @property
    def debug_build_log(self) -> Path:
        return self.dist / "build-debug.log"

    @property
    def ref(self) -> str:
        return f"{self.variant.name}@{self.version}"


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
            from hookbuild.build import workspace

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
        features=_features(the_record, variant, version),
        dist=release_dir(settings, versions_file, variant.name, version),
        image=ImageRef.parse(f"{settings.registry}/{settings.namespace}/{variant.image_name}:{version}"),
        base_image=base_image,
        dockerfile=settings.root / "dockerfiles" / variant.dockerfile,
        versions_file=versions_file,
        sample=request.sample,
        allow_dirty=request.allow_dirty,
        force=request.force,
        repair=request.repair,
        registry_user=settings.registry_user,
        insecure_registries=settings.insecure_registries,
        signer=_signer(request, settings),
        bazel_options=tuple(_bazel(settings).flags()),
    )


def _signer(request: Request, settings: Settings) -> Signer | None:
    """The release's signing key, loaded now: a missing or unreadable key refuses the plan (and --dry-run)."""
    if request.no_sign:
        return None
    if settings.signing_key is None:
        raise UsageError(
            "no signing key: every release is signed (SBOM and SLSA provenance) unless --no-sign says otherwise",
            hint="pass --signing-key PEM (ed25519 or ECDSA P-256; setting signing_key, HOOKBUILD_SIGNING_KEY), "
            "or --no-sign to record the release as unsigned",
        )
    from hookbuild.supply.signing import load_signer

    return load_signer(settings.signing_key)


def _bazel(settings: Settings) -> BazelOptions:
    return BazelOptions(
        remote_cache=settings.bazel_remote_cache,
        remote_executor=settings.bazel_remote_executor,
        disk_cache=str(settings.bazel_disk_cache) if settings.bazel_disk_cache else None,
        configs=settings.bazel_configs,
    )


def _check_request(request: Request, settings: Settings) -> None:
    variant = request.variant
    validate_registry(settings.registry)
    validate_namespace(settings.namespace)
    if request.stripped and not variant.can_strip:
        raise UsageError(f"--stripped is not offered by variant {variant.name}", hint="drop --stripped")
    if request.sample and (request.envoy or request.proxy):
        raise UsageError("--sample builds the bundled sources", hint="drop --envoy/--proxy, or drop --sample")
    if request.sample_shape is not None and request.sample_shape not in variant.sample_shapes:
        offered = ", ".join(variant.sample_shapes) or "none"
        raise UsageError(
            f"variant {variant.name} has no sample shaped like {request.sample_shape!r}",
            hint=f"choose one of: {offered} (or drop --shape for the newest shape)",
        )
    if request.sample_shape is not None and not request.sample:
        raise UsageError("--shape picks one of the bundled samples", hint="add --sample")
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
        from hookbuild.build.sources import materialize_sample

        shape = request.sample_shape
        samples = variant.sample_shapes[shape] if shape else variant.samples
        src = settings.dist / "sample" / "src" / (f"{variant.name}-{shape}" if shape else variant.name)
        examples = settings.root / "examples"
        envoy = materialize_sample(examples / samples["envoy"], src / "envoy")
        proxy = (
            materialize_sample(examples / samples["proxy"], src / "proxy") if variant.needs_proxy else None
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
    system = variant.build_system
    assert system is not None
    bazel = _bazel(settings)

    def spec(symbols: bool) -> BuildSpec:
        return system.spec(
            BuildInputs(
                envoy=envoy,
                proxy=proxy,
                target=variant.target,
                symbols_config=variant.symbols_config,
                override=request.envoy_mode is EnvoyMode.OVERRIDE,
                bazel=bazel,
                workdir=_workdir(variant, envoy),
                symbols=symbols,
                image=build_image(request, settings),
                container_options=variant.sample_container_options if request.sample else (),
                secret_rc=bool(remote_headers()),
            )
        )

    build = spec(symbols=not request.stripped)
    debug = spec(symbols=True) if request.stripped else None
    traced = debug or build  # the build whose symbols the scripts are made from
    if not traced.keeps_symbols:
        raise UsageError(
            f"the {variant.name} build of {proxy or envoy} would strip the binary ({traced.strips_because}): "
            "its hookpoints could not be traced",
            hint="drop the stripping Bazel option (bazel_configs, BAZEL flags) or use a checkout hookbuild "
            "knows how to build with symbols (docs/compatibility.md)",
        )
    return build, debug


def build_image(request: Request, settings: Settings) -> str | None:
    """The build image: --build-image, else the variant's setting, else the samples' own, else upstream's."""
    variant = request.variant
    configured = getattr(settings, variant.build_image_setting) if variant.build_image_setting else None
    sample = variant.sample_build_image if request.sample else None
    image = request.build_image or configured or sample
    if image is not None:
        try:
            ImageRef.parse_any(image)
        except UsageError:
            raise UsageError(
                f"invalid build image {image!r}",
                hint="write [REGISTRY/]NAME:TAG, e.g. gcr.io/istio-testing/x:1",
            ) from None
    return image


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


def _features(the_record: record.Record, variant: Variant, version: Version) -> tuple[str, ...]:
    """What the release would claim: the features bumped for this version, else the latest working one's.
    Each is checked in the built image before the push; only those that hold are recorded."""
    entry = the_record.find(variant.name, version) or the_record.latest(variant.name)
    return entry.features if entry is not None else ()
