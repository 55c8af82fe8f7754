"""The record's tasks: `versions` (queries), `bump`, `deprecate`, `changelog`."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context

from hookbuild.cli.output import print_json
from hookbuild.cli.task import task
from hookbuild.config import Settings
from hookbuild.variants import choices

VERSIONS_FILE_HELP = "the version record (default: the versions_file setting, i.e. the repo's versions.toml)"


@task(
    help={
        "variant": f"only this variant ({choices(', ')})",
        "all": "include deprecated versions (test-only ones are always listed, marked)",
        "json": "print JSON (for scripts and CI) instead of a table",
        "supports": "only versions tagged with this feature, e.g. perf",
        "show": "print one entry in full, e.g. istio@11.8",
        "versions-file": VERSIONS_FILE_HELP,
    }
)
def versions(
    c: Context,
    settings: Settings,
    variant: str | None = None,
    all: bool = False,
    json: bool = False,
    supports: str | None = None,
    show: str | None = None,
    versions_file: str | None = None,
) -> None:
    """List the recorded versions, newest first (`--supports perf`: which ones support a feature)."""
    from hookbuild import record
    from hookbuild.record import views

    rec = record.load(settings.versions_file)
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
        "variant": f"the variant to bump ({choices(', ')})",
        "major": "next major version (12.0 -> 13.0)",
        "minor": "next minor version (12.0 -> 12.1)",
        "summary": "one line: what this version changes",
        "feature": "feature tag (repeatable); default: those of the latest working version",
        "package": "extra image package (repeatable); default: those of the latest working version",
        "based-on": "VARIANT@X.Y this version starts from (must be recorded)",
        "supersedes": "X.Y of the same variant this version replaces",
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
    package: list[str] | None = None,
    based_on: str | None = None,
    supersedes: str | None = None,
    dry_run: bool = False,
    json: bool = False,
    versions_file: str | None = None,
) -> None:
    """Record the next version of a variant and print it (e.g. `12.1`, for scripts)."""
    from hookbuild.errors import UsageError
    from hookbuild.record import edit

    if not variant:
        raise UsageError("bump needs --variant", hint="e.g. --variant istio --minor --summary TEXT")
    if major == minor:
        raise UsageError("bump needs exactly one of --major or --minor", hint="pass one of them")
    if not summary.strip():
        raise UsageError("bump needs --summary TEXT", hint="say in one line what the new version changes")
    entry = edit.bump(
        settings.versions_file,
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
        "versions-file": VERSIONS_FILE_HELP,
    }
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
    """Deprecate a version (or mark it test-only); nothing is ever deleted from the record."""
    from hookbuild import record
    from hookbuild.errors import UsageError
    from hookbuild.record import edit

    if test_only and working:
        raise UsageError("--test-only and --working exclude each other", hint="pass one of them")
    status = record.Status.TEST_ONLY if test_only else record.Status.WORKING if working else None
    entry = edit.set_status(settings.versions_file, ref, status or record.Status.DEPRECATED, reason)
    print(f"{entry.ref}: {entry.status}")


@task(
    short={"output": "o"},
    help={
        "variant": "only this variant",
        "output": "write the Markdown to this file instead of stdout",
        "versions-file": VERSIONS_FILE_HELP,
    },
)
def changelog(
    c: Context,
    settings: Settings,
    variant: str | None = None,
    output: str | None = None,
    versions_file: str | None = None,
) -> None:
    """The record as Markdown release notes (like the seed's Version Record)."""
    from hookbuild import fsutil, record
    from hookbuild.errors import UsageError
    from hookbuild.record import changelog as notes

    rec = record.load(settings.versions_file)
    if variant:
        rec.variant(variant)
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
