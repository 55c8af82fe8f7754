"""inject: real manifests in, golden ones out, valid for Kubernetes 1.30, idempotent, clear errors."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from conftest import INVOKE, ROOT, run_invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from hookbuild.cluster import inject
from hookbuild.errors import InjectError

MANIFESTS = Path(__file__).parent / "data" / "manifests"
GOLDEN = MANIFESTS / "golden"
KUBERNETES = "1.30.0"
DIGEST = "sha256:" + "1" * 64
IMAGE = inject.SidecarImage(
    reference=f"127.0.0.1:5000/hookbuild/istio-proxy@{DIGEST}", release="istio@12.0", pinned=True
)
TAGGED = inject.SidecarImage(
    reference="docker.io/someuser/custom-istio:11.8", release="istio@11.8", pinned=False
)
SOURCES = sorted(path.name for path in MANIFESTS.glob("*.yaml"))

VERSIONS = f"""\
schema = 1

[variants.istio]
title = "Modified Istio proxy"
image = "127.0.0.1:5000/hookbuild/istio-proxy"

[[istio]]
version = "11.8"
summary = "The working version of 11.7 (recorded before hookbuild: a tag, no digest)"
image = "docker.io/someuser/custom-istio:11.8"

[[istio]]
version = "12.0"
summary = "add linux-tools to support perf"

[istio.release]
image = "127.0.0.1:5000/hookbuild/istio-proxy:12.0"
digest = "{DIGEST}"
released_at = 2026-08-01T12:00:00Z
envoy_commit = "{"2" * 40}"
binary_sha256 = "{"3" * 64}"
inputs_key = "test"
base_image = "docker.io/istio/proxyv2:1.22.0"
dockerfile = "dockerfiles/istio.dockerfile"
"""


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in YAML(typ="safe").load_all(text) if doc is not None]


def pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    kind = document["kind"]
    if kind == "Pod":
        return document["spec"]  # type: ignore[no-any-return]
    if kind == "CronJob":
        return document["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return document["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def check_valid(text: str) -> None:
    """Schema-valid for a fixed Kubernetes version, plus the references the schema cannot see."""
    for document in documents(text):
        try:
            kubernetes_validate.validate(document, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{document['kind']} {document['metadata'].get('name')}: {exc.message}")
        if document["kind"] not in inject.WORKLOAD_KINDS:
            continue
        spec = pod_spec(document)
        volumes = [volume["name"] for volume in spec.get("volumes", [])]
        assert len(volumes) == len(set(volumes)), f"duplicate volumes {volumes}"
        claims = document["spec"].get("volumeClaimTemplates", []) if document["kind"] == "StatefulSet" else []
        volumes += [claim["metadata"]["name"] for claim in claims]
        containers = [c["name"] for c in spec.get("initContainers", []) + spec["containers"]]
        assert len(containers) == len(set(containers)), f"duplicate containers {containers}"
        for container in spec["containers"]:
            paths = [mount["mountPath"] for mount in container.get("volumeMounts", [])]
            assert len(paths) == len(set(paths)), f"{container['name']} mounts a path twice: {paths}"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{container['name']} mounts undefined {mount['name']}"


def sidecar(spec: dict[str, Any]) -> dict[str, Any]:
    found = [c for c in spec["containers"] if c["name"] == "istio-proxy"]
    assert len(found) == 1
    return found[0]


def check_sidecar(spec: dict[str, Any], image: str = IMAGE.reference) -> None:
    proxy = sidecar(spec)
    assert proxy["image"] == image
    context = proxy["securityContext"]
    assert context["privileged"] is True and context["allowPrivilegeEscalation"] is True
    assert context["runAsUser"] == 0 and context["runAsNonRoot"] is False
    assert "SYS_ADMIN" in context["capabilities"]["add"]
    mounts = {mount["mountPath"]: mount["name"] for mount in proxy["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes[mounts["/lib/modules"]]["hostPath"] == {"path": "/lib/modules", "type": "Directory"}
    assert volumes[mounts["/usr/src"]]["hostPath"] == {"path": "/usr/src", "type": "Directory"}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {}


# --- golden outputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sidecar", "annotation"])
@pytest.mark.parametrize("name", SOURCES)
def test_golden(name: str, mode: str) -> None:
    source = (MANIFESTS / name).read_text()
    result = inject.inject(source, image=IMAGE, annotation_only=mode == "annotation", source=name)
    golden = GOLDEN / f"{Path(name).stem}.{mode}.yaml"
    if os.environ.get("HOOKBUILD_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(result.text)
    assert result.text == golden.read_text(), f"differs from {golden} (HOOKBUILD_UPDATE_GOLDEN=1 rewrites it)"
    check_valid(result.text)
    assert inject.inject(result.text, image=IMAGE, annotation_only=mode == "annotation").text == result.text


@pytest.mark.parametrize("name", SOURCES)
def test_every_workload_gets_the_sidecar_and_nothing_else_changes(name: str) -> None:
    source = (MANIFESTS / name).read_text()
    result = inject.inject(source, image=IMAGE)
    before, after = documents(source), documents(result.text)
    assert [d["kind"] for d in before] == [d["kind"] for d in after]
    workloads = 0
    for old, new in zip(before, after, strict=True):
        if new["kind"] in inject.WORKLOAD_KINDS:
            workloads += 1
            check_sidecar(pod_spec(new))
            # The app's own containers are untouched.
            assert [c for c in pod_spec(new)["containers"] if c["name"] != "istio-proxy"] == [
                c for c in pod_spec(old)["containers"] if c["name"] != "istio-proxy"
            ]
        else:
            assert old == new
    assert workloads == len(result.workloads) > 0
    # Every comment line survives, and quoting is kept as written.
    for line in source.splitlines():
        if line.strip().startswith("#"):
            assert line in result.text.splitlines(), f"lost comment {line!r}"
    for quoted in re.findall(r"""(?:"[^"\n]*"|'[^'\n]*')""", source):
        assert quoted in result.text, f"lost quoting of {quoted}"


