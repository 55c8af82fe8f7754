"""Registry truth: does each recorded release's tag still hold the digest the record says it pushed?

A tag can move after a release (another push to the same tag, a test in the same namespace); the record
then pins one image while the tag serves another. `invoke versions --check-registry` reports every such
release; a retry of a recorded release checks its own tag first (hookbuild.release.stages).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hookbuild.images.reference import ImageRef
from hookbuild.record.model import Entry, Record

Reader = Callable[[ImageRef], str | None]


@dataclass(frozen=True, kw_only=True)
class Tag:
    entry: Entry
    recorded: str
    found: str | None
    """What the tag holds now; None when the registry has no such tag."""

    @property
    def holds(self) -> bool:
        return self.found == self.recorded

    def line(self) -> str:
        image = self.entry.release.image if self.entry.release else "?"
        if self.holds:
            return f"ok     {self.entry.ref}  {image} holds {self.recorded}"
        now = f"holds {self.found}" if self.found else "is gone"
        return f"MOVED  {self.entry.ref}  {image} {now}, recorded {self.recorded}"

    def as_json(self) -> dict[str, Any]:
        return {
            "ref": self.entry.ref,
            "image": self.entry.release.image if self.entry.release else None,
            "recorded": self.recorded,
            "found": self.found,
            "holds": self.holds,
        }


def check(
    record: Record, *, variant: str | None = None, user: str | None = None, read: Reader | None = None
) -> list[Tag]:
    """Ask the registry about every release recorded with a digest (entries kept by hand have none)."""
    reader = read or _registry_reader(user)
    if variant:
        record.variant(variant)
    return [
        Tag(entry=entry, recorded=entry.release.digest, found=reader(ImageRef.parse(entry.release.image)))
        for entry in record.entries
        if entry.release is not None and variant in (None, entry.variant)
    ]


def _registry_reader(user: str | None) -> Reader:
    from hookbuild.images import registry, tags

    auths: dict[str, Mapping[str, str] | None] = {}

    def read(ref: ImageRef) -> str | None:
        if ref.registry not in auths:
            auths[ref.registry] = registry.credentials(ref.registry, user=user)
        return tags.digest_of(ref, auth=auths[ref.registry])

    return read
