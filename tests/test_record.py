"""versions.toml: seed record, schema errors, tomlkit edits, locking, atomic writes (real processes)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from hookbuild import record
from hookbuild.errors import RecordError, UsageError, VersionError
from hookbuild.record import edit as record_edit
from hookbuild.version import Version

SEED = ROOT / "versions.toml"
DATA = Path(__file__).parent / "data" / "record"


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    path = tmp_path / "versions.toml"
    shutil.copyfile(SEED, path)
    return path


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "versions.toml"
    shutil.copyfile(DATA / "small.toml", path)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance(**changes: object) -> record.Provenance:
    values: dict[str, object] = {
        "image": "127.0.0.1:5000/hookbuild/istio-proxy:12.1",
        "digest": "sha256:" + "a" * 64,
        "released_at": datetime(2026, 8, 1, 12, 0, tzinfo=UTC),
        "envoy_commit": "b" * 40,
        "proxy_commit": "c" * 40,
        "binary_sha256": "d" * 64,
        "build_id": "0123abcd",
        "hookpoints": (
            record.Hookpoint(mangled="_ZN5Envoy4Http9hookpointEv", demangled="Envoy::Http::hookpoint()"),
        ),
        "scripts": ("trace_all.sh",),
        "inputs_key": "e" * 64,
        "base_image": "docker.io/istio/proxyv2:1.26.0",
        "dockerfile": "istio.dockerfile",
    }
    values.update(changes)
    return record.Provenance(**values)  # type: ignore[arg-type]


# --- the seed record -------------------------------------------------------------------------------------


def test_seed_record_is_complete() -> None:
    rec = record.load(SEED)
    assert rec.variants() == ("istio", "cilium", "envoy", "istio-perf")
    refs = {entry.ref: entry for entry in rec.entries}
    assert set(refs) == {
        "istio@10.1",
        "istio@11.5",
        "istio@11.6",
        "istio@11.7",
        "istio@11.8",
        "istio@12.0",
        "cilium@2.0",
        "cilium@2.1",
        "cilium@2.2",
        "istio-perf@1.0",
        "istio-perf@1.1",
    }
    assert {r for r, e in refs.items() if e.verified} == {"istio@10.1", "istio@11.5", "istio@12.0"}
    assert {r for r, e in refs.items() if e.status is record.Status.DEPRECATED} == {
        "istio@11.6",
        "istio@11.7",
        "cilium@2.0",
    }
    assert refs["cilium@2.1"].status is record.Status.TEST_ONLY
    assert refs["istio@11.8"].supersedes == Version.parse("11.7")
    assert refs["istio-perf@1.1"].based_on == "istio@10.1"
    assert refs["istio@12.0"].packages == ("linux-tools-6.8.0-71-generic",)
    assert "perf" in refs["istio@12.0"].features
    assert refs["cilium@2.0"].upstream == record.Upstream(envoy="1.34.4", cilium="1.8.0")
    assert "x-request-id" in refs["istio@11.6"].summary and "gRPC" in (refs["istio@11.6"].status_reason or "")
    assert rec.variant("envoy").title == "Envoy" and rec.of("envoy") == ()
    for entry in rec.entries:
        assert entry.release is None and entry.digest is None
        assert entry.image == f"{rec.variant(entry.variant).image}:{entry.version}"


def test_queries() -> None:
    rec = record.load(SEED)
    assert [e.ref for e in rec.supporting("perf")] == ["istio@12.0"]
    assert rec.latest("istio").ref == "istio@12.0"  # type: ignore[union-attr]
    assert rec.latest("cilium").ref == "cilium@2.2"  # type: ignore[union-attr]
    assert rec.latest("envoy") is None
    assert [str(e.version) for e in rec.of("istio")] == ["12.0", "11.8", "11.7", "11.6", "11.5", "10.1"]
    assert rec.find("istio", "11.7") is not None and rec.find("istio", "11.9") is None
    assert rec.get("istio@11.8").summary == "The working version of 11.7"
    assert rec.next_version("istio", "minor") == Version.parse("12.1")
    assert rec.next_version("istio", "major") == Version.parse("13.0")
    assert rec.next_version("envoy", "major") == Version.parse("1.0")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("istio@11.9", "istio@11.9 is not in"),
        ("nope@1.0", "unknown variant 'nope'"),
        ("istio@v12.0", "invalid version"),
        ("istio", "invalid release reference"),
        ("../x@1.0", "invalid variant name"),
    ],
)
def test_get_unknown_or_malformed(ref: str, message: str) -> None:
    with pytest.raises(VersionError, match=message):
        record.load(SEED).get(ref)


# --- schema errors: line and field named, nothing written ------------------------------------------------

BREAKAGES = [
    # (old text, new text, expected line content, expected field path, expected words)
    ('version = "12.0"', 'version = "v12.0"', 'version = "v12.0"', "istio[1].version", "invalid version"),
    ('version = "12.0"', 'version = "12"', 'version = "12"', "istio[1].version", "invalid version"),
    (
        'status = "working"\nverified = true',
        'status = "broken"\nverified = true',
        'status = "broken"',
        "istio[1].status",
        "not one of",
    ),
    ("verified = true", 'verified = "yes"', 'verified = "yes"', "istio[1].verified", "true or false"),
    (
        'istio-proxy:12.0"\n',
        'istio-proxy:12.0"\ncolour = "red"\n',
        'colour = "red"',
        "istio[1].colour",
        "unknown key",
    ),
    ('version = "11.8"', 'version = "12.0"', 'version = "12.0"', "istio[1].version", "recorded twice"),
    (
        'features = ["symbols"]',
        'features = ["symbols", "Bad Tag"]',
        'features = ["symbols", "Bad Tag"]',
        "cilium[0].features",
        "unknown feature 'Bad Tag'",
    ),
    (
        'istio-proxy:12.0"\n',
        'istio-proxy:12.0"\nbased_on = "istio@9.9"\n',
        'based_on = "istio@9.9"',
        "istio[1].based_on",
        "not in the record",
    ),
    (
        "packages = []\n\n[[istio]]",
        'packages = []\nsupersedes = "12.0"\n\n[[istio]]',
        'supersedes = "12.0"',
        "istio[0].supersedes",
        "not older than",
    ),
    (
        "packages = []\n\n[[istio]]",
        'packages = []\nsupersedes = "10.1"\n\n[[istio]]',
        'supersedes = "10.1"',
        "istio[0].supersedes",
        "not in the record",
    ),
    (
        'status = "working"\nverified = false\nsummary = "Use',
        'status = "deprecated"\nverified = false\nsummary = "Use',
        "[[cilium]]",
        "cilium[0].status_reason",
        "needs a reason",
    ),
    ("schema = 1", "schema = 3", "schema = 3", "schema", "schema must be 1 or 2, got 3"),
    ("\n[[cilium]]\n", "\n[[cillium]]\n", "[[cillium]]", "cillium", "unknown key"),
    ('summary = "Add `linux', 'sumary = "Add `linux', "sumary = ", "istio[1].sumary", "unknown key"),
    (
        'summary = "Add `linux-tools-6.8.0-71-generic` to support perf"\n',
        "",
        "[[istio]]",
        "istio[1]",
        "missing required key 'summary'",
    ),
]


@pytest.mark.parametrize(("old", "new", "line_text", "field", "words"), BREAKAGES)
def test_schema_errors_name_line_and_field(
    small: Path, old: str, new: str, line_text: str, field: str, words: str
) -> None:
    text = small.read_text()
    assert old in text
    broken = text.replace(old, new, 1)
    small.write_text(broken)
    before = digest(small)
    with pytest.raises(RecordError) as caught:
        record.load(small)
    message = caught.value.line()
    line_no = [i for i, line in enumerate(broken.splitlines(), 1) if line.strip().startswith(line_text)][-1]
    assert f"{small}:{line_no}: {field}: " in message
    assert words in message
    assert "\n" not in message
    # a writer refuses to build on a broken record and leaves it byte-identical
    with pytest.raises(RecordError):
        record_edit.bump(small, "istio", "minor", "more")
    assert digest(small) == before


ONE_ENTRY = """schema = 2

