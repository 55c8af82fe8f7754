"""Registry truth: does each recorded release's tag still hold the digest the record says it pushed?

A tag can move after a release (another push to the same tag, a test in the same namespace); the record
then pins one image while the tag serves another. `invoke versions --check-registry` reports every such
release; a retry of a recorded release checks its own tag first (hookbuild.release.stages).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hookbuild.images.reference import ImageRef
from hookbuild.record.model import Entry, Record

if TYPE_CHECKING:
    from hookbuild.images.registry_api import Registry


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


def check(record: Record, *, connect: Callable[[str], Registry], variant: str | None = None) -> list[Tag]:
    """Ask the registry about every release recorded with a digest (entries kept by hand have none)."""
    if variant:
        record.variant(variant)
    with ExitStack() as stack:
        registries: dict[str, Registry] = {}

        def held(image: str) -> str | None:
            ref = ImageRef.parse(image)
            if ref.registry not in registries:  # one client (one auth answer) per registry
                registries[ref.registry] = stack.enter_context(connect(ref.registry))
            return registries[ref.registry].manifest_digest(ref.repository, ref.tag)

        return [
            Tag(entry=entry, recorded=entry.release.digest, found=held(entry.release.image))
            for entry in record.entries
            if entry.release is not None and variant in (None, entry.variant)
        ]
