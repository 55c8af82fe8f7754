"""inject: real-shaped manifests in, minimal diffs out; Istio's policy, variant targets, remove, the task."""

from __future__ import annotations

import difflib
import io
import json
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import INVOKE, ROOT, SAMPLE_ISTIO_BUILDARGS, istio_image_context, run_task
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookbuild.cluster import inject, targets
from hookbuild.cluster.image import SidecarImage, image_reference
from hookbuild.cluster.patch import MARKER, PROXY_IMAGE_ANNOTATION
from hookbuild.cluster.workloads import WORKLOAD_KINDS
from hookbuild.errors import InjectError, UsageError

MANIFESTS = Path(__file__).parent / "data" / "manifests"
GOLDEN = MANIFESTS / "golden"
KUBERNETES = "1.30.0"
DIGEST = "sha256:" + "1" * 64
IMAGE = SidecarImage(
    reference=f"registry.example.com/hookbuild/istio-proxy@{DIGEST}", release="istio@12.0", pinned=True
)
LOCAL = SidecarImage(
    reference=f"127.0.0.1:5000/hookbuild/istio-proxy@{DIGEST}", release="istio@12.0", pinned=True
)
TAGGED = SidecarImage(reference="docker.io/someuser/custom-istio:11.8", release="istio@11.8", pinned=False)
CILIUM = SidecarImage(
    reference=f"registry.example.com/hookbuild/cilium-envoy@{DIGEST}", release="cilium@2.2", pinned=True
)
ENVOY = SidecarImage(
    reference=f"registry.example.com/hookbuild/envoy@{DIGEST}", release="envoy@1.0", pinned=True
)
ISTIO = targets.for_release("istio")
# The manifests an istio release goes into (cilium.yaml and envoy-gateway.yaml have their own tests).
SOURCES = sorted(p.name for p in MANIFESTS.iterdir() if p.is_file() and p.name != "cilium.yaml")


def read(name: str) -> str:
    return (MANIFESTS / name).read_bytes().decode("utf-8")


def documents(text: str) -> list[Any]:
    found = []
    for document in yaml.safe_load_all(text):
        if isinstance(document, dict) and document.get("kind") == "List":
            found.extend(document["items"])
        elif document is not None:
            found.append(document)
    return found


def pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    return template(document)["spec"]  # type: ignore[no-any-return]


def template(document: dict[str, Any]) -> dict[str, Any]:
    kind = document["kind"]
    if kind == "Pod":
        return document
    if kind == "CronJob":
        return document["spec"]["jobTemplate"]["spec"]["template"]  # type: ignore[no-any-return]
    return document["spec"]["template"]  # type: ignore[no-any-return]


def check_valid(text: str) -> None:
    """Schema-valid for a fixed Kubernetes version, plus the references the schema cannot see."""
    for document in documents(text):
        try:
            kubernetes_validate.validate(document, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{document['kind']} {document['metadata'].get('name')}: {exc.message}")
        if document["kind"] not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(document)
        volumes = [volume["name"] for volume in spec.get("volumes") or []]
        assert len(volumes) == len(set(volumes)), f"duplicate volumes {volumes}"
        claims = document["spec"].get("volumeClaimTemplates", []) if document["kind"] == "StatefulSet" else []
        volumes += [claim["metadata"]["name"] for claim in claims]
        containers = spec.get("initContainers", []) + spec["containers"]
        names = [c["name"] for c in containers]
        assert len(names) == len(set(names)), f"duplicate containers {names}"
        for container in containers:
            paths = [mount["mountPath"] for mount in container.get("volumeMounts", [])]
            assert len(paths) == len(set(paths)), f"{container['name']} mounts a path twice: {paths}"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{container['name']} mounts undefined {mount['name']}"


def proxy_of(spec: dict[str, Any], name: str = "istio-proxy") -> dict[str, Any]:
    found = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name]
    assert len(found) == 1, [c["name"] for c in spec["containers"]]
    return found[0]


