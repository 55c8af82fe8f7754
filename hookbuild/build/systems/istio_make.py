"""istio/proxy's own build: `make build_envoy BUILD_WITH_CONTAINER=1`, read from the checkout first.

At plan time the checkout's files say what `build_envoy` builds (`//src/envoy:envoy` on release-1.10 …
1.16, `//:envoy` since 1.17, so the binary is `bazel-bin/src/envoy/envoy` or `bazel-bin/envoy`), how its
release config is spelled, which `.bazelrc` config keeps symbols and what `run.sh` passes into the build
container. `BAZEL_CONFIG_REL` (`= $(BAZEL_CONFIG) --config=release`, which strips every hookpoint) is
replaced through the environment, which the container's `make -e` lets win; the Envoy checkout is mounted
through CONDITIONAL_HOST_MOUNTS (run.sh only appends to it).
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hookbuild.build import bazelrc, makefile
from hookbuild.build.bazel import SECRET_RC_MOUNT
from hookbuild.build.spec import BuildInputs, BuildSpec, CheckoutShapeError, with_env
from hookbuild.build.workspace import ENVOY_MOUNT
from hookbuild.command import Command

SUPPORTED = (
    "supported: istio/proxy release-1.10 … master: a build_envoy target building //src/envoy:envoy or "
    "//:envoy with $(BAZEL_CONFIG_REL), a non-stripping build:release-symbol in .bazelrc, and a Makefile "
    "that runs `make -e -f Makefile.core.mk` in the build container"
)
# What release-1.14+ filter with; 1.10-1.13's unanchored list drops any line containing PATH, GO, CC ...
ANCHORED_BLOCKLIST = (
    r"^_\|^PATH=\|^GOPATH=\|^GOROOT=\|^SHELL=\|^EDITOR=\|^TMUX=\|^USER=\|^HOME=\|^PWD=\|^TERM=\|^RUBY_\|"
    r"^GEM_\|^rvm_\|^SSH=\|^TMPDIR=\|^CC=\|^CXX=\|^MAKEFILE_LIST="
)
_INTO_CONTAINER = (
    "BAZEL_CONFIG_REL",
    "BAZEL_BUILD_ARGS",
    "BAZEL_STARTUP_ARGS",
)  # what Makefile.core.mk reads
_RELEASE = "--config=release"
CACHE_MOUNT = "/home/.cache"  # run.sh mounts the `cache` volume here on every branch


@dataclass(frozen=True, kw_only=True)
class Shape:
    """What an istio/proxy checkout's files say about `build_envoy`."""

    label: str  # e.g. //src/envoy:envoy
    config_rel: str  # the checkout's BAZEL_CONFIG_REL with the stripping config swapped for the symbols one
    blocklist: str  # the ENV_BLOCKLIST run.sh filters the environment with by default
    default_image: str | None  # IMG as setup_env.sh and Makefile.overrides.mk resolve it
    selinux_relabel: bool  # run.sh adds :z to every volume when SELinux is on (master)
    rc: bazelrc.Rc

    @property
    def output(self) -> PurePosixPath:
        package, _, name = self.label.removeprefix("//").partition(":")
        return PurePosixPath(package, name) if package else PurePosixPath(name)


