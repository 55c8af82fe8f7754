"""Plain Envoy through Envoy's own CI scripts: `ci/run_envoy_docker.sh './ci/do_ci.sh TARGET'`.

run_envoy_docker.sh mounts ENVOY_DOCKER_BUILD_DIR at /build; `release.server_only` leaves
/build/envoy/x64/bin/release.tar.zst, whose `dbg/envoy` keeps the symbols uprobes need (the top-level
`envoy` in it is stripped). Bazel flags reach the build through BAZEL_BUILD_EXTRA_OPTIONS, as upstream CI does.
"""

from __future__ import annotations

import shlex
from pathlib import Path, PurePosixPath

from hookbuild.buildsys import BazelOptions, BuildSpec
from hookbuild.command import Command


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
    del proxy, symbols_config, override, symbols  # no proxy, no override; dbg/envoy keeps symbols
    build_dir = workdir / "envoy-docker-build"
    env = {"ENVOY_DOCKER_BUILD_DIR": str(build_dir)}
    if flags := bazel.flags():
        env["BAZEL_BUILD_EXTRA_OPTIONS"] = shlex.join(flags)
    return BuildSpec(
        command=Command(argv=("ci/run_envoy_docker.sh", f"./ci/do_ci.sh {target}"), cwd=envoy, env=env),
        output_link=build_dir / "envoy" / "x64" / "bin",
        output_name=PurePosixPath("release.tar.zst"),
        archive_member="dbg/envoy",
    )
