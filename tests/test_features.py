"""Feature claims are checked facts (issue 12): each tag's check, on a real image and real g++ binaries."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import docker
import pytest
from elf_samples import Samples

from hookbuild import config, variants
from hookbuild.binary import symbols
from hookbuild.errors import UsageError
from hookbuild.record import features
from hookbuild.release import truth
from hookbuild.release.plan import plan
from hookbuild.release.request import Request
from hookbuild.version import Version


def test_every_seed_tag_is_known_and_unknown_ones_name_the_flag() -> None:
    from conftest import ROOT

    from hookbuild import record

    used = {tag for entry in record.load(ROOT / "versions.toml").entries for tag in entry.features}
    assert used <= set(features.FEATURES)
    with pytest.raises(UsageError, match=r"--supports 'pref': unknown feature") as caught:
        features.require("pref", flag="--supports")
    assert "known features: absolute-time, bpftrace" in caught.value.line()


def test_verify_keeps_what_passed_and_what_nothing_can_check() -> None:
    ran: list[tuple[str, ...]] = []

    def run(command: tuple[str, ...]) -> str | None:
        ran.append(command)
        return None if command[0] == "bpftrace" else f"{command[0]}: not found"

    verdict = features.verify(
        ("hookpoints", "perf", "grpc", "bpftrace", "router-hookpoint", "symbols"),
        run=run,
        hookpoints=["Envoy::Http::hookpointDecodeHeaders(int)"],
        stripped=False,
    )
    assert ran == [("perf", "--version"), ("bpftrace", "--version")]
    assert verdict.passed == ("hookpoints", "bpftrace", "symbols")
    assert set(verdict.failed) == {"perf", "router-hookpoint"} and "not found" in verdict.failed["perf"]
    assert verdict.unchecked == ("grpc",)
    assert verdict.kept == ("hookpoints", "grpc", "bpftrace", "symbols")  # in the order asked


@pytest.mark.docker
def test_checks_run_in_the_built_image(
    tmp_path: Path, docker_client: docker.DockerClient, samples: Samples
) -> None:
    """The busybox image has `sh` but no perf; the g++ sample has hookpoints but none named Router::."""
    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(b"FROM hookbuild/busybox:1\nLABEL test=hookbuild-features\n"), rm=True
    )
    try:
        settings = config.load(env={**os.environ, "HOOKBUILD_DIST": str(tmp_path)})
        sample = plan(Request(variant=variants.get("istio"), version=Version(12, 1), sample=True), settings)
        claims = ("hookpoints", "router-hookpoint", "perf", "perf-fifo", "grpc", "symbols")
        info = symbols.read_binary(samples.gcc)
        verdict = truth.check_features(
            dataclasses.replace(sample, features=claims), docker_client, image.id, info
        )
        assert verdict.passed == ("hookpoints", "symbols")
        assert set(verdict.failed) == {"router-hookpoint", "perf", "perf-fifo"}
        assert (
            "`perf --version` fails in the built image" in verdict.failed["perf"]
            or "perf" in verdict.failed["perf"]
        )
        assert verdict.kept == ("hookpoints", "grpc", "symbols")
        stripped = truth.check_features(
            dataclasses.replace(sample, features=("release-binary", "symbols")),
            docker_client,
            image.id,
            symbols.read_binary(samples.stripped),
        )
        assert stripped.passed == ("release-binary",) and set(stripped.failed) == {"symbols"}
    finally:
        docker_client.images.remove(image.id)