def check_proxy(
    spec: dict[str, Any], image: str = IMAGE.reference, name: str = "istio-proxy", gid: int | None = 1337
) -> None:
    proxy = proxy_of(spec, name)
    assert proxy["image"] == image
    context = proxy["securityContext"]
    assert context["privileged"] is True and context["allowPrivilegeEscalation"] is True
    assert context["runAsUser"] == 0 and context["runAsNonRoot"] is False
    assert context.get("runAsGroup") == gid
    assert "SYS_ADMIN" in context["capabilities"]["add"]
    mounts = {mount["mountPath"]: mount["name"] for mount in proxy["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes[mounts["/lib/modules"]]["hostPath"] == {"path": "/lib/modules", "type": "Directory"}
    assert volumes[mounts["/usr/src"]]["hostPath"] == {"path": "/usr/src", "type": "Directory"}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {}


# Lines of a proxy container that was there already which inject may have to change.
PROXY_LINE = re.compile(
    r'\s*"?(image|securityContext|privileged|allowPrivilegeEscalation|runAsUser|runAsNonRoot|runAsGroup'
    r'|readOnlyRootFilesystem)"?: '
)


def check_minimal(before: str, after: str) -> None:
    """The output is the input with characters inserted: whole lines, or inside a line where a flow list or
    one-line JSON grows within its brackets or a JSON line gains its comma. The only exception are lines of
    the proxy container that was there already (its image, privileges, user and group)."""
    kept = "".join(
        line
        for line in before.splitlines(keepends=True)
        if not PROXY_LINE.match(line) and "{name: istio-proxy," not in line
    )
    assert _gains_only(kept, after), "the output does not keep every character of the input"


def _gains_only(old: str, new: str) -> bool:
    """`new` is `old` with characters inserted (none taken away)."""
    rest = iter(new)
    return all(char in rest for char in old)


def marker_of(document: dict[str, Any]) -> dict[str, Any]:
    return json.loads(template(document)["metadata"]["annotations"][MARKER])  # type: ignore[no-any-return]


# --- every manifest ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sidecar", "annotation"])
@pytest.mark.parametrize("name", SOURCES)
def test_golden_valid_minimal_idempotent_removable(name: str, mode: str) -> None:
    source = read(name)
    result = inject.inject(
        source, image=IMAGE, target=ISTIO, annotation_only=mode == "annotation", source=name
    )
    golden = GOLDEN / f"{Path(name).stem}.{mode}{Path(name).suffix}"
    if os.environ.get("HOOKBUILD_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_bytes(result.text.encode("utf-8"))
    assert result.text == golden.read_bytes().decode("utf-8"), (
        f"differs from {golden} (HOOKBUILD_UPDATE_GOLDEN=1 rewrites it)"
    )
    check_valid(result.text)
    check_minimal(source, result.text)
    again = inject.inject(result.text, image=IMAGE, target=ISTIO, annotation_only=mode == "annotation")
    assert again.text == result.text and not again.changed
    assert inject.remove(result.text).text == source


@pytest.mark.parametrize("name", SOURCES)
def test_every_injected_workload_gets_the_proxy_and_nothing_else_changes(name: str) -> None:
    source = read(name)
    result = inject.inject(source, image=IMAGE, target=ISTIO)
    before, after = documents(source), documents(result.text)
    patched = 0
    for old, new in zip(before, after, strict=True):
        if new["kind"] not in WORKLOAD_KINDS or old == new:
            continue
        patched += 1
        spec, was = pod_spec(new), pod_spec(old)
        check_proxy(spec, gid=2000 if name == "native-sidecar.yaml" else 1337)
        # The app's own containers and volumes are untouched.
        for key in ("containers", "initContainers", "volumes"):
            mine = [c for c in spec.get(key) or [] if c["name"] != "istio-proxy"]
            assert mine[: len(was.get(key) or [])] == [
                c for c in was.get(key) or [] if c["name"] != "istio-proxy"
            ]
    assert patched == sum(w.action == "patched" for w in result.workloads) > 0


def test_json_in_json_out() -> None:
    for name in ("deployment.json", "list.json"):
        result = inject.inject(read(name), image=IMAGE, target=ISTIO)
        data = json.loads(result.text)
        spec = pod_spec(data["items"][0] if data["kind"] == "List" else data)
        check_proxy(spec)
    # The pretty-printed one keeps its 4-space style: every new line is indented like its neighbours.
    text = inject.inject(read("deployment.json"), image=IMAGE, target=ISTIO).text
    assert (
        '                "volumes": [\n                    {\n                        "name": "hookbuild-'
        in text
    )


def test_crlf_stays_crlf() -> None:
    source = read("crlf.yaml")
    assert "\r\n" in source
    result = inject.inject(source, image=IMAGE, target=ISTIO).text
    assert result.count("\n") == result.count("\r\n") > source.count("\r\n")


def test_comments_nulls_anchors_quoting_survive() -> None:
    source = read("microservices.yaml")
    result = inject.inject(source, image=IMAGE, target=ISTIO).text
    for kept in (
        "rollingUpdate: null",
        "matchLabels: &frontend-labels",
        "labels: *frontend-labels",
        "          # - name: ENABLE_PROFILER",
        'path: "/_healthz"',
        'value: "8080"',
    ):
        assert kept in result
    # Each list keeps its own dash offset: the frontend's are indented, redis-cart's are not.
    assert "        - name: istio-proxy\n" in result and "      - name: istio-proxy\n" in result


def test_app_volume_named_tmp_is_neither_shared_nor_touched() -> None:
    result = inject.inject(read("flow.yaml"), image=IMAGE, target=ISTIO)
    spec = pod_spec(documents(result.text)[0])
    assert spec["volumes"][0] == {"name": "tmp", "emptyDir": {"medium": "Memory"}}
    assert {m["name"] for m in proxy_of(spec)["volumeMounts"]} == {
        "hookbuild-lib-modules",
        "hookbuild-usr-src",
        "hookbuild-tmp",
    }
    assert spec["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert (
        "      volumes: [{name: tmp, emptyDir: {medium: Memory}}, {name: hookbuild-lib-modules,"
        in result.text
    )


def test_replication_controller_and_cronjob_are_workloads() -> None:
    kinds = {w.kind for w in inject.inject(read("flow.yaml"), image=IMAGE, target=ISTIO).workloads}
    assert kinds == {"ReplicationController", "Pod"}
    result = inject.inject(read("crlf.yaml"), image=IMAGE, target=ISTIO)
    cronjob = documents(result.text)[0]
    check_proxy(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    assert "template" not in cronjob["spec"]


def test_platform_kinds() -> None:
    result = inject.inject(read("platform.yaml"), image=IMAGE, target=ISTIO)
    assert {w.kind for w in result.workloads} == {
        "StatefulSet",
        "DaemonSet",
        "CronJob",
        "Job",
        "ReplicaSet",
        "Pod",
    }


def test_other_group_with_a_workload_kind_is_not_touched() -> None:
    text = DEPLOYMENT + "---\n" + DEPLOYMENT.replace("apps/v1", "example.com/v1")
    result = inject.inject(text, image=IMAGE, target=ISTIO)
    assert len(result.workloads) == 1
    assert result.text.endswith("---\n" + DEPLOYMENT.replace("apps/v1", "example.com/v1"))


# --- Istio's policy -------------------------------------------------------------------------------------


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


def test_pods_istio_skips_are_left_byte_identical_with_one_warning_each(captured: Captured) -> None:
    source = read("opted-out.yaml")
    result = inject.inject(source, image=IMAGE, target=ISTIO, source="opted-out.yaml")
    reasons = {w.name: w.reason for w in result.workloads if w.action == "skipped"}
    assert reasons == {
        "prometheus": 'label sidecar.istio.io/inject: "false"',
        "kiali": 'annotation sidecar.istio.io/inject: "false"',
        "spire-agent": "hostNetwork: true",
        "coredns-extra": "namespace kube-system",
    }
    assert [w.name for w in result.workloads if w.action == "patched"] == ["reviews"]  # its label says true
    old, new = source.split("\n---\n"), result.text.split("\n---\n")
    assert old[:4] == new[:4] and old[4] != new[4]
    skips = [m for m in captured.messages if "skipped" in m]
    assert len(skips) == 4
    assert any(
        "Deployment istio-system/prometheus" in m and 'label sidecar.istio.io/inject: "false"' in m
        for m in skips
    )
    assert all("--force" in m for m in skips)


def test_force_injects_what_istio_skips(captured: Captured) -> None:
    result = inject.inject(read("opted-out.yaml"), image=IMAGE, target=ISTIO, force=True)
    assert all(w.action == "patched" for w in result.workloads)
    assert not [m for m in captured.messages if "skipped" in m]
    check_valid(result.text)


def test_native_sidecar_is_patched_in_place_keeping_the_mesh_gid() -> None:
    result = inject.inject(read("native-sidecar.yaml"), image=IMAGE, target=ISTIO)
    spec = pod_spec(documents(result.text)[0])
    assert [c["name"] for c in spec["containers"]] == ["ratings"]
    native = spec["initContainers"][0]
    assert native["name"] == "istio-proxy" and native["restartPolicy"] == "Always"
    check_proxy(spec, gid=2000)  # the manifest's GID: this mesh's proxy GID
    assert result.workloads[0].native
    assert "runAsGroup: 2000   # this mesh's proxy GID" in result.text


def test_a_gid_given_on_the_command_line_wins() -> None:
    target = targets.for_release("istio", gid=4242)
    spec = pod_spec(documents(inject.inject(read("native-sidecar.yaml"), image=IMAGE, target=target).text)[0])
    check_proxy(spec, gid=4242)
    spec = pod_spec(documents(inject.inject(DEPLOYMENT, image=IMAGE, target=target).text)[0])
    check_proxy(spec, gid=4242)


def test_existing_sidecar_is_updated_not_duplicated() -> None:
    result = inject.inject(read("seed-sidecar.yaml"), image=IMAGE, target=ISTIO)
    spec = pod_spec(documents(result.text)[0])
    check_proxy(spec)
    # Its own volumes at the tracer's paths are what the tracer needs: they are kept, nothing is added.
    assert [v["name"] for v in spec["volumes"]] == ["tmp", "lib-modules", "linux-headers"]
    assert proxy_of(spec)["securityContext"]["capabilities"]["add"] == ["SYS_ADMIN"]


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
    result = inject.inject(source, image=IMAGE, target=ISTIO)
    spec = pod_spec(documents(result.text)[0])
    check_proxy(spec)
    assert proxy_of(spec)["securityContext"]["capabilities"] == {
        "add": ["NET_ADMIN", "SYS_ADMIN"],
        "drop": ["ALL"],
    }
    assert "  # the API would reject this with privileged" in result.text
    assert "            add: [NET_ADMIN, SYS_ADMIN]\n" in result.text
    check_valid(result.text)
    assert inject.remove(result.text).text == source


# --- other variants ---------------------------------------------------------------------------------------


def test_cilium_release_patches_the_cilium_envoy_daemonset() -> None:
    source = read("cilium.yaml")
    result = inject.inject(source, image=CILIUM, target=targets.for_release("cilium"))
    assert [(w.name, w.action) for w in result.workloads] == [
        ("cilium-envoy", "patched"),
        ("cilium-operator", "skipped"),
    ]
    daemonset = documents(result.text)[0]
    check_proxy(pod_spec(daemonset), image=CILIUM.reference, name="cilium-envoy", gid=None)
    assert pod_spec(daemonset)["hostNetwork"] is True  # Istio's policy is not Cilium's
    check_valid(result.text)
    check_minimal(source, result.text)
    assert inject.remove(result.text).text == source


def test_cilium_release_is_refused_without_cilium_envoy() -> None:
    with pytest.raises(InjectError, match="no workload has a cilium-envoy container") as caught:
        inject.inject(read("microservices.yaml"), image=CILIUM, target=targets.for_release("cilium"))
    assert "cilium-envoy DaemonSet" in (caught.value.hint or "")


def test_plain_envoy_goes_into_the_named_container() -> None:
    source = read("envoy-gateway.yaml")
    result = inject.inject(source, image=ENVOY, target=targets.for_release("envoy", container="envoy"))
    check_proxy(pod_spec(documents(result.text)[0]), image=ENVOY.reference, name="envoy", gid=None)
    with pytest.raises(UsageError, match="no container they go into by default"):
        targets.for_release("envoy")
    with pytest.raises(InjectError, match="no workload has a container named 'edge'"):
        inject.inject(source, image=ENVOY, target=targets.for_release("envoy", container="edge"))


# --- remove -----------------------------------------------------------------------------------------------


def test_reinjecting_another_release_changes_the_image_and_remove_restores_the_original() -> None:
    source = read("seed-sidecar.yaml")
    once = inject.inject(source, image=TAGGED, target=ISTIO).text
    twice = inject.inject(once, image=IMAGE, target=ISTIO).text
    diff = [line for line in difflib.ndiff(once.splitlines(), twice.splitlines()) if line[:1] in "+-"]
    assert len(diff) == 4  # the image line and the marker line, each out and in
    marker = marker_of(documents(twice)[0])
    assert marker["release"] == "istio@12.0"
    assert marker["replaced"]["/spec/containers/istio-proxy/image"] == "docker.io/someuser/custom-istio:11.8"
    assert inject.remove(twice).text == source


def test_remove_without_marker_changes_nothing() -> None:
    result = inject.remove(read("bookinfo.yaml"))
    assert result.text == read("bookinfo.yaml") and not result.changed


def test_unreadable_marker_is_one_error() -> None:
    injected = inject.inject(DEPLOYMENT, image=IMAGE, target=ISTIO).text
    broken = re.sub(r"(hookbuild.io/injected: ).*", r"\1'{not json'", injected)
    with pytest.raises(InjectError, match=r"unreadable hookbuild\.io/injected"):
        inject.remove(broken)


# --- notices ----------------------------------------------------------------------------------------------


def test_pod_security_and_gid_notice_once_per_run(captured: Captured) -> None:
    inject.inject(read("bookinfo.yaml"), image=IMAGE, target=ISTIO)
    notices = [m for m in captured.messages if "Baseline" in m]
    assert len(notices) == 1
    assert "privileged" in notices[0] and "SYS_ADMIN" in notices[0] and "hostPath" in notices[0]
    assert "runAsGroup 1337" in notices[0] and "GID" in notices[0]
    assert not [m for m in captured.messages if "digest" in m or "loopback" in m]


def test_loopback_registry_is_warned_about(captured: Captured) -> None:
    inject.inject(DEPLOYMENT, image=LOCAL, target=ISTIO)
    assert len([m for m in captured.messages if "loopback registry (127.0.0.1:5000)" in m]) == 1
    for reference, loopback in [
        ("localhost:5000/a/b:1", True),
        ("[::1]:5000/a/b:1", True),
        ("docker.io/a/b:1", False),
        ("a/b:1", False),
        ("10.0.0.1:5000/a:1", False),
    ]:
        assert SidecarImage(reference=reference, release="istio@1.0", pinned=False).loopback() is loopback


def test_tag_without_digest_is_used_and_said_once(captured: Captured) -> None:
    result = inject.inject(read("bookinfo.yaml"), image=TAGGED, target=ISTIO, annotation_only=True)
    assert f"{PROXY_IMAGE_ANNOTATION}: {TAGGED.reference}" in result.text
    assert len([m for m in captured.messages if "no digest" in m]) == 1
    assert not [m for m in captured.messages if "Baseline" in m]  # annotation only: no privileges


def test_image_reference_pins_by_digest() -> None:
    assert (
        image_reference("127.0.0.1:5000/ns/istio-proxy:12.0", DIGEST)
        == f"127.0.0.1:5000/ns/istio-proxy@{DIGEST}"
    )
    assert (
        image_reference("127.0.0.1:5000/ns/istio-proxy", DIGEST) == f"127.0.0.1:5000/ns/istio-proxy@{DIGEST}"
    )
    assert image_reference("docker.io/u/p:1.0", None) == "docker.io/u/p:1.0"
    with pytest.raises(InjectError, match="invalid image digest"):
        image_reference("docker.io/u/p:1.0", "sha256:xyz")


# --- errors -----------------------------------------------------------------------------------------------

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


def test_hookbuild_volume_name_taken_by_another_definition_is_an_error() -> None:
    text = (
        DEPLOYMENT
        + "      volumes:\n      - name: hookbuild-tmp\n        hostPath:\n          path: /var/tmp\n"
    )
    with pytest.raises(InjectError) as caught:
        inject.inject(text, image=IMAGE, target=ISTIO)
    assert "Deployment shop/web" in caught.value.message and "volume 'hookbuild-tmp'" in caught.value.message
    assert "never overwrites" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("kind: Deployment\nmetadata: {name: x\n", r"invalid YAML at line 3"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\n\tbad: [\n", r"invalid YAML at line 5"),
        ("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n", "no workloads found"),
        ("", "no workloads found"),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {}\n", "Deployment x.*template"),
        (DEPLOYMENT.split("      containers:")[0] + "      containers: []\n", "shop/web.*no containers"),
        (DEPLOYMENT.replace("      - name: web\n", "      - image: x\n        name: [web]\n"), "has no name"),
    ],
)
def test_bad_input_is_one_clear_error(text: str, match: str) -> None:
    with pytest.raises(InjectError, match=match):
        inject.inject(text, image=IMAGE, target=ISTIO)


# --- idempotence on generated pod templates ---------------------------------------------------------------

NAMES = st.sampled_from(["app", "web", "worker", "istio-proxy"])
OUR_VOLUMES = {
    "hookbuild-tmp": {"emptyDir": {}},
    "hookbuild-lib-modules": {"hostPath": {"path": "/lib/modules", "type": "Directory"}},
    "hookbuild-usr-src": {"hostPath": {"path": "/usr/src", "type": "Directory"}},
}
USER_VOLUMES = {"tmp": {"emptyDir": {"medium": "Memory"}}, "config": {"configMap": {"name": "app-config"}}}
PATHS = {"hookbuild-tmp": "/tmp", "hookbuild-lib-modules": "/lib/modules", "hookbuild-usr-src": "/usr/src"}


@st.composite
def pod_templates(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    if names == ["istio-proxy"]:
        names.append("app")
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
                        "runAsGroup": st.sampled_from([1337, 3000]),
                        "capabilities": st.fixed_dictionaries(
                            {"add": st.lists(st.sampled_from(["NET_ADMIN", "SYS_ADMIN"]), unique=True)}
                        ),
                    },
                )
            )
        mounts = draw(st.lists(st.sampled_from(volume_names), unique=True)) if volume_names else []
        if mounts and name != "istio-proxy":
            mounts = [m for m in mounts if m not in OUR_VOLUMES]
        if mounts:
            container["volumeMounts"] = [{"name": m, "mountPath": PATHS.get(m, f"/srv/{m}")} for m in mounts]
        containers.append(container)
    spec: dict[str, Any] = {"containers": containers}
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": {"labels": {"app": "generated"}}, "spec": spec}


def wrap(kind: str, pod: dict[str, Any]) -> dict[str, Any]:
    head: dict[str, Any] = {"metadata": {"name": "generated"}}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", **head, "spec": pod["spec"]}
    job = {"template": {**pod, "spec": {**pod["spec"], "restartPolicy": "Never"}}}
    if kind == "CronJob":
        return {
            "apiVersion": "batch/v1",
            "kind": kind,
            **head,
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": job}},
        }
    if kind == "Job":
        return {"apiVersion": "batch/v1", "kind": kind, **head, "spec": job}
    if kind == "ReplicationController":
        return {
            "apiVersion": "v1",
            "kind": kind,
            **head,
            "spec": {"selector": {"app": "generated"}, "template": pod},
        }
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "generated"}}, "template": pod}
    if kind == "StatefulSet":
        spec["serviceName"] = "generated"
    return {"apiVersion": "apps/v1", "kind": kind, **head, "spec": spec}


