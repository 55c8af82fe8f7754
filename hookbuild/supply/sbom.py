"""The release image's SBOM, as CycloneDX 1.6 JSON (cyclonedx-python-lib).

Components: every OS package installed in the image (read from the image's dpkg database, also the
per-package files distroless images keep in /var/lib/dpkg/status.d/), and the Envoy binary with its
sha256 and GNU build-id, whose pedigree names the source commits and the patches applied. The document
is deterministic for a release (serial number and timestamp derive from it), so a repeat makes the same
bytes. A release renders it beside its push, before the image's digest is known (`draft`).
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from hookbuild.errors import SupplyError

if TYPE_CHECKING:
    import docker
    from cyclonedx.model.component import Component

_NAMESPACE = uuid.UUID("4b1d0a3e-6f0c-4c5e-9d0c-7a1b5f0e2c11")  # hookbuild's, for uuid5 serial numbers


@dataclass(frozen=True, kw_only=True)
class Package:
    name: str
    version: str
    architecture: str
    source: str | None = None


@dataclass(frozen=True, kw_only=True)
class ImageContents:
    distro: str | None  # os-release ID, e.g. debian
    distro_version: str | None  # os-release VERSION_ID, e.g. 12
    packages: tuple[Package, ...]


@dataclass(frozen=True, kw_only=True)
class BinaryFacts:
    path: str  # in the image
    sha256: str
    build_id: str | None
    commits: tuple[tuple[str, str], ...]  # (role, commit): envoy, proxy
    patches: tuple[tuple[str, str], ...]  # (file name, sha256)


def parse_dpkg_status(text: str) -> Iterator[Package]:
    """Installed packages of a dpkg status file (RFC 822 paragraphs); others (removed, half-configured)
    are not in the image's running set and are left out."""
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue  # a continuation line (Description, Conffiles)
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if "Package" in fields and fields.get("Status", "install ok installed").endswith(" installed"):
            yield Package(
                name=fields["Package"],
                version=fields.get("Version", ""),
                architecture=fields.get("Architecture", ""),
                source=fields.get("Source", "").split(" ")[0] or None,
            )


def parse_os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("\"'")
    return values


def image_contents(client: docker.DockerClient, image: str) -> ImageContents:
    """What an image installs, read from its files in a created (never started) container."""
    import docker.errors
    import requests

    from hookbuild.images import engine

    try:
        with engine.scratch(client, image) as container:
            files = _read(client, container, "/var/lib/dpkg/status") or {}
            files.update(_read(client, container, "/var/lib/dpkg/status.d") or {})
            os_release = (
                _read(client, container, "/usr/lib/os-release")
                or _read(client, container, "/etc/os-release")
                or {}
            )
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise SupplyError(
            f"cannot read the packages of {image}: {getattr(exc, 'explanation', None) or exc}",
            hint="is the image on the engine, and the engine up?",
        ) from exc
    packages = {(p.name, p.architecture): p for text in files.values() for p in parse_dpkg_status(text)}
    info = parse_os_release(next(iter(os_release.values()), ""))
    return ImageContents(
        distro=info.get("ID"),
        distro_version=info.get("VERSION_ID"),
        packages=tuple(sorted(packages.values(), key=lambda p: (p.name, p.architecture))),
    )


def _read(client: docker.DockerClient, container: str, path: str) -> dict[str, str] | None:
    """The regular files at `path` (a file or a directory) as text; None if the path does not exist."""
    import docker.errors

    try:
        stream, _ = client.api.get_archive(container, path)
        data = b"".join(stream)
    except docker.errors.NotFound:
        return None
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                files[member.name] = handle.read().decode("utf-8", errors="replace")
    return files