[variants.istio]
title = "Istio"
image = "docker.io/hookbuild/istio-proxy"

[[istio]]
version = "1.0"
summary = "one"
{extra}
"""
RELEASE = """
[istio.release]
image = "127.0.0.1:5000/hookbuild/istio-proxy:1.0"
digest = "sha256:{a}"
released_at = 2026-08-01T12:00:00Z
envoy_commit = "{b}"
binary_sha256 = "{a}"
base_image = "docker.io/istio/proxyv2:1.26.0"
dockerfile = "istio.dockerfile"
""".format(a="a" * 64, b="b" * 40)


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ('features = ["perf", 3]', "istio[0].features[1]", "must be a string, got int"),
        ('features = ["perf", "perf"]', "istio[0].features", "has duplicate items"),
        (
            'history = [{ status = "working" }, { status = "gone" }]',
            "istio[0].history[1].status",
            "'gone' is not one of",
        ),
        ('upstream = { envoy = " " }', "istio[0].upstream.envoy", "must not be empty"),
        ("upstream = []", "istio[0].upstream", "must be a table"),
        (
            RELEASE + 'hookpoints = [{ mangled = "a", demangled = "a()" }, { mangled = "b" }]',
            "istio[0].release.hookpoints[1]",
            "missing required key 'demangled'",
        ),
        (
            RELEASE.replace('digest = "sha256:', 'digest = "md5:'),
            "istio[0].release.digest",
            "is not a digest",
        ),
        # Two problems: the one reported is the first field the schema declares, whatever the file's order.
        ('verified = "no"\nstatus = "gone"', "istio[0].status", "'gone' is not one of"),
    ],
)
def test_nested_schema_errors_name_the_whole_path(extra: str, field: str, words: str) -> None:
    with pytest.raises(RecordError) as caught:
        record.loads(ONE_ENTRY.format(extra=extra))
    message = caught.value.line()
    assert f": {field}: " in message and words in message


def test_invalid_toml_names_the_line(small: Path) -> None:
    small.write_text(small.read_text().replace('summary = "The working', "summary = The working"))
    before = digest(small)
    with pytest.raises(RecordError, match=r"invalid TOML: .*line 20"):
        record.load(small)
    with pytest.raises(RecordError):
        record_edit.set_status(small, "istio@11.8", record.Status.DEPRECATED, "x")
    assert digest(small) == before


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="does not exist"):
        record.load(tmp_path / "nope.toml")


def test_a_failing_change_leaves_the_file_untouched(small: Path) -> None:
    before = digest(small)

    def bad(doc):  # type: ignore[no-untyped-def]
        doc["istio"][0]["version"] = "12.0"  # duplicate: validation refuses

    with pytest.raises(RecordError, match="recorded twice"):
        record_edit.update(small, bad)

    def boom(doc):  # type: ignore[no-untyped-def]
        doc["istio"][0]["summary"] = "half done"
        raise UsageError("stop here")

    with pytest.raises(UsageError):
        record_edit.update(small, boom)
    assert digest(small) == before
    assert not list(small.parent.glob(".versions.toml.*.tmp"))


# --- edits keep comments and layout (golden file) ---------------------------------------------------------


def at(hour: int) -> datetime:
    return datetime(2026, 12, 1, hour, 0, tzinfo=UTC)


def test_golden_bump(small: Path) -> None:
    """Appends after the variant's last entry, in-place status changes, comments kept, schema 1 -> 2."""
    before = small.read_text()
    assert (
        str(record_edit.bump(small, "istio", "minor", "Trace the router", now=lambda: at(1)).version)
        == "12.1"
    )
    cilium = record_edit.bump(small, "cilium", "major", "Cilium 3", features=["perf"], now=lambda: at(2))
    assert str(cilium.version) == "3.0"
    assert (
        str(record_edit.bump(small, "envoy", "major", "First plain Envoy", now=lambda: at(3)).version)
        == "1.0"
    )
    record_edit.set_status(
        small, "istio@11.8", record.Status.DEPRECATED, "superseded by 12.0", now=lambda: at(4)
    )
    assert small.read_text() == (DATA / "small.bumped.toml").read_text()
    rec = record.load(small)
    assert rec.schema == 2 and record.loads(before).schema == 1
    assert rec.get("istio@12.1").packages == ("linux-tools-6.8.0-71-generic",)  # carried from 12.0
    assert rec.get("istio@12.1").features == ("hookpoints", "grpc", "perf")
    assert rec.get("cilium@3.0").features == ("symbols", "perf")  # --feature adds to the carried ones


