"""hookbuild's tasks: thin wrappers over the `hookbuild` library. Run `invoke --list`.

Heavy modules (docker, git, pyelftools) are imported inside the tasks that need them, so queries stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.tasks import task

from hookbuild.cli import errors_to_exit, print_json

if TYPE_CHECKING:  # annotations only: importing these for real would slow every query
    from hookbuild.config import Settings
    from hookbuild.release import Result
    from hookbuild.symbols import BinaryInfo, SymbolDiff

# --- release ---------------------------------------------------------------------------------------


def _settings(c: Context, **overrides: object) -> Settings:
    from hookbuild import config

    invoke_config = dict(c.config.get("hookbuild", {}) or {})
    return config.load(invoke_config=invoke_config, overrides=overrides)


@task(
    iterable=["package"],
    help={
        "variant": "what to build: istio (default), cilium, envoy or istio-perf",
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
        "registry": "registry HOST[:PORT] to push to (config: registry)",
        "namespace": "registry namespace/user (config: namespace)",
        "versions-file": "the record to write (default: versions.toml)",
        "allow-dirty": "release from uncommitted sources; the release is recorded as dirty",
        "force": "replace a recorded release of the same version built from other inputs",
        "dry-run": "print the plan (steps, commands, paths, tags) and change nothing",
        "json": "print the result as JSON",
        "verbose": "debug logging",
    },
)
def release(
    c: Context,
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
    registry: str = "",
    namespace: str = "",
    versions_file: str = "",
    allow_dirty: bool = False,
    force: bool = False,
    dry_run: bool = False,
    json: bool = False,
    verbose: bool = False,
) -> None:
    """Build Envoy with hookpoints, make and push the image, record it in versions.toml."""

    from hookbuild import logs, variants
    from hookbuild import release as pipeline
    from hookbuild.errors import UsageError
    from hookbuild.version import Version

    logs.setup(verbose=verbose)
    with errors_to_exit():
        settings = _settings(c, registry=registry, namespace=namespace, versions_file=versions_file)
        try:
            mode = pipeline.EnvoyMode(envoy_mode)
        except ValueError:
            raise UsageError(f"invalid --envoy-mode {envoy_mode!r}", hint="use rewrite or override") from None
        request = pipeline.Request(
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
            allow_dirty=allow_dirty,
            force=force,
        )
        plan = pipeline.plan(request, settings)
        if dry_run:
            steps = plan.steps()
            if json:
                print_json({"variant": plan.variant.name, "version": str(plan.version), "steps": steps})
            else:
                print(f"release {plan.variant.name}@{plan.version} (dry run, nothing changed):")
                for number, step in enumerate(steps, 1):
                    print(f"  {number}. {step}")
            return
        result = pipeline.execute(plan)
        if json:
            print_json({**result.__dict__, "binary": str(result.binary), "pinned": result.pinned})
            return
        _print_release(result)


def _print_release(result: Result) -> None:
    state = "already released (nothing rebuilt or pushed)" if result.reused else "released"
    print(f"{result.variant}@{result.version} {state}")
    print(f"  image   {result.image}")
    print(f"  digest  {result.digest}")
    print(f"  pinned  {result.pinned}")
    print(f"  binary  {result.binary} ({result.binary_size:,} bytes, sha256 {result.binary_sha256})")
    print(f"  hookpoints {result.hookpoints}")
    if result.durations:
        print(
            "  stages  " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.durations.items())
        )


# --- record: versions, bump, deprecate, changelog ---------------------------------------------------


def _record_path(c: Context, versions_file: str | None) -> Path:
    """--versions-file, else the configured one (pyproject < invoke.yaml < HOOKBUILD_VERSIONS_FILE)."""
    return _settings(c, versions_file=versions_file).versions_file


_VERSIONS_FILE_HELP = "the version record (default: the versions_file setting, i.e. the repo's versions.toml)"


@task(
    help={
        "variant": "only this variant (istio, cilium, envoy, istio-perf)",
        "all": "include deprecated versions (test-only ones are always listed, marked)",
        "json": "print JSON (for scripts and CI) instead of a table",
        "supports": "only versions tagged with this feature, e.g. perf",
        "show": "print one entry in full, e.g. istio@11.8",
        "versions-file": _VERSIONS_FILE_HELP,
    }
)
def versions(
    c: Context,
    variant: str | None = None,
    all: bool = False,
    json: bool = False,
    supports: str | None = None,
    show: str | None = None,
    versions_file: str | None = None,
) -> None:
    """List the recorded versions, newest first (`--supports perf`: which ones support a feature)."""
    from hookbuild import record, views

    with errors_to_exit():
        rec = record.load(_record_path(c, versions_file))
        if show:
            entry = rec.get(show)
            if json:
                print_json(entry.as_json())
            else:
                views.show(entry)
            return
        entries = views.select(rec, variant=variant, include_all=all, supports=supports)
        if json:
            print_json([entry.as_json() for entry in entries])
        else:
            views.table(entries, title=f"versions supporting {supports}" if supports else "versions")


@task(
    iterable=["feature", "package"],
    help={
        "variant": "the variant to bump (istio, cilium, envoy, istio-perf)",
        "major": "next major version (12.0 -> 13.0)",
        "minor": "next minor version (12.0 -> 12.1)",
        "summary": "one line: what this version changes",
        "feature": "feature tag (repeatable); default: those of the latest working version",
        "package": "extra image package (repeatable); default: those of the latest working version",
        "based-on": "VARIANT@X.Y this version starts from (must be recorded)",
        "supersedes": "X.Y of the same variant this version replaces",
        "dry-run": "check and print the new version, write nothing",
        "json": "print the new entry as JSON",
        "versions-file": _VERSIONS_FILE_HELP,
    },
)
def bump(
    c: Context,
    variant: str = "",
    major: bool = False,
    minor: bool = False,
    summary: str = "",
    feature: list[str] | None = None,
    package: list[str] | None = None,
    based_on: str | None = None,
    supersedes: str | None = None,
    dry_run: bool = False,
    json: bool = False,
    versions_file: str | None = None,
) -> None:
    """Record the next version of a variant and print it (e.g. `12.1`, for scripts)."""
    from hookbuild import record_edit
    from hookbuild.errors import UsageError

    with errors_to_exit():
        if not variant:
            raise UsageError("bump needs --variant", hint="e.g. --variant istio --minor --summary TEXT")
        if major == minor:
            raise UsageError("bump needs exactly one of --major or --minor", hint="pass one of them")
        if not summary.strip():
            raise UsageError("bump needs --summary TEXT", hint="say in one line what the new version changes")
        entry = record_edit.bump(
            _record_path(c, versions_file),
            variant,
            "major" if major else "minor",
            summary,
            features=feature or None,
            packages=package or None,
            based_on=based_on,
            supersedes=supersedes,
            dry_run=dry_run,
        )
        if json:
            print_json({**entry.as_json(), "dry_run": dry_run})
        else:
            print(entry.version)


@task(
    help={
        "ref": "the version to change, VARIANT@X.Y (e.g. istio@11.7)",
        "reason": "why (required; shown by `invoke versions` and the changelog)",
        "test-only": "mark it test-only instead of deprecated",
        "working": "reinstate it as working",
        "versions-file": _VERSIONS_FILE_HELP,
    }
)
def deprecate(
    c: Context,
    ref: str,
    reason: str = "",
    test_only: bool = False,
    working: bool = False,
    versions_file: str | None = None,
) -> None:
    """Deprecate a version (or mark it test-only); nothing is ever deleted from the record."""
    from hookbuild import record, record_edit
    from hookbuild.errors import UsageError

    with errors_to_exit():
        if test_only and working:
            raise UsageError("--test-only and --working exclude each other", hint="pass one of them")
        status = record.Status.TEST_ONLY if test_only else record.Status.WORKING if working else None
        entry = record_edit.set_status(
            _record_path(c, versions_file), ref, status or record.Status.DEPRECATED, reason
        )
        print(f"{entry.ref}: {entry.status}")


@task(
    help={
        "variant": "only this variant",
        "output": "write the Markdown to this file instead of stdout",
        "versions-file": _VERSIONS_FILE_HELP,
    }
)
def changelog(
    c: Context, variant: str | None = None, output: str | None = None, versions_file: str | None = None
) -> None:
    """The record as Markdown release notes (like the seed's Version Record)."""
    from hookbuild import changelog as notes
    from hookbuild import record
    from hookbuild.errors import UsageError

    with errors_to_exit():
        rec = record.load(_record_path(c, versions_file))
        if variant:
            rec.variant(variant)
        text = notes.render(rec, variant=variant)
        if output:
            try:
                Path(output).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise UsageError(
                    f"cannot write {output}: {exc.strerror}", hint="pass --output in a writable directory"
                ) from None
        else:
            print(text, end="")


# --- symbols and uprobe scripts ---------------------------------------------------------------------


def _binary_info(
    c: Context, target: str, *, pattern: str, debug_binary: str, versions_file: str | None, cache: bool = True
) -> BinaryInfo:
    from hookbuild import artifacts, symbols

    return artifacts.binary_info(
        target,
        settings=_settings(c, versions_file=versions_file),
        versions_file=_record_path(c, versions_file),
        pattern=pattern,
        debug_binary=Path(debug_binary) if debug_binary else None,
        cache_dir=symbols.default_cache_dir() if cache else None,
    )


@task(
    help={
        "target": "the Envoy binary, or a release VARIANT@MAJOR.MINOR (its dist/<variant>/<version>/envoy)",
        "json": "print JSON (binary info and hookpoints, or the diff) instead of a table",
        "pattern": "substring of the mangled names to report, like `nm | grep` (default: hookpoint)",
        "debug-binary": "unstripped build of the same code, for a stripped TARGET: gives names and addresses",
        "diff": "compare this OLD binary or VARIANT@X.Y with TARGET; exit 1 if a recorded script would break "
        "(hookpoints removed or with a changed signature)",
        "scripts-dir": "also write trace.bt, trace_bcc.py and hookpoints.json into this directory",
        "probe-binary": "Envoy path the scripts probe (default /usr/local/bin/envoy, as in the image; from a "
        "node: /proc/<pid>/root/usr/local/bin/envoy)",
        "versions-file": _VERSIONS_FILE_HELP,
        "no-cache": "read the binary afresh; by default results are cached in $XDG_CACHE_HOME/hookbuild "
        "(~/.cache/hookbuild) by the file's inode, size, mtime and ctime: a changed file is always re-read",
    },
    positional=["target"],
    optional=[],
)
def symbols(
    c: Context,
    target: str,
    json: bool = False,
    pattern: str = "hookpoint",
    debug_binary: str = "",
    diff: str = "",
    scripts_dir: str = "",
    probe_binary: str = "/usr/local/bin/envoy",
    versions_file: str | None = None,
    no_cache: bool = False,
) -> None:
    """List the hookpoints of an Envoy binary (`nm | grep hookpoint`, fast and right), diff two, write probes.

    For each hookpoint: mangled and demangled name, address, file offset (where the uprobe goes), size,
    section, and whether any code calls it (a hookpoint whose calls -O2 deleted never fires). Examples:
    `invoke symbols bazel-bin/envoy`, `invoke symbols istio@12.0 --json`,
    `invoke symbols --diff istio@11.8 istio@12.0`, `invoke symbols envoy --scripts-dir out/`.
    """
    import sys

    from invoke.exceptions import Exit

    with errors_to_exit():
        from hookbuild import probes
        from hookbuild import symbols as syms

        info = _binary_info(
            c,
            target,
            pattern=pattern,
            debug_binary=debug_binary,
            versions_file=versions_file,
            cache=not no_cache,
        )
        if diff:
            old = _binary_info(
                c, diff, pattern=pattern, debug_binary="", versions_file=versions_file, cache=not no_cache
            )
            result = syms.diff(old, info)
            if json:
                print_json(result.to_dict())
            else:
                _print_diff(result, old=diff, new=target)
            if result.breaking:
                raise Exit(code=1)
            return
        syms.require_hookpoints(info)
        for note in info.warnings():
            sys.stderr.write(f"warning: {note}\n")
        written = probes.write_scripts(info, Path(scripts_dir), binary=probe_binary) if scripts_dir else ()
        if json:
            print_json({**info.to_dict(), "scripts": [str(p) for p in written]})
            return
        stripped = "stripped" + (f", names from {info.debug_binary}" if info.debug_binary else "")
        print(
            f"{info.path}  {info.machine}{' PIE' if info.pie else ''}  "
            f"{stripped if info.stripped else 'not stripped'}"
        )
        print(f"  sha256 {info.sha256}  build-id {info.build_id or '-'}")
        print(f"  {'ADDRESS':>18}  {'FILE OFFSET':>12}  {'SIZE':>5}  {'TABLE':6}  CALLED  NAME (MANGLED)")
        for h in info.hookpoints:
            print(
                f"  {h.address:#18x}  {h.file_offset:#12x}  {h.size:5}  {h.table:6}  "
                f"{'yes' if h.called else 'NO':6}  {h.demangled}  ({h.name})"
            )
        for path in written:
            print(f"wrote {path}")


def _print_diff(result: SymbolDiff, *, old: str, new: str) -> None:
    if not result.changed and not result.moved:
        print(f"{old} -> {new}: hookpoints unchanged")
        return
    print(f"{old} -> {new}:{' BREAKS recorded scripts' if result.breaking else ''}")
    for h in result.removed:
        print(f"  - removed   {h.demangled}  ({h.name})")
    for before, after in result.signature_changed:
        print(f"  ! signature {before.demangled} -> {after.demangled}  ({before.name} -> {after.name})")
    for h in result.added:
        print(f"  + added     {h.demangled}  ({h.name})")
    for before, after in result.moved:
        print(f"  ~ moved     {before.demangled}  {before.address:#x} -> {after.address:#x}")


# --- cluster: inject, trace ------------------------------------------------------------------------


@task(
    help={
        "release": "the release to inject, VARIANT@MAJOR.MINOR (e.g. istio@12.0)",
        "file": "manifest to read; '-' or omitted reads stdin",
        "output": "file to write; omitted writes stdout",
        "annotation_only": "only set the sidecar.istio.io/proxyImage annotation (no uprobes, no privileges)",
        "versions_file": "versions.toml to read the release from (default: the configured one)",
    }
)
def inject(
    c: Context,
    release: str,
    file: str = "-",
    output: str | None = None,
    annotation_only: bool = False,
    versions_file: str | None = None,
) -> None:
    """Give every workload in Kubernetes manifests the released istio-proxy sidecar, pinned by digest."""
    import logging
    import sys

    from hookbuild import config, logs
    from hookbuild import inject as injecting

    logs.setup()
    with errors_to_exit():
        settings = config.load(overrides={"versions_file": versions_file})
        image = injecting.resolve(settings.versions_file, release)
        source = "<stdin>" if file in ("", "-") else file
        text = sys.stdin.read() if source == "<stdin>" else injecting.read_manifest(Path(file))
        result = injecting.inject(text, image=image, annotation_only=annotation_only, source=source)
        if output:
            injecting.write_manifest(Path(output), result.text)
        else:
            sys.stdout.write(result.text)
        changed = sum(workload.changed for workload in result.workloads)
        logging.getLogger("hookbuild").info(
            "%s: %d workload(s), %d changed, image %s",
            source,
            len(result.workloads),
            changed,
            image.reference,
        )


@task(
    help={
        "release": "the release the script is for, VARIANT@MAJOR.MINOR (e.g. istio@12.0)",
        "binary": "the released Envoy binary to read the hookpoints from (default: the release's, in dist/)",
        "output": "directory to write trace_all.sh into (default: the release's dist/<variant>/<version>)",
        "versions-file": _VERSIONS_FILE_HELP,
    }
)
def trace_script(
    c: Context, release: str, binary: str = "", output: str = "", versions_file: str = ""
) -> None:
    """Write trace_all.sh: uprobe every istio-proxy sidecar's Envoy with the release's hookpoints."""
    import logging

    from hookbuild import logs, record, symbols, trace_all, variants
    from hookbuild.artifacts import release_dir

    logs.setup()
    with errors_to_exit():
        settings = _settings(c, versions_file=versions_file)
        entry = record.load(settings.versions_file).get(release)
        where = release_dir(settings, settings.versions_file, entry.variant, entry.version)
        info = symbols.read_binary(Path(binary) if binary else where / "envoy")
        image_path = variants.get(entry.variant).binary_in_image
        path = trace_all.write(Path(output) if output else where, info, release=entry.ref, binary=image_path)
        logging.getLogger("hookbuild").info("wrote %s", path)
