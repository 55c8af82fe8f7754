"""pyelftools is the independent oracle of hookbuild's ELF decoder (hookbuild.binary.elf and .lookup).

hookbuild reads ELF with `struct` over an mmap, because pyelftools costs ~80 ms of import and ~190 ms of
section parsing on a 100 MB library in every cold `invoke symbols`. Here pyelftools (a test dependency only)
reads the same files, and everything hookbuild decodes must equal its reading: every section header (name,
type, flags, address, offset, size, link, entry size), every program header, the GNU build-id, the PIE flag
and every function symbol of .symtab and .dynsym (name, address, size, section). The files are gcc's: a PIE
built with -g and -rdynamic, the same stripped, a non-PIE without debug info, a shared library, and (slow) an
aarch64 PIE from the cross gcc and an executable of more than 65,279 sections (extended numbering, SHN_XINDEX
symbols), plus the largest libLLVM on the machine (scripts/setup.sh installs lld, which needs it).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from elf_samples import Samples
from elftools.elf.constants import SHN_INDICES
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import (
    ENUM_P_TYPE_AARCH64,
    ENUM_P_TYPE_BASE,
    ENUM_SH_TYPE_AARCH64,
    ENUM_SH_TYPE_AMD64,
)
from elftools.elf.sections import NoteSection, Section, SymbolTableIndexSection, SymbolTableSection

from hookbuild.binary import elf, lookup

DF_1_PIE = 0x08000000  # <elf.h>; pyelftools has no constant for it
SHF_EXECINSTR = 0x4
FUNCTION_TYPES = ("STT_FUNC", "STT_LOOS")  # pyelftools names STT_GNU_IFUNC (10) by its range, STT_LOOS
COUNT = 100  # functions of each binding in the gcc-built files
MANY_SECTIONS = 65_400  # more than SHN_LORESERVE - 1 (65,279): e_shnum, e_shstrndx and st_shndx overflow

ENUMS = {  # e_machine: the section and segment types pyelftools names for it
    "EM_X86_64": (ENUM_SH_TYPE_AMD64, ENUM_P_TYPE_BASE),
    "EM_AARCH64": (ENUM_SH_TYPE_AARCH64, ENUM_P_TYPE_AARCH64),
}

Function = tuple[str, int, int, str]  # name, address (st_value), size, section


@dataclass(frozen=True)
class Reading:
    sections: list[tuple[str, int, int, int, int, int, int, int]]
    segments: list[tuple[int, int, int, int, int, int]]
    build_id: str | None
    pie: bool
    functions: dict[str, list[Function]]
    """Per table ("symtab", "dynsym"): the defined function symbols, sorted."""
    names: dict[str, set[str]]
    """Per table: the name of every symbol, function or not."""


def _text(name: str) -> str:
    """pyelftools decodes names as latin-1; hookbuild as UTF-8 (errors replaced): compare the same bytes."""
    return name.encode("latin-1").decode("utf-8", "replace")


def _number(value: int | str, names: object) -> int:
    """pyelftools gives a known enum value by name: back to its number."""
    return value if isinstance(value, int) else names[value]  # type: ignore[index]


def pyelftools_reading(path: Path) -> Reading:
    with path.open("rb") as stream:
        image = ELFFile(stream)
        section_types, segment_types = ENUMS[image["e_machine"]]
        sections = list(image.iter_sections())
        segments = list(image.iter_segments())
        pie = image["e_type"] == "ET_DYN" and (
            any(seg["p_type"] == "PT_INTERP" for seg in segments)
            or any(
                tag.entry.d_tag == "DT_FLAGS_1" and tag.entry.d_val & DF_1_PIE
                for seg in segments
                if isinstance(seg, DynamicSegment)
                for tag in seg.iter_tags()
            )
        )
        functions, names = {}, {}
        for table in ("symtab", "dynsym"):
            functions[table], names[table] = _functions(sections, f"SHT_{table.upper()}")
        return Reading(
            sections=[
                (
                    _text(sec.name),
                    _number(sec["sh_type"], section_types),
                    sec["sh_flags"],
                    sec["sh_addr"],
                    sec["sh_offset"],
                    sec["sh_size"],
                    sec["sh_link"],
                    sec["sh_entsize"],
                )
                for sec in sections
            ],
            segments=[
                (
                    _number(seg["p_type"], segment_types),
                    seg["p_flags"],
                    seg["p_offset"],
                    seg["p_vaddr"],
                    seg["p_filesz"],
                    seg["p_memsz"],
                )
                for seg in segments
            ],
            build_id=next(
                (
                    note["n_desc"]
                    for sec in sections
                    if isinstance(sec, NoteSection)
                    for note in sec.iter_notes()
                    if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU"
                ),
                None,
            ),
            pie=pie,
            functions=functions,
            names=names,
        )


def _functions(sections: list[Section], table_type: str) -> tuple[list[Function], set[str]]:
    """Defined symbols of type FUNC or GNU_IFUNC, or NOTYPE in executable code (nm's T, t, W, w, i)."""
    index = next((i for i, sec in enumerate(sections) if sec["sh_type"] == table_type), None)
    if index is None:
        return [], set()
    table = sections[index]
    assert isinstance(table, SymbolTableSection)
    xindex = next(
        (s for s in sections if isinstance(s, SymbolTableIndexSection) and s["sh_link"] == index), None
    )
    found, names = [], set()
    for n, sym in enumerate(table.iter_symbols()):
        name = _text(sym.name)
        names.add(name)
        shndx = sym["st_shndx"]
        if shndx == SHN_INDICES.SHN_XINDEX:  # pyelftools leaves it a number; the real index is in xindex
            assert xindex is not None
            shndx = xindex.get_section_index(n)
        if n == 0 or not name or shndx in ("SHN_UNDEF", "SHN_COMMON"):
            continue  # a nameless function no pattern can find: hookbuild searches by name
        if shndx == "SHN_ABS":
            section, executable = "*ABS*", False
        else:
            section, executable = _text(sections[shndx].name), sections[shndx]["sh_flags"] & SHF_EXECINSTR
        kind = sym["st_info"]["type"]
        if kind in FUNCTION_TYPES or (kind == "STT_NOTYPE" and executable):
            found.append((name, sym["st_value"], sym["st_size"], section))
    return sorted(found), names - {""}


def assert_reads_as_pyelftools(path: Path) -> Reading:
    """Every structure hookbuild decodes from `path` equals pyelftools' reading; the reading, for more."""
    oracle = pyelftools_reading(path)
    with elf.open_image(path) as image:
        sections = [
            (s.name, s.type, s.flags, s.addr, s.offset, s.size, s.link, s.entsize) for s in image.sections
        ]
        assert sections == oracle.sections, path
        segments = [(s.type, s.flags, s.offset, s.vaddr, s.filesz, s.memsz) for s in image.segments]
        assert segments == oracle.segments, path
        assert (image.build_id, image.pie) == (oracle.build_id, oracle.pie), path
        for table, expected in oracle.functions.items():
            for pattern in covering(oracle.names[table]):
                got = sorted(
                    (s.name, s.value, s.size, s.section) for s in lookup.functions(image, pattern, table)
                )
                assert got == [f for f in expected if pattern in f[0]], (path, table, pattern)
    return oracle


def covering(names: set[str]) -> list[str]:
    """A few characters such that every name holds one: searched for one by one, they show hookbuild every
    symbol of the table (so it can neither miss a function nor take in a symbol that is none)."""
    left, chosen = set(names), []
    while left:
        counts = Counter(char for name in left for char in set(name))
        best = counts.most_common(1)[0][0]
        chosen.append(best)
        left = {name for name in left if best not in name}
    return chosen


# --- gcc-built files ------------------------------------------------------------------------------------

KINDS = (
    "int hb_global_{i}(int x) {{ return x * {i} + 1; }}",
    "__attribute__((noinline)) static int hb_local_{i}(int x) {{ return x ^ {i}; }}",
    "__attribute__((weak)) int hb_weak_{i}(int x) {{ return x - {i}; }}",
    '__attribute__((visibility("hidden"))) int hb_hidden_{i}(int x) {{ return x + {i}; }}',
)


def many_functions_source(count: int) -> str:
    """`count` functions of each binding (global, local, weak, hidden), an ifunc, a NOTYPE label in .text,
    an absolute function symbol, data that is no function, and a table that keeps every local function alive."""
    lines = ["static int impl(int x) { return x; }", "static int (*pick(void))(int) { return impl; }"]
    lines += ['int hb_ifunc(int) __attribute__((ifunc("pick")));', "int hb_data = 7;"]
    lines.append('__asm__(".text\\n.globl hb_notype\\nhb_notype:\\n ret\\n");')
    lines.append('__asm__(".globl hb_abs\\n.type hb_abs,@function\\n.set hb_abs, 0x1234\\n");')
    lines += [kind.format(i=i) for i in range(count) for kind in KINDS]
    lines.append("int (*const hb_table[])(int) = {" + ", ".join(f"hb_local_{i}" for i in range(count)) + "};")
    lines.append(f"int main(int argc, char **argv) {{ (void)argv; return hb_table[argc % {count}](argc); }}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Built:
    pie_debug: Path  # -fPIE -pie -g -rdynamic: .symtab, DWARF, exports in .dynsym
    stripped: Path  # `strip` of pie_debug: .dynsym only
    no_pie: Path  # -no-pie, debug info dropped at link (-Wl,-S)
    shared: Path  # -shared


def _gcc(*argv: str | Path, cwd: Path) -> None:
    subprocess.run([str(a) for a in argv], cwd=cwd, check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """One -fPIC object of 4 x COUNT functions, linked four ways (one compile keeps it quick)."""
    work = tmp_path_factory.mktemp("elf-reference")
    (work / "many.c").write_text(many_functions_source(COUNT))
    _gcc("gcc", "-O2", "-g", "-fPIC", "-c", "many.c", "-o", "many.o", cwd=work)
    build_id = "-Wl,--build-id=sha1"
    _gcc("gcc", "-pie", "-rdynamic", build_id, "many.o", "-o", "pie_debug", cwd=work)
    _gcc("strip", "pie_debug", "-o", "stripped", cwd=work)
    _gcc("gcc", "-no-pie", "-Wl,-S", build_id, "many.o", "-o", "no_pie", cwd=work)
    _gcc("gcc", "-shared", build_id, "many.o", "-o", "libmany.so", cwd=work)
    return Built(
        pie_debug=work / "pie_debug",
        stripped=work / "stripped",
        no_pie=work / "no_pie",
        shared=work / "libmany.so",
    )


def test_gcc_builds_read_as_pyelftools_reads_them(built: Built) -> None:
    expected = {  # path: (PIE, DWARF)
        built.pie_debug: (True, True),
        built.stripped: (True, False),
        built.no_pie: (False, False),
        built.shared: (False, True),
    }
    for path, (pie, debug) in expected.items():
        oracle = assert_reads_as_pyelftools(path)
        # The oracle saw what each build must have, or the comparison above proves little.
        assert oracle.pie is pie and oracle.build_id, path
        assert any(name.startswith(".debug_info") for name, *_ in oracle.sections) is debug, path
        symtab, dynsym = ({f[0] for f in oracle.functions[t]} for t in ("symtab", "dynsym"))
        if path == built.stripped:
            assert not symtab and {f"hb_global_{COUNT - 1}", "hb_weak_0", "hb_ifunc"} <= dynsym
        else:
            assert {"hb_local_0", f"hb_hidden_{COUNT - 1}", "hb_ifunc", "hb_notype", "hb_abs"} <= symtab, path
            assert len(symtab) > 4 * COUNT and "hb_data" not in symtab
        if path in (built.pie_debug, built.shared):  # exported: -rdynamic, a library
            assert {"hb_global_0", f"hb_weak_{COUNT - 1}"} <= dynsym and "hb_local_0" not in dynsym


def test_the_existing_samples_read_as_pyelftools_reads_them(samples: Samples) -> None:
    """g++ with GNU ld and with LLD (p_vaddr != p_offset), and LLD's output stripped (tests/elf_samples.py)."""
    for path in (samples.gcc, samples.lld, samples.stripped):
        assert assert_reads_as_pyelftools(path).functions["dynsym"]


@pytest.mark.slow
def test_an_aarch64_build_reads_as_pyelftools_reads_it(tmp_path: Path) -> None:
    """The cross gcc (scripts/setup.sh) builds the same source as an aarch64 PIE: Istio and Envoy ship arm64."""
    (tmp_path / "many.c").write_text(many_functions_source(COUNT))
    argv = ("-O2", "-g", "-fPIE", "-pie", "-rdynamic", "-Wl,--build-id=sha1", "many.c", "-o", "arm64")
    _gcc("aarch64-linux-gnu-gcc", *argv, cwd=tmp_path)
    oracle = assert_reads_as_pyelftools(tmp_path / "arm64")
    assert oracle.pie and oracle.build_id and len(oracle.functions["symtab"]) > 4 * COUNT
    with elf.open_image(tmp_path / "arm64") as image:
        assert image.machine == "aarch64"


# --- slow: extended numbering and a system library of 100 MB --------------------------------------------


@pytest.fixture(scope="module")
def many_sections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An executable of MANY_SECTIONS functions, each in a section of its own (names ld keeps apart),
    assembled and linked by gcc (compiling that much C takes minutes)."""
    work = tmp_path_factory.mktemp("many-sections")
    (work / "many.s").write_text(
        "".join(
            f'.section hb.fn{i},"ax",@progbits\n.globl hb_fn{i}\n.type hb_fn{i},@function\n'
            f"hb_fn{i}:\n .rept {1 + i % 3}\n nop\n .endr\n ret\n.size hb_fn{i},.-hb_fn{i}\n"
            for i in range(MANY_SECTIONS)
        )
    )
    _gcc("gcc", "-c", "many.s", "-o", "many.o", cwd=work)
    _gcc(
        "gcc",
        "-nostdlib",
        "-no-pie",
        "-Wl,-e,hb_fn0",
        "-Wl,--build-id=sha1",
        "many.o",
        "-o",
        "many",
        cwd=work,
    )
    return work / "many"


@pytest.mark.slow
def test_more_than_65279_sections_read_as_pyelftools_reads_them(many_sections: Path) -> None:
    """Extended numbering: e_shnum and e_shstrndx in section 0, symbols' sections in .symtab_shndx."""
    oracle = assert_reads_as_pyelftools(many_sections)
    assert len(oracle.sections) > MANY_SECTIONS
    last = [f[0] for f in oracle.functions["symtab"] if f[3] == f"hb.fn{MANY_SECTIONS - 1}"]
    assert f"hb_fn{MANY_SECTIONS - 1}" in last  # its section index is past 0xff00: SHN_XINDEX


def largest_libllvm() -> Path:
    found = {path.resolve() for path in Path("/usr/lib/x86_64-linux-gnu").glob("libLLVM-*.so.1")}
    if not found:
        pytest.fail("no /usr/lib/x86_64-linux-gnu/libLLVM-*.so.1; run scripts/setup.sh (lld needs libLLVM)")
    return max(found, key=lambda path: path.stat().st_size)


@pytest.mark.slow
def test_a_system_libllvm_reads_as_pyelftools_reads_it() -> None:
    path = largest_libllvm()
    oracle = assert_reads_as_pyelftools(path)
    assert path.stat().st_size > 50 << 20 and len(oracle.functions["dynsym"]) > 10_000
