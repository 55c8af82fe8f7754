"""Plain Envoy through Envoy's own CI scripts: `ci/run_envoy_docker.sh './ci/do_ci.sh TARGET'`.

At plan time `ci/` says which generation this is. Since 2023, `release.server_only` leaves
`${ENVOY_BUILD_DIR}/bin/release.tar.zst`, whose `dbg/envoy` keeps the symbols (the top-level `envoy` is
stripped), and ENVOY_BUILD_DIR is `envoy/x64` or `envoy/arm64` by the build machine. Before,
`bazel.release.server_only` copied a `-c opt` binary with symbols to `${ENVOY_DELIVERY_DIR}/envoy/envoy`
(2021-2022, `bazel_envoy_binary_build`) or `${ENVOY_DELIVERY_DIR}/envoy` (earlier), under `envoy/` with no
arch directory. run_envoy_docker.sh mounts ENVOY_DOCKER_BUILD_DIR at /build; Bazel flags reach the build
through BAZEL_BUILD_EXTRA_OPTIONS, the build image through IMAGE_NAME/IMAGE_ID.
"""

from __future__ import annotations

import platform
import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hookbuild.build import bazelrc, makefile
from hookbuild.build.bazel import SECRET_RC_MOUNT
from hookbuild.build.spec import BuildInputs, BuildSpec, CheckoutShapeError, with_env
from hookbuild.command import Command

SUPPORTED = (
    "supported: envoyproxy/envoy ci/ from 2020 on: do_ci.sh `release.server_only` (bin/release.tar.zst with "
    "dbg/envoy) or `bazel.release.server_only` (${ENVOY_DELIVERY_DIR}/envoy[/envoy])"
)
_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True, kw_only=True)
class Shape:
    target: str  # the do_ci.sh target
    output: PurePosixPath  # below ENVOY_DOCKER_BUILD_DIR
    archive_member: str | None
    passes_startup_extra: bool  # run_envoy_docker.sh passes BAZEL_STARTUP_EXTRA_OPTIONS into the container
    image_name: str | None  # run_envoy_docker.sh's Linux IMAGE_NAME default
    ci_tag: bool  # the image is ${IMAGE_NAME}:ci-${IMAGE_ID}


def arch_dir(machine: str | None = None) -> str:
    """build_setup.sh's arch directory: the container runs on this machine, so `uname -m` is ours."""
    machine = machine or platform.machine()
    return _ARCH.get(machine, machine)


def read(envoy: Path, machine: str | None = None) -> Shape:
    ci = envoy / "ci"
    do_ci, setup, run = (
        makefile.read(ci / name) for name in ("do_ci.sh", "build_setup.sh", "run_envoy_docker.sh")
    )
    if not do_ci or not run:
        raise _refuse(envoy, "no ci/do_ci.sh or ci/run_envoy_docker.sh")
    build_dir = PurePosixPath("envoy")
    if re.search(r'ENVOY_BUILD_DIR="?\$\{BUILD_DIR\}"?/envoy/(x64|arm64)', setup):
        build_dir /= arch_dir(machine)
    elif not re.search(r'ENVOY_BUILD_DIR="?\$\{BUILD_DIR\}"?/envoy\b', setup):
        raise _refuse(envoy, "ci/build_setup.sh sets no ENVOY_BUILD_DIR under ${BUILD_DIR}/envoy")
    delivery = build_dir / "source" / "exe"
    member = None
    if re.search(r"^\s*release\.server_only\)", do_ci, re.M):
        target, output, member = "release.server_only", build_dir / "bin" / "release.tar.zst", "dbg/envoy"
    elif found := re.search(r'"bazel\.release\.server_only" \]\];\s*then(.*?)\n\s*exit 0', do_ci, re.S):
        if "bazel_envoy_binary_build release" in found.group(1):
            output = delivery / "envoy" / "envoy"
        elif "bazel_binary_build release" in found.group(1):
            output = delivery / "envoy"
        else:
            raise _refuse(envoy, "do_ci.sh's bazel.release.server_only runs no bazel_*binary_build release")
        target = "bazel.release.server_only"
    else:
        raise _refuse(envoy, "ci/do_ci.sh has neither release.server_only nor bazel.release.server_only")
    names = [n for n in re.findall(r'IMAGE_NAME\}" \]\] && IMAGE_NAME="([^"]+)"', run) if "windows" not in n]
    return Shape(
        target=target,
        output=output,
        archive_member=member,
        passes_startup_extra="-e BAZEL_STARTUP_EXTRA_OPTIONS" in run,
        image_name=names[-1] if names else None,
        ci_tag=":ci-${IMAGE_ID}" in run,
    )


