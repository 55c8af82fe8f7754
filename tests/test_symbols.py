"""hookbuild.symbols on real g++ output: hookpoints equal nm's, dead ones found, stripped + debug, diff."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from elf_samples import Samples, nm_hookpoints

from hookbuild.binary import cache, diff, symbols
from hookbuild.binary.demangle import function_name
from hookbuild.errors import SymbolError


def test_read_binary_equals_nm(samples: Samples) -> None:
    info = symbols.read_binary(samples.lld)
    assert {(h.name, h.address) for h in info.hookpoints} == nm_hookpoints(samples.lld)
    assert info.sha256 == hashlib.sha256(samples.lld.read_bytes()).hexdigest()
    assert info.pie and not info.stripped and info.machine == "x86-64" and info.build_id
    by_name = {h.name: h for h in info.hookpoints}
    assert by_name["_ZN5Envoy4Http22hookpointDecodeHeadersElPKc"].demangled == (
        "Envoy::Http::hookpointDecodeHeaders(long, char const*)"
    )
    assert by_name["_ZN5Envoy4Http17hookpointTemplateIdEEvT_"].demangled == (
        "void Envoy::Http::hookpointTemplate<double>(double)"
    )
    assert by_name["hookpoint_c"].demangled == "hookpoint_c"
    assert by_name["_Z17hookpointExportedi"].table == "symtab"  # in both tables, reported once
    assert all(h.section == ".text" and h.size > 0 and h.file_offset != h.address for h in info.hookpoints)


def test_dead_hookpoint_is_not_called(samples: Samples) -> None:
    info = symbols.read_binary(samples.gcc)
    assert [h.name for h in info.dead] == ["_Z13hookpointDeadv"]
    assert all(h.called for h in info.hookpoints if h.name != "_Z13hookpointDeadv")
    assert any("hookpointDead()" in note and "never fires" in note for note in info.warnings())


def test_stripped_reports_dynsym_exports(samples: Samples) -> None:
    info = symbols.read_binary(samples.stripped)
    assert info.stripped
    assert {(h.name, h.address) for h in info.hookpoints} == nm_hookpoints(samples.stripped, dynamic=True)
    assert [h.table for h in info.hookpoints] == ["dynsym"]
    assert any("stripped" in note and "--debug-binary" in note for note in info.warnings())


def test_stripped_with_debug_binary_gives_addresses(samples: Samples, tmp_path: Path) -> None:
    full = symbols.read_binary(samples.lld)
    info = symbols.read_binary(samples.stripped, debug_binary=samples.lld)
    assert info.stripped and info.sha256 != full.sha256
    assert [(h.name, h.address, h.file_offset) for h in info.hookpoints] == [
        (h.name, h.address, h.file_offset) for h in full.hookpoints
    ]
    debug_only = tmp_path / "envoy.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(samples.lld), str(debug_only)], check=True)
    again = symbols.read_binary(samples.stripped, debug_binary=debug_only)
    assert [h.address for h in again.hookpoints] == [h.address for h in full.hookpoints]


def test_debug_binary_of_other_code_is_refused(samples: Samples) -> None:
    with pytest.raises(SymbolError, match="debug binary"):
        symbols.read_binary(samples.stripped, debug_binary=samples.changed)


def test_errors(samples: Samples, tmp_path: Path) -> None:
    with pytest.raises(SymbolError, match="32-bit"):
        symbols.read_binary(samples.elf32)
    with pytest.raises(SymbolError, match="not an ELF"):
        symbols.read_binary(samples.text)
    with pytest.raises(SymbolError, match="no such file"):
        symbols.read_binary(tmp_path / "nope")
    copy = tmp_path / "copy"
    shutil.copy(samples.lld, copy)
    assert symbols.read_binary(copy, pattern="zzz-nothing").hookpoints == ()


def test_diff_signature_change(samples: Samples) -> None:
    old, new = symbols.read_binary(samples.lld), symbols.read_binary(samples.changed)
    result = diff.diff(old, new)
    assert [(a.name, b.name) for a, b in result.signature_changed] == [
        ("_ZN5Envoy4Http22hookpointDecodeHeadersEi", "_ZN5Envoy4Http22hookpointDecodeHeadersEii")
    ]
    assert [h.name for h in result.removed] == ["hookpoint_c"]
    assert [h.name for h in result.added] == ["_Z12hookpointNewv"]
    assert result.breaking
    same = diff.diff(old, symbols.read_binary(samples.stripped, debug_binary=samples.lld))
    assert not same.changed and not same.breaking and not same.moved
    assert not diff.diff(old, symbols.BinaryInfo.from_dict(old.to_dict())).changed


@pytest.mark.parametrize(
    ("demangled", "function"),
    [
        ("Envoy::Http::hookpointA(int)", "Envoy::Http::hookpointA"),
        ("Envoy::Http::F::hookpointB(bool) const", "Envoy::Http::F::hookpointB"),
        ("void ns::hookpointT<std::pair<int, int> >(int (*)(long))", "ns::hookpointT<std::pair<int, int> >"),
        ("hookpoint_c", "hookpoint_c"),
        ("Envoy::F::hookpointOnData(bool) [clone .isra.0]", "Envoy::F::hookpointOnData"),
    ],
)
def test_function_name(demangled: str, function: str) -> None:
    assert function_name(demangled) == function


def _settled(path: Path) -> None:
    """Wait until `path` is older than the cache's racy window (a just-written file is not cached)."""
    import time

    st = path.stat()
    wait = (max(st.st_mtime_ns, st.st_ctime_ns) + cache.RACY_NS) / 1e9 - time.time()
    if wait > 0:
        time.sleep(wait + 0.05)


