"""The image a release is injected as (from the record, pinned by digest; where nodes pull it from), and
the manifest files it is injected into."""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from hookbuild import fsutil
from hookbuild.errors import InjectError
from hookbuild.images.reference import pinned

log = logging.getLogger("hookbuild")

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, kw_only=True)
class SidecarImage:
    """The image to inject: pinned by digest, or a tag for records made before hookbuild."""

    reference: str
    release: str  # VARIANT@MAJOR.MINOR
    pinned: bool

    @property
    def variant(self) -> str:
        return self.release.split("@", 1)[0]

    def registry(self) -> str | None:
        """The registry host[:port] of the reference; None for Docker Hub's short names."""
        first, _, rest = self.reference.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            return first
        return None

    def loopback(self) -> bool:
        """True when the registry is on the loopback interface: no node of a cluster can pull from it."""
        registry = self.registry()
        if registry is None:
            return False
        host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry[1:].split("]")[0]
        if host == "localhost" or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def image_reference(repository_or_tag_ref: str, digest: str | None) -> str:
    """`repo@sha256:...` from a published reference (tag or not) and its digest; the reference if none."""
    if digest is not None and not _DIGEST.fullmatch(digest):
        raise InjectError(
            f"invalid image digest {digest!r} for {repository_or_tag_ref}",
            hint="a digest is sha256: followed by 64 lowercase hex digits",
        )
    return pinned(repository_or_tag_ref, digest)


def sidecar_image(release: str, *, image: str, digest: str | None) -> SidecarImage:
    """Describe the image to inject: pinned by `digest` when the record has one, else the tag `image`."""
    reference = image_reference(image, digest)
    if not reference or any(ch.isspace() for ch in reference):
        raise InjectError(
            f"release {release} records an invalid image reference {reference!r}",
            hint="fix the image of this release in versions.toml",
        )
    return SidecarImage(reference=reference, release=release, pinned=digest is not None)


def resolve(versions_file: Path, release: str) -> SidecarImage:
    """The image of `release` (e.g. `istio@12.0`) as recorded in versions.toml."""
    from hookbuild import record  # owns versions.toml; raises VersionError/RecordError for unknown releases

    entry = record.load(versions_file).deployable(release)  # never a planned version: it has no image
    if entry.status is not record.Status.WORKING:
        reason = f": {entry.reason}" if entry.reason else ""
        log.warning("release %s is marked %s in %s%s", entry.ref, entry.status, versions_file, reason)
    if entry.release is not None:
        return sidecar_image(entry.ref, image=entry.release.image, digest=entry.release.digest)
    if entry.image is None:
        raise InjectError(
            f"release {entry.ref} records no image in {versions_file}",
            hint="publish it with `invoke release`, or record the image it was pushed as",
        )
    return sidecar_image(entry.ref, image=entry.image, digest=None)


def read_manifest(path: Path) -> str:
    """The manifest's text exactly as it is: CRLF line ends stay CRLF."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise InjectError(f"manifest {path} not found", hint="pass -f FILE, or '-' to read stdin") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InjectError(
            f"cannot read manifest {path}: {exc}", hint="pass a UTF-8 YAML or JSON file"
        ) from exc


def write_manifest(path: Path, text: str) -> None:
    """Write atomically: a failed or interrupted run never leaves half a manifest behind."""
    try:
        fsutil.atomic_write(path, text)
    except OSError as exc:
        raise InjectError(f"cannot write {path}: {exc}", hint="check the directory is writable") from exc