def _refuse(envoy: Path, found: str) -> CheckoutShapeError:
    return CheckoutShapeError(f"envoy checkout {envoy}: {found}", hint=SUPPORTED)


def image_env(shape: Shape, image: str) -> dict[str, str]:
    """IMAGE_NAME/IMAGE_ID for run_envoy_docker.sh, which joins them as NAME:ID (newest: NAME:ci-ID)."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        raise CheckoutShapeError(f"envoy build image {image!r} has no tag", hint="write NAME:TAG")
    if shape.ci_tag:
        if not tag.startswith("ci-"):
            raise CheckoutShapeError(
                f"envoy build image {image!r}: this run_envoy_docker.sh runs ${{IMAGE_NAME}}:ci-${{IMAGE_ID}}",
                hint="name a tag that starts with ci-",
            )
        tag = tag.removeprefix("ci-")
    return {"IMAGE_NAME": name, "IMAGE_ID": tag}


def _default_image(shape: Shape) -> str | None:
    if shape.image_name is None:
        return None
    return f"{shape.image_name}:{'ci-' if shape.ci_tag else ''}<ENVOY_BUILD_SHA of ci/envoy_build_sha.sh>"


class EnvoyCi:
    name = "envoy_ci"

    def spec(self, inputs: BuildInputs) -> BuildSpec:
        shape = read(inputs.envoy)
        if inputs.secret_rc and not shape.passes_startup_extra:
            raise _refuse(
                inputs.envoy,
                "its run_envoy_docker.sh does not pass BAZEL_STARTUP_EXTRA_OPTIONS, which "
                "HOOKBUILD_BAZEL_REMOTE_HEADER needs (unset it, or use a 2023+ ci/)",
            )
        build_dir = inputs.workdir / "envoy-docker-build"
        env = {"ENVOY_DOCKER_BUILD_DIR": str(build_dir)}
        flags = inputs.bazel.flags()
        if flags:
            env["BAZEL_BUILD_EXTRA_OPTIONS"] = shlex.join(flags)
        if run_options := inputs.bazel.docker_run_options():
            env["ENVOY_DOCKER_OPTIONS"] = shlex.join(run_options)
        if inputs.image:
            env |= image_env(shape, inputs.image)
        # dbg/envoy of the bundle and the older -c opt copy both keep symbols unless the user's flags strip.
        outcome = bazelrc.evaluate([*flags, "-c", "opt"], bazelrc.read(inputs.envoy))
        output = build_dir / shape.output
        return BuildSpec(
            command=Command(
                argv=("ci/run_envoy_docker.sh", f"./ci/do_ci.sh {shape.target}"), cwd=inputs.envoy, env=env
            ),
            output_link=output.parent,
            output_name=PurePosixPath(output.name),
            archive_member=shape.archive_member,
            keeps_symbols=outcome.keeps_symbols or shape.archive_member is not None,
            strips_because=outcome.strips_because,
            strategy=f"do_ci.sh {shape.target} -> {shape.output}"
            + (f"!{shape.archive_member}" if shape.archive_member else ""),
            image=inputs.image or _default_image(shape),
        )

    def with_bazelrc(self, command: Command, rc: Path) -> Command:
        options = command.env.get("ENVOY_DOCKER_OPTIONS", "")
        return with_env(
            command,
            ENVOY_DOCKER_OPTIONS=f"{options} -v {rc.parent}:{SECRET_RC_MOUNT}:ro".strip(),
            BAZEL_STARTUP_EXTRA_OPTIONS=f"--bazelrc={SECRET_RC_MOUNT}/{rc.name}",
        )


SYSTEM = EnvoyCi()
