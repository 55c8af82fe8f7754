"""Record versions are `MAJOR.MINOR`, written as the record writes them and ordered with semver."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

import semver

from hookbuild.errors import VersionError

_PATTERN = re.compile(r"(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})")


@total_ordering
@dataclass(frozen=True, slots=True)
class Version:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> Version:
        if not isinstance(text, str) or not _PATTERN.fullmatch(text):
            raise VersionError(
                f"invalid version {text!r}",
                hint="write MAJOR.MINOR, for example 12.1 (no 'v', no patch part)",
            )
        major, minor = text.split(".")
        return cls(int(major), int(minor))

    def _semver(self) -> semver.Version:
        # Compare semver Versions with each other, never with strings (semver's strict parser rejects 12.0).
        return semver.Version(self.major, self.minor, 0)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._semver() < other._semver()

    def bump_major(self) -> Version:
        return Version(self.major + 1, 0)

    def bump_minor(self) -> Version:
        return Version(self.major, self.minor + 1)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"
