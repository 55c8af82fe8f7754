"""Put a released proxy into a user's Kubernetes manifests (the seed's *Inject Customized Container*), and
take it out again.

The manifest is parsed once for positions and edited as text (`yamltext`): the output differs from the
input by added lines only, except lines of an existing proxy container that must change, so a reviewer's
diff shows exactly what hookbuild did. Pods Istio would not inject are left byte for byte as they are, each
named in one warning. The result is reparsed and checked before anything is written, and injecting it
again changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hookbuild.cluster import policy
from hookbuild.cluster.image import SidecarImage
from hookbuild.cluster.patch import (
    MARKER,
    PROXY_IMAGE_ANNOTATION,
    Marker,
    Patcher,
    annotate,
    sidecar,
    take_out,
)
from hookbuild.cluster.targets import CAPABILITY, VOLUMES, Target
from hookbuild.cluster.workloads import WORKLOAD_KINDS, Found, find, get, item, near, text
from hookbuild.cluster.yamltext import Editor, Shared, compose, layout
from hookbuild.errors import InjectError, UsageError

log = logging.getLogger("hookbuild")


@dataclass(frozen=True, kw_only=True)
class Workload:
    """What happened to one workload."""

    kind: str
    name: str
    namespace: str | None
    document: int
    action: str  # patched | unchanged | skipped | removed
    reason: str | None = None  # why it was skipped
    container: str | None = None
    native: bool = False  # the container is a native sidecar (an init container)

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name} (document {self.document})"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "document": self.document,
            "action": self.action,
            "reason": self.reason,
            "container": self.container,
            "native": self.native,
        }

    @property
    def changed(self) -> bool:
        return self.action in ("patched", "removed")


@dataclass(frozen=True, kw_only=True)
class Injected:
    text: str
    workloads: tuple[Workload, ...]

    @property
    def changed(self) -> bool:
        return any(workload.changed for workload in self.workloads)


def _workload(found: Found, action: str, **details: Any) -> Workload:
    return Workload(
        kind=found.kind,
        name=found.name,
        namespace=found.namespace,
        document=found.document,
        action=action,
        **details,
    )


def inject(
    text: str,
    *,
    image: SidecarImage,
    target: Target,
    annotation_only: bool = False,
    force: bool = False,
    source: str = "<stdin>",
) -> Injected:
    """Put `image` into the `target` container of every workload in a YAML or JSON stream."""
    if annotation_only:
        _check_annotation(image, target)
    editor = Editor(text)
    workloads: list[Workload] = []
    for number, root in enumerate(compose(text, source), start=1):
        editor.share(root)
        for found in find_workloads(root, number, source):
            skip = policy.skip_reason(found) if target.mesh and not force else None
            if skip is not None:
                workloads.append(_workload(found, "skipped", reason=skip))
                continue
            where = f"{source}: {found.describe()}"
            marker = Marker(release=image.release, container=None if annotation_only else target.container)
            patcher = Patcher(editor, layout(root, near(found.template), editor.newline), marker, where)
            try:
                workloads.append(_patch(patcher, found, image, target, annotation_only))
            except Shared as exc:
                raise InjectError(
                    f"{where}: what inject must change (at {exc}) is shared through a YAML alias, so changing "
                    "it would change every place that uses it",
                    hint="write the aliased part out in full where this workload uses it",
                ) from None
    _refuse_nothing_to_do(workloads, target, source)
    result = editor.result()
    if result != text:
        _verify(result, image, target, workloads, annotation_only, source)
    _notify(workloads, image, target, annotation_only, source)
    return Injected(text=result, workloads=tuple(workloads))


def _patch(p: Patcher, found: Found, image: SidecarImage, target: Target, annotation_only: bool) -> Workload:
    if annotation_only:
        annotate(p, found.template, {PROXY_IMAGE_ANNOTATION: image.reference})
        return _workload(found, "patched" if p.changed else "unchanged", container=None)
    outcome = sidecar(p, found.template, target, image.reference)
    if outcome is None:
        return _workload(found, "skipped", reason=f"no container {target.container}")
    annotate(p, found.template, {})
    action = "patched" if p.changed else "unchanged"
    return _workload(found, action, container=target.container, native=outcome.native)


def _check_annotation(image: SidecarImage, target: Target) -> None:
    if not target.mesh:
        raise UsageError(
            f"--annotation-only sets Istio's {PROXY_IMAGE_ANNOTATION}, and {image.release} is no Istio release",
            hint="inject it without --annotation-only",
        )
    if "/" not in image.reference:
        raise InjectError(
            f"release {image.release}: image {image.reference!r} is not a full reference",
            hint=f"Istio honours {PROXY_IMAGE_ANNOTATION} only when its value contains '/' "
            "(registry/repository:tag or @digest); record the release with its registry",
        )


def find_workloads(root: Any, number: int, source: str) -> list[Found]:
    try:
        return list(find(root, number))
    except InjectError as exc:
        raise InjectError(f"{source}: {exc.message}", hint=exc.hint) from None


def remove(text: str, *, source: str = "<stdin>") -> Injected:
    """Take every injection recorded by a marker annotation back out, to the bytes it was made from."""
    editor = Editor(text)
    workloads: list[Workload] = []
    for number, root in enumerate(compose(text, source), start=1):
        for found in find_workloads(root, number, source):
            where = f"{source}: {found.describe()}"
            try:
                release = take_out(editor, found.template, where)
            except Shared as exc:
                raise InjectError(
                    f"{where}: what --remove must take out (at {exc}) is shared through a YAML alias",
                    hint="write the aliased part out in full, or take the injection out by hand",
                ) from None
            action = "unchanged" if release is None else "removed"
            workloads.append(_workload(found, action, reason=None if release else f"no {MARKER} annotation"))
    if not workloads:
        raise InjectError(
            f"{source}: no workloads found", hint=f"--remove looks at {', '.join(WORKLOAD_KINDS)} manifests"
        )
    result = editor.result()
    compose(result, source)  # still valid YAML
    return Injected(text=result, workloads=tuple(workloads))


def _refuse_nothing_to_do(workloads: list[Workload], target: Target, source: str) -> None:
    if not workloads:
        raise InjectError(
            f"{source}: no workloads found",
            hint=f"inject rewrites {', '.join(WORKLOAD_KINDS)} manifests; other kinds pass through unchanged",
        )
    if not target.create and all(w.action == "skipped" for w in workloads):
        if target.variant == "cilium" and target.container == "cilium-envoy":
            raise InjectError(
                f"{source}: no workload has a cilium-envoy container",
                hint="a cilium release replaces the Envoy of Cilium's cilium-envoy DaemonSet: inject it into "
                "the manifest that deploys Cilium (e.g. `helm template cilium cilium/cilium`)",
            )
        raise InjectError(
            f"{source}: no workload has a container named {target.container!r}",
            hint="name the Envoy container with --container NAME",
        )


def _notify(
    workloads: list[Workload], image: SidecarImage, target: Target, annotation_only: bool, source: str
) -> None:
    for workload in workloads:
        if workload.action == "skipped" and target.mesh:
            log.warning(
                "%s: %s skipped, Istio never injects it: %s (--force injects it anyway)",
                source,
                workload.describe(),
                workload.reason,
            )
    patched = [w for w in workloads if w.action == "patched"]
    if patched and not annotation_only:
        log.warning("%s", pod_security_notice(target))
    if not image.pinned:
        log.warning(
            "release %s was recorded before hookbuild and has no digest: using the tag %s, which can move",
            image.release,
            image.reference,
        )
    if image.loopback():
        log.warning(
            "image %s is on a loopback registry (%s): no node of a cluster can pull it from there; push the "
            "release to a registry the cluster reaches (setting `registry`, HOOKBUILD_REGISTRY)",
            image.reference,
            image.registry(),
        )


def pod_security_notice(target: Target) -> str:
    mounts = " and ".join(v.mount_path for v in VOLUMES if "hostPath" in v.source)
    notice = (
        f"the {target.container} container is privileged, adds {CAPABILITY} and mounts hostPath {mounts}: "
        "each violates the Pod Security Standards' Baseline level, so the namespace must enforce `privileged` "
        "(label pod-security.kubernetes.io/enforce=privileged); otherwise the API server accepts the "
        "Deployment but refuses its pods. It runs as root (runAsUser 0, runAsNonRoot false): a tracer runs as "
        "the container's user, and as a non-root user (Istio's 1337, Envoy's 101) it cannot load BPF programs."
    )
    if target.mesh:
        notice += (
            f" Its group is set explicitly (runAsGroup {target.gid or 1337} unless the manifest gives one): "
            "Istio's iptables rules keep the proxy's own traffic out of the redirect by UID (never 0) or GID, "
            "so a root proxy is only excluded through its GID; without it Envoy's traffic would loop back "
            "into Envoy."
        )
    return notice


def _verify(
    result: str,
    image: SidecarImage,
    target: Target,
    workloads: list[Workload],
    annotation_only: bool,
    source: str,
) -> None:
    """Reparse the result and check every patched workload, so a wrong edit is never written."""
    patched = {(w.document, w.kind, w.name) for w in workloads if w.action == "patched"}
    for number, root in enumerate(compose(result, f"{source} (injected)"), start=1):
        for found in find(root, number):
            if (found.document, found.kind, found.name) not in patched:
                continue
            problem = _problem(found.template, image, target, annotation_only)
            if problem:
                raise InjectError(
                    f"{source}: {found.describe()}: the injected result is wrong: {problem}",
                    hint="this is a bug in hookbuild; please report it with the manifest",
                )


def _problem(template: Any, image: SidecarImage, target: Target, annotation_only: bool) -> str | None:
    annotations = get(get(template, "metadata"), "annotations")
    if get(annotations, MARKER) is None:
        return "no marker annotation"
    if annotation_only:
        return None if text(get(annotations, PROXY_IMAGE_ANNOTATION)) == image.reference else "no annotation"
    spec = get(template, "spec")
    containers = [c for key in ("initContainers", "containers") for c in getattr(get(spec, key), "value", [])]
    names = [text(get(c, "name")) for c in containers]
    volumes = [text(get(v, "name")) for v in getattr(get(spec, "volumes"), "value", [])]
    if len(names) != len(set(names)) or len(volumes) != len(set(volumes)):
        return f"duplicate names among containers {names} or volumes {volumes}"
    proxy = next(c for c in containers if text(get(c, "name")) == target.container)
    context = get(proxy, "securityContext")
    if text(get(proxy, "image")) != image.reference or text(get(context, "privileged")) != "true":
        return "the container's image or privileges are not set"
    if item(get(get(context, "capabilities"), "add"), CAPABILITY) is None:
        return f"no {CAPABILITY}"
    mounts = {
        text(get(m, "mountPath")): text(get(m, "name"))
        for m in getattr(get(proxy, "volumeMounts"), "value", [])
    }
    for volume in VOLUMES:
        if mounts.get(volume.mount_path) not in volumes:
            return f"{volume.mount_path} is not mounted"
    return None
