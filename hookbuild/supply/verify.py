"""`verify`: a recorded release is what the registry serves, signed by the key, with its SBOM — or it fails.

For every location the record lists (the release's own tag and every promotion), in order:
  tag          the tag still resolves to the recorded digest (a moved tag fails)
  signature    `sha256-<hex>.att` holds a DSSE envelope with a signature that checks with the key
  subject      its in-toto Statement (SLSA v1 provenance) names the recorded digest as its subject
  attestation  the attestation is the one recorded at release time (its manifest digest)
  sbom         `sha256-<hex>.sbom` is the recorded SBOM and names the Envoy binary's sha256
The first failure ends the run: fail closed, one line saying what failed where.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hookbuild import record
from hookbuild.errors import HookbuildError, VerifyError
from hookbuild.images.reference import ImageRef
from hookbuild.images.registry_api import Registry
from hookbuild.supply import attach, provenance, sbom
from hookbuild.supply.attach import Kind
from hookbuild.supply.signing import IN_TOTO_PAYLOAD, Verifier, open_envelope


@dataclass(frozen=True, kw_only=True)
class Check:
    location: str
    name: str
    ok: bool
    detail: str


@dataclass(kw_only=True)
class Verification:
    ref: str
    digest: str
    key: Verifier
    checks: list[Check] = field(default_factory=list)
    failure: HookbuildError | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def as_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "ok": self.ok,
            "digest": self.digest,
            "key_id": self.key.key_id,
            "public_key": self.key.pem,
            "checks": [check.__dict__ for check in self.checks],
            **({"error": self.failure.line()} if self.failure else {}),
        }


def locations(release: record.Provenance) -> tuple[str, ...]:
    """Where the release lives: its own tag, then each promotion (older records list none)."""
    return release.locations or (release.image,)


def verify(entry: record.Entry, key: Verifier, *, connect: Callable[[str], Registry]) -> Verification:
    """Run every check; the result holds the checks passed and, if one failed, that failure."""
    release = entry.release
    if release is None:
        raise VerifyError(
            f"{entry.ref} was not released by hookbuild: nothing is signed",
            hint="verify a release made by `invoke release`",
        )
    result = Verification(ref=entry.ref, digest=release.digest, key=key)
    if not release.signed:
        result.failure = VerifyError(
            f"{entry.ref} is recorded as unsigned (released with --no-sign)",
            hint="release a new version with a signing key",
        )
        return result
    try:
        for location in locations(release):
            _verify_at(ImageRef.parse(location), release, key, connect, result)
    except HookbuildError as exc:
        result.failure = exc
    return result


def _verify_at(
    ref: ImageRef,
    release: record.Provenance,
    key: Verifier,
    connect: Callable[[str], Registry],
    result: Verification,
) -> None:
    where = str(ref)

    def passed(name: str, detail: str) -> None:
        result.checks.append(Check(location=where, name=name, ok=True, detail=detail))

    registry = connect(ref.registry)
    held = registry.manifest_digest(ref.repository, ref.tag)
    if held != release.digest:
        raise VerifyError(
            f"tag moved: {where} holds {held or 'nothing'}, the record says {release.digest}",
            hint="someone pushed over the release tag; deploy by the recorded digest and find out who",
        )
    passed("tag", f"{where} holds {release.digest}")
    att_digest, envelopes = attach.fetch(registry, ref.repository, release.digest, Kind.ATTESTATION)
    statement = _signed_statement(
        envelopes, key, f"{ref.name}:{attach.tag_for(release.digest, Kind.ATTESTATION)}"
    )
    passed("signature", f"DSSE signature checks with key {key.key_id}")
    if statement.get(
        "predicateType"
    ) != provenance.PREDICATE_TYPE or release.digest not in provenance.subject_digests(statement):
        raise VerifyError(
            f"the attestation at {where} is not SLSA provenance for {release.digest}",
            hint="the attestation belongs to another image; release again",
        )
    passed("subject", f"in-toto subject is {release.digest}")
    if att_digest != release.attestation:
        raise VerifyError(
            f"attestation replaced: {where} has {att_digest}, the record says {release.attestation}",
            hint="someone re-attached the image; find out who before deploying it",
        )
    passed("attestation", f"attestation manifest {att_digest} as recorded")
    sbom_digest, documents = attach.fetch(registry, ref.repository, release.digest, Kind.SBOM)
    if sbom_digest != release.sbom:
        raise VerifyError(
            f"SBOM replaced: {where} has {sbom_digest}, the record says {release.sbom}",
            hint="someone re-attached the SBOM; find out who before deploying it",
        )
    if not any(sbom.names_binary(document, release.binary_sha256) for document in documents):
        raise VerifyError(
            f"the SBOM at {where} does not name the Envoy binary sha256 {release.binary_sha256}",
            hint="the SBOM belongs to another build; release again",
        )
    passed("sbom", f"SBOM {sbom_digest} names envoy sha256:{release.binary_sha256}")


def _signed_statement(envelopes: tuple[bytes, ...], key: Verifier, where: str) -> dict[str, Any]:
    """The statement of the first envelope signed by `key`; the last problem if none is."""
    problem: VerifyError | None = None
    for envelope in envelopes:
        try:
            payload_type, payload = open_envelope(envelope, key, where=where)
        except VerifyError as exc:
            problem = exc
            continue
        if payload_type != IN_TOTO_PAYLOAD:
            problem = VerifyError(
                f"{where} signs a {payload_type}, not an in-toto statement", hint="release again"
            )
            continue
        try:
            document = json.loads(payload)
        except ValueError:
            problem = VerifyError(f"{where}: the signed payload is not JSON", hint="release again")
            continue
        if isinstance(document, dict) and document.get("_type") == provenance.STATEMENT_TYPE:
            return document
        problem = VerifyError(
            f"{where}: the signed payload is not an in-toto Statement v1", hint="release again"
        )
    assert problem is not None
    raise problem