def test_bump_numbers_are_never_reused(seed: Path) -> None:
    record_edit.bump(seed, "istio", "minor", "one")
    record_edit.set_status(seed, "istio@12.1", record.Status.DEPRECATED, "abandoned")
    entry = record_edit.bump(seed, "istio", "minor", "two")
    assert str(entry.version) == "12.2"
    assert entry.features == record.load(seed).get("istio@12.0").features  # latest *working* one


def test_dry_run_writes_nothing(seed: Path) -> None:
    before = digest(seed)
    entry = record_edit.bump(seed, "istio", "major", "big", dry_run=True)
    assert str(entry.version) == "13.0"
    assert digest(seed) == before


def test_bump_checks_relations(seed: Path) -> None:
    with pytest.raises(RecordError, match=r"based_on.*not in the record"):
        record_edit.bump(seed, "istio-perf", "minor", "x", based_on="istio@99.0")
    with pytest.raises(VersionError, match="unknown variant"):
        record_edit.bump(seed, "nope", "minor", "x")


def test_set_status_never_deletes(seed: Path) -> None:
    count = len(record.load(seed).entries)
    record_edit.set_status(seed, "cilium@2.2", record.Status.TEST_ONLY, "only for the benchmark")
    record_edit.set_status(seed, "istio@11.7", record.Status.WORKING, "works after all")
    rec = record.load(seed)
    assert len(rec.entries) == count
    assert rec.get("cilium@2.2").status is record.Status.TEST_ONLY
    assert rec.get("istio@11.7").status is record.Status.WORKING
    with pytest.raises(UsageError, match="needs a reason"):
        record_edit.set_status(seed, "istio@11.7", record.Status.DEPRECATED, " ")


