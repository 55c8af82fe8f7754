"""SLSA v1 provenance for a release, as an in-toto Statement v1 (https://slsa.dev/provenance/v1).

The subject is the pushed image's digest (the thing a cluster pulls) and the Envoy binary's sha256 (the
thing uprobes attach to). The build definition says what was asked (variant, version) and how it was made
(build commands, Bazel options, Dockerfile, packages), and resolves every input to a digest: the source
commits, the patches, the base image and the build image. Nothing secret goes in: commands are shown
redacted (Bazel's remote headers never reach argv), URLs lose their user-info, and a registered secret
found anywhere in the statement fails the release rather than being signed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hookbuild import secrets
from hookbuild.errors import SigningError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:hookbuild:buildtype:release:v1"  # the build this statement describes: `invoke release`
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class Dependency:
    """A resolved input: `digest` maps an algorithm (sha256, gitCommit) to its value."""

    name: str
    uri: str
    digest: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "uri": _scrub(self.uri), "digest": dict(self.digest)}


@dataclass(frozen=True, kw_only=True)
class BuildFacts:
    """What the release knows about itself once the image is pushed; all the statement is made from."""

    repository: str  # REGISTRY/NAMESPACE/NAME, the image's name without a tag
    image_digest: str  # sha256:...
    binary_sha256: str
    binary_path: str  # where Envoy sits in the image
    build_id: str | None
    variant: str
    version: str
    sample: bool
    based_on: str | None
    commands: tuple[str, ...]  # as displayed (redacted): the build and the debug build
    bazel_options: tuple[str, ...]
    dockerfile: str
    packages: tuple[str, ...]
    dependencies: tuple[Dependency, ...]
    builder: str
    started: datetime
    finished: datetime


def statement(facts: BuildFacts) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": facts.repository, "digest": {"sha256": facts.image_digest.removeprefix("sha256:")}},
            {"name": facts.binary_path, "digest": {"sha256": facts.binary_sha256}},
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "variant": facts.variant,
                    "version": facts.version,
                    "sample": facts.sample,
                    **({"basedOn": facts.based_on} if facts.based_on else {}),
                },
                "internalParameters": {
                    "buildCommands": [_scrub(command) for command in facts.commands],
                    "bazelOptions": [_scrub(option) for option in facts.bazel_options],
                    "dockerfile": facts.dockerfile,
                    "packages": list(facts.packages),
                    **({"buildId": facts.build_id} if facts.build_id else {}),
                },
                "resolvedDependencies": [dependency.as_json() for dependency in facts.dependencies],
            },
            "runDetails": {
                "builder": {"id": facts.builder},
                "metadata": {
                    "invocationId": f"{facts.variant}@{facts.version}",
                    "startedOn": _time(facts.started),
                    "finishedOn": _time(facts.finished),
                },
            },
        },
    }


def payload(facts: BuildFacts) -> bytes:
    """The statement as the bytes to sign; refused if a registered secret slipped into it."""
    text = json.dumps(statement(facts), separators=(",", ":"), sort_keys=True)
    if secrets.redact(text) != text:
        raise SigningError(
            "the provenance would contain a secret (a registry password or a Bazel remote header)",
            hint="keep secrets out of build settings and URLs; pass them through HOOKBUILD_* secret variables",
        )
    return text.encode()


def subject_digests(document: dict[str, Any]) -> set[str]:
    """Every `sha256` subject digest of a statement, as `sha256:<hex>`."""
    subjects = document.get("subject")
    if not isinstance(subjects, list):
        return set()
    found = set()
    for subject in subjects:
        digest = subject.get("digest", {}) if isinstance(subject, dict) else {}
        if isinstance(digest, dict) and isinstance(digest.get("sha256"), str):
            found.add(f"sha256:{digest['sha256']}")
    return found


def _scrub(text: str) -> str:
    return secrets.redact(_USERINFO.sub(r"\g<scheme>", text))


def _time(moment: datetime) -> str:
    from hookbuild.record import iso

    return iso(moment.replace(microsecond=0))
