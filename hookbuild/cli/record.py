"""The record's tasks: `versions` (queries, registry check), `bump`, `deprecate`, `changelog`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context

from hookbuild.cli.output import print_json
from hookbuild.cli.task import task
from hookbuild.config import Settings
from hookbuild.variants import choices

if TYPE_CHECKING:
    from hookbuild.record.model import Record

VERSIONS_FILE_HELP = "the version record (default: the versions_file setting, i.e. the repo's versions.toml)"


@task(
    short={"variant": "v"},
    collect_cycles=False,
    help={
        "variant": f"only this variant ({choices(', ')})",
        "all": "include deprecated versions (test-only and planned ones are always listed, marked)",
        "json": "print JSON (for scripts and CI) instead of a table",
        "supports": "only released versions claiming this feature, e.g. perf: verified claims first",
        "show": "print one entry in full, with its status history, e.g. istio@11.8",
        "check-registry": "ask the registry whether every recorded release's tag still holds its recorded "
        "digest; exit 7 if one does not",
        "versions-file": VERSIONS_FILE_HELP,
    },
)
def versions(
    c: Context,
    settings: Settings,
    variant: str | None = None,
    all: bool = False,
    json: bool = False,
    supports: str | None = None,
    show: str | None = None,
    check_registry: bool = False,
    versions_file: str | None = None,
) -> None:
    """List the recorded versions, newest first (`--supports perf`: which ones support a feature)."""
    from hookbuild import record
    from hookbuild.record import features, views

    if supports is not None:
        features.require(supports, flag="--supports")
    rec = record.load(settings.versions_file)
    if show:
        entry = rec.get(show)
        if json:
            print_json(entry.as_json())
        else:
            views.show(entry)
        return
    if check_registry:
        _check_registry(rec, settings, variant=variant, json=json)
        return
    entries = views.select(rec, variant=variant, include_all=all, supports=supports)
    if json:
        print_json([views.as_json(entry, supports=supports) for entry in entries])
    else:
        title = f"versions supporting {supports}" if supports else "versions"
        views.table(entries, title=title, supports=supports)


def _check_registry(rec: Record, settings: Settings, *, variant: str | None, json: bool) -> None:
    """One line (or JSON item) per recorded release; exit 7 when a tag no longer holds its digest."""
    from invoke.exceptions import Exit

    from hookbuild.errors import ExitCode, RegistryDrift
    from hookbuild.images.registry_api import connector
    from hookbuild.record import drift

    found = drift.check(
        rec, connect=connector(settings.registry_user, settings.insecure_registries), variant=variant
    )
    moved = [item.entry.ref for item in found if not item.holds]
    if json:
        print_json([item.as_json() for item in found])
    else:
        for item in found:
            print(item.line())
        if not found:
            print("no release recorded with a digest: nothing to check (entries kept by hand have none)")
    if moved:
        error = RegistryDrift(
            f"{len(moved)} of {len(found)} recorded release tag(s) no longer hold their recorded digest: "
            + ", ".join(moved),
            hint="point a tag back with `invoke release ... --repair`, or release a new version",
        )
        if json:  # the report above is the JSON answer; the error stays one line on stderr
            raise Exit(f"error: {error.line()}", code=ExitCode.REGISTRY_DRIFT)
        raise error


@task(
    short={"variant": "v"},
    collect_cycles=False,
    iterable=["feature", "no_feature", "package"],
    help={
        "variant": f"the variant to bump ({choices(', ')})",
        "major": "next major version (12.0 -> 13.0)",
        "minor": "next minor version (12.0 -> 12.1)",
        "summary": "one line: what this version changes",
        "feature": "add a feature tag to those of the latest working version (repeatable)",
        "no-feature": "drop a feature tag carried over from the latest working version (repeatable)",
        "package": "extra image package (repeatable); default: those of the latest working version",
        "based-on": "VARIANT@X.Y this version starts from (must be recorded)",
        "supersedes": "X.Y of the same variant this version replaces",
        "again": "plan another version while one is still planned (not released)",
        "dry-run": "check and print the new version, write nothing",
        "json": "print the new entry as JSON",
        "versions-file": VERSIONS_FILE_HELP,
    },
)
def bump(
    c: Context,
    settings: Settings,
    variant: str = "",
    major: bool = False,
    minor: bool = False,
    summary: str = "",
    feature: list[str] | None = None,
    no_feature: list[str] | None = None,
    package: list[str] | None = None,
    based_on: str | None = None,
    supersedes: str | None = None,
    again: bool = False,
    dry_run: bool = False,
    json: bool = False,
    versions_file: str | None = None,
) -> None:
    """Plan the next version of a variant (status `planned` until released); print it (e.g. `12.1`)."""
    from hookbuild.record import edit

    _check_bump_flags(variant, major, minor, summary, feature or [], no_feature or [], package or [])
    entry = edit.bump(
        settings.versions_file,
        variant,
        "major" if major else "minor",
        summary,
        features=feature or (),
        no_features=no_feature or (),
        packages=package or None,
        based_on=_flag_ref("--based-on", based_on),
        supersedes=_flag_version("--supersedes", supersedes),
        again=again,
        dry_run=dry_run,
    )
    if json:
        print_json({**entry.as_json(), "dry_run": dry_run})
    else:
        print(entry.version)


def _check_bump_flags(
    variant: str,
    major: bool,
    minor: bool,
    summary: str,
    added: list[str],
    dropped: list[str],
    packages: list[str],
) -> None:
    """Errors that name the flag, before the record is read."""
    from hookbuild.errors import UsageError
    from hookbuild.record import features
    from hookbuild.record.model import PACKAGE

    if not variant:
        raise UsageError("bump needs --variant", hint="e.g. --variant istio --minor --summary TEXT")
    if major == minor:
        raise UsageError("bump needs exactly one of --major or --minor", hint="pass one of them")
    if not summary.strip():
        raise UsageError("bump needs --summary TEXT", hint="say in one line what the new version changes")
    for tag in added:
        features.require(tag, flag="--feature")
    for tag in dropped:
        features.require(tag, flag="--no-feature")
    for name in packages:
        if not PACKAGE.fullmatch(name):
            raise UsageError(
                f"--package {name!r} is not a Debian package name",
                hint="lowercase letters, digits and '+', '-', '.', at least two characters",
            )


def _flag_ref(flag: str, value: str | None) -> str | None:
    from hookbuild.errors import UsageError, VersionError
    from hookbuild.record.model import parse_ref

    if value is None:
        return None
    try:
        parse_ref(value)
    except VersionError as exc:
        raise UsageError(f"{flag} {value!r}: {exc.message}", hint=exc.hint) from None
    return value


def _flag_version(flag: str, value: str | None) -> str | None:
    from hookbuild.errors import UsageError, VersionError
    from hookbuild.version import Version

    if value is None:
        return None
    try:
        Version.parse(value)
    except VersionError as exc:
        raise UsageError(f"{flag} {value!r}: {exc.message}", hint=exc.hint) from None
    return value


@task(
    collect_cycles=False,
    help={
        "ref": "the version to change, VARIANT@X.Y (e.g. istio@11.7)",
        "reason": "why (required; appended to the version's history, shown by `versions --show` and the "
        "changelog)",
        "test-only": "mark it test-only instead of deprecated",
        "working": "reinstate it as working (a planned version becomes working only by a release)",
        "versions-file": VERSIONS_FILE_HELP,
    },
)
def deprecate(
    c: Context,
    settings: Settings,
    ref: str,
    reason: str = "",
    test_only: bool = False,
    working: bool = False,
    versions_file: str | None = None,
) -> None:
    """Deprecate a version (or mark it test-only); the change is appended to its history, nothing deleted."""
    from hookbuild import record
    from hookbuild.errors import UsageError
    from hookbuild.record import edit

    if test_only and working:
        raise UsageError("--test-only and --working exclude each other", hint="pass one of them")
    status = record.Status.TEST_ONLY if test_only else record.Status.WORKING if working else None
    entry = edit.set_status(settings.versions_file, ref, status or record.Status.DEPRECATED, reason)
    print(f"{entry.ref}: {entry.status}")


@task(
    short={"variant": "v", "output": "o"},
    collect_cycles=False,
    help={
        "variant": "only this variant",
        "output": "write the Markdown (or JSON) to this file instead of stdout",
        "json": "print the changelog as JSON: variants, versions, their claims and status history",
        "versions-file": VERSIONS_FILE_HELP,
    },
)
def changelog(
    c: Context,
    settings: Settings,
    variant: str | None = None,
    output: str | None = None,
    json: bool = False,
    versions_file: str | None = None,
) -> None:
    """The record as Markdown release notes (like the seed's Version Record), with each status history."""
    import io
    from contextlib import redirect_stdout

    from hookbuild import fsutil, record
    from hookbuild.errors import UsageError
    from hookbuild.record import changelog as notes

    rec = record.load(settings.versions_file)
    if variant:
        rec.variant(variant)
    if json:
        with redirect_stdout(io.StringIO()) as buffer:
            print_json(notes.as_json(rec, variant=variant))
        text = buffer.getvalue()
    else:
        text = notes.render(rec, variant=variant)
    if not output:
        print(text, end="")
        return
    try:
        fsutil.atomic_write(Path(output), text)
    except OSError as exc:
        raise UsageError(
            f"cannot write {output}: {exc.strerror}", hint="pass --output in a writable directory"
        ) from None