@pytest.mark.slow  # hypothesis: many generated manifests
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pod=pod_templates(),
    kind=st.sampled_from(
        [kind for kind in WORKLOAD_KINDS if kind != "DeploymentConfig"]
    ),  # OpenShift: no schema
    style=st.sampled_from(["block-0", "block-2", "flow", "json"]),
)
def test_inject_is_valid_idempotent_minimal_and_removable(pod: dict[str, Any], kind: str, style: str) -> None:
    document = wrap(kind, pod)
    if style == "json":
        text = json.dumps(document, indent=2) + "\n"
    else:
        from ruamel.yaml import YAML

        dumper = YAML()
        if style == "flow":
            dumper.default_flow_style = None  # innermost collections in flow style
        offset = 0 if style == "block-0" else 2
        dumper.indent(mapping=2, sequence=offset + 2, offset=offset)
        stream = io.StringIO()
        dumper.dump(document, stream)
        text = stream.getvalue()
    once = inject.inject(text, image=IMAGE, target=ISTIO)
    twice = inject.inject(once.text, image=IMAGE, target=ISTIO)
    assert twice.text == once.text and not twice.changed
    gid = (
        pod["spec"]["containers"]
        and next(
            (
                c.get("securityContext", {}).get("runAsGroup")
                for c in pod["spec"]["containers"]
                if c["name"] == "istio-proxy"
            ),
            None,
        )
    ) or 1337
    check_proxy(pod_spec(documents(once.text)[0]), gid=gid)
    check_valid(once.text)
    check_minimal(text, once.text)
    assert inject.remove(once.text).text == text


