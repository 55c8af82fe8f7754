"""Settings, merged once: pyproject `[tool.hookbuild]` < invoke.yaml `hookbuild:` < HOOKBUILD_* env < flags."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli

from hookbuild.errors import ConfigError

ENV_PREFIX = "HOOKBUILD_"


@dataclass(frozen=True, kw_only=True)
class Settings:
    root: Path
    registry: str = "127.0.0.1:5000"
    namespace: str = "hookbuild"
    versions_file: Path = Path("versions.toml")
    dist: Path = Path("dist")
    envoy: Path | None = None
    proxy: Path | None = None
    registry_user: str | None = None
    # Registries off loopback that speak plain HTTP, as the engine's daemon.json `insecure-registries` lists
    # them: hookbuild reads their API over HTTP too (loopback ones always are).
    insecure_registries: tuple[str, ...] = field(default_factory=tuple)
    # Bazel scale-out settings, passed through to the build untouched.
    bazel_remote_cache: str | None = None
    bazel_remote_executor: str | None = None
    bazel_disk_cache: Path | None = None
    bazel_configs: tuple[str, ...] = field(default_factory=tuple)
    # Supply chain: the private key releases are signed with (its password: HOOKBUILD_SIGNING_KEY_PASSWORD,
    # env only), and the public key `verify` checks with (default: the signing key's public half).
    signing_key: Path | None = None
    verify_key: Path | None = None
    # The image each variant's build runs in (upstream defaults: docs/compatibility.md). Unset: the checkout's
    # own default (istio IMG from setup_env.sh, Envoy's IMAGE_NAME/ENVOY_BUILD_SHA, cilium's BUILDER_BASE).
    istio_build_image: str | None = None
    cilium_build_image: str | None = None
    envoy_build_image: str | None = None


_PATHS = {"versions_file", "dist", "envoy", "proxy", "bazel_disk_cache", "signing_key", "verify_key"}
_LISTS = {"bazel_configs", "insecure_registries"}
"""Comma-separated in the environment, a list or a comma-separated string elsewhere."""


def find_root(start: Path | None = None) -> Path:
    """The directory holding hookbuild's pyproject.toml (or the start directory)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "tasks.py").is_file():
            return candidate
    return here


def _pyproject(root: Path) -> Mapping[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomli.loads(path.read_text(encoding="utf-8"))  # the record's reader: one TOML parser per run
    except tomli.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}", hint="fix the TOML syntax") from exc
    section = data.get("tool", {}).get("hookbuild", {})
    return section if isinstance(section, Mapping) else {}


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    names = {f.name for f in fields(Settings)} - {"root"}
    return {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in names and value != ""
    }


def load(
    root: Path | None = None,
    *,
    invoke_config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    root = find_root(root)
    # Default paths are the project's too, never the current directory's.
    merged: dict[str, Any] = {"versions_file": "versions.toml", "dist": "dist"}
    for source in (_pyproject(root), invoke_config or {}, _from_env(os.environ if env is None else env)):
        merged.update(source)
    merged.update({key: value for key, value in (overrides or {}).items() if value not in (None, "", ())})
    known = {f.name for f in fields(Settings)} - {"root"}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ConfigError(
            f"unknown hookbuild setting(s): {', '.join(unknown)}",
            hint=f"known settings: {', '.join(sorted(known))}",
        )
    values: dict[str, Any] = {}
    for key, value in merged.items():
        if key in _PATHS:
            path = Path(str(value)).expanduser()
            values[key] = path if path.is_absolute() else root / path
        elif key in _LISTS:
            items = value.split(",") if isinstance(value, str) else list(value)
            values[key] = tuple(str(item).strip() for item in items if str(item).strip())
        elif not isinstance(value, str):
            raise ConfigError(f"setting {key} must be a string, got {value!r}", hint="quote the value")
        else:
            values[key] = value
    return Settings(root=root, **values)


def cache_home() -> Path:
    """$XDG_CACHE_HOME/hookbuild, else ~/.cache/hookbuild: build state that is neither source nor artifact."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "hookbuild"
