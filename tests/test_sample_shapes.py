"""Each older upstream shape's sample is released end to end (real Bazel, Docker, registry), next to the newest.

istio `--shape 1.13` builds `//src/envoy:envoy` through an unanchored ENV_BLOCKLIST with IMG from the build-image
setting; cilium `--shape 1.33` has no RELEASE_DEBUG (and its sample refuses a `-c dbg` link, so a release proves
the `-c opt` after DEBUG=1 won); envoy `--shape 2022` is `bazel.release.server_only` -> ENVOY_DELIVERY_DIR.
"""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
from conftest import run_process

from hookbuild.binary import symbols
from hookbuild.build import outputs
from hookbuild.images import engine

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.bazel]

SHAPES = [
    ("istio", "1.13", "/usr/local/bin/envoy", "bazel-bin/src/envoy/envoy", 4),
    ("cilium", "1.33", "/usr/bin/cilium-envoy", "bazel-bin/cilium-envoy", 5),
    ("envoy", "2022", "/usr/local/bin/envoy", "envoy-docker-build/envoy/source/exe/envoy/envoy", 4),
]


def on_host(output: Path, client: docker.DockerClient) -> Path:
    """The planned output path on this host (istio's bazel-bin points into the build container's volume)."""
    if "bazel-bin" not in output.parts:
        return output
    index = output.parts.index("bazel-bin")
    link = Path(*output.parts[: index + 1])
    return outputs.resolve_link(link, client=client).joinpath(*output.parts[index + 1 :])


@pytest.mark.parametrize(("variant", "shape", "in_image", "output", "hookpoints"), SHAPES)
def test_older_shape_sample_releases_end_to_end(
    tmp_path: Path,
    docker_client: docker.DockerClient,
    registry_namespace: str,
    variant: str,
    shape: str,
    in_image: str,
    output: str,
    hookpoints: int,
) -> None:
    env = {"HOOKBUILD_DIST": str(tmp_path / "dist"), "HOOKBUILD_NAMESPACE": registry_namespace}
    args = ("release", "--sample", "--variant", variant, "--shape", shape, "--version", "3.1", "--json")
    planned = run_process(*args, "--dry-run", env=env)
    assert planned.returncode == 0, planned.stderr
    (build,) = json.loads(planned.stdout)["builds"]
    assert build["output"].endswith(output) and build["keeps_symbols"] is True
    ran = run_process(*args, env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads(ran.stdout)
    assert result["image"] == f"127.0.0.1:5000/{registry_namespace}/{result['image'].split('/')[-1]}"
    assert on_host(Path(build["output"]), docker_client).is_file()  # the binary was where the plan said
    copied = engine.copy_file(docker_client, str(result["pinned"]), in_image, tmp_path / "from-image")
    info = symbols.read_binary(copied)
    assert not info.stripped and len(info.hookpoints) == result["hookpoints"] == hookpoints
