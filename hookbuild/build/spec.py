"""What a build system is to the pipeline: inputs in, a `BuildSpec` out, decided before anything runs.

A build system (one module under `build/systems/`) reads the checkout's build interface (Makefile targets
and variables, `.bazelrc` configs, `ci/` scripts), picks how to build it with symbols, and turns
`BuildInputs` into the command to run and where its output lands; a checkout of a shape it cannot drive is
refused there, before anything runs. It also says how a secret rc file made just for the build reaches
Bazel (a startup option, plus a read-only mount for a build container). Variants name their build system
object directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Protocol

from hookbuild.build.bazel import BazelOptions
from hookbuild.command import Command
from hookbuild.errors import UsageError


@dataclass(frozen=True, kw_only=True)
class BuildInputs:
    envoy: Path
    proxy: Path | None
    target: str  # the build system's target, e.g. istio/proxy's `build_envoy`
    symbols_config: str | None
    override: bool  # --override_repository instead of the WORKSPACE edit
    bazel: BazelOptions
    workdir: Path  # hookbuild's scratch space for this variant
    symbols: bool = True  # False: the stripped release build
    image: str | None = None  # the build image (istio IMG, Envoy IMAGE_NAME:IMAGE_ID, cilium's builder)
    container_options: tuple[str, ...] = ()  # extra `docker run` options for a container hookbuild runs
    secret_rc: bool = False  # a secret rc file (remote headers) must reach Bazel


class CheckoutShapeError(UsageError):
    """A checkout whose build interface hookbuild cannot drive: says what it found and what is supported."""


def with_env(command: Command, **env: str) -> Command:
    return replace(command, env={**command.env, **env})


@dataclass(frozen=True, kw_only=True)
class BuildSpec:
    command: Command
    output_link: Path  # e.g. <proxy>/bazel-bin, possibly dangling into the build container
    output_name: PurePosixPath  # the binary (or the archive holding it) below the link
    archive_member: str | None = None  # the binary with symbols inside a release archive
    envoy_path: str = "/envoy"  # where the build sees the Envoy checkout (the WORKSPACE edit points there)
    envoy_copy: Path | None = None  # build from a patched copy of Envoy made here (never the checkout)
    envoy_patches: tuple[Path, ...] = ()
    keeps_symbols: bool = True  # the Bazel command this plan runs leaves the symbol table in the binary
    strips_because: str = ""  # when it does not: which option strips
    strategy: str = ""  # what was read from the checkout and how this build keeps symbols, for the plan
    image: str | None = None  # the build image the build runs in (given, or the checkout's default)
    notes: tuple[str, ...] = ()  # what the user should know about this checkout's build (one line each)
    directories: tuple[Path, ...] = ()  # made before the build (bind-mount sources owned by the user)
    links: tuple[tuple[Path, Path], ...] = ()  # (link, target) made before the build: paths without spaces
    source_version: Path | None = None  # cilium: SOURCE_VERSION, written with the proxy commit first

    @property
    def output(self) -> Path:
        """Where the binary (or the archive holding it) is after the build, through the output link."""
        return self.output_link / self.output_name

    def describe(self, label: str, *, binary: Path, build_log: Path) -> list[str]:
        """The plan's lines for this build: the command with how and why, then where the binary is found."""
        command = f"(cd {self.command.cwd} && {self.command.display()})"
        return [
            f"{label}: {command}, log {build_log} [{self.explain()}]",
            f"locate: {self.describe_output()} -> {binary}",
        ]

    def explain(self) -> str:
        """How this build was chosen, what it keeps and where it runs, for the plan (one line)."""
        symbols = "keeps symbols" if self.keeps_symbols else f"strips: {self.strips_because}"
        parts = [self.strategy, symbols, *([f"in {self.image}"] if self.image else [])]
        parts += [f"links {link} -> {target} first (a path without spaces)" for link, target in self.links]
        if self.source_version:
            parts.append(
                f"writes the proxy commit to {self.source_version} first (Makefile.docker's job upstream)"
            )
        return "; ".join([*parts, *(f"note: {note}" for note in self.notes)])

    def prepare(self, *, proxy_commit: str | None) -> None:
        """What must exist before the command runs: mount sources, space-free links, SOURCE_VERSION."""
        from hookbuild import fsutil

        for directory in self.directories:  # made by us: the Docker engine would make them root's
            directory.mkdir(parents=True, exist_ok=True)
        for link, target in self.links:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(target, target_is_directory=True)
        if self.source_version is not None and proxy_commit:
            fsutil.atomic_write(self.source_version, proxy_commit + "\n", mode=0o644)

    def describe_output(self) -> str:
        where = f"{self.output_link}/{self.output_name}"
        return f"{where}!{self.archive_member}" if self.archive_member else where


class BuildSystem(Protocol):
    """One upstream build interface (istio/proxy's make, cilium/proxy's make, Envoy's ci/ scripts)."""

    name: str

    def spec(self, inputs: BuildInputs) -> BuildSpec:
        """The build command and where its output lands; raises before anything runs if it cannot."""
        ...

    def with_bazelrc(self, command: Command, rc: Path) -> Command:
        """`command` changed so that Bazel reads the secret rc file `rc` as well."""
        ...