def test_release_provenance_round_trip(seed: Path) -> None:
    bumped = record_edit.bump(
        seed, "istio", "minor", "traced router", now=lambda: datetime(2026, 7, 1, tzinfo=UTC)
    )
    released = record_edit.add_release(seed, "istio", bumped.version, provenance())
    assert released.release == provenance()
    rec = record.load(seed)
    entry = rec.get("istio@12.1")
    assert entry.release == provenance()
    assert entry.reference == "127.0.0.1:5000/hookbuild/istio-proxy@sha256:" + "a" * 64
    assert entry.image == "127.0.0.1:5000/hookbuild/istio-proxy:12.1"
    with pytest.raises(RecordError, match="already released"):
        record_edit.add_release(seed, "istio", "12.1", provenance())
    record_edit.add_release(seed, "istio", "12.1", provenance(digest="sha256:" + "f" * 64), replace=True)
    assert record.load(seed).get("istio@12.1").digest == "sha256:" + "f" * 64
    # a version not recorded yet is added, carrying features of the latest working version
    added = record_edit.add_release(seed, "istio", "13.0", provenance(inputs_key=None, dirty=True))
    assert added.features == entry.features and added.release is not None and added.release.dirty
    tomllib.loads(seed.read_text())


def test_provenance_is_validated(seed: Path) -> None:
    with pytest.raises(RecordError, match=r"release\.digest: 'sha256:short' is not a digest"):
        record_edit.add_release(seed, "istio", "12.0", provenance(digest="sha256:short"))
    with pytest.raises(RecordError, match=r"release\.envoy_commit"):
        record_edit.add_release(seed, "istio", "12.0", provenance(envoy_commit="main"))


def test_json_view() -> None:
    data = record.load(SEED).get("istio@11.8").as_json()
    assert data["version"] == "11.8" and data["supersedes"] == "11.7" and data["digest"] is None
    assert data["ref"] == "istio@11.8" and data["status"] == "working"


# --- real processes: locking, atomicity ------------------------------------------------------------------

BUMPER = """
import sys
from pathlib import Path
from hookbuild.record import edit as record_edit
print(record_edit.bump(Path(sys.argv[1]), "istio", "minor", "concurrent " + sys.argv[2], again=True).version)
"""


@pytest.mark.slow  # sixteen real processes
def test_sixteen_concurrent_bumps_lose_nothing(seed: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", BUMPER, str(seed), str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(16)
    ]
    outputs = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert sorted(outputs, key=Version.parse) == [f"12.{n}" for n in range(1, 17)]
    rec = record.load(seed)
    assert {e.summary for e in rec.of("istio") if e.summary.startswith("concurrent")} == {
        f"concurrent {i}" for i in range(16)
    }
    assert len(rec.entries) == 11 + 16


WRITER = """
import sys
from pathlib import Path
from hookbuild import record
from hookbuild.record import edit as record_edit
path = Path(sys.argv[1])
print("ready", flush=True)
n = 0
while True:
    n += 1
    if n % 2:
        record_edit.bump(path, "istio", "minor", "x" * 2000 + str(n), again=True)
    else:
        status = record.Status.TEST_ONLY if n % 4 else record.Status.WORKING
        record_edit.set_status(path, "cilium@2.2", status, str(n))
"""


