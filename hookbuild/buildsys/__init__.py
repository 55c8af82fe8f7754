"""Build systems hookbuild drives. Each module turns sources and settings into one frozen `BuildSpec`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hookbuild.command import Command


@dataclass(frozen=True, kw_only=True)
class BazelOptions:
    """Pass-through scale-out settings: Bazel's remote cache/execution, never a home-made layer."""

    remote_cache: str | None = None
    remote_executor: str | None = None
    disk_cache: str | None = None
    configs: tuple[str, ...] = ()

    def flags(self) -> list[str]:
        flags = [f"--config={config}" for config in self.configs]
        if self.remote_cache:
            flags.append(f"--remote_cache={self.remote_cache}")
        if self.remote_executor:
            flags.append(f"--remote_executor={self.remote_executor}")
        if self.disk_cache:
            flags.append(f"--disk_cache={self.disk_cache}")
        return flags


@dataclass(frozen=True, kw_only=True)
class BuildSpec:
    command: Command
    output_link: Path  # e.g. <proxy>/bazel-bin, possibly dangling into the build container
    output_name: PurePosixPath  # the binary (or the archive holding it) below the link
    archive_member: str | None = None  # the binary with symbols inside a release archive
    envoy_path: str = "/envoy"  # where the build sees the Envoy checkout (the WORKSPACE edit points there)
    envoy_copy: Path | None = None  # build from a patched copy of Envoy made here (never the checkout)
    envoy_patches: tuple[Path, ...] = ()

    def describe_output(self) -> str:
        where = f"{self.output_link}/{self.output_name}"
        return f"{where}!{self.archive_member}" if self.archive_member else where
