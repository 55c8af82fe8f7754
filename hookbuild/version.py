"""Record versions are `MAJOR.MINOR`: parsed by semver's rules, kept and printed as the record writes them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hookbuild.errors import VersionError

# What semver accepts for MAJOR.MINOR, in ASCII digits: most versions parse here, without semver.
_PLAIN = re.compile(r"(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})")
_HINT = "write MAJOR.MINOR, for example 12.1 (no 'v', no patch part)"
_LIMIT = 999_999  # six digits: versions are written by people


@dataclass(frozen=True, slots=True, order=True)
class Version:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> Version:
        """`12.1` -> Version(12, 1). semver rejects leading zeros, signs and junk; the patch part, which
        semver would add, is refused here: the record's versions have two parts."""
        plain = _PLAIN.fullmatch(text) if isinstance(text, str) else None
        if plain:
            return cls(int(plain[1]), int(plain[2]))
        return cls.parse_by_semver(text)

    @classmethod
    def parse_by_semver(cls, text: str) -> Version:
        """`parse` without its fast path: semver decides (the tests hold the fast path to this)."""
        import semver

        if not isinstance(text, str) or text.count(".") != 1:
            raise VersionError(f"invalid version {text!r}", hint=_HINT)
        try:
            parsed = semver.Version.parse(text, optional_minor_and_patch=True)
        except (ValueError, TypeError):
            raise VersionError(f"invalid version {text!r}", hint=_HINT) from None
        if parsed.prerelease or parsed.build or max(parsed.major, parsed.minor) > _LIMIT:
            raise VersionError(f"invalid version {text!r}", hint=_HINT)
        return cls(parsed.major, parsed.minor)

    def __reduce__(self) -> tuple[type[Version], tuple[int, int]]:
        # Pickled (the record cache) as a constructor call: the dataclass's own state methods for a frozen
        # slotted class are Python functions, twice as slow for the 10,000 versions of a large record.
        return (Version, (self.major, self.minor))

    def bump_major(self) -> Version:
        return Version(self.major + 1, 0)

    def bump_minor(self) -> Version:
        return Version(self.major, self.minor + 1)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"