def _writer(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.slow  # real processes killed and raced
def test_sigkill_mid_write_leaves_old_or_new_file(seed: Path) -> None:
    rng = random.Random(1234)
    counts = [len(record.load(seed).entries)]
    for _ in range(12):
        proc = _writer(seed)
        time.sleep(rng.uniform(0.02, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        text = seed.read_text()
        tomllib.loads(text)  # never a half-written file
        counts.append(len(record.load(seed).entries))
    # Under load a writer may not finish one bump before its kill: let one land, then kill it mid-flight.
    proc = _writer(seed)
    deadline = time.monotonic() + 60
    while len(record.load(seed).entries) == counts[-1] and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()  # type: ignore[union-attr]
    tomllib.loads(seed.read_text())
    counts.append(len(record.load(seed).entries))
    assert counts == sorted(counts) and counts[-1] > counts[0]
    # the next writer cleans up a killed writer's temp file and takes the lock at once
    started = time.monotonic()
    record_edit.bump(seed, "cilium", "minor", "after the kills", again=True)
    assert time.monotonic() - started < 5
    assert not list(seed.parent.glob(".versions.toml.*.tmp"))


@pytest.mark.slow  # real processes killed and raced
def test_queries_during_writes_see_a_valid_file(seed: Path) -> None:
    proc = _writer(seed)
    try:
        seen = set()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            seen.add(len(record.load(seed).entries))
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    assert len(seen) > 1  # the file really changed while we read it


# --- the cache of validated records ---------------------------------------------------------------------


def test_cache_is_keyed_by_content(seed: Path) -> None:
    """A query after any edit (by hand too) sees the edit; a damaged cache entry is a miss, not an error."""
    from hookbuild.record import cache

    first = record.load(seed)
    stored = sorted(cache.directory().glob("*.pickle"), key=lambda p: p.stat().st_mtime)[-1]
    assert stored.stat().st_mode & 0o777 == 0o600
    assert record.load(seed) == first == record.loads(seed.read_text(), path=seed)
    seed.write_text(
        seed.read_text().replace('summary = "The working version of 11.7"', 'summary = "by hand"')
    )
    assert record.load(seed).get("istio@11.8").summary == "by hand"
    for entry in cache.directory().glob("*.pickle"):
        entry.write_bytes(b"not a pickle")
    assert record.load(seed).get("istio@11.8").summary == "by hand"
    seed.write_text(seed.read_text().replace('status = "test-only"', 'status = "maybe"'))
    with pytest.raises(RecordError, match="'maybe' is not one of"):
        record.load(seed)  # a broken record is never served from the cache


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Counted:
    count: int
    name: str = "x"


def test_schema_reads_integer_fields() -> None:
    """A field added later may be an integer: read as one, and a quoted or boolean value is refused."""
    from hookbuild.record import schema

    assert schema.build(_Counted, {"count": 3}, ("t",), {}) == _Counted(count=3)
    for wrong in ("3", True):
        with pytest.raises(Exception, match="must be an integer"):
            schema.build(_Counted, {"count": wrong}, ("t",), {})


def test_a_write_does_not_cache_the_text_it_replaces(
    seed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bump loads the record once and replaces it: pickling the old text would be wasted work. A dry run
    leaves the text in place, so what it read is cached for the next query, which hits it."""
    import gc

    from hookbuild.record import cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # this test's own, empty
    record_edit.bump(seed, "istio", "minor", "next")
    assert not list(cache.directory().glob("*.pickle"))
    record_edit.bump(seed, "istio", "minor", "another", again=True, dry_run=True)
    assert len(list(cache.directory().glob("*.pickle"))) == 1
    assert record.load(seed) == record.loads(seed.read_text(), path=seed)
    assert len(list(cache.directory().glob("*.pickle"))) == 1  # the query was a hit
    # Loading pauses the cyclic garbage collector and leaves it as it found it.
    assert gc.isenabled()
    gc.disable()
    try:
        record.load(seed)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_bump_validates_the_whole_record_once(
    seed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One full validation per write, cache or no cache: the new entry's lines are checked on their own."""
    from hookbuild.record import schema

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    validated: list[str] = []
    real = schema.validate

    def counted(data: Any, *, text: str, name: str, path: Path | None) -> record.Record:
        validated.append(name)
        return real(data, text=text, name=name, path=path)

    monkeypatch.setattr(schema, "validate", counted)
    record_edit.bump(seed, "istio", "minor", "next")
    assert validated == [str(seed)]
    record.load(seed)  # the new text: a miss, validated once more
    record_edit.set_status(seed, "istio@12.1", record.Status.DEPRECATED, "not needed")
    assert validated == [str(seed)] * 2  # the write found the text its query cached
