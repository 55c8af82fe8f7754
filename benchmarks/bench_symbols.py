"""`invoke symbols BINARY --json` vs `nm BINARY | grep hookpoint` on a generated 1,000,000-symbol x86-64 ELF.

Goal: the whole invoke process >= 10x faster than nm | grep, peak RSS < 200 MB, identical results.
Measured side by side, interleaved: cold (empty result cache, so the run reads the ELF and writes the entry)
and warm (the entry just written), plus `invoke --list` as the floor of any invoke task. `--with-pyelftools`
also times plain pyelftools iter_symbols() (about 20 s), for context. The ELF is cached under /tmp.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVOKE = Path(sys.executable).parent / "invoke"
CACHE = Path("/tmp/hookbuild-bench-symbols")
SYMBOLS = 1_000_000
HOOKS = 12
RUNS = 5
COLD = "invoke symbols (cold)"
WARM = "invoke symbols (warm cache)"


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


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT, env=env).stdout
    return time.perf_counter() - start, out


def peak_rss_mb(argv: list[str], env: dict[str, str]) -> float:
    timing = ["/usr/bin/time", "-f", "%M", *argv]
    ran = subprocess.run(timing, capture_output=True, text=True, cwd=ROOT, check=True, env=env)
    return int(ran.stderr.splitlines()[-1]) / 1024


def found(out: str) -> set[tuple[str, int]]:
    return {(h["name"], int(h["address"], 16)) for h in json.loads(out)["hookpoints"]}


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
    # A normal install runs from byte-compiled modules; this environment may set PYTHONDONTWRITEBYTECODE,
    # which would recompile hookbuild and tasks.py (~15 ms) on every run. Compile them once, as pip does.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "hookbuild", "tasks.py"], cwd=ROOT, check=True)
    print("bytecode: hookbuild/ and tasks.py byte-compiled (compileall) before timing")
    cache_home = Path(tempfile.mkdtemp(prefix="hookbuild-bench-cache-"))
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    argv = [str(INVOKE), "symbols", str(binary), "--json"]
    labels = ("nm | grep hookpoint", COLD, WARM, "invoke --list (floor)")
    times: dict[str, list[float]] = {label: [] for label in labels}
    nm_out = cold_out = warm_out = ""
    try:
        for _ in range(RUNS):  # interleaved, so all see the same page cache and machine load
            seconds, nm_out = timed_nm_grep(binary)
            times["nm | grep hookpoint"].append(seconds)
            shutil.rmtree(cache_home / "hookbuild", ignore_errors=True)  # cold: empty cache (it gets written)
            seconds, cold_out = timed(argv, env)
            times[COLD].append(seconds)
            seconds, warm_out = timed(argv, env)  # warm: the entry the cold run just wrote
            times[WARM].append(seconds)
            times["invoke --list (floor)"].append(timed([str(INVOKE), "--list"], env)[0])
        assert list((cache_home / "hookbuild" / "symbols").glob("*.json")), "the cold run stored no entry"
        nm_set = {(m[3], int(m[1], 16)) for m in re.finditer(r"^([0-9a-f]+) (\w) (\S+)$", nm_out, re.M)}
        for out in (cold_out, warm_out):
            assert found(out) == nm_set and len(nm_set) == HOOKS, (len(found(out)), len(nm_set))
        assert cold_out == warm_out
        shutil.rmtree(cache_home / "hookbuild", ignore_errors=True)
        rss_cold = peak_rss_mb(argv, env)
        rss_warm = peak_rss_mb(argv, env)
    finally:
        shutil.rmtree(cache_home, ignore_errors=True)

    print(f"{'':28}{'median':>9}{'min':>9}{'max':>9}")
    for label, values in times.items():
        print(f"{label:28}{statistics.median(values):8.3f}s{min(values):8.3f}s{max(values):8.3f}s")
    if "--with-pyelftools" in sys.argv:
        from elftools.elf.elffile import ELFFile

        start = time.perf_counter()
        with binary.open("rb") as handle:
            symtab = ELFFile(handle).get_section_by_name(".symtab")
            plain = [s.name for s in symtab.iter_symbols() if "hookpoint" in s.name]
        assert len(plain) == HOOKS
        print(f"{'pyelftools iter_symbols()':28}{time.perf_counter() - start:8.3f}s  (in-process, one run)")
    nm_med = statistics.median(times["nm | grep hookpoint"])
    for label, rss in ((COLD, rss_cold), (WARM, rss_warm)):
        ratio = nm_med / statistics.median(times[label])
        verdict = "meets" if ratio >= 10 and rss < 200 else "MISSES"
        print(
            f"{label}: {ratio:4.1f}x faster than nm|grep, peak RSS {rss:.0f} MB -> {verdict} the goal "
            "(>= 10x, < 200 MB)"
        )
    floor = nm_med / statistics.median(times["invoke --list (floor)"])
    print(f"ceiling set by invoke's own start-up (invoke --list): {floor:.1f}x")
    print(f"results identical to nm (cold and warm): {len(nm_set)} hookpoints")


if __name__ == "__main__":
    main()
