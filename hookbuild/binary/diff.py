"""What changed between two binaries for a uprobe script recorded against the older one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hookbuild.binary.symbols import BinaryInfo, Hookpoint


@dataclass(frozen=True, kw_only=True)
class SymbolDiff:
    added: tuple[Hookpoint, ...] = ()
    removed: tuple[Hookpoint, ...] = ()
    signature_changed: tuple[tuple[Hookpoint, Hookpoint], ...] = ()
    """(old, new): same function, new mangled name; a script probing the old name no longer attaches."""
    moved: tuple[tuple[Hookpoint, Hookpoint], ...] = field(default=())
    """(old, new): same mangled name at another address (breaks only address-based scripts)."""

    @property
    def breaking(self) -> bool:
        """A script recorded for the old binary fails to attach to (some of) the new one."""
        return bool(self.removed or self.signature_changed)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.signature_changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "breaking": self.breaking,
            "added": [h.to_dict() for h in self.added],
            "removed": [h.to_dict() for h in self.removed],
            "signature_changed": [
                {"function": old.function, "old": old.to_dict(), "new": new.to_dict()}
                for old, new in self.signature_changed
            ],
            "moved": [
                {"name": old.name, "old": f"{old.address:#x}", "new": f"{new.address:#x}"}
                for old, new in self.moved
            ],
        }


def diff(old: BinaryInfo, new: BinaryInfo) -> SymbolDiff:
    """What changed for a uprobe script written against `old`'s hookpoints when run on `new`."""
    old_by_name = {h.name: h for h in old.hookpoints}
    new_by_name = {h.name: h for h in new.hookpoints}
    removed = [h for name, h in old_by_name.items() if name not in new_by_name]
    added = [h for name, h in new_by_name.items() if name not in old_by_name]
    moved = tuple(
        (h, new_by_name[name])
        for name, h in old_by_name.items()
        if name in new_by_name and new_by_name[name].address != h.address
    )
    changed: list[tuple[Hookpoint, Hookpoint]] = []
    for gone in sorted(removed, key=lambda h: h.name):
        twin = next((h for h in sorted(added, key=lambda h: h.name) if h.function == gone.function), None)
        if twin is not None:
            changed.append((gone, twin))
            added.remove(twin)
    paired = {id(old_h) for old_h, _ in changed}
    return SymbolDiff(
        added=tuple(sorted(added, key=lambda h: h.name)),
        removed=tuple(sorted((h for h in removed if id(h) not in paired), key=lambda h: h.name)),
        signature_changed=tuple(changed),
        moved=moved,
    )
