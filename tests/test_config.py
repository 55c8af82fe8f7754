"""Settings merge pyproject < invoke.yaml < HOOKBUILD_* env < flags; each layer really reaches the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ROOT, run_process

from hookbuild import config
from hookbuild.errors import ConfigError


def project(tmp_path: Path, tool_table: str) -> Path:
    (tmp_path / "tasks.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(f"[tool.hookbuild]\n{tool_table}")
    return tmp_path


def test_later_layers_win(tmp_path: Path) -> None:
    root = project(
        tmp_path, 'registry = "pyproject.example:5000"\nnamespace = "from-pyproject"\ndist = "out"\n'
    )
    settings = config.load(
        root,
        invoke_config={"namespace": "from-invoke-yaml", "registry": "yaml.example:5000"},
        env={"HOOKBUILD_REGISTRY": "env.example:5000", "HOOKBUILD_BAZEL_CONFIGS": "ci, remote"},
        overrides={"registry": "flag.example:5000", "namespace": ""},  # an empty flag is not given
    )
    assert settings.registry == "flag.example:5000"
    assert settings.namespace == "from-invoke-yaml"
    assert settings.dist == root / "out"  # relative paths are the project's
    assert settings.bazel_configs == ("ci", "remote")
    assert settings.versions_file == root / "versions.toml"


def test_unknown_settings_are_refused(tmp_path: Path) -> None:
    root = project(tmp_path, 'regsitry = "typo:5000"\n')
    with pytest.raises(ConfigError, match="unknown hookbuild setting"):
        config.load(root, env={})


def test_broken_pyproject_is_one_clear_error(tmp_path: Path) -> None:
    root = project(tmp_path, "registry = \n")
    with pytest.raises(ConfigError, match=r"pyproject\.toml"):
        config.load(root, env={})


def test_invoke_yaml_and_env_reach_the_cli(tmp_path: Path) -> None:
    """A checkout with an invoke.yaml: `invoke release --dry-run` plans with its registry, env beats it."""
    checkout = tmp_path / "checkout"
    shutil.copytree(
        ROOT,
        checkout,
        ignore=shutil.ignore_patterns(".venv", ".git", "dist", "*.lock", "__pycache__", "bazel-*"),
    )
    (checkout / "invoke.yaml").write_text("hookbuild:\n  registry: registry.yaml.example:5000\n")
    env = {"HOOKBUILD_DIST": str(tmp_path / "dist"), "HOOKBUILD_NAMESPACE": ""}  # empty: not set
    ran = run_process("release", "--sample", "--dry-run", cwd=checkout, env=env)
    assert ran.returncode == 0, ran.stderr
    assert "registry.yaml.example:5000/hookbuild/istio-proxy:" in ran.stdout
    ran = run_process(
        "release", "--sample", "--dry-run", cwd=checkout, env={**env, "HOOKBUILD_REGISTRY": "env:5000"}
    )
    assert "env:5000/hookbuild/istio-proxy:" in ran.stdout
