"""The bad-input corpus: every task, fed a wrong input through the real CLI, answers with one `error:` line.

Each case is a row of CASES: the files it needs (prepared in a fresh folder, some of whose names hold
spaces, unicode or `..`), the argv, and a phrase the error line must contain. For every case: exit status
!= 0, exactly one stderr line starting with `error:` that names the problem and carries a hint in
parentheses, no traceback, and every file that existed before is byte-identical afterwards (and no file
appears outside the case's scratch `dist/`, except those a case declares, like a build's `bazel-bin`).
The data lives in tests/data/bad_inputs/; the ELF files are the session's g++-built samples.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import git
import pytest
from conftest import ROOT, run_invoke
from elf_samples import Samples

DATA = Path(__file__).parent / "data" / "bad_inputs"
SAMPLE_BASE = "hookbuild-sample/proxyv2:sample"
SPACED = "räum mit leerzeichen ü"  # a folder name with spaces and unicode


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    phrase: str
    """Must appear in the error line (what and where)."""
    files: dict[str, str] = field(default_factory=dict)
    """Placeholder -> how to make it: seed | data:REL | elf:NAME | truncated | empty | dir | file |
    proxy:WORKSPACE-DATA | proxy:none | gitdir | dangling:TARGET."""
    env: dict[str, str] = field(default_factory=dict)
    folder: str = "case"
    creates: tuple[str, ...] = ()
    """Files the failing run may leave outside dist/ (relative to the case folder)."""
    marks: tuple[str, ...] = ()
    """Components the case reaches (pytest markers); most bad inputs are refused before any is used."""


R = "--versions-file"
SEED = {"rec": "seed"}


def rec(name: str) -> dict[str, str]:
    return {"rec": f"data:records/{name}"}


def proxy(workspace: str) -> dict[str, str]:
    return {"proxy": f"proxy:{workspace}", "envoy": "gitdir", "rec": "seed"}


RELEASE = ("release", "--variant", "istio", "--version", "12.1")
CHECKOUTS = ("--envoy", "{envoy}", "--proxy", "{proxy}", R, "{rec}")

CASES: list[Case] = [
    # --- versions: malformed and schema-violating records, bad references --------------------------------
    Case(
        "versions/toml-syntax",
        ("versions", R, "{rec}"),
        "invalid TOML: Illegal character",
        rec("syntax-error.toml"),
    ),
    Case(
        "versions/toml-duplicate-key",
        ("versions", R, "{rec}"),
        "Cannot overwrite a value",
        rec("duplicate-key.toml"),
    ),
    Case(
        "versions/schema-3",
        ("versions", "--json", R, "{rec}"),
        ":2: schema: schema must be 1 or 2, got 3",
        rec("schema-3.toml"),
    ),
    Case(
        "versions/empty-file", ("versions", R, "{rec}"), "schema must be 1 or 2, got None", rec("empty.toml")
    ),
    Case(
        "versions/supports-unknown-feature",
        ("versions", "--supports", "pref", R, "{rec}"),
        "--supports 'pref': unknown feature",
        SEED,
    ),
    Case(
        "versions/record-unknown-feature",
        ("versions", "--supports", "perf", R, "{rec}"),
        "cilium[2].features: unknown feature 'pref'",
        rec("unknown-feature.toml"),
    ),
    Case(
        "versions/record-history-disagrees",
        ("versions", R, "{rec}"),
        "cilium[1].status: is test-only but the last history item says deprecated",
        rec("history-disagrees.toml"),
    ),
    Case("versions/not-utf8", ("versions", R, "{rec}"), "cannot read version record", rec("not-utf8.toml")),
    Case(
        "versions/unknown-field-spaced-path",
        ("versions", R, "{rec}"),
        f"{SPACED}/rec.toml:28: istio[1].colour: unknown key",
        rec("unknown-field.toml"),
        folder=SPACED,
    ),
    Case(
        "versions/show-patch-version",
        ("versions", "--show", "istio@12.0.1", R, "{rec}"),
        "invalid version '12.0.1'",
        SEED,
    ),
    Case(
        "versions/show-no-at",
        ("versions", "--show", "istio 12.0", R, "{rec}"),
        "invalid release reference 'istio 12.0'",
        SEED,
    ),
    Case(
        "versions/unknown-variant",
        ("versions", "--variant", "nginx", R, "{rec}"),
        "unknown variant 'nginx'",
        SEED,
    ),
    Case(
        "versions/dotdot-missing-record",
        ("versions", R, "{tmp}/sub/../missing.toml"),
        "missing.toml does not exist",
        SEED,
    ),
    # --- bump ---------------------------------------------------------------------------------------------
    Case(
        "bump/record-version-with-v",
        ("bump", "--variant", "istio", "--minor", "--summary", "s", R, "{rec}"),
        "istio[1].version: invalid version 'v12.0'",
        rec("version-with-v.toml"),
    ),
    Case(
        "bump/record-version-not-string",
        ("bump", "--variant", "istio", "--minor", "--summary", "s", R, "{rec}"),
        "istio[0].version: must be a string, got float",
        rec("version-not-string.toml"),
    ),
    Case(
        "bump/record-missing-summary",
        ("bump", "--variant", "istio", "--minor", "--summary", "s", R, "{rec}"),
        "missing required key 'summary'",
        rec("missing-summary.toml"),
    ),
    Case(
        "bump/record-unknown-status",
        ("bump", "--variant", "istio", "--major", "--summary", "s", R, "{rec}"),
        "'maybe' is not one of planned, working, deprecated, test-only",
        rec("unknown-status.toml"),
    ),
    Case(
        "bump/unknown-variant",
        ("bump", "--variant", "nginx", "--minor", "--summary", "s", R, "{rec}"),
        "unknown variant 'nginx'",
        SEED,
    ),
    Case(
        "bump/based-on-unknown",
        ("bump", "--variant", "istio", "--minor", "--summary", "s", "--based-on", "istio@99.9", R, "{rec}"),
        "istio@99.9 is not in the record",
        SEED,
    ),
    Case(
        "bump/supersedes-bad-version",
        ("bump", "--variant", "istio", "--minor", "--summary", "s", "--supersedes", "1.x", R, "{rec}"),
        "invalid version '1.x'",
        SEED,
    ),
    Case(
        "bump/bad-feature",
        ("bump", "--variant", "istio", "--minor", "--summary", "s", "--feature", "BAD FEATURE", R, "{rec}"),
        "--feature 'BAD FEATURE': unknown feature",
        SEED,
    ),
    Case(
        "bump/bad-package",
        ("bump", "--variant", "istio", "--minor", "--summary", "s", "--package", "Bad_Pkg!", R, "{rec}"),
        "'Bad_Pkg!' is not a Debian package name",
        SEED,
    ),
    Case(
        "bump/unknown-no-feature",
        ("bump", "--variant", "istio", "--minor", "--summary", "s", "--no-feature", "grpcc", R, "{rec}"),
        "--no-feature 'grpcc': unknown feature",
        SEED,
    ),
    Case(
        "bump/no-feature-not-carried",
        ("bump", "--variant", "istio", "--minor", "--summary", "s", "--no-feature", "perf-fifo", R, "{rec}"),
        "--no-feature perf-fifo: istio@12.0 has no such feature to drop",
        SEED,
    ),
    Case(
        "bump/while-planned",
        ("bump", "--variant", "istio", "--minor", "--summary", "s", R, "{rec}"),
        "istio@12.1 is planned and not released yet",
        rec("planned.toml"),
    ),
    Case(
        "deprecate/planned-to-working",
        ("deprecate", "istio@12.1", "--working", "--reason", "r", R, "{rec}"),
        "only a release makes it working",
        rec("planned.toml"),
    ),
    Case(
        "bump/major-and-minor",
        ("bump", "--variant", "istio", "--major", "--minor", "--summary", "s", R, "{rec}"),
        "exactly one of --major or --minor",
        SEED,
    ),
    # --- deprecate ----------------------------------------------------------------------------------------
    Case(
        "deprecate/record-duplicate-version",
        ("deprecate", "istio@11.8", "--reason", "r", R, "{rec}"),
        "version 11.8 is recorded twice",
        rec("duplicate-version.toml"),
    ),
    Case(
        "deprecate/record-deprecated-without-reason",
        ("deprecate", "istio@12.0", "--reason", "r", R, "{rec}"),
        "a deprecated version needs a reason",
        rec("deprecated-without-reason.toml"),
    ),
    Case(
        "deprecate/unknown-variant",
        ("deprecate", "nginx@1.0", "--reason", "r", R, "{rec}"),
        "unknown variant 'nginx'",
        SEED,
    ),
    Case(
        "deprecate/unknown-release",
        ("deprecate", "istio@99.0", "--reason", "r", R, "{rec}"),
        "istio@99.0 is not in",
        SEED,
    ),
    Case(
        "deprecate/two-ats",
        ("deprecate", "istio@12.0@1", "--reason", "r", R, "{rec}"),
        "invalid release reference",
        SEED,
    ),
    Case(
        "deprecate/test-only-and-working",
        ("deprecate", "istio@12.0", "--reason", "r", "--test-only", "--working", R, "{rec}"),
        "--test-only and --working exclude each other",
        SEED,
    ),
    # --- changelog ----------------------------------------------------------------------------------------
    Case(
        "changelog/record-based-on-dangling",
        ("changelog", R, "{rec}"),
        "istio[1].based_on: istio@9.9 is not in the record",
        rec("based-on-dangling.toml"),
    ),
    Case(
        "changelog/record-undeclared-variant",
        ("changelog", R, "{rec}"),
        "nginx: unknown key",
        rec("undeclared-variant.toml"),
    ),
    Case(
        "changelog/record-versions-not-array",
        ("changelog", R, "{rec}"),
        "envoy: must be an array of tables",
        rec("versions-not-array.toml"),
    ),
    Case(
        "changelog/unknown-variant",
        ("changelog", "--variant", "nginx", R, "{rec}"),
        "unknown variant 'nginx'",
        SEED,
    ),
    Case(
        "changelog/output-in-missing-dir",
        ("changelog", "--output", "{tmp}/no such dir/notes.md", R, "{rec}"),
        "no such dir/notes.md",
        SEED,
    ),
    # --- symbols: non-ELF, truncated, 32-bit, stripped, missing -------------------------------------------
    Case("symbols/not-elf", ("symbols", "{bin}"), "not an ELF", {"bin": "elf:text"}),
    Case("symbols/empty-file", ("symbols", "{bin}"), "bin", {"bin": "empty"}),
    Case("symbols/truncated", ("symbols", "{bin}"), "bin", {"bin": "truncated"}),
    Case("symbols/32-bit", ("symbols", "{bin}"), "32-bit", {"bin": "elf:elf32"}),
    Case(
        "symbols/stripped-no-match",
        ("symbols", "{bin}", "--pattern", "hookpointDecode"),
        "is stripped",
        {"bin": "elf:stripped"},
    ),
    Case(
        "symbols/no-such-pattern",
        ("symbols", "{bin}", "--pattern", "nothingLikeThis"),
        "no function symbol matching 'nothingLikeThis'",
        {"bin": "elf:gcc"},
    ),
    Case(
        "symbols/missing-unicode-path",
        ("symbols", "{tmp}/nïcht da/envoy"),
        "nïcht da/envoy: no such file",
        {},
    ),
    Case("symbols/directory", ("symbols", "{dir}"), "is a directory", {"dir": "dir"}),
    Case("symbols/release-without-binary", ("symbols", "istio@12.0", R, "{rec}"), "neither", SEED),
    Case(
        "symbols/diff-against-non-elf",
        ("symbols", "{bin}", "--diff", "{old}"),
        "not an ELF",
        {"bin": "elf:gcc", "old": "elf:text"},
    ),
    Case(
        "symbols/debug-binary-32-bit",
        ("symbols", "{bin}", "--debug-binary", "{dbg}"),
        "32-bit",
        {"bin": "elf:stripped", "dbg": "elf:elf32"},
    ),
    Case(
        "symbols/scripts-dir-is-a-file",
        ("symbols", "{bin}", "--scripts-dir", "{file}"),
        "file",
        {"bin": "elf:gcc", "file": "file"},
    ),
    # --- inject: invalid/empty YAML, no workloads, bad releases and paths ---------------------------------
    Case(
        "inject/invalid-yaml",
        ("inject", "-r", "istio@12.0", "-f", "{m}", R, "{rec}"),
        "m.yaml: invalid YAML at line 5",
        {"m": "data:manifests/invalid.yaml", **SEED},
    ),
    Case(
        "inject/empty-yaml",
        ("inject", "-r", "istio@12.0", "-f", "{m}", R, "{rec}"),
        "m.yaml: no workloads found",
        {"m": "data:manifests/empty.yaml", **SEED},
    ),
    Case(
        "inject/only-separators",
        ("inject", "-r", "istio@12.0", "-f", "{m}", R, "{rec}"),
        "no workloads found",
        {"m": "data:manifests/only-separators.yaml", **SEED},
    ),
    Case(
        "inject/no-workloads",
        ("inject", "-r", "istio@12.0", "-f", "{m}", R, "{rec}"),
        "no workloads found",
        {"m": "data:manifests/no-workloads.yaml", **SEED},
    ),
    Case(
        "inject/top-level-list",
        ("inject", "-r", "istio@12.0", "-f", "{m}", R, "{rec}"),
        "no workloads found",
        {"m": "data:manifests/top-level-list.yaml", **SEED},
    ),
    Case(
        "inject/containers-not-a-list",
        ("inject", "-r", "istio@12.0", "-f", "{m}", R, "{rec}"),
        "m.yaml: Deployment web (document 1): the pod template has no containers",
        {"m": "data:manifests/containers-not-a-list.yaml", **SEED},
    ),
    Case(
        "inject/undefined-alias",
        ("inject", "-r", "istio@12.0", "-f", "{m}", R, "{rec}"),
        "undefined alias",
        {"m": "data:manifests/undefined-alias.yaml", **SEED},
    ),
    Case(
        "inject/unknown-release",
        ("inject", "-r", "istio@13.9", "-f", "{m}", R, "{rec}"),
        "istio@13.9 is not in",
        {"m": "data:manifests/no-workloads.yaml", **SEED},
    ),
    Case(
        "inject/planned-release",
        ("inject", "-r", "istio@12.1", "-f", "{m}", R, "{rec}"),
        "istio@12.1 is planned, not released: it has no image yet",
        {"m": "data:manifests/no-workloads.yaml", **rec("planned.toml")},
    ),
    Case(
        "inject/record-bad-image-reference",
        ("inject", "-r", "istio@12.0", "-f", "{m}", R, "{rec}"),
        "'UPPER/Case::x' is not an image reference",
        {"m": "data:manifests/no-workloads.yaml", **rec("bad-image-reference.toml")},
    ),
    Case(
        "inject/dotdot-missing-manifest",
        ("inject", "-r", "istio@12.0", "-f", "{tmp}/x/../../nope.yaml", R, "{rec}"),
        "nope.yaml not found",
        SEED,
    ),
    Case(
        "inject/output-in-missing-dir",
        ("inject", "-r", "istio@12.0", "-f", "{m}", "-o", "{tmp}/gone/out.yaml", R, "{rec}"),
        "cannot write",
        {"m": "data:../manifests/bookinfo.yaml", **SEED},
    ),
    Case(
        "inject/manifest-is-a-directory",
        ("inject", "-r", "istio@12.0", "-f", "{dir}", R, "{rec}"),
        "cannot read manifest",
        {"dir": "dir", **SEED},
    ),
    # --- trace-script -------------------------------------------------------------------------------------
    Case(
        "trace-script/not-elf",
        ("trace-script", "istio@12.0", "--binary", "{bin}", "--output", "{tmp}/out"),
        "not an ELF",
        {"bin": "elf:text"},
    ),
    Case(
        "trace-script/truncated",
        ("trace-script", "istio@12.0", "--binary", "{bin}", "--output", "{tmp}/out"),
        "bin",
        {"bin": "truncated"},
    ),
    Case(
        "trace-script/no-hookpoints",
        ("trace-script", "istio@12.0", "--binary", "{bin}", "--output", "{tmp}/out"),
        "no hookpoints to trace",
        {"bin": "host:/bin/true"},
    ),
    Case(
        "trace-script/bad-release",
        ("trace-script", "istio", "--binary", "{bin}"),
        "invalid release reference 'istio'",
        {"bin": "elf:gcc"},
    ),
    Case(
        "trace-script/output-is-a-file",
        ("trace-script", "istio@12.0", "--binary", "{bin}", "--output", "{file}"),
        "cannot write",
        {"bin": "elf:gcc", "file": "file"},
    ),
    # --- trace-report -------------------------------------------------------------------------------------
    Case("trace-report/missing-dir", ("trace-report", "{tmp}/nowhere"), "does not exist"),
    Case("trace-report/a-file", ("trace-report", "{file}", "--json"), "does not exist", {"file": "file"}),
    Case("trace-report/no-traces", ("trace-report", "{dir}"), "no trace files", {"dir": "dir"}),
    # --- release: variants, versions, registry and image references, WORKSPACE, outputs -------------------
    Case(
        "release/unknown-variant",
        ("release", "--variant", "nginx", "--sample", "--version", "12.1"),
        "unknown variant 'nginx'",
        SEED,
    ),
    Case(
        "release/version-with-v",
        ("release", "--variant", "istio", "--sample", "--version", "v12"),
        "invalid version 'v12'",
        SEED,
    ),
    Case(
        "release/version-with-patch",
        ("release", "--sample", "--version", "12.1.0"),
        "invalid version '12.1.0'",
        SEED,
    ),
    Case(
        "release/no-version",
        (*RELEASE[:3], *CHECKOUTS),
        "no --version given",
        proxy("data:workspaces/two-envoy-rules.WORKSPACE"),
    ),
    Case(
        "release/registry-url",
        ("release", "--sample", "--version", "12.1"),
        "invalid registry 'http://x/y'",
        SEED,
        env={"HOOKBUILD_REGISTRY": "http://x/y"},
    ),
    Case(
        "release/registry-with-path",
        ("release", "--sample", "--version", "12.1"),
        "invalid registry '127.0.0.1:5000/sub'",
        SEED,
        env={"HOOKBUILD_REGISTRY": "127.0.0.1:5000/sub"},
    ),
    Case(
        "release/namespace-space",
        ("release", "--sample", "--version", "12.1"),
        "invalid namespace 'Hook Build'",
        SEED,
        env={"HOOKBUILD_NAMESPACE": "Hook Build"},
    ),
    Case(
        "release/namespace-uppercase",
        ("release", "--sample", "--version", "12.1", "--namespace", "MyOrg", "--dry-run"),
        "invalid namespace 'MyOrg' (--namespace, setting namespace, HOOKBUILD_NAMESPACE) (lowercase letters",
        SEED,
    ),
    Case(
        "release/base-image-invalid",
        ("release", "--sample", "--version", "12.1", "--base-image", "UPPER/Case::x"),
        "invalid base image 'UPPER/Case::x'",
        SEED,
    ),
    Case(
        "release/base-image-invalid-dry-run",
        ("release", "--sample", "--version", "12.1", "--dry-run", "--base-image", "UPPER/Case::x"),
        "invalid base image 'UPPER/Case::x'",
        SEED,
    ),
    Case(
        "release/envoy-mode",
        ("release", "--sample", "--version", "12.1", "--envoy-mode", "copy"),
        "invalid --envoy-mode 'copy'",
        SEED,
    ),
    Case(
        "release/sample-and-checkout",
        ("release", "--sample", "--version", "12.1", "--envoy", "{tmp}"),
        "--sample builds the bundled",
        SEED,
    ),
    Case(
        "release/record-syntax",
        ("release", "--sample", "--version", "12.1"),
        "invalid TOML",
        rec("syntax-error.toml"),
    ),
    Case(
        "release/record-missing",
        (*RELEASE, *CHECKOUTS[:4], R, "{tmp}/none.toml"),
        "none.toml does not exist",
        proxy("data:workspaces/two-envoy-rules.WORKSPACE"),
    ),
    Case(
        "release/workspace-two-envoy-rules",
        (*RELEASE, *CHECKOUTS),
        "2 rules declare the envoy repository",
        proxy("data:workspaces/two-envoy-rules.WORKSPACE"),
    ),
    Case(
        "release/workspace-no-envoy-rule",
        (*RELEASE, *CHECKOUTS),
        'no repository rule named "envoy"',
        proxy("data:workspaces/no-envoy-rule.WORKSPACE"),
    ),
    Case(
        "release/workspace-unterminated-string",
        (*RELEASE, *CHECKOUTS),
        "WORKSPACE:3: unterminated string",
        proxy("data:workspaces/unterminated-string.WORKSPACE"),
    ),
    Case(
        "release/workspace-unbalanced",
        (*RELEASE, *CHECKOUTS),
        "WORKSPACE:2: bracket opened here is never closed",
        proxy("data:workspaces/unbalanced-parens.WORKSPACE"),
    ),
    Case(
        "release/workspace-not-utf8",
        (*RELEASE, *CHECKOUTS),
        "WORKSPACE: not UTF-8 text",
        proxy("data:workspaces/not-utf8.WORKSPACE"),
    ),
    Case(
        "release/workspace-empty",
        (*RELEASE, *CHECKOUTS),
        'no repository rule named "envoy"',
        proxy("data:workspaces/empty.WORKSPACE"),
    ),
    Case(
        "release/workspace-missing-spaced",
        (*RELEASE, *CHECKOUTS),
        f"{SPACED}/proxy/WORKSPACE: no repository rule",
        proxy("none"),
        folder=SPACED,
    ),
    Case(
        "release/envoy-dotdot-missing",
        (*RELEASE, "--envoy", "{tmp}/a/../nowhere", "--proxy", "{proxy}", R, "{rec}"),
        "nowhere",
        proxy("examples"),
    ),
    Case(
        "release/dangling-bazel-bin",
        (*RELEASE, *CHECKOUTS, "--base-image", SAMPLE_BASE),
        "bazel-bin points to /nonexistent/bazel-out/k8-opt/bin, which exists neither on this host",
        {**proxy("examples"), "proxy": "dangling:/nonexistent/bazel-out/k8-opt/bin"},
        creates=("proxy/bazel-bin",),
        marks=("docker",),
    ),
    Case(
        "release/bazel-bin-into-empty-volume-path",
        (*RELEASE, *CHECKOUTS, "--base-image", SAMPLE_BASE),
        "no such directory in volume 'cache'",
        {
            **proxy("examples"),
            "proxy": "dangling:/home/.cache/bazel/_bazel_root/hookbuild-no-such-hash/execroot/x/bin",
        },
        creates=("proxy/bazel-bin",),
        marks=("docker",),
    ),
    # --- the missing volume: no task chooses the volume, so through the library in a real process ----------
    Case(
        "library/resolve-link-missing-volume",
        ("{python}", "-c", "{resolve}"),
        "docker volume 'hookbuild-no-such-volume' does not exist",
        {"link": "link:/home/.cache/bazel/bin"},
        marks=("docker",),
    ),
]

RESOLVE = """
import sys, docker
from pathlib import Path
from invoke.exceptions import Exit
from hookbuild.build import outputs
from hookbuild.cli.task import errors_to_exit
try:
    with errors_to_exit():
        outputs.resolve_link(Path(sys.argv[1]), client=docker.from_env(), volume="hookbuild-no-such-volume")
