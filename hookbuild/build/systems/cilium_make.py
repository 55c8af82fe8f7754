"""cilium/proxy's build: `make bazel-bin/cilium-envoy`, on the host like its own `make` does.

cilium/proxy takes Envoy by `git_repository(..., patches = [...])`; a local Envoy gets those patches
applied to a copy first (an override skips them). `--config=release` strips; RELEASE_DEBUG=1 selects
`release_debug`, which keeps symbols. BAZEL_BUILD_OPTS must come from the environment: on make's
command line it would replace the `+=` that adds the --config.
"""

from __future__ import annotations

import shlex
from pathlib import Path, PurePosixPath

from hookbuild.build.spec import BuildInputs, BuildSpec, with_env
from hookbuild.build.starlark import top_level_calls
from hookbuild.command import Command

_LABEL_PREFIXES = ("@//", "//")


def envoy_patches(proxy: Path) -> tuple[Path, ...]:
    """The patches cilium's WORKSPACE applies to Envoy, as files of the proxy checkout."""
    workspace = proxy / "WORKSPACE"
    if not workspace.is_file():
        return ()
    text = workspace.read_text(encoding="utf-8")
    for call in top_level_calls(text, str(workspace)):
        if call.kwargs.get("name") == "envoy":
            return tuple(_label_path(proxy, label) for label in call.lists.get("patches", ()))
    return ()


def _label_path(proxy: Path, label: str) -> Path:
    for prefix in _LABEL_PREFIXES:
        if label.startswith(prefix):
            package, _, name = label[len(prefix) :].partition(":")
            return proxy / package / name
    return proxy / label


class CiliumMake:
    name = "cilium_make"

    def spec(self, inputs: BuildInputs) -> BuildSpec:
        # The Makefile picks the config: RELEASE_DEBUG=1 -> --config=release_debug (symbols), else release.
        assert inputs.proxy is not None
        patched = inputs.workdir / "envoy-patched"
        options = [f"--override_repository=envoy={patched}"] if inputs.override else []
        options += inputs.bazel.flags()
        env = {"BAZEL_BUILD_OPTS": shlex.join(options)} if options else {}
        argv = ("make", inputs.target, *(("RELEASE_DEBUG=1",) if inputs.symbols else ()))
        return BuildSpec(
            command=Command(argv=argv, cwd=inputs.proxy, env=env),
            output_link=inputs.proxy / "bazel-bin",
            output_name=PurePosixPath("cilium-envoy"),
            envoy_path=str(patched),
            envoy_copy=patched,
            envoy_patches=envoy_patches(inputs.proxy),
        )

    def with_bazelrc(self, command: Command, rc: Path) -> Command:
        return with_env(command, BAZEL_OPTS=f"--bazelrc={rc}")  # a host build: no mount needed


SYSTEM = CiliumMake()