# --- the task -----------------------------------------------------------------------------------------------

VERSIONS = f"""\
schema = 1

[variants.istio]
title = "Modified Istio proxy"
image = "registry.example.com/hookbuild/istio-proxy"

[variants.cilium]
title = "Cilium Envoy modified"
image = "registry.example.com/hookbuild/cilium-envoy"

[[istio]]
version = "11.8"
summary = "The working version of 11.7 (recorded before hookbuild: a tag, no digest)"
image = "docker.io/someuser/custom-istio:11.8"

[[istio]]
version = "12.0"
summary = "add linux-tools to support perf"

[istio.release]
image = "registry.example.com/hookbuild/istio-proxy:12.0"
digest = "{DIGEST}"
released_at = 2026-08-01T12:00:00Z
envoy_commit = "{"2" * 40}"
binary_sha256 = "{"3" * 64}"
inputs_key = "test"
base_image = "docker.io/istio/proxyv2:1.22.0"
dockerfile = "dockerfiles/custom_istio.dockerfile"

[[cilium]]
version = "2.2"
summary = "hookpoints in cilium's Envoy"
image = "registry.example.com/hookbuild/cilium-envoy:2.2"
"""


@pytest.fixture
def versions(tmp_path: Path) -> Path:
    path = tmp_path / "versions.toml"
    path.write_text(VERSIONS)
    return path


