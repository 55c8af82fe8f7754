"""The record tasks through the real `invoke` CLI, as users and CI run them."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT, run_invoke

from hookbuild import record


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    path = tmp_path / "versions.toml"
    shutil.copyfile(ROOT / "versions.toml", path)
    return path


def test_seed_reads_back_completely_as_json() -> None:
    ran = run_invoke("versions", "--all", "--json")
    assert ran.returncode == 0, ran.stderr
    data = json.loads(ran.stdout)
    raw = tomllib.loads((ROOT / "versions.toml").read_text())
    expected = {f"{name}@{item['version']}": item for name in raw["variants"] for item in raw.get(name, [])}
    assert {item["ref"] for item in data} == set(expected) and len(data) == len(expected) == 11
    for item in data:
        for key, value in expected[item["ref"]].items():
            got = item[key]
            if isinstance(got, dict):
                got = {k: v for k, v in got.items() if v is not None}
            assert got == value, (item["ref"], key)
        assert item["digest"] is None
    assert [item["ref"] for item in data][:3] == ["istio@12.0", "istio@11.8", "istio@11.7"]  # newest first


def test_default_hides_deprecated_and_supports_filters() -> None:
    listed = json.loads(run_invoke("versions", "--json").stdout)
    assert "istio@11.7" not in {item["ref"] for item in listed} and "cilium@2.1" in {i["ref"] for i in listed}
    perf = json.loads(run_invoke("versions", "--supports", "perf", "--json").stdout)
    assert [item["ref"] for item in perf] == ["istio@12.0"]
    one = json.loads(run_invoke("versions", "--show", "istio@11.8", "--json").stdout)
    assert one["supersedes"] == "11.7"
    cilium = json.loads(run_invoke("versions", "--variant", "cilium", "--all", "--json").stdout)
    assert [item["ref"] for item in cilium] == ["cilium@2.2", "cilium@2.1", "cilium@2.0"]


def test_table_view() -> None:
    ran = run_invoke("versions", "--variant", "istio")
    assert ran.returncode == 0 and "istio@12.0" in ran.stdout and "istio@11.7" not in ran.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("versions", "--show", "istio@11.9"), "istio@11.9 is not in"),
        (("versions", "--show", "istio@v12"), "invalid version 'v12'"),
        (("versions", "--variant", "nope"), "unknown variant 'nope'"),
        (("bump", "--variant", "istio", "--summary", "x"), "exactly one of --major or --minor"),
        (("bump", "--variant", "istio", "--minor"), "needs --summary"),
        (("deprecate", "istio@12.0"), "needs a reason"),
        (("deprecate", "istio@../x", "--reason", "r"), "invalid version"),
    ],
)
def test_bad_input_is_one_error_line(seed: Path, args: tuple[str, ...], words: str) -> None:
    before = seed.read_bytes()
    ran = run_invoke(*args, "--versions-file", str(seed))
    assert ran.returncode == 2
    assert ran.stderr.count("\n") == 1 and ran.stderr.startswith("error: ") and words in ran.stderr
    assert "Traceback" not in ran.stderr
    assert seed.read_bytes() == before


def test_broken_record_is_one_error_line(seed: Path) -> None:
    seed.write_text(seed.read_text().replace('status = "test-only"', 'status = "maybe"'))
    ran = run_invoke("versions", "--versions-file", str(seed))
    assert ran.returncode == 1 and ran.stderr.startswith(f"error: {seed}:")
    assert "cilium[1].status: 'maybe' is not one of" in ran.stderr


def test_bump_deprecate_changelog(seed: Path) -> None:
    bump = (
        "bump", "-v", "istio", "--minor", "--summary", "Trace the router",
        "--feature", "bpftrace", "--no-feature", "grpc", "--package", "bpftrace", "--versions-file", str(seed),
    )  # fmt: skip
    ran = run_invoke(*bump, "--dry-run")
    assert ran.stdout == "12.1\n" and record.load(seed).find("istio", "12.1") is None
    ran = run_invoke(*bump)
    assert ran.returncode == 0 and ran.stdout == "12.1\n", ran.stderr
    entry = record.load(seed).get("istio@12.1")
    # --feature adds to the latest working version's features, --no-feature drops one
    assert entry.features == ("hookpoints", "absolute-time", "router-hookpoint", "perf", "bpftrace")
    assert entry.packages == ("bpftrace",) and entry.status is record.Status.PLANNED
    ran = run_invoke(
        "bump", "--variant", "envoy", "--major", "--summary", "first", "--json", "--versions-file", str(seed)
    )
    assert json.loads(ran.stdout)["ref"] == "envoy@1.0"
    ran = run_invoke("deprecate", "istio@12.1", "--reason", "too slow", "--versions-file", str(seed))
    assert ran.returncode == 0 and ran.stdout == "istio@12.1: deprecated\n"
    ran = run_invoke(
        "deprecate", "cilium@2.2", "--reason", "bench only", "--test-only", "--versions-file", str(seed)
    )
    assert record.load(seed).get("cilium@2.2").status is record.Status.TEST_ONLY
    ran = run_invoke("changelog", "--variant", "istio", "--versions-file", str(seed))
    assert (
        "- 12.1 (deprecated): Trace the router. Reason: Too slow. Before: planned (bumped) on " in ran.stdout
    )
    ran = run_invoke("changelog", "--json", "-v", "istio", "--versions-file", str(seed))
    assert ran.returncode == 0, ran.stderr
    planned_then_deprecated = json.loads(ran.stdout)[0]["versions"][-1]["history"]
    assert [h["status"] for h in planned_then_deprecated] == ["planned", "deprecated"]


def test_a_bump_is_planned_and_invisible_until_released(seed: Path) -> None:
    """The issue's case: after `bump --major`, `--supports perf` listed 13.0 (no image) first."""
    ran = run_invoke("bump", "-v", "istio", "--major", "--summary", "big", "--versions-file", str(seed))
    assert ran.returncode == 0 and ran.stdout == "13.0\n", ran.stderr
    perf = json.loads(
        run_invoke("versions", "--supports", "perf", "--json", "--versions-file", str(seed)).stdout
    )
    assert [item["ref"] for item in perf] == ["istio@12.0"] and perf[0]["claim"] == "by hand"
    listed = json.loads(run_invoke("versions", "-v", "istio", "--json", "--versions-file", str(seed)).stdout)
    assert listed[0]["ref"] == "istio@13.0" and listed[0]["status"] == "planned"
    assert listed[0]["claims"]["perf"] == "to check"  # its release will check it in the built image
    second = run_invoke("bump", "-v", "istio", "--minor", "--summary", "more", "--versions-file", str(seed))
    assert second.returncode == 6 and "istio@13.0 is planned and not released yet" in second.stderr
    assert "--again" in second.stderr and record.load(seed).find("istio", "13.1") is None
    again = run_invoke(
        "bump", "-v", "istio", "--minor", "--summary", "more", "--again", "--versions-file", str(seed)
    )
    assert again.returncode == 0 and again.stdout == "13.1\n", again.stderr
    working = run_invoke(
        "deprecate", "istio@13.0", "--working", "--reason", "r", "--versions-file", str(seed)
    )
    assert working.returncode == 6 and "only a release makes it working" in working.stderr
    injected = run_invoke("inject", "-r", "istio@13.0", "-f", str(ROOT / "tests/data/manifests/bookinfo.yaml"),
                          env={"HOOKBUILD_VERSIONS_FILE": str(seed)})  # fmt: skip
    assert injected.returncode == 6 and "istio@13.0 is planned, not released" in injected.stderr


