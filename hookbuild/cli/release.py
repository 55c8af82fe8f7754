"""The `release` task: build Envoy with hookpoints, make and push the image, record it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context

from hookbuild.cli.output import print_json
from hookbuild.cli.task import task
from hookbuild.config import Settings
from hookbuild.variants import choices

if TYPE_CHECKING:
    from hookbuild.release.plan import Plan
    from hookbuild.release.result import Result


@task(
    short={"variant": "v"},
    iterable=["package"],
    help={
        "variant": f"what to build: {choices(', ')} (default istio)",
        "version": "MAJOR.MINOR to release (with --sample: default the next minor of the record)",
        "envoy": "path to the Envoy checkout with your hookpoint* functions (config: envoy)",
        "proxy": "path to the istio/proxy or cilium/proxy checkout (config: proxy)",
        "sample": "release the bundled sample sources into a scratch record (dist/sample/versions.toml)",
        "envoy-mode": "rewrite: point WORKSPACE's envoy rule at /envoy (the seed's way, restored after); "
        "override: pass --override_repository=envoy=/envoy and edit no file",
        "base-image": "image to build FROM (default: the variant's upstream image, e.g. istio/proxyv2)",
        "based-on": "istio-perf: the recorded release to build on, VARIANT@X.Y (default: newest working)",
        "package": "extra image package to install (repeatable; default: the record's packages)",
        "stripped": "cilium: ship the stripped release build; uprobe scripts use debug-build addresses",
        "build-image": "image the build runs in: istio IMG, Envoy IMAGE_NAME:IMAGE_ID, cilium's builder "
        "(config: istio_build_image, cilium_build_image, envoy_build_image; default: the checkout's own)",
        "shape": "with --sample: the sample shaped like an older upstream (istio 1.13, cilium 1.33, envoy 2022)",
        "registry": "registry HOST[:PORT] to push to (config: registry)",
        "namespace": "registry namespace/user (config: namespace)",
        "versions-file": "the record to write (default: versions.toml)",
        "allow-dirty": "release from uncommitted sources; the release is recorded as dirty",
        "force": "replace a recorded release of the same version built from other inputs",
        "signing-key": "private key PEM (ed25519 or ECDSA P-256) that signs the provenance (config: "
        "signing_key); its password only from HOOKBUILD_SIGNING_KEY_PASSWORD",
        "no-sign": "no SBOM or signed provenance: the release is recorded as unsigned",
        "repair": "a retry whose tag moved in the registry: point the tag back at the recorded digest",
        "dry-run": "print the plan (steps, commands, paths, tags) and change nothing",
        "json": "print the result (or the plan, with --dry-run) as JSON",
        "verbose": "debug logging",
    },
)
def release(
    c: Context,
    settings: Settings,
    variant: str = "istio",
    version: str = "",
    envoy: str = "",
    proxy: str = "",
    sample: bool = False,
    envoy_mode: str = "rewrite",
    base_image: str = "",
    based_on: str = "",
    package: list[str] | None = None,
    stripped: bool = False,
    build_image: str = "",
    shape: str = "",
    registry: str = "",
    namespace: str = "",
    versions_file: str = "",
    allow_dirty: bool = False,
    force: bool = False,
    signing_key: str = "",
    no_sign: bool = False,
    repair: bool = False,
    dry_run: bool = False,
    json: bool = False,
    verbose: bool = False,
) -> None:
    """Build Envoy with hookpoints, make and push the image, record it in versions.toml."""
    from hookbuild import variants
    from hookbuild.errors import UsageError
    from hookbuild.release import plan as planning
    from hookbuild.release.request import EnvoyMode, Request
    from hookbuild.version import Version

    try:
        mode = EnvoyMode(envoy_mode)
    except ValueError:
        raise UsageError(f"invalid --envoy-mode {envoy_mode!r}", hint="use rewrite or override") from None
    request = Request(
        variant=variants.get(variant),
        version=Version.parse(version) if version else None,
        envoy=Path(envoy) if envoy else None,
        proxy=Path(proxy) if proxy else None,
        sample=sample,
        envoy_mode=mode,
        base_image=base_image or None,
        based_on=based_on or None,
        packages=tuple(package) if package else None,
        stripped=stripped,
        build_image=build_image or None,
        sample_shape=shape or None,
        allow_dirty=allow_dirty,
        force=force,
        no_sign=no_sign,
        repair=repair,
    )
    plan = planning.plan(request, settings)
    if dry_run:
        _print_plan(plan, as_json=json)
        return
    from hookbuild.release.execute import execute

    result = execute(plan)
    if json:
        print_json(result.as_json())
    else:
        _print_release(result)


def _print_plan(plan: Plan, *, as_json: bool) -> None:
    """The dry run: the plan's steps (one line each), or the plan as one JSON object."""
    if as_json:
        from hookbuild.release.dryrun import plan_json

        print_json(plan_json(plan))
        return
    from hookbuild.release.stages import steps

    print(f"release {plan.ref} (dry run, nothing changed):")
    for number, step in enumerate(steps(plan), 1):
        print(f"  {number}. {step}")


def _print_release(result: Result) -> None:
    state = "already released (nothing rebuilt or pushed)" if result.reused else "released"
    print(f"{result.variant}@{result.version} {state}")
    print(f"  image   {result.image}")
    print(f"  digest  {result.digest}")
    print(f"  pinned  {result.pinned}")
    print(f"  binary  {result.binary} ({result.binary_size:,} bytes, sha256 {result.binary_sha256})")
    print(f"  hookpoints {result.hookpoints}")
    print(f"  signed  {f'key {result.key_id}' if result.key_id else 'no (--no-sign)'}")
    if result.durations:
        print(
            "  stages  " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.durations.items())
        )