def task(versions: Path, *args: str, stdin: str = "") -> Any:
    return run_task("inject", *args, "--versions-file", str(versions), stdin=stdin)


def test_task_reads_stdin_writes_stdout(versions: Path) -> None:
    ran = task(versions, "-r", "istio@12.0", stdin=read("bookinfo.yaml"))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == (GOLDEN / "bookinfo.sidecar.yaml").read_text()
    assert ran.stderr.count("Baseline") == 1


def test_task_keeps_crlf_through_stdin_and_files(versions: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(INVOKE), "inject", "-r", "istio@12.0", "--versions-file", str(versions)],
        input=(MANIFESTS / "crlf.yaml").read_bytes(),
        capture_output=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (GOLDEN / "crlf.sidecar.yaml").read_bytes()
    out = tmp_path / "out.yaml"
    ran = task(versions, "-r", "istio@12.0", "-f", str(MANIFESTS / "crlf.yaml"), "-o", str(out))
    assert ran.returncode == 0, ran.stderr
    assert out.read_bytes() == (GOLDEN / "crlf.sidecar.yaml").read_bytes()


def test_task_check_json_and_remove(versions: Path, tmp_path: Path) -> None:
    source = MANIFESTS / "opted-out.yaml"
    ran = task(versions, "-r", "istio@12.0", "-f", str(source), "--check", "--json")
    assert ran.returncode == 1
    assert ran.stderr.strip().splitlines()[-1] == (
        f"{source} would change: 1 workload(s); run without --check to write it"
    )
    report = json.loads(ran.stdout)
    assert (
        report["changed"] is True
        and report["image"] == f"registry.example.com/hookbuild/istio-proxy@{DIGEST}"
    )
    actions = {w["name"]: (w["action"], w["reason"]) for w in report["workloads"]}
    assert actions["reviews"] == ("patched", None)
    assert actions["spire-agent"] == ("skipped", "hostNetwork: true")
    injected = tmp_path / "injected.yaml"
    assert task(versions, "-r", "istio@12.0", "-f", str(source), "-o", str(injected)).returncode == 0
    ran = task(versions, "-r", "istio@12.0", "-f", str(injected), "--check")
    assert ran.returncode == 0 and ran.stdout == "", ran.stderr
    restored = tmp_path / "restored.yaml"
    ran = task(versions, "--remove", "-f", str(injected), "-o", str(restored))
    assert ran.returncode == 0, ran.stderr
    assert restored.read_bytes() == source.read_bytes()


