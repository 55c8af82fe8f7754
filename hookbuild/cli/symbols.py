"""The binary's tasks: `symbols` (list, diff, write probes) and `trace-script` (trace_all.sh for a release)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit

from hookbuild.cli.output import print_json
from hookbuild.cli.record import VERSIONS_FILE_HELP
from hookbuild.cli.task import task
from hookbuild.config import Settings
from hookbuild.errors import ExitCode

if TYPE_CHECKING:
    from hookbuild.binary.diff import SymbolDiff
    from hookbuild.binary.symbols import BinaryInfo

BREAKING_DIFF = ExitCode.BREAKING_DIFF  # `symbols --diff`: a recorded script would break


def _binary_info(
    settings: Settings, target: str, *, pattern: str, debug_binary: str = "", cache: bool = True
) -> BinaryInfo:
    from hookbuild.binary import cache as symbol_cache
    from hookbuild.release import artifacts

    return artifacts.binary_info(
        target,
        settings=settings,
        versions_file=settings.versions_file,
        pattern=pattern,
        debug_binary=Path(debug_binary) if debug_binary else None,
        cache_dir=symbol_cache.default_dir() if cache else None,
    )


@task(
    positional=["target"],
    help={
        "target": "the Envoy binary, or a release VARIANT@MAJOR.MINOR (its dist/<variant>/<version>/envoy)",
        "json": "print JSON (binary info and hookpoints, or the diff) instead of a table",
        "pattern": "substring of the mangled names to report, like `nm | grep` (default: hookpoint)",
        "debug-binary": "unstripped build of the same code, for a stripped TARGET: gives names and addresses",
        "diff": "compare this OLD binary or VARIANT@X.Y with TARGET; exit 8 if a recorded script would break "
        "(hookpoints removed or with a changed signature)",
        "scripts-dir": "also write trace.bt, trace_bcc.py and hookpoints.json into this directory",
        "probe-binary": "Envoy path the scripts probe (default /usr/local/bin/envoy, as in the image; from a "
        "node: /proc/<pid>/root/usr/local/bin/envoy)",
        "versions-file": VERSIONS_FILE_HELP,
        "no-cache": "read the binary afresh; by default results are cached in $XDG_CACHE_HOME/hookbuild "
        "(~/.cache/hookbuild) by the file's inode, size, mtime and ctime: a changed file is always re-read",
    },
)
def symbols(
    c: Context,
    settings: Settings,
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
    from hookbuild.binary import symbols as syms

    info = _binary_info(settings, target, pattern=pattern, debug_binary=debug_binary, cache=not no_cache)
    if diff:
        _diff(settings, diff, info, target=target, pattern=pattern, cache=not no_cache, json=json)
        return
    syms.require_hookpoints(info)
    for note in info.warnings():
        sys.stderr.write(f"warning: {note}\n")
    written: tuple[Path, ...] = ()
    if scripts_dir:
        from hookbuild.probes import scripts

        written = scripts.write_scripts(info, Path(scripts_dir), binary=probe_binary)
    if json:
        print_json({**info.to_dict(), "scripts": [str(p) for p in written]})
        return
    _print_info(info)
    for path in written:
        print(f"wrote {path}")


def _diff(
    settings: Settings,
    old_target: str,
    new: BinaryInfo,
    *,
    target: str,
    pattern: str,
    cache: bool,
    json: bool,
) -> None:
    from hookbuild.binary.diff import diff

    old = _binary_info(settings, old_target, pattern=pattern, cache=cache)
    result = diff(old, new)
    if json:
        print_json(result.to_dict())
    else:
        _print_diff(result, old=old_target, new=target)
    if result.breaking:
        raise Exit(code=BREAKING_DIFF)


def _print_info(info: BinaryInfo) -> None:
    stripped = "stripped" + (f", names from {info.debug_binary}" if info.debug_binary else "")
    print(
        f"{info.path}  {info.machine}{' PIE' if info.pie else ''}  {stripped if info.stripped else 'not stripped'}"
    )
    print(f"  sha256 {info.sha256}  build-id {info.build_id or '-'}")
    print(f"  {'ADDRESS':>18}  {'FILE OFFSET':>12}  {'SIZE':>5}  {'TABLE':6}  CALLED  NAME (MANGLED)")
    for h in info.hookpoints:
        print(
            f"  {h.address:#18x}  {h.file_offset:#12x}  {h.size:5}  {h.table:6}  "
            f"{'yes' if h.called else 'NO':6}  {h.demangled}  ({h.name})"
        )


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


@task(
    short={"release": "r", "binary": "b", "output": "o"},
    help={
        "release": "the release the script is for, VARIANT@MAJOR.MINOR (e.g. istio@12.0)",
        "binary": "the released Envoy binary to read the hookpoints from (default: the release's, in dist/)",
        "output": "directory to write trace_all.sh into (default: the release's dist/<variant>/<version>)",
        "versions-file": VERSIONS_FILE_HELP,
    },
)
def trace_script(
    c: Context, settings: Settings, release: str, binary: str = "", output: str = "", versions_file: str = ""
) -> None:
    """Write trace_all.sh: uprobe every istio-proxy sidecar's Envoy with the release's hookpoints."""
    import logging

    from hookbuild import record, variants
    from hookbuild.binary import symbols as syms
    from hookbuild.probes import trace_all
    from hookbuild.release.artifacts import release_dir

    entry = record.load(settings.versions_file).get(release)
    where = release_dir(settings, settings.versions_file, entry.variant, entry.version)
    info = syms.read_binary(Path(binary) if binary else where / "envoy")
    image_path = variants.get(entry.variant).binary_in_image
    path = trace_all.write(Path(output) if output else where, info, release=entry.ref, binary=image_path)
    logging.getLogger("hookbuild").info("wrote %s", path)
