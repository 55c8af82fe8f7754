"""`invoke symbols BINARY --json` vs `nm BINARY | grep hookpoint` on a generated 1,000,000-symbol x86-64 ELF.

Goal: the whole invoke process >= 10x faster than nm | grep, peak RSS < 200 MB, identical results.
Plain pyelftools iter_symbols() is timed too, for context. The ELF is cached under /tmp.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVOKE = Path(sys.executable).parent / "invoke"
CACHE = Path("/tmp/hookbuild-bench-symbols")
SYMBOLS = 1_000_000
HOOKS = 12
RUNS = 5


def generate() -> Path:
    binary = CACHE / f"envoy-{SYMBOLS}"
    if binary.is_file():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    asm = CACHE / "envoy.s"
    with asm.open("w") as out:
        out.write(".text\n")
        step = SYMBOLS // HOOKS
        for i in range(SYMBOLS):
            if i % step == 7:
                ident = f"hookpointStage{i}"
                name = f"_ZN5Envoy4Http{len(ident)}{ident}Ei"
            else:
                ident = f"onDataInternal{i}"
                name = f"_ZN5Envoy7Network6Filter{len(ident)}{ident}ERNS_6Buffer8InstanceEb"
            out.write(
                f".globl {name}\n.type {name},@function\n{name}:\n\tcall {name}\n\tret\n.size {name},6\n"
            )
        out.write(".globl main\n.type main,@function\nmain:\n\txor %eax,%eax\n\tret\n")
        out.write('.section .note.GNU-stack,"",@progbits\n')
    subprocess.run(["gcc", "-o", str(binary), str(asm)], check=True)
    asm.unlink()
    return binary


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return time.perf_counter() - start, out


def timed_nm_grep(binary: Path) -> tuple[float, str]:
    """`nm BINARY | grep hookpoint`, a real two-process pipeline."""
    start = time.perf_counter()
    nm = subprocess.Popen(["nm", str(binary)], stdout=subprocess.PIPE)
    grep = subprocess.run(["grep", "hookpoint"], stdin=nm.stdout, capture_output=True, text=True, check=True)
    assert nm.stdout is not None
    nm.stdout.close()
    assert nm.wait() == 0
    return time.perf_counter() - start, grep.stdout


def main() -> None:
    binary = generate()
    print(f"binary: {binary} ({binary.stat().st_size / 1e6:.0f} MB, {SYMBOLS:,} symbols)")
    nm_times, invoke_times = [], []
    nm_out = inv_out = ""
    for _ in range(RUNS):  # interleaved, so both see the same page cache and machine load
        seconds, nm_out = timed_nm_grep(binary)
        nm_times.append(seconds)
        seconds, inv_out = timed([str(INVOKE), "symbols", str(binary), "--json"])
        invoke_times.append(seconds)
    nm_set = {(m[3], int(m[1], 16)) for m in re.finditer(r"^([0-9a-f]+) (\w) (\S+)$", nm_out, re.M)}
    ours = {(h["name"], int(h["address"], 16)) for h in json.loads(inv_out)["hookpoints"]}
    assert ours == nm_set and len(ours) == HOOKS, (len(ours), len(nm_set))

    from elftools.elf.elffile import ELFFile

    start = time.perf_counter()
    with binary.open("rb") as handle:
        symtab = ELFFile(handle).get_section_by_name(".symtab")
        plain = [s.name for s in symtab.iter_symbols() if "hookpoint" in s.name]
    pyelf = time.perf_counter() - start
    assert len(plain) == HOOKS

    nm_med, inv_med = statistics.median(nm_times), statistics.median(invoke_times)
    print(f"{'':28}{'median':>9}{'min':>9}{'max':>9}")
    for label, values in (("nm | grep hookpoint", nm_times), ("invoke symbols --json", invoke_times)):
        print(f"{label:28}{statistics.median(values):8.3f}s{min(values):8.3f}s{max(values):8.3f}s")
    print(f"{'pyelftools iter_symbols()':28}{pyelf:8.3f}s  (in-process, one run)")
    print(f"speed-up invoke vs nm|grep: {nm_med / inv_med:.1f}x (goal >= 10x)")
    timing = ["/usr/bin/time", "-f", "%M", str(INVOKE), "symbols", str(binary), "--json"]
    rss = subprocess.run(timing, capture_output=True, text=True, cwd=ROOT, check=True).stderr.splitlines()[-1]
    print(f"peak RSS of invoke symbols alone: {int(rss) / 1024:.0f} MB (goal < 200 MB)")
    print(f"results identical to nm: {len(ours)} hookpoints")


if __name__ == "__main__":
    main()
