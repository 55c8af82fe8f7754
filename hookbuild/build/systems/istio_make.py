"""istio/proxy's own build: `make build_envoy BUILD_WITH_CONTAINER=1`, the seed's command.

The Envoy checkout is mounted into the build container through CONDITIONAL_HOST_MOUNTS (run.sh only ever
appends to it, so a real istio/proxy works unchanged). `build_envoy` uses `--config=release`, which strips
every hookpoint, so BAZEL_CONFIG_REL is replaced (the container's `make -e` lets the environment win).
"""

from __future__ import annotations

import shlex
from pathlib import Path, PurePosixPath

from hookbuild.build.bazel import SECRET_RC_MOUNT
from hookbuild.build.spec import BuildInputs, BuildSpec, with_env
from hookbuild.build.workspace import ENVOY_MOUNT
from hookbuild.command import Command


class IstioMake:
    name = "istio_make"

    def spec(self, inputs: BuildInputs) -> BuildSpec:
        # The build container keeps Bazel's state in the `cache` volume; release-symbol always keeps symbols.
        assert inputs.proxy is not None and inputs.symbols_config is not None
        build_args = [f"--override_repository=envoy={ENVOY_MOUNT}"] if inputs.override else []
        build_args += inputs.bazel.flags()
        env = {
            "CONDITIONAL_HOST_MOUNTS": f"--volume {inputs.envoy.resolve()}:{ENVOY_MOUNT} ",
            "BAZEL_CONFIG_REL": f"--config={inputs.symbols_config}",
        }
        if build_args:
            env["BAZEL_BUILD_ARGS"] = shlex.join(build_args)
        if run_options := inputs.bazel.docker_run_options():
            env["DOCKER_RUN_OPTIONS"] = shlex.join(run_options)
        return BuildSpec(
            command=Command(
                argv=("make", inputs.target, "BUILD_WITH_CONTAINER=1"), cwd=inputs.proxy, env=env
            ),
            output_link=inputs.proxy / "bazel-bin",
            output_name=PurePosixPath("envoy"),
        )

    def with_bazelrc(self, command: Command, rc: Path) -> Command:
        mounts = command.env.get("CONDITIONAL_HOST_MOUNTS", "")
        return with_env(
            command,
            CONDITIONAL_HOST_MOUNTS=f"{mounts}--volume {rc.parent}:{SECRET_RC_MOUNT}:ro ",
            BAZEL_STARTUP_ARGS=f"--bazelrc={SECRET_RC_MOUNT}/{rc.name}",
        )


SYSTEM = IstioMake()
