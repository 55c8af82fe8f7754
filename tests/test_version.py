"""Record versions: MAJOR.MINOR only, ordered like semver."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookbuild.errors import VersionError
from hookbuild.version import Version


@pytest.mark.parametrize(
    "text",
    [
        "12",
        "v12.0",
        "12.0.1",
        "12.0.1.2",
        "../x",
        "12.01",
        "01.2",
        "",
        " 12.0",
        "12.0\n",
        "1e3.0",
        "-1.0",
        "12.a",
        "12..0",
        "１２.０",
    ],
)
def test_bad_versions_are_refused(text: str) -> None:
    with pytest.raises(VersionError, match="invalid version"):
        Version.parse(text)


def test_non_strings_are_refused() -> None:
    with pytest.raises(VersionError):
        Version.parse(12.0)  # type: ignore[arg-type]


def test_ordering_is_numeric_not_lexical() -> None:
    assert Version.parse("10.1") > Version.parse("9.9")
    assert Version.parse("12.0") > Version.parse("11.8")
    assert Version.parse("11.10") > Version.parse("11.9")
    assert sorted(Version.parse(v) for v in ["11.8", "9.9", "12.0", "10.1"]) == [
        Version.parse(v) for v in ["9.9", "10.1", "11.8", "12.0"]
    ]


def test_bumps() -> None:
    assert str(Version.parse("12.0").bump_minor()) == "12.1"
    assert str(Version.parse("12.3").bump_major()) == "13.0"


numbers = st.integers(min_value=0, max_value=999_999)


@given(numbers, numbers)
def test_round_trip(major: int, minor: int) -> None:
    text = f"{major}.{minor}"
    version = Version.parse(text)
    assert (version.major, version.minor) == (major, minor)
    assert str(version) == text


@given(numbers, numbers, numbers, numbers)
def test_order_matches_tuples(a: int, b: int, c: int, d: int) -> None:
    left, right = Version.parse(f"{a}.{b}"), Version.parse(f"{c}.{d}")
    assert (left < right) == ((a, b) < (c, d))
    assert (left == right) == ((a, b) == (c, d))


@given(st.text(max_size=12))
def test_parser_accepts_only_major_dot_minor(text: str) -> None:
    import re

    valid = re.fullmatch(r"(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})", text) is not None
    try:
        version = Version.parse(text)
    except VersionError:
        assert not valid
    else:
        assert valid and str(version) == text


def _outcome(parse: Callable[[str], Version], text: str) -> Version | str:
    try:
        return parse(text)
    except VersionError as exc:
        return str(exc)


EDGES = [
    "1.2",
    "0.0",
    "01.2",
    "1.02",
    "00.0",
    "999999.999999",
    "1000000.0",
    "0.1000000",
    "+1.2",
    "1.-2",
    "\u0661.2",
]


@given(
    st.from_regex(r"[0-9+v-]{0,8}\.[0-9+-]{0,8}", fullmatch=True)
    | st.text(max_size=12)
    | st.sampled_from(EDGES)
)
def test_plain_fast_path_agrees_with_semver(text: str) -> None:
    """The regex that spares most parses the semver import must decide exactly as semver does."""
    assert _outcome(Version.parse, text) == _outcome(Version.parse_by_semver, text)
