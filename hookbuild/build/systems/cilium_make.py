"""cilium/proxy's build: `PKG_BUILD=1 make bazel-bin/cilium-envoy` in cilium's builder image.

That is how cilium/proxy's own Dockerfile builds; its host route installs clang with `sudo apt` (and may
add apt.llvm.org sources) and reads Makefile.docker, which runs `docker buildx` while the Makefile is
parsed. The checkout, the patched Envoy copy and Bazel's output root are mounted at their own paths, so
the `bazel-bin` link left in the checkout resolves on the host too.

At plan time the Makefile says how symbols can be kept: `RELEASE_DEBUG=1` (v1.34+, `release_debug`);
`DEBUG=1` plus `BAZEL_FILTER=-c opt --strip=never` (v1.24-v1.33: only DEBUG skips `--config=release`,
and BAZEL_FILTER is the one variable the recipe puts after its own options, so the last `-c` wins); or
`BAZEL_FILTER=--strip=never --linkopt=-Wl,--strip-debug` after the hard-coded `--config=release` of
v1.22-v1.23 (the linker keeps the last strip option: the symbol table stays). BAZEL_BUILD_OPTS must come
from the environment: on make's command line it would replace the `+=` that adds the config.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath

from hookbuild.build import bazelrc, makefile
from hookbuild.build.bazel import SECRET_RC_MOUNT
from hookbuild.build.spec import BuildInputs, BuildSpec, CheckoutShapeError, with_env
from hookbuild.build.starlark import top_level_calls
from hookbuild.command import Command

TARGET = "bazel-bin/cilium-envoy"
SUPPORTED = (
    "supported: cilium/proxy v1.22 … main: a bazel-bin/cilium-envoy recipe passing $(BAZEL_BUILD_OPTS) "
    "and ending in //:cilium-envoy $(BAZEL_FILTER), PKG_BUILD, and RELEASE_DEBUG, DEBUG or a fixed --config"
)
_LABEL_PREFIXES = ("@//", "//")


class Keep(StrEnum):
    """How a build of this checkout keeps the symbol table."""

    RELEASE_DEBUG = "RELEASE_DEBUG=1"
    DEBUG_THEN_OPT = "DEBUG=1, BAZEL_FILTER=-c opt --strip=never"
    STRIP_DEBUG_LAST = "BAZEL_FILTER=--strip=never --linkopt=-Wl,--strip-debug"


@dataclass(frozen=True, kw_only=True)
class Shape:
    keep: Keep
    release_config: str | None  # what a plain `make` build uses (it strips)
    symbols_config: str | None  # RELEASE_DEBUG's config
    default_builder: str | None  # the Dockerfile's `ARG BUILDER_BASE=`
    rc: bazelrc.Rc


def read(proxy: Path) -> Shape:
    text = makefile.read(proxy / "Makefile")
    recipe = makefile.rule(text, TARGET)
    line = next((r for r in recipe.recipe if "//:cilium-envoy" in r), "") if recipe else ""
    words = line.split()
    if not line or "$(BAZEL_BUILD_OPTS)" not in words or words[-2:] != ["//:cilium-envoy", "$(BAZEL_FILTER)"]:
        found = f"the {TARGET} recipe is {line!r}" if line else f"no {TARGET} recipe in its Makefile"
        raise _refuse(proxy, found if text else "no Makefile")
    if "PKG_BUILD" not in text:
        raise _refuse(proxy, "its Makefile has no PKG_BUILD (the builder-image route)")
    rc = bazelrc.read(proxy)
    fixed = [w.split("=", 1)[1] for w in words if w.startswith("--config=")]
    release_config: str | None
    symbols: str | None
    release_debug = re.search(r"ifdef RELEASE_DEBUG\s*\n\s*BAZEL_BUILD_OPTS\s*\+=\s*--config=(\S+)", text)
    release = re.search(r"\nelse\s*\n\s*BAZEL_BUILD_OPTS\s*\+=\s*--config=(\S+)", text)
    if fixed:
        keep, release_config, symbols = Keep.STRIP_DEBUG_LAST, fixed[-1], None
    elif release_debug and rc.has_config(release_debug.group(1)):
        keep, symbols = Keep.RELEASE_DEBUG, release_debug.group(1)
        release_config = release.group(1) if release else None
    elif re.search(r"ifdef DEBUG\s*\n\s*BAZEL_BUILD_OPTS\s*\+=\s*-c dbg", text):
        keep, symbols = Keep.DEBUG_THEN_OPT, None
        release_config = release.group(1) if release else None
    else:
        raise _refuse(proxy, "its Makefile knows neither RELEASE_DEBUG, DEBUG nor a fixed --config")
    builder = re.search(r"^ARG BUILDER_BASE=(\S+)", makefile.read(proxy / "Dockerfile"), re.M)
    return Shape(
        keep=keep,
        release_config=release_config,
        symbols_config=symbols,
        default_builder=builder.group(1) if builder else None,
        rc=rc,
    )


def _refuse(proxy: Path, found: str) -> CheckoutShapeError:
    return CheckoutShapeError(f"cilium/proxy checkout {proxy}: {found}", hint=SUPPORTED)


def make_variables(shape: Shape, *, symbols: bool) -> dict[str, str]:
    """The variables (through the environment) that make this checkout's build keep its symbols."""
    if not symbols:
        return {}
    if shape.keep is Keep.RELEASE_DEBUG:
        return {"RELEASE_DEBUG": "1"}
    if shape.keep is Keep.DEBUG_THEN_OPT:
        return {"DEBUG": "1", "BAZEL_FILTER": "-c opt --strip=never"}
    return {"BAZEL_FILTER": "--strip=never --linkopt=-Wl,--strip-debug"}


