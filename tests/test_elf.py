"""hookbuild.elf on real g++ output: equal to nm, offsets on an LLD PIE, damaged files give SymbolError."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from elf_samples import (
    Samples,
    build_call_graph,
    call_sites_brute_force,
    load_segments,
    nm_hookpoints,
    objdump_branch_targets,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookbuild.binary import calls, elf, lookup, symbols
from hookbuild.errors import SymbolError


def _names(binary: Path, table: str = "symtab") -> set[tuple[str, int]]:
    with elf.open_image(binary) as image:
        return {(s.name, s.value) for s in lookup.functions(image, "hookpoint", table)}


def test_symtab_equals_nm(samples: Samples) -> None:
    for binary in (samples.gcc, samples.lld, samples.changed):
        assert _names(binary) == nm_hookpoints(binary) != set()


def test_sections_and_segments_equal_readelf(samples: Samples, graph: Path) -> None:
    """The headers, decoded with struct, are what binutils reads: names, types' data, addresses, sizes."""
    for binary in (samples.gcc, samples.lld, samples.stripped, graph):
        out = subprocess.run(
            ["readelf", "-SW", str(binary)], check=True, capture_output=True, text=True
        ).stdout
        expected = [
            (m[1], int(m[2], 16), int(m[3], 16), int(m[4], 16), "X" in m[5])
            for m in re.finditer(r"\]\s+(\S*)\s+\w+\s+([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+) \S+ +(\w*)", out)
        ]
        with elf.open_image(binary) as image:
            got = [(s.name, s.addr, s.offset, s.size, s.executable) for s in image.sections]
            assert got == expected, binary.name
            loads = [
                (s.offset, s.vaddr, s.filesz, bool(s.flags & elf.PF_X)) for s in image.segments if s.type == 1
            ]
            assert loads == load_segments(binary)


def test_stripped_keeps_dynsym_exports(samples: Samples) -> None:
    with elf.open_image(samples.stripped) as image:
        assert not image.has_symtab
    assert _names(samples.stripped, "dynsym") == nm_hookpoints(samples.stripped, dynamic=True)
    assert {name for name, _ in _names(samples.stripped, "dynsym")} == {"_Z17hookpointExportedi"}


def test_other_patterns_and_suffix_sharing(samples: Samples) -> None:
    with elf.open_image(samples.gcc) as image:
        got = {s.name for s in lookup.functions(image, "DecodeHeaders")}
        assert got == {n for n, _ in nm_hookpoints(samples.gcc, pattern="DecodeHeaders")}
        assert len(got) == 2
        assert lookup.functions(image, "no-such-symbol-anywhere") == []


def test_lld_pie_file_offset_differs_from_address(samples: Samples) -> None:
    segs = load_segments(samples.lld)
    with elf.open_image(samples.lld) as image:
        assert image.pie and image.machine == "x86-64" and image.build_id
        for sym in lookup.functions(image, "hookpoint"):
            (offset, vaddr) = next((o, v) for o, v, size, x in segs if x and v <= sym.value < v + size)
            assert image.file_offset(sym.value) == sym.value - vaddr + offset != sym.value


def test_call_sites(samples: Samples) -> None:
    with elf.open_image(samples.gcc) as image:
        syms = {s.name: s.value for s in lookup.functions(image, "hookpoint")}
        called = calls.called(image, syms.values())
    assert called is not None
    assert {n for n, a in syms.items() if a not in called} == {"_Z13hookpointDeadv"}


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 g++-built hookpoints calling each other (calls, tail-call jmps, pointers only, none)."""
    return build_call_graph(tmp_path_factory.mktemp("graph"), functions=1500)


# Each way of answering must give today's answer, the byte-by-byte one: nearby search only, one pass with a
# bitmap, one pass with a binary search, and the default mix.
METHODS = [
    {"nearby_targets": 10**9},
    {"nearby_targets": 0},
    {"nearby_targets": 0, "bitmap_span": 0},
    {},
]


@pytest.mark.parametrize("method", METHODS, ids=["nearby", "pass-bitmap", "pass-search", "default"])
def test_called_flags_equal_brute_force(
    samples: Samples, graph: Path, method: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calls, "CHUNK", 4093)  # many chunk edges, at odd offsets, in a small binary
    for binary in (samples.gcc, samples.lld, samples.changed, graph):
        brute = call_sites_brute_force(binary)
        with elf.open_image(binary) as image:
            targets = {s.value for s in lookup.functions(image, "hookpoint")}
            found = calls.called(image, targets, **method)
        assert found == targets & brute, binary.name
        assert targets - brute, "some hookpoint must be uncalled, or the comparison proves little"
    assert len(found) > 100 and len(targets - found) > 100


@pytest.fixture(scope="module")
def arm64_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same call graph built for aarch64 by the cross g++ (Istio and Envoy ship arm64 images)."""
    return build_call_graph(
        tmp_path_factory.mktemp("arm64"), functions=1500, compiler="aarch64-linux-gnu-g++"
    )


