"""Build systems read the checkout's interface at plan time: target, output, how symbols are kept, refusals.

Checkouts are the bundled samples (each shaped like one upstream generation) and copies of them edited into the
other generations' shapes (docs/compatibility.md), planned through `invoke release --dry-run --json`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, run_task

from hookbuild import variants
from hookbuild.build import bazelrc
from hookbuild.build.spec import CheckoutShapeError
from hookbuild.build.systems import cilium_make, envoy_ci, istio_make
from hookbuild.errors import UsageError

EXAMPLES = ROOT / "examples"


def checkout(tmp_path: Path, sample: str, name: str | None = None) -> Path:
    dest = tmp_path / (name or sample)
    shutil.copytree(EXAMPLES / sample, dest, symlinks=False, ignore=shutil.ignore_patterns("bazel-*", "out"))
    return dest


def dry_run(tmp_path: Path, variant: str, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    ran = run_task(
        "release", "--variant", variant, "--version", "9.1", "--dry-run", "--json", *args,
        env={"HOOKBUILD_DIST": str(tmp_path / "dist"), **(env or {})},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    plan: dict[str, object] = json.loads(ran.stdout)
    return plan


def refused(tmp_path: Path, variant: str, *args: str, env: dict[str, str] | None = None) -> str:
    ran = run_task(
        "release", "--variant", variant, "--version", "9.1", "--dry-run", *args,
        env={"HOOKBUILD_DIST": str(tmp_path / "dist"), **(env or {})},
    )  # fmt: skip
    assert ran.returncode == 2, ran.stdout + ran.stderr
    errors = [line for line in ran.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in ran.stderr, ran.stderr
    return errors[0]


def only_build(plan: dict[str, object]) -> dict[str, object]:
    builds = plan["builds"]
    assert isinstance(builds, list) and len(builds) == 1
    build: dict[str, object] = builds[0]
    return build


# --- .bazelrc: configs expand in place, the last value wins -------------------------------------------------


def test_bazelrc_configs_expand_in_place_and_the_last_strip_option_wins(tmp_path: Path) -> None:
    (tmp_path / ".bazelrc").write_text(
        "import %workspace%/more.bazelrc\nbuild --enable_platform_specific_config\n"
        "build:release -c opt\nbuild:release --linkopt=-Wl,--strip-all  # strips\n"
        "build:keep --config=release\nbuild:keep --strip=never\n"
    )
    (tmp_path / "more.bazelrc").write_text("build:linux --strip=always\nbuild:nolinux --strip=never\n")
    rc = bazelrc.read(tmp_path)
    assert bazelrc.evaluate(["-c", "opt"], rc).strips_because == "--strip=always"  # build:linux applies
    assert not bazelrc.evaluate(["--config=keep"], rc).keeps_symbols  # the linker still strips
    after = bazelrc.evaluate(["--config=release", "//:x", "--strip=never", "--linkopt=-Wl,--strip-debug"], rc)
    assert after.keeps_symbols and after.linker_strip == "debug"
    dbg_then_opt = bazelrc.evaluate(["--strip", "never", "-c", "dbg", "//:x", "--compilation_mode=opt"], rc)
    assert dbg_then_opt.keeps_symbols and dbg_then_opt.compilation_mode == "opt"
    assert not bazelrc.evaluate([], bazelrc.read(tmp_path / "none")).keeps_symbols  # fastbuild, sometimes


# --- istio/proxy ----------------------------------------------------------------------------------------------


def test_istio_newest_shape_builds_root_envoy(tmp_path: Path) -> None:
    proxy, envoy = checkout(tmp_path, "proxy"), checkout(tmp_path, "envoy")
    build = only_build(dry_run(tmp_path, "istio", "--proxy", str(proxy), "--envoy", str(envoy)))
    assert build["output"] == str(proxy / "bazel-bin" / "envoy")
    assert build["argv"] == ["make", "build_envoy", "BUILD_WITH_CONTAINER=1"] and build["cwd"] == str(proxy)
    env = build["env"]
    assert isinstance(env, dict) and env["BAZEL_CONFIG_REL"] == "$(BAZEL_CONFIG) --config=release-symbol"
    assert build["keeps_symbols"] is True and "ENV_BLOCKLIST" not in env and "IMG" not in env
    assert build["build_image"] == "hookbuild-sample/build-tools-proxy:sample"  # from Makefile.overrides.mk


def test_istio_1_13_shape_builds_src_envoy_and_passes_an_anchored_blocklist_when_needed(
    tmp_path: Path,
) -> None:
    proxy, envoy = checkout(tmp_path, "proxy-1.13"), checkout(tmp_path, "envoy")
    plan = dry_run(
        tmp_path, "istio", "--proxy", str(proxy), "--envoy", str(envoy), "--build-image", "x/tools:1"
    )
    build = only_build(plan)
    assert build["output"] == str(proxy / "bazel-bin" / "src" / "envoy" / "envoy")
    env = build["env"]
    assert isinstance(env, dict) and env["IMG"] == "x/tools:1" and "ENV_BLOCKLIST" not in env
    # 1.10-1.13 drop every env line containing CC, PATH, GO...: this disk cache would silently vanish.
    cached = dry_run(
        tmp_path, "istio", "--proxy", str(proxy), "--envoy", str(envoy),
        env={"HOOKBUILD_BAZEL_DISK_CACHE": str(tmp_path / "ACCESS")},
    )  # fmt: skip
    env = only_build(cached)["env"]
    assert isinstance(env, dict) and env["ENV_BLOCKLIST"] == istio_make.ANCHORED_BLOCKLIST
    assert istio_make.blocked(
        istio_make.read(proxy, "release-symbol").blocklist, f"BAZEL_BUILD_ARGS={env['BAZEL_BUILD_ARGS']}"
    )
    assert not istio_make.blocked(
        istio_make.ANCHORED_BLOCKLIST, f"BAZEL_BUILD_ARGS={env['BAZEL_BUILD_ARGS']}"
    )


def test_istio_1_10_shape_explicit_recipe_is_read_and_unknown_shapes_are_refused(tmp_path: Path) -> None:
    proxy, envoy = checkout(tmp_path, "proxy-1.13"), checkout(tmp_path, "envoy")
    core = proxy / "Makefile.core.mk"
    text = core.read_text()
    explicit = (  # release-1.10's shape: a recipe with a v8 prebuild, no target-specific variables
        "build_envoy:\n\tbazel $(BAZEL_STARTUP_ARGS) build $(BAZEL_BUILD_ARGS) $(BAZEL_CONFIG_REL) "
        "@com_googlesource_chromium_v8//:build && \\\n\tbazel $(BAZEL_STARTUP_ARGS) build "
        "$(BAZEL_BUILD_ARGS) $(BAZEL_CONFIG_REL) //src/envoy:envoy\n"
    )
    core.write_text(
        re.sub(r"build_envoy: BAZEL_CONFIG_CURRENT.*?\nbuild_envoy: build\n", explicit, text, flags=re.S)
    )
    assert istio_make.read(proxy, "release-symbol").label == "//src/envoy:envoy"
    core.write_text(text.replace("build_envoy", "build_proxy"))
    line = refused(tmp_path, "istio", "--proxy", str(proxy), "--envoy", str(envoy))
    assert f"istio/proxy checkout {proxy}: no build_envoy target in Makefile.core.mk" in line
    assert "supported: istio/proxy release-1.10 … master" in line
    core.write_text(text)
    rc = proxy / ".bazelrc"
    rc.write_text(rc.read_text().replace("release-symbol", "release-with-symbols"))
    assert ".bazelrc defines no build:release-symbol" in refused(
        tmp_path, "istio", "--proxy", str(proxy), "--envoy", str(envoy)
    )


# --- cilium/proxy ---------------------------------------------------------------------------------------------


def test_cilium_newest_shape_uses_release_debug_in_the_builder_image(tmp_path: Path) -> None:
    proxy, envoy = checkout(tmp_path, "cilium-proxy"), checkout(tmp_path, "envoy")
    build = only_build(dry_run(tmp_path, "cilium", "--proxy", str(proxy), "--envoy", str(envoy)))
    argv, env = build["argv"], build["env"]
    assert isinstance(argv, list) and isinstance(env, dict)
    assert argv[:2] == ["docker", "run"] and argv[-3:] == [
        "hookbuild-sample/envoy-build:sample",
        "make",
        "bazel-bin/cilium-envoy",
    ]
    assert env["RELEASE_DEBUG"] == "1" and env["PKG_BUILD"] == "1" and "DEBUG" not in env
    assert all(f"{name}=" not in " ".join(argv) for name in env)  # values travel in the environment only
    assert build["output"] == str(proxy / "bazel-bin" / "cilium-envoy") and build["keeps_symbols"] is True
    stripped = dry_run(tmp_path, "cilium", "--proxy", str(proxy), "--envoy", str(envoy), "--stripped")[
        "builds"
    ]
    assert isinstance(stripped, list) and [(b["role"], b["keeps_symbols"]) for b in stripped] == [
        ("debug", True),
        ("release", False),
    ]


def test_cilium_1_33_shape_keeps_symbols_with_debug_then_opt(tmp_path: Path) -> None:
    proxy, envoy = checkout(tmp_path, "cilium-proxy-1.33"), checkout(tmp_path, "envoy")
    build = only_build(dry_run(tmp_path, "cilium", "--proxy", str(proxy), "--envoy", str(envoy)))
    env = build["env"]
    assert isinstance(env, dict) and env["DEBUG"] == "1" and env["BAZEL_FILTER"] == "-c opt --strip=never"
    assert "RELEASE_DEBUG" not in env and build["keeps_symbols"] is True


def test_cilium_1_22_shape_fixed_release_config_keeps_the_symbol_table(tmp_path: Path) -> None:
    proxy = checkout(tmp_path, "cilium-proxy-1.33")
    makefile = proxy / "Makefile"
    text = makefile.read_text().replace(
        "build $(BAZEL_BUILD_OPTS) //:cilium-envoy",
        "build $(BAZEL_BUILD_OPTS) --config=release //:cilium-envoy",
    )
    makefile.write_text(re.sub(r"ifdef DEBUG\n.*?endif\n", "", text, count=1, flags=re.S))
    shape = cilium_make.read(proxy)
    variables = cilium_make.make_variables(shape, symbols=True)
    assert shape.keep is cilium_make.Keep.STRIP_DEBUG_LAST and "DEBUG" not in variables
    options = cilium_make.bazel_options(shape, [], variables)
    assert (
        options[:2] == ["--config=release", "//:cilium-envoy"]
        and bazelrc.evaluate(options, shape.rc).keeps_symbols
    )


def test_a_stripping_build_is_a_plan_time_error(tmp_path: Path) -> None:
    proxy, envoy = checkout(tmp_path, "cilium-proxy"), checkout(tmp_path, "envoy")
    line = refused(
        tmp_path,
        "cilium",
        "--proxy",
        str(proxy),
        "--envoy",
        str(envoy),
        env={"HOOKBUILD_BAZEL_CONFIGS": "release"},
    )
    assert "would strip the binary (it links with -Wl,--strip-all)" in line
    assert not (tmp_path / "dist" / "cilium").exists()


def test_cilium_without_the_builder_route_is_refused(tmp_path: Path) -> None:
    proxy, envoy = checkout(tmp_path, "cilium-proxy"), checkout(tmp_path, "envoy")
    makefile = proxy / "Makefile"
    makefile.write_text(makefile.read_text().replace("PKG_BUILD", "HOST_BUILD"))
    line = refused(tmp_path, "cilium", "--proxy", str(proxy), "--envoy", str(envoy))
    assert (
        "its Makefile has no PKG_BUILD (the builder-image route)" in line
        and "supported: cilium/proxy v1.22" in line
    )


# --- Envoy ci/ ------------------------------------------------------------------------------------------------


def test_envoy_ci_generations(tmp_path: Path) -> None:
    newest, older = checkout(tmp_path, "envoy"), checkout(tmp_path, "envoy-2022")
    assert envoy_ci.read(newest, "x86_64").output.as_posix() == "envoy/x64/bin/release.tar.zst"
    assert envoy_ci.read(newest, "aarch64").output.as_posix() == "envoy/arm64/bin/release.tar.zst"
    shape = envoy_ci.read(older, "aarch64")
    assert (shape.target, shape.output.as_posix(), shape.archive_member) == (
        "bazel.release.server_only", "envoy/source/exe/envoy/envoy", None,
    )  # fmt: skip
    build = only_build(
        dry_run(
            tmp_path, "envoy", "--envoy", str(older), "--build-image", "hookbuild-sample/envoy-build:sample"
        )
    )
    env = build["env"]
    assert isinstance(env, dict) and (env["IMAGE_NAME"], env["IMAGE_ID"]) == (
        "hookbuild-sample/envoy-build",
        "sample",
    )
    assert str(build["output"]).endswith("/envoy-docker-build/envoy/source/exe/envoy/envoy")
    do_ci = (
        older / "ci" / "do_ci.sh"
    )  # before 2021-2022's bazel_envoy_binary_build: straight to ENVOY_DELIVERY_DIR
    do_ci.write_text(
        do_ci.read_text().replace("bazel_envoy_binary_build release", "bazel_binary_build release")
    )
    assert envoy_ci.read(older).output.as_posix() == "envoy/source/exe/envoy"


def test_envoy_refusals(tmp_path: Path) -> None:
    older = checkout(tmp_path, "envoy-2022")
    line = refused(
        tmp_path,
        "envoy",
        "--envoy",
        str(older),
        env={"HOOKBUILD_BAZEL_REMOTE_HEADER": "Authorization=Bearer s3cr3t-token"},
    )
    assert "does not pass BAZEL_STARTUP_EXTRA_OPTIONS" in line and "s3cr3t" not in line
    do_ci = older / "ci" / "do_ci.sh"
    do_ci.write_text(do_ci.read_text().replace("bazel.release.server_only", "bazel.release.only"))
    assert "neither release.server_only nor bazel.release.server_only" in refused(
        tmp_path, "envoy", "--envoy", str(older)
    )
    newest = checkout(tmp_path, "envoy")
    shape = envoy_ci.read(newest)
    with pytest.raises(CheckoutShapeError):
        envoy_ci.image_env(envoy_ci.Shape(**{**shape.__dict__, "ci_tag": True}), "envoyproxy/envoy-build:abc")
    assert (
        envoy_ci.image_env(envoy_ci.Shape(**{**shape.__dict__, "ci_tag": True}), "e/b:ci-abc")["IMAGE_ID"]
        == "abc"
    )


def test_dry_run_json_has_the_plan_fields_and_masks_secrets(tmp_path: Path) -> None:
    plan = dry_run(
        tmp_path, "envoy", "--sample", env={"HOOKBUILD_BAZEL_REMOTE_HEADER": "X-Token=abc-very-secret"}
    )
    assert set(plan) >= {"variant", "version", "image", "steps", "builds"}
    assert (
        plan["variant"] == "envoy"
        and isinstance(plan["steps"], list)
        and "abc-very-secret" not in json.dumps(plan)
    )
    build = only_build(plan)
    assert set(build) >= {"argv", "env", "cwd", "output", "keeps_symbols"}


def test_istio_checkout_paths_with_spaces_build_through_links_and_selinux_is_noted(tmp_path: Path) -> None:
    spaced = tmp_path / "mein proxy"
    spaced.mkdir()
    proxy, envoy = checkout(spaced, "proxy"), checkout(spaced, "envoy")
    run_sh = proxy / "common" / "scripts" / "run.sh"
    run_sh.write_text(run_sh.read_text() + "\nselinux_relabel() { :; }\n")  # master's relabelling helper
    build = only_build(dry_run(tmp_path, "istio", "--proxy", str(proxy), "--envoy", str(envoy)))
    env, cwd = build["env"], str(build["cwd"])
    assert isinstance(env, dict) and " " not in cwd and env["PWD"] == cwd and cwd.endswith("/links/proxy")
    assert " " not in env["CONDITIONAL_HOST_MOUNTS"].strip().replace("--volume ", "")
    assert build["output"] == str(proxy / "bazel-bin" / "envoy")  # found through the checkout itself
    assert env["BAZEL_STARTUP_ARGS"] == f"--output_user_root={istio_make.output_root(proxy)}"
    notes = build["notes"]
    assert isinstance(notes, list) and any("SELinux :z" in note for note in notes)


def test_every_variant_is_found_by_its_own_name() -> None:
    """The table of variants names each one's module: the name asked for is the name the recipe has."""
    assert variants.NAMES == ("istio", "cilium", "envoy", "istio-perf")
    for name in variants.NAMES:
        assert variants.get(name).name == name
    with pytest.raises(UsageError, match="unknown variant 'istio-proxy'"):
        variants.get("istio-proxy")
