"""trace-report on trace files written the way trace_all.sh writes them: percentiles, pods, problems, HTML.

The files here are made with the program's own bucket function from known durations, so every percentile
has a true value to be compared with; test_latency.py does the same with real bpftrace on a real binary.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_task

from hookbuild.probes import latency
from hookbuild.report import flame, html, summary, traces

A = "Envoy::Http::hookpointDecodeHeaders(unsigned long, char const*, unsigned long)"
B = "Envoy::Router::hookpointRouterDecodeHeaders(unsigned long, char const*)"
C = "hookpoint_c"
TABLE = [
    ("_ZN5Envoy4Http22hookpointDecodeHeadersEmPKcm", A, 64),
    ("_ZN5Envoy6Router28hookpointRouterDecodeHeadersEmPKc", B, 64),
    (C, C, None),
]


def _line(kind: str, data: object) -> str:
    return json.dumps({"type": kind, "data": data}) + "\n"


def trace_file(
    path: Path, durations_ns: list[int], *, pod: str, end: bool = True, pid: int = 0, cut: bool = False
) -> Path:
    """A pod's trace: trace_all.sh's label, bpftrace's table, two flushes (the last one wins), the end."""
    lat: dict[str, int] = {}
    for duration in durations_ns:
        key = str(latency.pair_key(0, 1, len(TABLE)) + latency.bucket_of(duration))
        lat[key] = lat.get(key, 0) + 1
    table = {
        "hookbuild_trace": 1,
        "hookpoints": [
            {"index": i, "name": n, "demangled": d, "id_bits": b} for i, (n, d, b) in enumerate(TABLE)
        ],
    }
    hits = {TABLE[0][0]: len(durations_ns), TABLE[1][0]: len(durations_ns), C: 7}
    text = _line("hookbuild_pod", {"namespace": "shop", "pod": pod, "container": "istio-proxy", "pid": pid})
    text += _line("attached_probes", {"probes": 5})
    text += _line("printf", json.dumps(table) + "\n")
    text += _line("printf", "hookbuild: tracing 3 hookpoints in pid 1; Ctrl-C to stop\n")
    text += _line("map", {"@hits": {TABLE[0][0]: 1}}) + _line("map", {"@lat": {"1500": 1}})  # an older flush
    text += _line("printf", f"hop 1 0 1 16 1000 {durations_ns[0]}\n")
    text += _line("map", {"@hits": hits}) + _line("map", {"@lat": lat})
    if end:
        text += _line("printf", "hookbuild: end 5\n")
    if cut:
        text += '{"type": "map", "data": {"@hits": {"_ZN5Env'
    path.write_text(text)
    return path


