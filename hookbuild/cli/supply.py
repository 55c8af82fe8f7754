"""The supply chain's tasks: `verify` (a release is what was signed, fail closed) and `promote` (by digest)."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit

from hookbuild.cli.output import print_json
from hookbuild.cli.task import task
from hookbuild.config import Settings

VERSIONS_FILE_HELP = "the version record (default: the versions_file setting, i.e. the repo's versions.toml)"


@task(
    positional=["ref"],
    help={
        "ref": "the recorded release, VARIANT@X.Y",
        "key": "public key PEM to check the signature with (default: the verify_key setting, else the "
        "public half of the signing_key setting)",
        "json": "print the checks and the public key (PEM) used",
        "versions-file": VERSIONS_FILE_HELP,
    },
)
def verify(
    c: Context,
    settings: Settings,
    ref: str,
    key: str = "",
    json: bool = False,
    versions_file: str | None = None,
) -> None:
    """Check a release in the registry: tag, signed provenance, subject, SBOM. Any failure exits non-zero."""
    from hookbuild import record
    from hookbuild.images.registry_api import connector
    from hookbuild.supply import signing
    from hookbuild.supply import verify as checks

    entry = record.load(settings.versions_file).get(ref)
    public = signing.verify_key(Path(key) if key else None, settings)
    result = checks.verify(
        entry, public, connect=connector(settings.registry_user, settings.insecure_registries)
    )
    if json:
        print_json(result.as_json())
    else:
        for check in result.checks:
            print(f"ok  {check.name:<12} {check.detail}")
    if result.failure is not None:
        from hookbuild.secrets import redact

        raise Exit(f"error: {redact(result.failure.line())}", code=result.failure.exit_code)
    if not json:
        print(f"verified {entry.ref}: {result.digest}, key {public.key_id}")


@task(
    positional=["ref"],
    help={
        "ref": "the recorded release, VARIANT@X.Y",
        "to": "where to copy it: REGISTRY/NAMESPACE, e.g. 127.0.0.1:5001/hookbuild",
        "json": "print the promotion (every location the record lists) as JSON",
        "versions-file": VERSIONS_FILE_HELP,
    },
)
def promote(
    c: Context,
    settings: Settings,
    ref: str,
    to: str = "",
    json: bool = False,
    versions_file: str | None = None,
) -> None:
    """Copy a release by digest (no rebuild) with its attestation and SBOM; the record lists every location."""
    from hookbuild import record
    from hookbuild.errors import UsageError
    from hookbuild.images.registry_api import connector
    from hookbuild.supply import promote as promotion

    if not to:
        raise UsageError("no --to given", hint="pass --to REGISTRY/NAMESPACE, e.g. 127.0.0.1:5001/hookbuild")
    entry = record.load(settings.versions_file).get(ref)
    result = promotion.promote(
        entry,
        to,
        versions_file=settings.versions_file,
        connect=connector(settings.registry_user, settings.insecure_registries),
    )
    if json:
        print_json(result.as_json())
        return
    what = ", ".join(result.copied) if result.copied else "nothing to copy, already there"
    print(f"promoted {result.ref} to {result.location}@{result.digest} ({what})")
    for location in result.locations:
        print(f"  {location}")
