"""Plain Envoy through Envoy's own CI scripts: `ci/run_envoy_docker.sh './ci/do_ci.sh TARGET'`.

run_envoy_docker.sh mounts ENVOY_DOCKER_BUILD_DIR at /build; `release.server_only` leaves
/build/envoy/x64/bin/release.tar.zst, whose `dbg/envoy` keeps the symbols uprobes need (the top-level
`envoy` in it is stripped). Bazel flags reach the build through BAZEL_BUILD_EXTRA_OPTIONS, as upstream CI does.
"""

from __future__ import annotations

import shlex
from pathlib import Path, PurePosixPath

from hookbuild.build.bazel import SECRET_RC_MOUNT
from hookbuild.build.spec import BuildInputs, BuildSpec, with_env
from hookbuild.command import Command


class EnvoyCi:
    name = "envoy_ci"

    def spec(self, inputs: BuildInputs) -> BuildSpec:
        # Envoy builds itself: no proxy checkout, no repository override; dbg/envoy always keeps symbols.
        build_dir = inputs.workdir / "envoy-docker-build"
        env = {"ENVOY_DOCKER_BUILD_DIR": str(build_dir)}
        if flags := inputs.bazel.flags():
            env["BAZEL_BUILD_EXTRA_OPTIONS"] = shlex.join(flags)
        if run_options := inputs.bazel.docker_run_options():
            env["ENVOY_DOCKER_OPTIONS"] = shlex.join(run_options)
        return BuildSpec(
            command=Command(
                argv=("ci/run_envoy_docker.sh", f"./ci/do_ci.sh {inputs.target}"), cwd=inputs.envoy, env=env
            ),
            output_link=build_dir / "envoy" / "x64" / "bin",
            output_name=PurePosixPath("release.tar.zst"),
            archive_member="dbg/envoy",
        )

    def with_bazelrc(self, command: Command, rc: Path) -> Command:
        options = command.env.get("ENVOY_DOCKER_OPTIONS", "")
        return with_env(
            command,
            ENVOY_DOCKER_OPTIONS=f"{options} -v {rc.parent}:{SECRET_RC_MOUNT}:ro".strip(),
            BAZEL_STARTUP_EXTRA_OPTIONS=f"--bazelrc={SECRET_RC_MOUNT}/{rc.name}",
        )


SYSTEM = EnvoyCi()