@pytest.mark.parametrize("method", METHODS, ids=["nearby", "pass-bitmap", "pass-search", "default"])
def test_arm64_called_flags_equal_objdump(
    arm64_graph: Path, method: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calls, "CHUNK", 4093)  # chunk edges at odd offsets: sites must stay word-aligned
    with elf.open_image(arm64_graph) as image:
        assert image.machine == "aarch64"
        targets = {s.value for s in lookup.functions(image, "hookpointGen")}
        found = calls.called(image, targets, **method)
    assert len(targets) == 1500
    assert found == targets & objdump_branch_targets(arm64_graph)
    assert len(found) > 100 and len(targets - found) > 100


def test_lookup_methods_equal_nm(graph: Path) -> None:
    expected = nm_hookpoints(graph, pattern="hookpointGen")
    assert len(expected) == 1500
    with elf.open_image(graph) as image:
        for few in (0, 10**9):  # one vectorized pass; one find per range
            got = lookup.functions(image, "hookpointGen", few=few)
            assert {(s.name, s.value) for s in got} == expected
            assert {(s.name, s.value) for s in lookup.functions(image, "hookpointGen1", few=few)} == {
                (name, value) for name, value in expected if "hookpointGen1" in name
            }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("elf32", "32-bit ELF"),
        ("text", "not an ELF file"),
        ("missing", "no such file"),
        ("empty", "empty file"),
    ],
)
def test_unreadable_files(samples: Samples, tmp_path: Path, name: str, expected: str) -> None:
    (tmp_path / "empty").write_bytes(b"")
    path = {"elf32": samples.elf32, "text": samples.text}.get(name, tmp_path / name)
    with pytest.raises(SymbolError, match=expected), elf.open_image(path):
        pass


def test_truncated_symtab(samples: Samples, tmp_path: Path) -> None:
    data = samples.gcc.read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(data[: len(data) // 2] + data[-64 * 40 :])  # section headers kept, tables cut
    with pytest.raises(SymbolError, match=r"truncated|malformed"), elf.open_image(cut) as image:
        lookup.functions(image, "hookpoint")


def _read_all(path: Path) -> None:
    with elf.open_image(path) as image:
        syms = lookup.functions(image, "hookpoint") + lookup.functions(image, "hookpoint", "dynsym")
        calls.called(image, (s.value for s in syms))
        for s in syms:
            image.file_offset(s.value)
        _ = image.build_id, image.pie, image.code_digest()


@pytest.mark.slow
@settings(deadline=2000, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_damaged_files_raise_only_symbol_error(
    samples: Samples, tmp_path: Path, data: st.DataObject
) -> None:
    original = bytearray(samples.lld.read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        blob = original[: data.draw(st.integers(0, len(original) - 1), label="length")]
    else:
        blob = original
        for _ in range(data.draw(st.integers(1, 16), label="mutations")):
            # Headers and tables are where parsers break: aim there more often than at code.
            where = data.draw(
                st.one_of(
                    st.integers(0, 64),
                    st.integers(len(blob) - 64 * 40, len(blob) - 1),
                    st.integers(0, len(blob) - 1),
                ),
                label="offset",
            )
            blob[where] = data.draw(st.integers(0, 255), label="byte")
    path = tmp_path / "fuzzed"
    path.write_bytes(bytes(blob))
    try:
        _read_all(path)
    except SymbolError as exc:
        assert exc.line()


def test_every_short_prefix_of_an_elf_is_one_symbol_error(samples: Samples, tmp_path: Path) -> None:
    """Found by the fuzz test: a file cut just after the magic read past its end."""
    data = samples.gcc.read_bytes()
    for size in range(0, 80):
        cut = tmp_path / f"cut{size}"
        cut.write_bytes(data[:size])
        with pytest.raises(SymbolError):
            symbols.read_binary(cut)