except Exit as exc:
    sys.stderr.write(str(exc.message) + "\\n")
    sys.exit(exc.code)
"""


def _git_repo(path: Path) -> Path:
    repo = git.Repo.init(path)
    repo.git.add(A=True)
    repo.git.commit(m="bad-input case", author="t <t@example.invalid>", allow_empty=True)
    repo.close()
    return path


def _proxy_copy(dest: Path, workspace: str | None) -> Path:
    shutil.copytree(ROOT / "examples" / "proxy", dest, ignore=shutil.ignore_patterns("bazel-*", "out"))
    if workspace is None:
        (dest / "WORKSPACE").unlink()
    elif workspace != "examples":
        shutil.copyfile(DATA / workspace, dest / "WORKSPACE")
    return dest


def _prepare(case: Case, work: Path, samples: Samples) -> dict[str, str]:
    values = {"tmp": str(work), "python": sys.executable, "resolve": RESOLVE}
    for name, how in case.files.items():
        kind, _, arg = how.partition(":")
        path = work / name
        if kind == "seed":
            path = work / "rec.toml"
            shutil.copyfile(ROOT / "versions.toml", path)
        elif kind == "data":
            path = work / f"{name}{Path(arg).suffix}"
            shutil.copyfile(DATA / arg, path)
        elif kind == "elf":
            shutil.copyfile(getattr(samples, arg), path)
            path.chmod(0o755)
        elif kind == "host":
            shutil.copyfile(arg, path)
        elif kind == "truncated":
            path.write_bytes(samples.gcc.read_bytes()[:3000])
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "dir":
            path.mkdir()
        elif kind == "file":
            path.write_text("a regular file\n")
        elif kind == "gitdir":
            path.mkdir()
            (path / "README").write_text("envoy stand-in\n")
            _git_repo(path)
        elif kind == "proxy":
            _git_repo(_proxy_copy(path, None if arg == "none" else arg.removeprefix("data:")))
        elif kind == "dangling":
            # A proxy whose build "succeeds" and leaves bazel-bin dangling, as a containerised Bazel does.
            # The checkout's interface is istio's own (the plan reads it); only the build container's
            # entry point is a stand-in that leaves the link.
            _proxy_copy(path, "examples")
            run_sh = path / "common" / "scripts" / "run.sh"
            run_sh.write_text(f"#!/bin/sh\nln -sfn {arg} bazel-bin\n")
            run_sh.chmod(0o755)
            _git_repo(path)
            if arg.startswith("/home/.cache/"):  # the volume a real containerised build leaves
                import docker

                with contextlib.closing(docker.from_env()) as client:  # an open socket fails a later test
                    client.volumes.create("cache")
        elif kind == "link":
            path.symlink_to(arg)
        else:
            raise AssertionError(f"unknown file kind {how!r}")
        values[name] = str(path)
    if name_missing := [n for n in ("rec",) if n not in values]:
        path = work / "rec.toml"  # every case gets its own record: the repo's is never in play
        shutil.copyfile(ROOT / "versions.toml", path)
        values[name_missing[0]] = str(path)
    return values


def _snapshot(work: Path) -> dict[str, str]:
    """sha256 of every file (and link target) under the case folder, except scratch dist/, .git and locks."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(work):
        dirnames[:] = [d for d in dirnames if d not in (".git", "dist")]
        for name in filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(work))
            if name.endswith(".lock"):
                continue
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            else:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_corpus_is_large_and_covers_every_task() -> None:
    tasks = {case.id.split("/")[0] for case in CASES}
    assert len(CASES) >= 40
    assert tasks >= {
        "release",
        "versions",
        "bump",
        "deprecate",
        "changelog",
        "symbols",
        "inject",
        "trace-script",
    }
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.id, marks=[getattr(pytest.mark, m) for m in case.marks]) for case in CASES],
)
def test_bad_input(case: Case, tmp_path: Path, samples: Samples) -> None:
    work = tmp_path / case.folder
    work.mkdir()
    values = _prepare(case, work, samples)
    args = [arg.format(**values) for arg in case.args]
    env = {
        "HOOKBUILD_DIST": str(work / "dist"),
        "HOOKBUILD_VERSIONS_FILE": values["rec"],
        **{key: value.format(**values) for key, value in case.env.items()},
    }
    if case.id.startswith("library/"):
        args.append(values["link"])
    before = _snapshot(work)

    if case.id.startswith("library/"):
        import subprocess

        proc = subprocess.run(
            args, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=60
        )
        returncode, stderr = proc.returncode, proc.stderr
    else:
        ran = run_invoke(*args, env=env, timeout=300)
        returncode, stderr = ran.returncode, ran.stderr

    assert returncode != 0, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    line = errors[0]
    assert case.phrase in line, line
    assert line.rstrip().endswith(")") and " (" in line, f"no hint saying how to fix it: {line}"
    after = _snapshot(work)
    assert {rel: after.get(rel) for rel in before} == before, "a file changed"
    assert set(after) - set(before) <= set(case.creates), f"new files: {set(after) - set(before)}"
