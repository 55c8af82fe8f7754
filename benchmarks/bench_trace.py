"""Attach once per binary: one bpftrace per Envoy (per pod) vs one per node with a PID set, for 1, 10, 30 Envoys.

Every Envoy of one image on a node runs the same file, and a uprobe sits on that file's inode: N per-pod
tracers put N programs on every hookpoint, each run on every hit of every Envoy (and each filtering out
the N-1 others), while one tracer with a PID set puts one. Measured with the generated programs
(`probes.scripts.bpftrace_script`) on N processes of one g++ binary (what N containers of an image are to
the kernel):

- attach: wall time from starting the tracer(s) until every one has printed its BEGIN line;
- memory: the tracers' resident set, summed;
- overhead: ns per stream (two timed hookpoints) in one of the Envoys, minus the same loop untraced.

Goal (the choice trace_all.sh makes): the node tracer attaches in about the time of one, whatever N, and its
per-hit cost does not grow with N. Run as root: `python benchmarks/bench_trace.py [--counts 1,10,30]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hookbuild.binary import symbols  # noqa: E402
from hookbuild.probes import scripts  # noqa: E402

STREAMS = 200_000
DRIVER = r"""
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <unistd.h>
namespace Envoy { namespace Http {
__attribute__((noinline)) void hookpointDecodeHeaders(uint64_t id) { asm volatile("" ::: "memory"); (void)id; }
__attribute__((noinline)) void hookpointEncodeHeaders(uint64_t id) { asm volatile("" ::: "memory"); (void)id; }
} }
static uint64_t now() { timespec t{}; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ull + t.tv_nsec; }
int main(int argc, char** argv) {
  char c;
  while (read(0, &c, 1) == 1) {  // one byte: one run of STREAMS streams, its ns per stream printed
    const uint64_t start = now();
    for (uint64_t i = 0; i < STREAMS; ++i) {
      Envoy::Http::hookpointDecodeHeaders(i);
      Envoy::Http::hookpointEncodeHeaders(i);
    }
    std::printf("%.1f\n", double(now() - start) / STREAMS);
    std::fflush(stdout);
  }
}
""".replace("STREAMS", str(STREAMS))


def build(work: Path) -> Path:
    source, binary = work / "driver.cc", work / "envoy"
    source.write_text(DRIVER)
    subprocess.run(["g++", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def per_stream(driver: subprocess.Popen[str]) -> float:
    assert driver.stdin is not None and driver.stdout is not None
    driver.stdin.write("g")
    driver.stdin.flush()
    return float(driver.stdout.readline())


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def start_tracers(
    program: Path, argvs: list[list[str]], work: Path
) -> tuple[list[subprocess.Popen[bytes]], float]:
    """Start one bpftrace per argv; wall seconds until every one has printed its BEGIN line."""
    started = time.monotonic()
    tracers, outputs = [], []
    for number, argv in enumerate(argvs):
        out = work / f"tracer-{number}.out"
        outputs.append(out)
        with out.open("w") as sink:
            tracers.append(
                subprocess.Popen(["bpftrace", str(program), *argv], stdout=sink, stderr=subprocess.DEVNULL)
            )
    for out, tracer in zip(outputs, tracers, strict=True):
        while "hookbuild: tracing" not in out.read_text():
            if tracer.poll() is not None:
                raise SystemExit(f"bpftrace exited: {out.read_text()}")
            time.sleep(0.05)
    return tracers, time.monotonic() - started


def stop(tracers: list[subprocess.Popen[bytes]]) -> None:
    for tracer in tracers:
        tracer.send_signal(2)
    for tracer in tracers:
        tracer.wait(timeout=120)


def measure(binary: Path, count: int, work: Path) -> dict[str, dict[str, float]]:
    info = symbols.read_binary(binary)
    single, node = work / "trace.bt", work / "node.bt"
    single.write_text(scripts.bpftrace_script(info, binary=str(binary)))
    node.write_text(scripts.bpftrace_script(info, binary=str(binary), pid_set=True))
    drivers = [
        subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    pids = [str(d.pid) for d in drivers]
    try:
        per_stream(drivers[0])  # warm up
        baseline = min(per_stream(drivers[0]) for _ in range(3))
        results = {}
        for name, program, argvs in (
            ("per pod", single, [[pid] for pid in pids]),
            ("per node", node, [pids]),
        ):
            tracers, attach = start_tracers(program, argvs, work)
            memory = rss_mb([t.pid for t in tracers])
            cost = min(per_stream(drivers[0]) for _ in range(3)) - baseline
            stop(tracers)
            results[name] = {
                "tracers": len(tracers),
                "attach_s": round(attach, 2),
                "rss_mb": round(memory),
                "ns_per_stream": round(cost),
            }
        return results
    finally:
        for driver in drivers:
            driver.kill()
            driver.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--counts", default="1,10,30", help="numbers of Envoys to trace, comma-separated")
    args = parser.parse_args()
    if shutil.which("bpftrace") is None or shutil.which("g++") is None:
        raise SystemExit("bench_trace needs bpftrace and g++ (scripts/setup.sh) and root")
    with tempfile.TemporaryDirectory(prefix="hookbuild-bench-trace-") as tmp:
        work = Path(tmp)
        binary = build(work)
        table = {count: measure(binary, count, work) for count in (int(c) for c in args.counts.split(","))}
    print(f"{'envoys':>6}  {'mode':<8}  {'tracers':>7}  {'attach s':>8}  {'RSS MB':>7}  {'ns/stream':>9}")
    for count, results in table.items():
        for mode, row in results.items():
            print(
                f"{count:>6}  {mode:<8}  {row['tracers']:>7}  {row['attach_s']:>8}  {row['rss_mb']:>7}"
                f"  {row['ns_per_stream']:>9}"
            )
    print(json.dumps(table))
    worst = max(table)
    node, pod = table[worst]["per node"], table[worst]["per pod"]
    ok = node["attach_s"] <= pod["attach_s"] and node["ns_per_stream"] <= pod["ns_per_stream"] * 1.1
    print(
        f"goal (at {worst} Envoys the node tracer attaches and costs no more than per-pod ones): "
        f"{'met' if ok else 'MISSED'}"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
