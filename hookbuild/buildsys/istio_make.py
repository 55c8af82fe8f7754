"""istio/proxy's own build: `make build_envoy BUILD_WITH_CONTAINER=1`, the seed's command.

The Envoy checkout is mounted into the build container through CONDITIONAL_HOST_MOUNTS (run.sh only ever
appends to it, so a real istio/proxy works unchanged). `build_envoy` uses `--config=release`, which strips
every hookpoint, so BAZEL_CONFIG_REL is replaced (the container's `make -e` lets the environment win).
"""

from __future__ import annotations

import shlex
from pathlib import Path, PurePosixPath

from hookbuild.buildsys import BazelOptions, BuildSpec
from hookbuild.command import Command
from hookbuild.workspace import ENVOY_MOUNT


def spec(
    *,
    proxy: Path | None,
    envoy: Path,
    target: str,
    symbols_config: str | None,
    override: bool,
    bazel: BazelOptions,
    workdir: Path,
    symbols: bool = True,
) -> BuildSpec:
    del workdir, symbols  # state lives in the `cache` volume; symbols always (release-symbol)
    assert proxy is not None and symbols_config is not None
    build_args = []
    if override:
        build_args.append(f"--override_repository=envoy={ENVOY_MOUNT}")
    build_args += bazel.flags()
    env = {
        "CONDITIONAL_HOST_MOUNTS": f"--volume {envoy.resolve()}:{ENVOY_MOUNT} ",
        "BAZEL_CONFIG_REL": f"--config={symbols_config}",
    }
    if build_args:
        env["BAZEL_BUILD_ARGS"] = shlex.join(build_args)
    return BuildSpec(
        command=Command(argv=("make", target, "BUILD_WITH_CONTAINER=1"), cwd=proxy, env=env),
        output_link=proxy / "bazel-bin",
        output_name=PurePosixPath("envoy"),
    )