def test_task_flags_force_container_gid(versions: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    ran = task(
        versions,
        "-r",
        "istio@12.0",
        "-f",
        str(MANIFESTS / "opted-out.yaml"),
        "-o",
        str(out),
        "--force",
        "--proxy-gid",
        "4242",
    )
    assert ran.returncode == 0, ran.stderr
    for document in documents(out.read_text()):
        check_proxy(
            pod_spec(document), image=f"registry.example.com/hookbuild/istio-proxy@{DIGEST}", gid=4242
        )
    ran = task(versions, "-r", "cilium@2.2", "-f", str(MANIFESTS / "cilium.yaml"), "--json")
    assert ran.returncode == 0, ran.stderr
    assert [w["action"] for w in json.loads(ran.stdout)["workloads"]] == ["patched", "skipped"]
    assert "no digest" in ran.stderr


@pytest.mark.parametrize(
    ("args", "stdin_text", "code", "match"),
    [
        (["-r", "istio@13.0"], None, 2, r"^error: istio@13.0 is not in .*versions.toml"),
        (["-r", "envoy@1.0"], None, 2, r"^error: unknown variant 'envoy'"),
        (["-r", "istio@12"], None, 2, r"^error: invalid version '12'"),
        (["-f", "missing.yaml"], None, 1, r"^error: manifest missing.yaml not found"),
        (["-f", "-"], "a: [\n", 1, r"^error: <stdin>: invalid YAML at line 2"),
        (["-f", "-"], "apiVersion: v1\nkind: Service\n", 1, r"^error: <stdin>: no workloads"),
        (["-r", "cilium@2.2"], None, 1, r"^error: .*bookinfo.yaml: no workload has a cilium-envoy container"),
        (["-r", "cilium@2.2", "--annotation-only"], None, 2, r"^error: --annotation-only sets Istio's"),
        (["-r", "istio@12.0", "--proxy-gid", "0"], None, 2, r"^error: invalid proxy GID 0"),
        (["-r", "istio@12.0", "--proxy-gid", "x"], None, 2, r"^error: invalid proxy GID 'x'"),
        (["-r", ""], None, 2, r"^error: inject needs --release"),
    ],
)
def test_task_errors_are_one_line(
    versions: Path, args: list[str], stdin_text: str | None, code: int, match: str
) -> None:
    if "-r" not in args:
        args = [*args, "-r", "istio@12.0"]
    if "-f" not in args:
        args = [*args, "-f", str(MANIFESTS / "bookinfo.yaml")]
    ran = task(versions, *args, stdin=stdin_text or "")
    assert ran.returncode == code, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert re.search(match, lines[0]), lines[0]
    assert ran.stdout == ""


def test_task_missing_record_is_a_record_error(tmp_path: Path) -> None:
    ran = run_task(
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


def test_an_edit_into_what_an_alias_shares_is_refused() -> None:
    with pytest.raises(InjectError, match="shared through a YAML alias"):
        inject.inject(
            "apiVersion: v1\nkind: List\nitems:\n- &pod\n  apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n"
            "  spec:\n    containers:\n    - {name: a, image: nginx}\n- *pod\n",
            image=IMAGE,
            target=ISTIO,
        )
    # Labels shared with the selector through an alias are read, never written: that injects fine.
    assert inject.inject(read("microservices.yaml"), image=IMAGE, target=ISTIO).changed
    # A pod spec whose last entry is an alias: nothing can be placed after it; refused, not misplaced.
    last_alias = DEPLOYMENT.replace("  selector:\n", "  selector: &sel\n").replace(
        "      - name: web\n        image: docker.io/library/nginx:1.27\n",
        "      - name: web\n        image: docker.io/library/nginx:1.27\n      nodeSelector: *sel\n",
    )
    with pytest.raises(InjectError, match="shared through a YAML alias"):
        inject.inject(last_alias, image=IMAGE, target=ISTIO)


# --- the image inject puts in: the tracer is in it ------------------------------------------------------------


@pytest.mark.docker
def test_istio_image_carries_bpftrace(docker_client: Any, tmp_path: Path) -> None:
    """The istio Dockerfile on the sample proxyv2 (Debian, as Istio's is Ubuntu): `bpftrace` runs in it, so
    `trace_all.sh -m exec` can trace inside the sidecar."""
    import uuid

    from hookbuild.images import engine

    context = istio_image_context(tmp_path / "context", "BEGIN { exit(); }\n")
    lines: list[str] = []
    image = engine.build(
        docker_client,
        context=context,
        dockerfile="Dockerfile",
        buildargs=SAMPLE_ISTIO_BUILDARGS,
        labels={"io.hookbuild.test": f"cluster-{uuid.uuid4().hex[:8]}"},
        on_line=lines.append,
    )
    try:
        output = docker_client.containers.run(image, entrypoint=["bpftrace", "--version"], remove=True)
        assert output.decode().startswith("bpftrace v"), output
        engine.check(docker_client, image, ("test", "-f", "/usr/local/share/hookbuild/trace.bt"))
    finally:
        docker_client.images.remove(image, force=True)


def test_a_last_line_without_line_break_gets_one_and_remove_takes_it_back() -> None:
    source = DEPLOYMENT.rstrip("\n")
    result = inject.inject(source, image=IMAGE, target=ISTIO).text
    assert "        image: docker.io/library/nginx:1.27\n      - name: istio-proxy\n" in result
    assert "\n\n" not in result and result.endswith("emptyDir: {}\n")
    assert inject.inject(result, image=IMAGE, target=ISTIO).text == result
    assert inject.remove(result).text == source


def test_openshift_deployment_config_is_a_workload() -> None:
    text = DEPLOYMENT.replace("apps/v1", "apps.openshift.io/v1").replace(
        "kind: Deployment", "kind: DeploymentConfig"
    )
    assert [w.kind for w in inject.inject(text, image=IMAGE, target=ISTIO).workloads] == ["DeploymentConfig"]


def test_null_lists_and_mappings_are_filled_and_emptied_again() -> None:
    source = DEPLOYMENT.replace(
        "      containers:\n",
        "      containers:\n      - name: istio-proxy\n        securityContext:\n          capabilities:\n"
        "            add:\n        volumeMounts: null\n",
    ).replace("    metadata:\n      labels:", "    metadata:\n      annotations:\n      labels:")
    result = inject.inject(source, image=IMAGE, target=ISTIO).text
    check_proxy(pod_spec(documents(result)[0]))
    check_valid(result)
    assert inject.remove(result).text == source