def test_cache_serves_only_the_same_file(samples: Samples, tmp_path: Path) -> None:
    import json
    import os

    cache = tmp_path / "cache"
    binary = tmp_path / "envoy"
    shutil.copy(samples.lld, binary)
    assert symbols.read_binary(binary, cache_dir=cache) == symbols.read_binary(binary)
    assert not list(cache.glob("*.json")), "a file written just now must not be cached (racy)"
    _settled(binary)
    fresh = symbols.read_binary(binary, cache_dir=cache)
    (entry_file,) = cache.glob("*.json")
    # Mark the stored entry: a result carrying the mark can only have come from the cache.
    entry = json.loads(entry_file.read_text())
    entry["info"]["hookpoints"][0]["demangled"] = "FROM-CACHE"
    entry_file.write_text(json.dumps(entry))
    hit = symbols.read_binary(binary, cache_dir=cache)
    assert hit.hookpoints[0].demangled == "FROM-CACHE" and hit.sha256 == fresh.sha256
    assert hit.path == binary
    # touch (even back to the same mtime: ctime still moves) -> read afresh
    st = binary.stat()
    os.utime(binary, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert symbols.read_binary(binary, cache_dir=cache) == fresh
    # rewritten in place with other code, same inode, mtime restored -> the new file's hookpoints
    _settled(binary)
    symbols.read_binary(binary, cache_dir=cache)
    st = binary.stat()
    with binary.open("r+b") as out:
        out.write(samples.changed.read_bytes())
        out.truncate()
    os.utime(binary, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = symbols.read_binary(binary, cache_dir=cache)
    assert changed.sha256 == hashlib.sha256(samples.changed.read_bytes()).hexdigest()
    assert {(h.name, h.address) for h in changed.hookpoints} == nm_hookpoints(samples.changed)
    # another pattern is another entry; a damaged entry is a miss, never an error
    assert symbols.read_binary(binary, pattern="zzz-nothing", cache_dir=cache).hookpoints == ()
    for stored in cache.glob("*.json"):
        stored.write_text("{not json")
    assert symbols.read_binary(binary, cache_dir=cache) == changed