def test_non_workload_documents_keep_their_bytes() -> None:
    source = (MANIFESTS / "bookinfo.yaml").read_text()
    result = inject.inject(source, image=IMAGE)
    service = source.split("---\n")[0]
    assert result.text.startswith(service)
    assert source.split("---\n")[1] in result.text  # the ServiceAccount


def test_all_kinds_and_cronjob_template() -> None:
    result = inject.inject((MANIFESTS / "platform.yaml").read_text(), image=IMAGE)
    kinds = {w.kind for w in result.workloads}
    assert kinds == {"StatefulSet", "DaemonSet", "CronJob", "Job", "ReplicaSet", "Pod"}
    cronjob = next(d for d in documents(result.text) if d["kind"] == "CronJob")
    check_sidecar(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    assert "template" not in cronjob["spec"]


def test_existing_sidecar_is_updated_not_duplicated() -> None:
    result = inject.inject((MANIFESTS / "seed-sidecar.yaml").read_text(), image=IMAGE)
    spec = pod_spec(documents(result.text)[0])
    check_sidecar(spec)
    assert [v["name"] for v in spec["volumes"]] == ["tmp", "lib-modules", "linux-headers"]
    assert sidecar(spec)["securityContext"]["capabilities"]["add"] == ["SYS_ADMIN"]
    assert result.workloads[0].changed


def test_user_settings_that_block_tracing_are_overridden() -> None:
    source = DEPLOYMENT.replace(
        "      containers:\n",
        "      containers:\n"
        "      - name: istio-proxy\n"
        "        securityContext:\n"
        "          allowPrivilegeEscalation: false  # the API would reject this with privileged\n"
        "          runAsUser: 1337\n"
        "          runAsNonRoot: true\n"
        "          capabilities:\n"
        "            add: [NET_ADMIN]\n"
        "            drop: [ALL]\n",
    )
    result = inject.inject(source, image=IMAGE)
    spec = pod_spec(documents(result.text)[0])
    check_sidecar(spec)
    context = sidecar(spec)["securityContext"]
    assert context["capabilities"] == {"add": ["NET_ADMIN", "SYS_ADMIN"], "drop": ["ALL"]}
    assert "# the API would reject this with privileged" in result.text
    check_valid(result.text)


def test_native_sidecar_in_init_containers_is_updated_in_place() -> None:
    source = DEPLOYMENT.replace(
        "      containers:\n",
        "      initContainers:\n"
        "      - name: istio-proxy\n"
        "        image: docker.io/istio/proxyv2:1.22.0\n"
        "        restartPolicy: Always\n"
        "      containers:\n",
    )
    spec = pod_spec(documents(inject.inject(source, image=IMAGE).text)[0])
    assert [c["name"] for c in spec["containers"]] == ["web"]
    assert spec["initContainers"][0]["image"] == IMAGE.reference
    assert spec["initContainers"][0]["securityContext"]["privileged"] is True


def test_list_items_are_injected() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n" + "".join(
        ("- " if i == 0 else "  ") + line + "\n" for i, line in enumerate(DEPLOYMENT.splitlines())
    )
    result = inject.inject(text, image=IMAGE)
    assert len(result.workloads) == 1
    check_sidecar(pod_spec(documents(result.text)[0]["items"][0]))


