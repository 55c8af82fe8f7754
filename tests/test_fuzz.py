"""Property tests that fill the gaps left by the per-module ones (round trip on generated WORKSPACEs in
test_workspace, Version in test_version, injection idempotence on generated pod templates in test_inject,
damaged ELF in test_elf): here the inputs are *mutations of the real files* and arbitrary text, and the
property is "a clean result or the module's own error, never anything else".

- versions.toml: a mutated seed record loads or raises RecordError/VersionError (never KeyError & co.);
- release references (`VARIANT@X.Y`): parse_ref round-trips or raises VersionError;
- WORKSPACE: a mutated istio/proxy WORKSPACE plans an edit that round-trips byte for byte, or raises
  WorkspaceError; arbitrary text only ever raises WorkspaceError;
- manifests: a mutated real manifest injects (and a second injection changes nothing) or raises InjectError.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookbuild import record
from hookbuild.build.workspace import local_envoy, plan_edit
from hookbuild.cluster import image, inject, targets
from hookbuild.errors import InjectError, RecordError, VersionError, WorkspaceError
from hookbuild.version import Version

pytestmark = pytest.mark.slow  # hypothesis: hundreds of examples per test; `make test` runs them

DATA = Path(__file__).parent / "data"
SEED_RECORD = (ROOT / "versions.toml").read_text()
WORKSPACE = (DATA / "workspaces" / "istio-1.26.WORKSPACE").read_text()
MANIFEST = (DATA / "manifests" / "bookinfo.yaml").read_text()
IMAGE = image.sidecar_image(
    "istio@12.0", image="127.0.0.1:5000/hookbuild/istio-proxy:12.0", digest="sha256:" + "a" * 64
)
ISTIO = targets.for_release("istio")

# Pieces a mutation splices in: the syntax each format is made of, plus plain noise.
TOML_BITS = [
    '"',
    "'",
    "[",
    "]",
    "[[istio]]",
    "=",
    "\n",
    "#",
    "version = ",
    '"12.0"',
    "12.0",
    "true",
    "{",
    "}",
    ",",
]
STARLARK_BITS = [
    "(",
    ")",
    '"',
    "'",
    '"""',
    "#",
    "\n",
    ",",
    "=",
    'name = "envoy"',
    "http_archive(",
    "\\",
    "  ",
]
YAML_BITS = [
    ":",
    "- ",
    "\n",
    "  ",
    "---\n",
    "{",
    "}",
    "[",
    "]",
    "&a",
    "*a",
    "!!str",
    '"',
    "'",
    "#",
    "kind: Pod",
]


@st.composite
def mutated(draw: st.DrawFn, text: str, bits: list[str]) -> str:
    """`text` with a few random cuts, duplications and insertions of format-relevant pieces."""
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "insert", "cut"]))
        if action == "drop":
            del lines[at]
        elif action == "dup":
            lines.insert(at, lines[at])
        elif action == "insert":
            piece = draw(st.one_of(st.sampled_from(bits), st.text(max_size=8)))
            column = draw(st.integers(0, len(lines[at])))
            lines[at] = lines[at][:column] + piece + lines[at][column:]
        else:
            column = draw(st.integers(0, len(lines[at])))
            lines[at] = lines[at][:column]
    return "".join(lines)


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW_FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(text=mutated(SEED_RECORD, TOML_BITS))
def test_a_mutated_record_loads_or_raises_a_record_error(text: str) -> None:
    try:
        loaded = record.loads(text)
    except (RecordError, VersionError) as exc:
        assert exc.line() and "\n" not in exc.line()
        return
    for entry in loaded.entries:  # what loads is usable
        assert entry.ref == f"{entry.variant}@{entry.version}"
        entry.as_json()


@FUZZ
@given(
    ref=st.one_of(
        st.text(max_size=20), st.from_regex(r"[a-z][a-z0-9-]{0,8}@[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True)
    )
)
def test_release_references_round_trip_or_raise_version_error(ref: str) -> None:
    try:
        variant, version = record.parse_ref(ref)
    except VersionError as exc:
        assert exc.line().startswith("invalid")
        return
    assert f"{variant}@{version}" == ref
    assert Version.parse(str(version)) == version


@FUZZ
@given(text=mutated(WORKSPACE, STARLARK_BITS))
def test_a_mutated_workspace_round_trips_or_raises_a_workspace_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    proxy = tmp_path_factory.mktemp("proxy")
    workspace = proxy / "WORKSPACE"
    workspace.write_bytes(text.encode())
    try:
        edit = plan_edit(proxy)
    except WorkspaceError as exc:
        assert str(workspace) in exc.line() or "envoy" in exc.line()
        return
    finally:
        assert workspace.read_bytes() == text.encode()  # planning never writes
    with local_envoy(proxy, edit):
        edited = workspace.read_text()
        assert 'path = "/envoy"' in edited
        assert 'ENVOY_SHA = "' in edited or 'ENVOY_SHA = "' not in text  # the pin line is kept
    assert workspace.read_bytes() == text.encode()
    assert sorted(p.name for p in proxy.iterdir()) == ["WORKSPACE"]
    shutil.rmtree(proxy)


@FUZZ
@given(text=st.text(max_size=200))
def test_arbitrary_text_as_workspace_raises_only_workspace_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    proxy = tmp_path_factory.mktemp("proxy")
    (proxy / "WORKSPACE").write_text(text, encoding="utf-8")
    with contextlib.suppress(WorkspaceError):
        plan_edit(proxy)
    shutil.rmtree(proxy)


@SLOW_FUZZ
@given(text=mutated(MANIFEST, YAML_BITS))
def test_a_mutated_manifest_injects_idempotently_or_raises_an_inject_error(text: str) -> None:
    try:
        once = inject.inject(text, image=IMAGE, target=ISTIO, source="m.yaml")
    except InjectError as exc:
        assert exc.line().startswith("m.yaml") and "\n" not in exc.line()
        return
    twice = inject.inject(once.text, image=IMAGE, target=ISTIO, source="m.yaml")
    assert twice.text == once.text
    assert not any(w.changed for w in twice.workloads)