def true_quantile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_are_within_15_percent_of_the_truth(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    durations = [int(rng.lognormvariate(14.5, 0.8)) for _ in range(3000)]  # ~2 ms, long tail
    trace_file(tmp_path / "shop_a.json", durations, pod="a")
    (pair,) = summary.pairs(traces.load(tmp_path).pods)
    assert (pair.source, pair.target, pair.overall.count) == (A, B, 3000)
    for name, q in summary.QUANTILES:
        truth = true_quantile(durations, q)
        assert abs(getattr(pair.overall, name) - truth) <= 0.15 * truth, (name, truth)


def test_pods_are_merged_and_kept_apart(tmp_path: Path) -> None:
    fast, slow = [100_000] * 100, [2_000_000] * 300
    trace_file(tmp_path / "shop_fast.json", fast, pod="fast")
    trace_file(tmp_path / "shop_slow.json", slow, pod="slow")
    report = summary.to_dict(traces.load(tmp_path))
    (pair,) = report["pairs"]
    assert pair["from"] == A and pair["to"] == B and pair["count"] == 400
    assert set(pair["pods"]) == {"shop/fast", "shop/slow"}
    assert pair["pods"]["shop/fast"]["count"] == 100
    assert 95 < pair["pods"]["shop/fast"]["p50_us"] < 105
    assert 1900 < pair["pods"]["shop/slow"]["p50_us"] < 2100
    assert 1900 < pair["p50_us"] < 2100 and 1900 < pair["p99_us"] < 2100  # 3 of 4 requests are slow
    assert {p["pod"]: p["hits"][C] for p in report["pods"]} == {"fast": 7, "slow": 7}  # no id: counted only


def test_partial_cut_off_and_missing_pods_are_reported_not_fatal(tmp_path: Path) -> None:
    trace_file(tmp_path / "shop_whole.json", [1_000_000] * 10, pod="whole")
    trace_file(tmp_path / "shop_killed.json", [1_000_000] * 20, pod="killed", end=False, cut=True)
    (tmp_path / "shop_gone.failed").write_text("its Envoy (pid 12 in the sidecar) is not on this node\n")
    (tmp_path / "shop_empty.json").write_text("")
    found = traces.load(tmp_path)
    problems = {(p.where, p.problem) for p in found.problems}
    assert ("shop_gone", "its Envoy (pid 12 in the sidecar) is not on this node") in problems
    assert ("shop_killed.json", "partial: the tracer did not stop cleanly; last flush used") in problems
    assert ("shop_killed.json", "1 cut-off line(s) skipped") in problems
    assert any(where == "shop_empty.json" and "no hookpoint table" in why for where, why in problems)
    counts = {pod.pod: sum(pod.latency[(A, B)].values()) for pod in found.pods}
    assert counts == {"whole": 10, "killed": 20}  # the last complete flush of the killed tracer


def test_one_tracer_for_several_pids_is_split_by_pid(tmp_path: Path) -> None:
    key = latency.pair_key(0, 1, len(TABLE)) + latency.bucket_of(5000)
    table = {"hookpoints": [{"index": i, "name": n, "demangled": d} for i, (n, d, _b) in enumerate(TABLE)]}
    (tmp_path / "node.json").write_text(
        _line("hookbuild_pod", {"namespace": "a", "pod": "p1", "container": "istio-proxy", "pid": 11})
        + _line("hookbuild_pod", {"namespace": "b", "pod": "p2", "container": "istio-proxy", "pid": 12})
        + _line("printf", json.dumps(table))
        + _line("map", {"@lat": {f"11,{key}": 3, f"12,{key}": 4}})
        + _line("printf", "hookbuild: end 1\n")
    )
    pods = {pod.label: sum(pod.latency[(A, B)].values()) for pod in traces.load(tmp_path).pods}
    assert pods == {"a/p1": 3, "b/p2": 4}


def test_html_is_self_contained(tmp_path: Path) -> None:
    trace_file(tmp_path / "shop_a.json", [2_000_000] * 50, pod="a<script>")
    page = html.render(traces.load(tmp_path))
    assert page.count("<svg") == 2 and 'class="cdf"' in page and 'class="hop"' in page
    assert "<script" not in page.replace("a&lt;script&gt;", "")  # names are escaped; the page runs nothing
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page


def test_task_json_html_and_bad_directory(tmp_path: Path) -> None:
    trace_file(tmp_path / "shop_a.json", [2_000_000] * 50, pod="a")
    ran = run_task("trace-report", str(tmp_path), "--json", "--html", str(tmp_path / "r.html"))
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["pairs"][0]["pods"]["shop/a"]["count"] == 50
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    text = run_task("trace-report", str(tmp_path))
    assert text.returncode == 0 and "shop/a" in text.stdout and "p50" in text.stdout
    missing = run_task("trace-report", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: trace directory")
    (tmp_path / "empty").mkdir()
    empty = run_task("trace-report", str(tmp_path / "empty"), "--json")
    assert empty.returncode == 2 and "no trace files" in json.loads(empty.stdout)["error"]


PERF_SCRIPT = """envoy  42  10.000001:     250000 cpu-clock:ppp:
\t    1150 parseHeadersWork+0x27 (/usr/local/bin/envoy)
\t    1190 main+0x70 (/usr/local/bin/envoy)
\t   2724a __libc_start_call_main+0x7a (/usr/lib/x86_64-linux-gnu/libc.so.6)

envoy  42  10.000251:     250000 cpu-clock:ppp:
\t    1150 parseHeadersWork+0x31 (/usr/local/bin/envoy)
\t    1190 main+0x70 (/usr/local/bin/envoy)
\t   2724a __libc_start_call_main+0x7a (/usr/lib/x86_64-linux-gnu/libc.so.6)

envoy  42  10.000501:     250000 cpu-clock:ppp:
\t       0 [unknown] ([unknown])
"""


def test_perf_script_folds_into_stacks() -> None:
    stacks = flame.fold(PERF_SCRIPT)
    assert stacks == {
        ("envoy", "__libc_start_call_main", "main", "parseHeadersWork"): 2,
        ("envoy", "[[unknown]]"): 1,
    }
    page = flame.svg(flame.Profile(name="p", stacks=stacks))
    assert page.count('class="frame"') == 5 and "parseHeadersWork: 2 samples (66.7%)" in page


HOT = """
__attribute__((noinline)) double hotFunction(long n) {
  double x = 0; for (long i = 0; i < n; ++i) x += i * 0.5; return x;
}
__attribute__((noinline)) double coldFunction(long n) {
  double x = 0; for (long i = 0; i < n; ++i) x += i * 0.25; return x;
}
int main() {
  double s = 0;
  for (int k = 0; k < 20; ++k) { s += hotFunction(20000000); s += coldFunction(2000000); }
  return s > 0 ? 0 : 1;
}
"""


def test_real_perf_profile_becomes_a_flame_graph(tmp_path: Path) -> None:
    if shutil.which("perf") is None or shutil.which("g++") is None:
        pytest.fail("perf and g++ are needed: run scripts/setup.sh")
    (tmp_path / "hot.cc").write_text(HOT)
    subprocess.run(
        ["g++", "-O1", "-fno-omit-frame-pointer", "-o", str(tmp_path / "hot"), str(tmp_path / "hot.cc")],
        check=True,
    )
    data, out = tmp_path / "hot.data", tmp_path / "traces"
    out.mkdir()
    subprocess.run(
        ["perf", "record", "-g", "-o", str(data), "--", str(tmp_path / "hot")],
        check=True,
        capture_output=True,
    )
    with (out / "istio-perf.perf.txt").open("w") as sink:
        subprocess.run(
            ["perf", "script", "-i", str(data)], check=True, stdout=sink, stderr=subprocess.DEVNULL
        )
    ran = run_task("trace-report", str(out), "--json", "--html", str(tmp_path / "r.html"))
    assert ran.returncode == 0, ran.stderr
    (profile,) = json.loads(ran.stdout)["profiles"]
    assert profile["name"] == "istio-perf" and profile["top"][0]["function"] == "hotFunction", profile
    assert profile["top"][0]["samples"] > profile["samples"] / 2
    page = (tmp_path / "r.html").read_text()
    assert 'class="flame"' in page and ">hotFunction<" in page
