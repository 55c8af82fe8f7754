"""Latency in the generated program: the id read from the signature, the buckets, and real bpftrace timing
a g++ driver whose gaps it measured itself (the truth the percentiles are held to)."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from bpf import bpftrace

from hookbuild.binary import symbols
from hookbuild.probes import latency, scripts
from hookbuild.report import summary, traces

DRIVER = Path(__file__).parent / "data" / "trace" / "latency.cc"
A = "Envoy::Http::hookpointA(unsigned long)"
B = "Envoy::Http::hookpointB(unsigned long, char const*)"


@pytest.mark.parametrize(
    ("demangled", "bits"),
    [
        ("Envoy::Http::hookpointDecodeHeaders(unsigned long, char const*, unsigned long)", 64),
        ("Envoy::Network::hookpointOnData(unsigned long long)", 64),
        ("hookpointStream(int)", 32),
        ("hookpointStream(unsigned int, bool)", 32),
        ("hookpointShort(short) [clone .cold]", 16),
        ("hookpoint_c", None),  # extern "C": no signature to read
        ("hookpointNoArgs()", None),
        ("hookpointPath(char const*, unsigned long)", None),
        ("Envoy::Filter::hookpointMember(unsigned long) const", None),  # `this` comes first
        ("hookpointTemplate<int>(std::vector<int, std::allocator<int> > const&)", None),
    ],
)
def test_id_is_read_from_the_first_integer_parameter(demangled: str, bits: int | None) -> None:
    assert latency.id_bits(demangled) == bits


def test_buckets_hold_every_duration_within_a_sixteenth() -> None:
    rng = random.Random(7)
    for duration in [*range(0, 4096), *(rng.randrange(1, 1 << 63) for _ in range(20000)), (1 << 64) - 1]:
        bucket = latency.bucket_of(duration)
        low, high = latency.bucket_bounds(bucket)
        assert low <= duration < high and bucket < latency.BUCKETS_PER_PAIR
        assert duration < 32 or (high - low) / low <= 1 / 16


def test_keys_split_back_into_pairs() -> None:
    for source, target, bucket, count in [(0, 1, 286, 3), (4, 2, 975, 5), (0, 0, 0, 1)]:
        key = latency.pair_key(source, target, count) + bucket
        assert latency.split_key(key, count) == (source, target, bucket)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("g++") is None:
        pytest.fail("g++ not found; run scripts/setup.sh")
    binary = tmp_path_factory.mktemp("latency") / "driver"
    subprocess.run(["g++", "-O2", "-o", str(binary), str(DRIVER)], check=True)
    return binary


def _trace(driver: Path, program: str, tmp_path: Path, *mode: str) -> tuple[traces.PodTrace, list[int]]:
    """Run the driver under `program` (-f json); its measured gaps and the trace as trace-report reads it."""
    script, out, err = tmp_path / "trace.bt", tmp_path / "driver.json", tmp_path / "bpftrace.err"
    script.write_text(program)
    with (
        subprocess.Popen(
            [str(driver), *mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as process,
        out.open("w") as sink,
        err.open("w") as errors,
        subprocess.Popen(
            [bpftrace(), "-f", "json", str(script), str(process.pid)], stdout=sink, stderr=errors
        ) as tracer,
    ):
        try:
            while "hookbuild: tracing" not in out.read_text():
                assert tracer.poll() is None, err.read_text()
                time.sleep(0.1)
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write("g")
            process.stdin.close()
            gaps = [int(line) for line in process.stdout]
            assert process.wait(timeout=60) == 0
            tracer.send_signal(signal.SIGINT)
            assert tracer.wait(timeout=60) == 0, err.read_text()
        finally:
            if tracer.poll() is None:
                tracer.kill()
    found, problems = traces.load_file(out)
    assert not problems and len(found) == 1, problems
    return found[0], gaps


@pytest.mark.bpf
def test_percentiles_of_real_gaps_within_15_percent(driver: Path, tmp_path: Path) -> None:
    program = scripts.bpftrace_script(symbols.read_binary(driver), binary=str(driver))
    trace, gaps = _trace(driver, program, tmp_path, "spread", "1000")
    assert trace.complete and trace.hits["hookpoint_c"] == 1000  # no id: counted, not timed
    assert set(trace.latency) == {(A, B)}  # hookpoint_c carries no id, B -> A is never the same id
    stats = summary.stats(trace.latency[(A, B)])
    assert stats.count == 1000
    ordered = sorted(gaps)

    def truth(q: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, int(q * len(ordered))))] / 1000

    for name, q in summary.QUANTILES:
        # Within 15% of the truth; a rank slack of 1% of the streams absorbs the few the scheduler preempted
        # between the driver's clock read and the probe (a busy machine moves them by milliseconds).
        low, high = 0.85 * truth(q - 0.01), 1.15 * truth(q + 0.01)
        assert low <= getattr(stats, name) <= high, (name, getattr(stats, name), truth(q))
    assert trace.hops and all(hop.ident % 16 == 0 for hop in trace.hops)  # sampled by id


@pytest.mark.bpf
def test_idle_ids_are_dropped_after_two_flushes(driver: Path, tmp_path: Path) -> None:
    timing = latency.Timing(flush_seconds=1)
    program = scripts.bpftrace_script(symbols.read_binary(driver), binary=str(driver), timing=timing)
    trace, gaps = _trace(driver, program, tmp_path, "stale")
    assert len(gaps) == 2 and trace.hits[A] == 2 and trace.hits[B] == 2
    (kept,) = [(bucket, count) for bucket, count in trace.latency[(A, B)].items()]
    low, high = latency.bucket_bounds(kept[0])
    assert kept[1] == 1 and low <= gaps[1] < high  # the 0.3 s stream; the 3.5 s one's state was freed


@pytest.mark.bpf
def test_one_tracer_for_a_pid_set(driver: Path, tmp_path: Path) -> None:
    info = symbols.read_binary(driver)
    program = scripts.bpftrace_script(info, binary=str(driver), pid_set=True)
    assert program.count("@traced[(uint32)$") == scripts.MAX_PIDS and "/@traced[pid]/" in program
    trace, _gaps = _trace(driver, program, tmp_path, "spread", "40")  # keys "PID,KEY", read back per pid
    assert trace.hits[A] == 40 and sum(trace.latency[(A, B)].values()) == 40
