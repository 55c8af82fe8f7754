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
