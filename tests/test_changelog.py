"""The record as Markdown: the seed's Version Record, in substance."""

from __future__ import annotations

from pathlib import Path

from hookbuild import record
from hookbuild.record import changelog
from hookbuild.record import edit as record_edit

SEED = Path(__file__).resolve().parent.parent / "versions.toml"


def test_seed_changelog_reproduces_the_version_record() -> None:
    text = changelog.render(record.load(SEED))
    lines = text.splitlines()
    assert lines[0] == "## Version Record"
    sections = [line for line in lines if line.startswith("### ")]
    assert sections == [
        "### Modified_Istio_Proxy",
        "### Cilium Envoy Modified",
        "### Envoy",
        "### Istio_Perf",
    ]
    items = [line for line in lines if line.startswith("- ")]
    labels = [item.split(":", 1)[0] for item in items]
    assert labels == [
        "- 10.1",
        "- 11.5",
        "- 11.6 (deprecated)",
        "- 11.7 (deprecated)",
        "- 11.8",
        "- 12.0",
        "- 2.0 (deprecated)",
        "- 2.1 (test-only)",
        "- 2.2",
        "- (no versions yet)",
        "- 1.0",
        "- 1.1",
    ]
    by_label = dict(zip(labels, items, strict=True))
    assert "`envoy_trace_full`" in by_label["- 10.1"] and by_label["- 10.1"].endswith("✅")
    assert by_label["- 12.0"].endswith("✅") and "`linux-tools-6.8.0-71-generic`" in by_label["- 12.0"]
    assert "gRPC does not forward `x-request-id`" in by_label["- 11.6 (deprecated)"]
    assert "Supersedes 11.7" in by_label["- 11.8"]
    assert "**Only for test**" in by_label["- 2.1 (test-only)"]
    assert "Envoy 1.34.4" in by_label["- 2.0 (deprecated)"]
    assert "Based on istio@10.1" in by_label["- 1.1"]
    assert sum(item.endswith("✅") for item in items) == 3


def test_one_variant_and_a_release(tmp_path: Path) -> None:
    path = tmp_path / "versions.toml"
    path.write_text(SEED.read_text())
    record_edit.bump(path, "envoy", "major", "first plain envoy", features=["symbols"])
    text = changelog.render(record.load(path), variant="envoy")
    assert text == "## Version Record\n\n### Envoy\n- 1.0 (planned): First plain envoy. Features: symbols.\n"


def test_history_keeps_every_reason(tmp_path: Path) -> None:
    """cilium@2.1 goes from test-only to deprecated, twice: every reason stays, oldest first."""
    path = tmp_path / "versions.toml"
    path.write_text(SEED.read_text())
    record_edit.set_status(path, "cilium@2.1", record.Status.DEPRECATED, "replaced by 2.2")
    record_edit.set_status(path, "cilium@2.1", record.Status.DEPRECATED, "and it crashes")
    rec = record.load(path)
    line = next(x for x in changelog.render(rec).splitlines() if x.startswith("- 2.1"))
    assert line.startswith("- 2.1 (deprecated): Use the release binary") and "Reason: And it crashes." in line
    assert "Before: test-only (no symbols: only for tests); deprecated (replaced by 2.2) on " in line
    data = changelog.as_json(rec, variant="cilium")
    history = next(v for v in data[0]["versions"] if v["ref"] == "cilium@2.1")["history"]
    assert [(h["status"], h["reason"]) for h in history] == [
        ("test-only", "no symbols: only for tests"),
        ("deprecated", "replaced by 2.2"),
        ("deprecated", "and it crashes"),
    ]
    assert history[0]["at"] is None and history[1]["at"] <= history[2]["at"]