def bazel_options(shape: Shape, build_opts: list[str], variables: dict[str, str]) -> list[str]:
    """The options the recipe hands Bazel, in order: BAZEL_BUILD_OPTS, its `+=` config, BAZEL_FILTER."""
    if shape.keep is Keep.STRIP_DEBUG_LAST or not (variables.keys() & {"DEBUG", "RELEASE_DEBUG"}):
        config = [f"--config={shape.release_config}"] if shape.release_config else []
    elif "DEBUG" in variables:
        config = ["-c", "dbg"]
    else:
        config = [f"--config={shape.symbols_config}"]
    return [*build_opts, *config, "//:cilium-envoy", *shlex.split(variables.get("BAZEL_FILTER", ""))]


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
        proxy = inputs.proxy
        assert proxy is not None
        shape = read(proxy)
        image = inputs.image or shape.default_builder
        if image is None:
            raise _refuse(proxy, "its Dockerfile names no ARG BUILDER_BASE (set cilium_build_image)")
        patched, root = inputs.workdir / "envoy-patched", inputs.workdir / "bazel-root"
        build_opts = [f"--override_repository=envoy={patched}"] if inputs.override else []
        build_opts += inputs.bazel.flags()
        variables = make_variables(shape, symbols=inputs.symbols)
        env = {"PKG_BUILD": "1", "HOME": str(root), "BAZEL_OPTS": f"--output_user_root={root}", **variables}
        if build_opts:
            env["BAZEL_BUILD_OPTS"] = shlex.join(build_opts)
        outcome = bazelrc.evaluate(bazel_options(shape, build_opts, variables), shape.rc)
        mounts = [
            ("-v", f"{path}:{path}{mode}") for path, mode in ((proxy, ""), (patched, ":ro"), (root, ""))
        ]
        argv = (
            "docker", "run", "--rm", "-u", f"{os.getuid()}:{os.getgid()}",
            *(word for mount in mounts for word in mount),
            *inputs.container_options,
            *inputs.bazel.docker_run_options(),
            "-w", str(proxy),
            *(word for name in sorted(env) for word in ("-e", name)),
            image, "make", TARGET,
        )  # fmt: skip
        return BuildSpec(
            command=Command(argv=argv, cwd=proxy, env=env),
            output_link=proxy / "bazel-bin",
            output_name=PurePosixPath("cilium-envoy"),
            keeps_symbols=outcome.keeps_symbols,
            strips_because=outcome.strips_because,
            strategy=f"{shape.keep.value if inputs.symbols else 'plain release'} ({outcome.describe()})",
            image=image,
            envoy_path=str(patched),
            envoy_copy=patched,
            envoy_patches=envoy_patches(proxy),
            directories=(root,),
            source_version=proxy / "SOURCE_VERSION",
        )

    def with_bazelrc(self, command: Command, rc: Path) -> Command:
        # The rc's folder is mounted read-only next to the others; `docker run` is always argv[0:2].
        argv = (*command.argv[:2], "-v", f"{rc.parent}:{SECRET_RC_MOUNT}:ro", *command.argv[2:])
        options = command.env.get("BAZEL_OPTS", "")
        return with_env(
            Command(argv=argv, cwd=command.cwd, env=command.env),
            BAZEL_OPTS=f"{options} --bazelrc={SECRET_RC_MOUNT}/{rc.name}".strip(),
        )


SYSTEM = CiliumMake()