def read(proxy: Path, symbols_config: str) -> Shape:
    """Read `build_envoy` and its surroundings; a checkout of another shape is refused with one line."""
    core = makefile.read(proxy / "Makefile.core.mk")
    build_envoy = makefile.rule(core, "build_envoy")
    if build_envoy is None:
        raise _refuse(proxy, "no build_envoy target in Makefile.core.mk" if core else "no Makefile.core.mk")
    label = _label(build_envoy)
    if label is None:
        raise _refuse(proxy, "build_envoy names no single //package:target to build")
    if "$(BAZEL_CONFIG_REL)" not in " ".join([*build_envoy.variables.values(), *build_envoy.recipe]):
        raise _refuse(proxy, "build_envoy does not build with $(BAZEL_CONFIG_REL)")
    releases = [
        value for value in makefile.assignments(core, "BAZEL_CONFIG_REL") if _RELEASE in value.split()
    ]
    release = releases[0] if releases else None  # the first is the Linux one (then macOS's)
    if release is None:
        raise _refuse(proxy, f"BAZEL_CONFIG_REL is never {_RELEASE}")
    if not re.search(r"\bmake\b.*\s-e\s.*-f\s+Makefile\.core\.mk", makefile.read(proxy / "Makefile")):
        raise _refuse(proxy, "its Makefile does not run `make -e -f Makefile.core.mk` in the build container")
    rc = bazelrc.read(proxy)
    if not rc.has_config(symbols_config):
        raise _refuse(proxy, f".bazelrc defines no build:{symbols_config}")
    setup = makefile.read(proxy / "common" / "scripts" / "setup_env.sh")
    blocklist = re.search(r'ENV_BLOCKLIST="\$\{ENV_BLOCKLIST:-(.*)\}"', setup)
    return Shape(
        label=label,
        config_rel=" ".join(f"--config={symbols_config}" if w == _RELEASE else w for w in release.split()),
        blocklist=blocklist.group(1) if blocklist else "",
        default_image=_default_image(setup, makefile.read(proxy / "Makefile.overrides.mk")),
        selinux_relabel="selinux_relabel" in makefile.read(proxy / "common" / "scripts" / "run.sh"),
        rc=rc,
    )


def _refuse(proxy: Path, found: str) -> CheckoutShapeError:
    return CheckoutShapeError(f"istio/proxy checkout {proxy}: {found}", hint=SUPPORTED)


def _label(build_envoy: makefile.Rule) -> str | None:
    if targets := build_envoy.variables.get("BAZEL_TARGETS"):
        labels = [word for word in targets.split() if word.startswith("//")]
        return labels[0] if len(labels) == 1 else None
    for line in reversed(build_envoy.recipe):  # 1.10-1.12: an explicit recipe, the v8 prebuild first
        if labels := re.findall(r"\bbazel\b[^&;]*?\bbuild\b[^&;]*?(//[\w/.-]*:[\w.-]+)", line):
            return str(labels[-1])
    return None


def blocked(blocklist: str, line: str) -> bool:
    """Whether run.sh's `env | grep -v ${ENV_BLOCKLIST}` drops this NAME=VALUE line."""
    for alternative in blocklist.split(r"\|"):
        literal = re.escape(alternative.removeprefix("^"))  # the lists use no other BRE syntax
        if alternative and re.search(("^" if alternative.startswith("^") else "") + literal, line):
            return True
    return False


def _default_image(setup: str, overrides: str) -> str | None:
    """IMG as the checkout would resolve it without hookbuild's setting (shown in the plan)."""
    if overridden := re.search(r"^IMG\s*\??=\s*(\S+)", overrides, re.M):  # no upstream branch sets it
        return overridden.group(1)
    found = re.search(r'IMG="\$\{IMG:-(.*?)\}"', setup)
    if found is None:
        return None
    image = found.group(1)
    patterns = {
        "TOOLS_REGISTRY_PROVIDER": (setup, r"TOOLS_REGISTRY_PROVIDER=\$\{TOOLS_REGISTRY_PROVIDER:-([^}]*)\}"),
        "PROJECT_ID": (setup, r"PROJECT_ID=\$\{PROJECT_ID:-([^}]*)\}"),
        "IMAGE_VERSION": (setup, r"\sIMAGE_VERSION=(\S+)"),
        "IMAGE_NAME": (overrides, r"IMAGE_NAME\s*\??=\s*(\S+)"),
    }
    for name, (text, pattern) in patterns.items():
        if value := re.search(pattern, text):
            image = image.replace("${" + name + "}", value.group(1))
    return None if "${" in image else image


def output_root(proxy: Path) -> str:
    """Bazel's output root for this checkout, inside the build container's `cache` volume."""
    return f"{CACHE_MOUNT}/bazel/hookbuild-{hashlib.sha256(str(proxy).encode()).hexdigest()[:12]}"