def test_other_group_with_a_workload_kind_is_not_touched() -> None:
    text = DEPLOYMENT + "---\n" + DEPLOYMENT.replace("apps/v1", "example.com/v1")
    result = inject.inject(text, image=IMAGE)
    assert len(result.workloads) == 1
    assert result.text.endswith("---\n" + DEPLOYMENT.replace("apps/v1", "example.com/v1"))


# --- annotation only --------------------------------------------------------------------------------


def test_annotation_only_sets_the_proxy_image_and_nothing_else() -> None:
    result = inject.inject((MANIFESTS / "platform.yaml").read_text(), image=IMAGE, annotation_only=True)
    for document in documents(result.text):
        if document["kind"] not in inject.WORKLOAD_KINDS:
            continue
        metadata = (
            document["metadata"]
            if document["kind"] == "Pod"
            else (
                document["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
                if document["kind"] == "CronJob"
                else document["spec"]["template"]["metadata"]
            )
        )
        assert metadata["annotations"][inject.PROXY_IMAGE_ANNOTATION] == IMAGE.reference
        assert all(c["name"] != "istio-proxy" for c in pod_spec(document)["containers"])
        assert "volumes" not in pod_spec(document) or all(
            v["name"] != "lib-modules" for v in pod_spec(document)["volumes"]
        )
    # Existing annotations stay.
    assert "proxy.istio.io/config: '{ \"holdApplicationUntilProxyStarts\": true }'" in result.text


def test_annotation_needs_a_full_reference() -> None:
    short = inject.SidecarImage(reference="custom-istio:11.8", release="istio@11.8", pinned=False)
    with pytest.raises(InjectError, match="not a full reference") as caught:
        inject.inject(DEPLOYMENT, image=short, annotation_only=True)
    assert "'/'" in (caught.value.hint or "")


# --- notices ----------------------------------------------------------------------------------------


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def captured() -> Any:
    handler = Captured()
    logger = logging.getLogger("hookbuild")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_pod_security_notice_once_per_run(captured: Captured) -> None:
    inject.inject((MANIFESTS / "bookinfo.yaml").read_text(), image=IMAGE)
    notices = [m for m in captured.messages if "Baseline" in m]
    assert len(notices) == 1
    assert "privileged" in notices[0] and "SYS_ADMIN" in notices[0] and "hostPath" in notices[0]
    assert "1337" in notices[0] and "Deployment" in notices[0]
    assert not [m for m in captured.messages if "digest" in m]


def test_tag_without_digest_is_used_and_said_once(captured: Captured) -> None:
    result = inject.inject((MANIFESTS / "bookinfo.yaml").read_text(), image=TAGGED, annotation_only=True)
    assert TAGGED.reference in result.text
    assert len([m for m in captured.messages if "no digest" in m]) == 1
    assert not [m for m in captured.messages if "Baseline" in m]  # annotation only: no privileges


def test_image_reference_pins_by_digest() -> None:
    assert inject.image_reference("127.0.0.1:5000/ns/istio-proxy:12.0", DIGEST) == (
        f"127.0.0.1:5000/ns/istio-proxy@{DIGEST}"
    )
    untagged = inject.image_reference("127.0.0.1:5000/ns/istio-proxy", DIGEST)
    assert untagged == f"127.0.0.1:5000/ns/istio-proxy@{DIGEST}"
    assert inject.image_reference("docker.io/u/p:1.0", None) == "docker.io/u/p:1.0"
    with pytest.raises(InjectError, match="invalid image digest"):
        inject.image_reference("docker.io/u/p:1.0", "sha256:xyz")


# --- errors -----------------------------------------------------------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: docker.io/library/nginx:1.27
"""


def test_same_named_volume_with_another_definition_is_an_error() -> None:
    text = DEPLOYMENT + "      volumes:\n      - name: tmp\n        hostPath:\n          path: /var/tmp\n"
    with pytest.raises(InjectError) as caught:
        inject.inject(text, image=IMAGE)
    assert "Deployment shop/web" in caught.value.message and "volume 'tmp'" in caught.value.message
    assert "never overwrites" in (caught.value.hint or "")


def test_same_named_volume_with_same_definition_is_reused() -> None:
    text = DEPLOYMENT + (
        "      volumes:\n      - name: lib-modules\n        hostPath: {path: /lib/modules, type: Directory}\n"
    )
    spec = pod_spec(documents(inject.inject(text, image=IMAGE).text)[0])
    assert [v["name"] for v in spec["volumes"]] == ["lib-modules", "linux-headers", "tmp"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("kind: Deployment\nmetadata: {name: x\n", r"invalid YAML at line 3"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\n\tbad: [\n", r"invalid YAML at line 5"),
        ("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n", "no workloads found"),
        ("", "no workloads found"),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {}\n", "Deployment x.*template"),
        (DEPLOYMENT.split("      containers:")[0] + "      containers: []\n", "shop/web.*no containers"),
    ],
)
def test_bad_input_is_one_clear_error(text: str, match: str) -> None:
    with pytest.raises(InjectError, match=match):
        inject.inject(text, image=IMAGE)


# --- idempotence on generated pod templates ----------------------------------------------------------

NAMES = st.sampled_from(["app", "web", "worker", "istio-proxy"])
OUR_VOLUMES = {
    "tmp": {"emptyDir": {}},
    "lib-modules": {"hostPath": {"path": "/lib/modules", "type": "Directory"}},
    "linux-headers": {"hostPath": {"path": "/usr/src", "type": "Directory"}},
}
USER_VOLUMES = {"data": {"emptyDir": {"medium": "Memory"}}, "config": {"configMap": {"name": "app-config"}}}


@st.composite
def pod_templates(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    volume_names = draw(st.lists(st.sampled_from(sorted({**OUR_VOLUMES, **USER_VOLUMES})), unique=True))
    volumes = [{"name": name, **{**OUR_VOLUMES, **USER_VOLUMES}[name]} for name in volume_names]
    containers = []
    for name in names:
        container: dict[str, Any] = {"name": name}
        if name != "istio-proxy" or draw(st.booleans()):
            container["image"] = f"docker.io/library/{name.replace('istio-proxy', 'proxy')}:1"
        if name == "istio-proxy" and draw(st.booleans()):
            container["securityContext"] = draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "privileged": st.booleans(),
                        "allowPrivilegeEscalation": st.booleans(),
                        "runAsUser": st.sampled_from([0, 1337]),
                        "capabilities": st.fixed_dictionaries(
                            {"add": st.lists(st.sampled_from(["NET_ADMIN", "SYS_ADMIN"]), unique=True)}
                        ),
                    },
                )
            )
        mounts = draw(st.lists(st.sampled_from(volume_names), unique=True)) if volume_names else []
        paths = {"tmp": "/tmp", "lib-modules": "/lib/modules", "linux-headers": "/usr/src"}
        if mounts:
            container["volumeMounts"] = [{"name": m, "mountPath": paths.get(m, f"/srv/{m}")} for m in mounts]
        containers.append(container)
    spec: dict[str, Any] = {"containers": containers}
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": {"labels": {"app": "generated"}}, "spec": spec}


def wrap(kind: str, template: dict[str, Any]) -> dict[str, Any]:
    head: dict[str, Any] = {"metadata": {"name": "generated"}}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", **head, "spec": template["spec"]}
    if kind == "CronJob":
        job = {"template": {**template, "spec": {**template["spec"], "restartPolicy": "Never"}}}
        return {
            "apiVersion": "batch/v1",
            "kind": kind,
            **head,
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": job}},
        }
    if kind == "Job":
        return {
            "apiVersion": "batch/v1",
            "kind": kind,
            **head,
            "spec": {"template": {**template, "spec": {**template["spec"], "restartPolicy": "Never"}}},
        }
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "generated"}}, "template": template}
    if kind == "StatefulSet":
        spec["serviceName"] = "generated"
    return {"apiVersion": "apps/v1", "kind": kind, **head, "spec": spec}


@pytest.mark.slow  # hypothesis: many generated manifests
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    template=pod_templates(),
    kind=st.sampled_from(inject.WORKLOAD_KINDS),
    style=st.sampled_from([(2, 2, 0), (2, 4, 2), (4, 4, 2)]),
)
def test_injecting_twice_gives_the_same_bytes(
    template: dict[str, Any], kind: str, style: tuple[int, int, int]
) -> None:
    yaml = YAML()
    mapping, sequence, offset = style
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    stream = io.StringIO()
    yaml.dump(wrap(kind, template), stream)
    once = inject.inject(stream.getvalue(), image=IMAGE)
    twice = inject.inject(once.text, image=IMAGE)
    assert twice.text == once.text
    assert not any(w.changed for w in twice.workloads)
    check_sidecar(pod_spec(documents(once.text)[0]))
    check_valid(once.text)


# --- the task ----------------------------------------------------------------------------------------


@pytest.fixture
def versions(tmp_path: Path) -> Path:
    path = tmp_path / "versions.toml"
    path.write_text(VERSIONS)
    return path


def test_task_reads_stdin_writes_stdout(versions: Path) -> None:
    proc = subprocess.run(
        [str(INVOKE), "inject", "--release", "istio@12.0", "--versions-file", str(versions)],
        input=(MANIFESTS / "bookinfo.yaml").read_text(),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (GOLDEN / "bookinfo.sidecar.yaml").read_text()
    assert proc.stderr.count("Baseline") == 1


def test_task_file_to_file_pinned(versions: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    ran = run_invoke(
        "inject",
        "-r",
        "istio@12.0",
        "-f",
        str(MANIFESTS / "platform.yaml"),
        "-o",
        str(out),
        "--versions-file",
        str(versions),
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == ""
    assert out.read_text() == (GOLDEN / "platform.sidecar.yaml").read_text()


def test_task_tag_only_release(versions: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    ran = run_invoke(
        "inject",
        "-r",
        "istio@11.8",
        "-f",
        str(MANIFESTS / "seed-sidecar.yaml"),
        "-o",
        str(out),
        "--annotation-only",
        "--versions-file",
        str(versions),
    )
    assert ran.returncode == 0, ran.stderr
    assert "sidecar.istio.io/proxyImage: docker.io/someuser/custom-istio:11.8" in out.read_text()
    assert ran.stderr.count("no digest") == 1


@pytest.mark.parametrize(
    ("args", "stdin_text", "code", "match"),
    [
        (["-r", "istio@13.0"], None, 2, r"^error: istio@13.0 is not in .*versions.toml"),
        (["-r", "cilium@1.0"], None, 2, r"^error: unknown variant 'cilium'"),
        (["-r", "istio@12"], None, 2, r"^error: invalid version '12'"),
        (["-f", "missing.yaml"], None, 1, r"^error: manifest missing.yaml not found"),
        (["-f", "-"], "a: [\n", 1, r"^error: <stdin>: invalid YAML at line 2"),
        (["-f", "-"], "apiVersion: v1\nkind: Service\n", 1, r"^error: <stdin>: no workloads"),
    ],
)
def test_task_errors_are_one_line(
    versions: Path, args: list[str], stdin_text: str | None, code: int, match: str
) -> None:
    if "-r" not in args:
        args = [*args, "-r", "istio@12.0"]
    if "-f" not in args:
        args = [*args, "-f", str(MANIFESTS / "bookinfo.yaml")]
    proc = subprocess.run(
        [str(INVOKE), "inject", *args, "--versions-file", str(versions)],
        input=stdin_text or "",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.search(match, lines[0]), lines[0]
    assert proc.stdout == ""


def test_task_missing_record_is_a_record_error(tmp_path: Path) -> None:
    ran = run_invoke(
        "inject",
        "-r",
        "istio@12.0",
        "-f",
        str(MANIFESTS / "bookinfo.yaml"),
        "--versions-file",
        str(tmp_path / "none.toml"),
    )
    assert ran.returncode == 1
    assert ran.stderr.startswith("error: version record") and "does not exist" in ran.stderr