def test_two_deprecations_keep_both_reasons(seed: Path) -> None:
    for reason in ("replaced by 2.2", "and it crashes"):
        ran = run_invoke("deprecate", "cilium@2.1", "--reason", reason, "--versions-file", str(seed))
        assert ran.returncode == 0, ran.stderr
    shown = json.loads(
        run_invoke("versions", "--show", "cilium@2.1", "--json", "--versions-file", str(seed)).stdout
    )
    assert [(h["status"], h["reason"]) for h in shown["history"]] == [
        ("test-only", "no symbols: only for tests"),
        ("deprecated", "replaced by 2.2"),
        ("deprecated", "and it crashes"),
    ]
    assert shown["reason"] == "and it crashes" and shown["status_reason"] is None
    table = run_invoke("versions", "--show", "cilium@2.1", "--versions-file", str(seed))
    assert (
        "test-only: no symbols: only for tests" in table.stdout
        and "deprecated: replaced by 2.2" in table.stdout
    )


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("versions", "--supports", "pref"), 2, "--supports 'pref': unknown feature"),
        (
            ("bump", "-v", "istio", "--minor", "--summary", "s", "--feature", "Perf"),
            2,
            "--feature 'Perf': unknown",
        ),
        (
            ("bump", "-v", "istio", "--minor", "--summary", "s", "--no-feature", "grpcc"),
            2,
            "--no-feature 'grpcc'",
        ),
        (
            ("bump", "-v", "istio", "--minor", "--summary", "s", "--no-feature", "perf-fifo"),
            2,
            "no such feature",
        ),
        (
            ("bump", "-v", "istio", "--minor", "--summary", "s", "--based-on", "istio"),
            2,
            "--based-on 'istio'",
        ),
        (("bump", "-v", "istio", "--minor", "--summary", "s", "--supersedes", "v1"), 2, "--supersedes 'v1'"),
        (
            ("bump", "-v", "istio", "--minor", "--summary", "s", "--package", "Bad_Pkg"),
            2,
            "--package 'Bad_Pkg'",
        ),
    ],
)
def test_errors_name_the_flag(seed: Path, args: tuple[str, ...], code: int, words: str) -> None:
    before = seed.read_bytes()
    ran = run_invoke(*args, "--versions-file", str(seed))
    assert ran.returncode == code and ran.stderr.startswith("error: ") and words in ran.stderr, ran.stderr
    if "unknown feature" in ran.stderr:
        assert "known features: absolute-time, bpftrace, envoy-trace-full" in ran.stderr
    assert seed.read_bytes() == before


@pytest.mark.slow  # sixteen real invoke processes
def test_sixteen_concurrent_cli_bumps(seed: Path) -> None:
    import subprocess

    from conftest import INVOKE

    procs = [
        subprocess.Popen(
            [
                str(INVOKE),
                "bump",
                "--variant",
                "cilium",
                "--again",
                "--minor",
                "--summary",
                f"n{i}",
                "--versions-file",
                str(seed),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(16)
    ]
    outs = sorted(proc.communicate(timeout=120)[0].strip() for proc in procs)
    assert sorted(outs, key=lambda v: int(v.split(".")[1])) == [f"2.{n}" for n in range(3, 19)]
    assert len(record.load(seed).of("cilium")) == 3 + 16