def spaceless(path: Path, link: Path) -> tuple[Path, tuple[tuple[Path, Path], ...]]:
    """`path`, or a link to it without whitespace: the Makefile's `$(shell pwd)` and run.sh's mounts split."""
    if not any(char.isspace() for char in str(path)):
        return path, ()
    if any(char.isspace() for char in str(link)):
        raise CheckoutShapeError(
            f"checkout path {str(path)!r} contains whitespace, and so does hookbuild's cache {link.parent}",
            hint="move or symlink the checkout to a path without spaces, or set XDG_CACHE_HOME",
        )
    return link, ((link, path),)


class IstioMake:
    name = "istio_make"

    def spec(self, inputs: BuildInputs) -> BuildSpec:
        assert inputs.proxy is not None
        config = inputs.symbols_config or "release-symbol"
        shape = read(inputs.proxy, config)
        envoy, envoy_link = spaceless(inputs.envoy.resolve(), inputs.workdir / "links" / "envoy")
        proxy, proxy_link = spaceless(inputs.proxy, inputs.workdir / "links" / "proxy")
        build_args = [f"--override_repository=envoy={ENVOY_MOUNT}"] if inputs.override else []
        build_args += inputs.bazel.flags()
        env = {"CONDITIONAL_HOST_MOUNTS": f"--volume {envoy}:{ENVOY_MOUNT} "}
        if proxy_link:  # run from the link: `pwd` (MOUNT_SOURCE, setup_env.sh's path) answers $PWD
            env["PWD"] = str(proxy)
        # Every checkout is /work in the container, so all would share one output base in the `cache` volume
        # (and kill each other's Bazel server): each checkout gets its own output root there.
        env["BAZEL_STARTUP_ARGS"] = f"--output_user_root={output_root(inputs.proxy)}"
        env["BAZEL_CONFIG_REL"] = shape.config_rel  # istio offers no stripped release: always symbols
        if build_args:
            env["BAZEL_BUILD_ARGS"] = shlex.join(build_args)
        if run_options := inputs.bazel.docker_run_options():
            env["DOCKER_RUN_OPTIONS"] = shlex.join(run_options)
        if inputs.image:
            env["IMG"] = inputs.image
        if any(blocked(shape.blocklist, f"{k}={v}") for k, v in env.items() if k in _INTO_CONTAINER):
            env["ENV_BLOCKLIST"] = ANCHORED_BLOCKLIST
        options = [*build_args, *(w for w in env["BAZEL_CONFIG_REL"].split() if not w.startswith("$("))]
        outcome = bazelrc.evaluate(options, shape.rc)
        return BuildSpec(
            command=Command(argv=("make", inputs.target, "BUILD_WITH_CONTAINER=1"), cwd=proxy, env=env),
            links=envoy_link + proxy_link,
            output_link=inputs.proxy / "bazel-bin",
            output_name=shape.output,
            keeps_symbols=outcome.keeps_symbols,
            strips_because=outcome.strips_because,
            strategy=f"build_envoy -> {shape.label}, BAZEL_CONFIG_REL={env['BAZEL_CONFIG_REL']} ({outcome.describe()})",
            image=inputs.image or shape.default_image,
            notes=(
                "run.sh relabels every volume with SELinux :z (the Envoy checkout too) when SELinux is on",
            )
            if shape.selinux_relabel
            else (),
        )

    def with_bazelrc(self, command: Command, rc: Path) -> Command:
        mounts = command.env.get("CONDITIONAL_HOST_MOUNTS", "")
        startup = command.env.get("BAZEL_STARTUP_ARGS", "")
        return with_env(
            command,
            CONDITIONAL_HOST_MOUNTS=f"{mounts}--volume {rc.parent}:{SECRET_RC_MOUNT}:ro ",
            BAZEL_STARTUP_ARGS=f"{startup} --bazelrc={SECRET_RC_MOUNT}/{rc.name}".strip(),
        )


SYSTEM = IstioMake()