def document(
    *, repository: str, image_digest: str, created: datetime, contents: ImageContents, binary: BinaryFacts
) -> bytes:
    """The CycloneDX JSON document for one release image."""
    from cyclonedx.model import HashAlgorithm, HashType
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    envoy = _envoy(binary)
    image = Component(
        name=repository,
        type=ComponentType.CONTAINER,
        bom_ref="image",
        version=image_digest,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=image_digest.removeprefix("sha256:"))],
    )
    bom = Bom(
        serial_number=_serial(repository, image_digest),
        metadata=BomMetaData(component=image, timestamp=created),
    )
    bom.components.add(envoy)
    for package in contents.packages:
        bom.components.add(_package(package, contents))
    bom.register_dependency(image, [envoy])
    return JsonV1Dot6(bom).output_as_string(indent=None).encode()


@dataclass(frozen=True, kw_only=True)
class Draft:
    """A document rendered before its image's digest is known: the digest's places (the image component,
    the serial number) hold a stand-in that `for_image` swaps for the digest, which gives the very bytes
    `document` makes with it. CycloneDX renders in ~50 ms, which then overlaps the push."""

    text: str
    repository: str
    stand_in: str  # 64 hex digits that nothing else in the document holds

    def for_image(self, image_digest: str) -> bytes:
        stand_in_serial, serial = (
            str(_serial(self.repository, digest)) for digest in (f"sha256:{self.stand_in}", image_digest)
        )
        text = self.text.replace(stand_in_serial, serial)
        return text.replace(self.stand_in, image_digest.removeprefix("sha256:")).encode()


def draft(*, repository: str, created: datetime, contents: ImageContents, binary: BinaryFacts) -> Draft:
    stand_in = secrets.token_hex(32)
    text = document(
        repository=repository,
        image_digest=f"sha256:{stand_in}",
        created=created,
        contents=contents,
        binary=binary,
    ).decode()
    return Draft(text=text, repository=repository, stand_in=stand_in)


def _serial(repository: str, image_digest: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{repository}@{image_digest}")


def _envoy(binary: BinaryFacts) -> Component:
    """The binary uprobes attach to: its hash and build-id; its pedigree, the commits and patches built."""
    from cyclonedx.model import HashAlgorithm, HashType, Property, XsUri
    from cyclonedx.model.component import (
        Commit,
        Component,
        ComponentType,
        Diff,
        Patch,
        PatchClassification,
        Pedigree,
    )

    return Component(
        name="envoy",
        type=ComponentType.APPLICATION,
        bom_ref="envoy",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=binary.sha256)],
        properties=[
            Property(name="hookbuild:path", value=binary.path),
            *([Property(name="hookbuild:build-id", value=binary.build_id)] if binary.build_id else []),
            *(
                Property(name=f"hookbuild:patch:{name}", value=f"sha256:{digest}")
                for name, digest in binary.patches
            ),
        ],
        pedigree=Pedigree(
            commits=[Commit(uid=commit, message=f"{role} source commit") for role, commit in binary.commits],
            patches=[
                Patch(type=PatchClassification.UNOFFICIAL, diff=Diff(url=XsUri(f"file:{name}")))
                for name, _ in binary.patches
            ],
        ),
    )


def _package(package: Package, contents: ImageContents) -> Component:
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL

    distro = contents.distro or "unknown"
    qualifiers = {"arch": package.architecture}
    if contents.distro_version:
        qualifiers["distro"] = f"{distro}-{contents.distro_version}"
    return Component(
        name=package.name,
        version=package.version,
        type=ComponentType.LIBRARY,
        bom_ref=f"deb:{package.name}:{package.architecture}",
        purl=PackageURL(
            type="deb", namespace=distro, name=package.name, version=package.version, qualifiers=qualifiers
        ),
    )


def names_binary(data: bytes, sha256: str) -> bool:
    """Does a CycloneDX JSON document list a component with this SHA-256?"""
    try:
        bom = json.loads(data)
        components = list(bom.get("components") or ())
    except (ValueError, AttributeError, TypeError):
        return False
    return any(
        isinstance(c, dict)
        and any(
            h.get("alg") == "SHA-256" and h.get("content") == sha256
            for h in c.get("hashes") or ()
            if isinstance(h, dict)
        )
        for c in components
    )
