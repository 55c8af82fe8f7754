"""Real g++-compiled ELF files for the symbols tests, built once per session (shared by test_elf,
test_symbols, test_probes and test_tasks_symbols)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# Every hookpoint body differs (nop count), so identical code folding cannot merge two of them.
SAMPLE = r"""
#include <cstdlib>
#include <unistd.h>
#define KEEP(n) asm volatile(".rept " #n "\n nop\n .endr" ::: "memory")
#define API __attribute__((noinline, visibility("default")))
#define HOOK __attribute__((noinline))
namespace Envoy { namespace Http {
HOOK void hookpointDecodeHeaders(int) { KEEP(1); }
HOOK void hookpointDecodeHeaders(long, const char*) { KEEP(2); }
class Filter {
 public:
  HOOK void hookpointOnData(bool end) { KEEP(3); asm volatile("" :: "r"(end)); }
  HOOK static int hookpointStatic() { KEEP(4); return 1; }
};
template <typename T> HOOK void hookpointTemplate(T) { KEEP(5); }
template void hookpointTemplate<int>(int);
template void hookpointTemplate<double>(double);
}}
extern "C" HOOK void hookpoint_c(void) { KEEP(6); }
static HOOK void hookpointLocal(int) { KEEP(7); }
HOOK void hookpointDead() {}
API void hookpointExported(int) { KEEP(8); }
int main(int argc, char** argv) {
  char go;
  if (argc > 2) (void)!read(0, &go, 1);  // wait until the tracer is attached
  int n = argc > 1 ? atoi(argv[1]) : 1;
  Envoy::Http::Filter f;
  for (int i = 0; i < n; i++) {
    Envoy::Http::hookpointDecodeHeaders(i);
    Envoy::Http::hookpointDecodeHeaders((long)i, "x");
    f.hookpointOnData(i & 1);
    Envoy::Http::Filter::hookpointStatic();
    Envoy::Http::hookpointTemplate<int>(i);
    Envoy::Http::hookpointTemplate<double>(i);
    if (i % 2 == 0) hookpoint_c();
    hookpointLocal(i);
    hookpointDead();
    hookpointExported(i);
  }
  return 0;
}
"""

# The same program after a change: one signature changed, one hookpoint removed, one added.
CHANGED = (
    SAMPLE.replace(
        "hookpointDecodeHeaders(int) { KEEP(1); }", "hookpointDecodeHeaders(int, int) { KEEP(1); }"
    )
    .replace("Envoy::Http::hookpointDecodeHeaders(i);", "Envoy::Http::hookpointDecodeHeaders(i, i);")
    .replace('extern "C" HOOK void hookpoint_c(void) { KEEP(6); }', "HOOK void hookpointNew() { KEEP(6); }")
    .replace("if (i % 2 == 0) hookpoint_c();", "hookpointNew();")
)

NM_FUNCTION_TYPES = set("TtWwi")


@dataclass(frozen=True)
class Samples:
    dir: Path
    gcc: Path  # g++ -O2, GNU ld, PIE
    lld: Path  # g++ -O2 -fuse-ld=lld -pie: p_vaddr != p_offset
    stripped: Path  # `strip` of lld (exported hookpoint survives in .dynsym)
    changed: Path
    elf32: Path
    text: Path


def _run(*argv: str | Path, cwd: Path) -> None:
    subprocess.run([str(a) for a in argv], cwd=cwd, check=True, capture_output=True)


def build(dest: Path) -> Samples:
    for tool in ("g++", "ld.lld", "strip", "nm", "as"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found; run scripts/setup.sh")
    (dest / "sample.cc").write_text(SAMPLE)
    (dest / "changed.cc").write_text(CHANGED)
    common = ("-O2", "-fvisibility=hidden", "-rdynamic")
    _run("g++", *common, "-o", "gcc", "sample.cc", cwd=dest)
    _run("g++", *common, "-fPIE", "-pie", "-fuse-ld=lld", "-o", "lld", "sample.cc", cwd=dest)
    _run("strip", "-o", "stripped", "lld", cwd=dest)
    _run("g++", *common, "-fPIE", "-pie", "-fuse-ld=lld", "-o", "changed", "changed.cc", cwd=dest)
    (dest / "x32.s").write_text(".text\n.globl hookpoint32\nhookpoint32:\n ret\n")
    _run("as", "--32", "-o", "elf32", "x32.s", cwd=dest)
    (dest / "text").write_text("#!/bin/sh\necho not an ELF\n")
    return Samples(
        dir=dest,
        gcc=dest / "gcc",
        lld=dest / "lld",
        stripped=dest / "stripped",
        changed=dest / "changed",
        elf32=dest / "elf32",
        text=dest / "text",
    )


def nm_hookpoints(binary: Path, *, dynamic: bool = False, pattern: str = "hookpoint") -> set[tuple[str, int]]:
    """The oracle: `nm [-D] BINARY | grep hookpoint`, defined function symbols, as (name, address)."""
    out = subprocess.run(
        ["nm", *(["-D"] if dynamic else []), str(binary)], check=True, capture_output=True, text=True
    ).stdout
    found = set()
    for line in out.splitlines():
        match = re.match(r"^([0-9a-f]+) (\w) (\S+)$", line)
        if match and pattern in match[3] and match[2] in NM_FUNCTION_TYPES:
            found.add((match[3], int(match[1], 16)))
    return found


def load_segments(binary: Path) -> list[tuple[int, int, int, bool]]:
    """(p_offset, p_vaddr, p_filesz, executable) of each PT_LOAD, from `readelf -lW`."""
    out = subprocess.run(["readelf", "-lW", str(binary)], check=True, capture_output=True, text=True).stdout
    segs = []
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "LOAD":
            segs.append((int(parts[1], 16), int(parts[2], 16), int(parts[4], 16), "E" in parts[6:-1]))
    return segs


def call_graph_source(functions: int) -> str:
    """A C++ program of `functions` hookpoints calling each other over a fixed pseudo-random graph: direct
    calls, tail calls (jmp), some reached only through a function pointer, some never called; every body
    differs, so no two fold. Large enough (~200 KB of code) that callers sit far from their callees."""
    lines = [
        "#include <cstdlib>",
        "volatile int sink;",
        "typedef int (*Fn)(int);",
        "extern Fn table[];",
    ]
    lines += [f"__attribute__((noinline)) int hookpointGen{i}(int);" for i in range(functions)]
    for i in range(functions):
        a, b = (i * 7919 + 1) % functions, (i * 31 + 7) % functions
        body = [f'  sink = {i}; if (x > {i % 97}) {{ asm volatile(".rept {1 + i % 5}\\n nop\\n .endr"); }}']
        if i % 11 == 0:
            body.append(f"  return hookpointGen{a}(x - 1) + 1;")  # a call
        elif i % 11 == 1:
            body.append(f"  if (x <= 0) return {i};\n  return hookpointGen{b}(x - 1);")  # a tail call: jmp
        elif i % 11 == 2:
            body.append(f"  return table[{i % 8}](x) + {i};")  # indirect only
        else:
            body.append(f"  return x + {i};")
        lines.append(f"__attribute__((noinline)) int hookpointGen{i}(int x) {{\n" + "\n".join(body) + "\n}")
    lines.append(
        "Fn table[] = {" + ", ".join(f"hookpointGen{(i * 13 + 5) % functions}" for i in range(8)) + "};"
    )
    lines.append("int main(int argc, char**) { return hookpointGen0(argc) + hookpointGen1(argc); }")
    return "\n".join(lines) + "\n"


def build_call_graph(dest: Path, functions: int = 4000, compiler: str = "g++") -> Path:
    """g++ -O2 build of `call_graph_source`: thousands of hookpoints, some called, some not."""
    if shutil.which(compiler) is None:
        pytest.fail(f"{compiler} not found; run scripts/setup.sh")
    (dest / "graph.cc").write_text(call_graph_source(functions))
    _run(compiler, "-O2", "-fno-inline", "-fno-ipa-icf", "-o", "graph", "graph.cc", cwd=dest)
    return dest / "graph"


def call_sites_brute_force(binary: Path) -> set[int]:
    """Every target of a direct call/jmp rel32 in the executable sections, byte by byte: the definition of
    `called` (a byte pattern, not a disassembly), written as plainly as possible."""
    import struct

    out = subprocess.run(["readelf", "-SW", str(binary)], check=True, capture_output=True, text=True).stdout
    data = binary.read_bytes()
    targets = set()
    for match in re.finditer(r"\]\s+(\S+)\s+(\w+)\s+([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+) \S+ +(\w*)", out):
        _name, kind, addr, offset, size, flags = match.groups()
        if "X" not in flags or kind == "NOBITS":
            continue
        addr_i, offset_i, size_i = int(addr, 16), int(offset, 16), int(size, 16)
        for p in range(size_i - 4):
            if data[offset_i + p] in (0xE8, 0xE9):
                (rel,) = struct.unpack_from("<i", data, offset_i + p + 1)
                targets.add(addr_i + p + 5 + rel)
    return targets


def objdump_branch_targets(binary: Path, objdump: str = "aarch64-linux-gnu-objdump") -> set[int]:
    """An independent oracle for aarch64: every `bl`/`b` target in a real disassembly of the code."""
    out = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", str(binary)], check=True, capture_output=True, text=True
    ).stdout
    return {int(m[1], 16) for m in re.finditer(r"^\s*[0-9a-f]+:\s+bl?\s+([0-9a-f]+) <", out, re.M)}
