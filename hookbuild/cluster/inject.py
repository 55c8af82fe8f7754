"""Put the released proxy into a user's Kubernetes manifests, the seed's *Inject Customized Container* step.

Every workload's pod template gets a container named `istio-proxy`. Istio merges a user container of that
name over the sidecar it injects (strategic merge by container name, then the user's container re-applied),
so only the fields set here change: the image, what a uprobe tracer needs in `securityContext`, and the
kernel-header mounts. Fields left unset keep Istio's template values, which is why some are set explicitly.

The stream is split into documents on their `---` / `...` marker lines. Documents that are not workloads
are copied byte for byte; workload documents go through a ruamel.yaml round trip, which keeps comments,
key order and quoting. The result is idempotent: injecting the output again gives the same bytes.
"""

from __future__ import annotations

import io
import itertools
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from hookbuild import fsutil
from hookbuild.errors import InjectError
from hookbuild.images.reference import pinned

log = logging.getLogger("hookbuild")

CONTAINER = "istio-proxy"
PROXY_IMAGE_ANNOTATION = "sidecar.istio.io/proxyImage"

# (API group, kind) -> path from the document to its pod template. A Pod is its own template.
WORKLOAD_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): (),
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("extensions", "Deployment"): ("spec", "template"),
    ("extensions", "DaemonSet"): ("spec", "template"),
    ("extensions", "ReplicaSet"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
}
WORKLOAD_KINDS = tuple(sorted({kind for _group, kind in WORKLOAD_TEMPLATES}))


@dataclass(frozen=True, kw_only=True)
class HostVolume:
    """A volume the tracer needs, and where the `istio-proxy` container mounts it."""

    name: str
    mount_path: str
    source: dict[str, Any]  # the volume definition without its name, as plain data


# The seed's mounts: bcc compiles its programs at run time against the node's kernel headers
# (/lib/modules/$(uname -r)/build links into /usr/src on Debian/Ubuntu), and tracers write to /tmp.
VOLUMES: tuple[HostVolume, ...] = (
    HostVolume(
        name="lib-modules",
        mount_path="/lib/modules",
        source={"hostPath": {"path": "/lib/modules", "type": "Directory"}},
    ),
    HostVolume(
        name="linux-headers",
        mount_path="/usr/src",
        source={"hostPath": {"path": "/usr/src", "type": "Directory"}},
    ),
    HostVolume(name="tmp", mount_path="/tmp", source={"emptyDir": {}}),
)

# What a uprobe tracer needs from the sidecar's securityContext. Istio merges this over its own template,
# which otherwise keeps runAsUser 1337, runAsNonRoot true, readOnlyRootFilesystem true and drops ALL
# capabilities. Capabilities added to a non-root process never reach its effective set, and a tracer
# `kubectl exec`'d into the sidecar runs as the container's user: as UID 1337 it cannot load BPF programs
# even with privileged and SYS_ADMIN. So the container runs as root (runAsUser 0, runAsNonRoot false).
# The API server rejects privileged together with allowPrivilegeEscalation false, so both are always set.
# readOnlyRootFilesystem false: bcc and perf write caches and temporary files outside /tmp.
SECURITY_CONTEXT: tuple[tuple[str, Any], ...] = (
    ("allowPrivilegeEscalation", True),
    ("privileged", True),
    ("runAsUser", 0),
    ("runAsNonRoot", False),
    ("readOnlyRootFilesystem", False),
)
CAPABILITY = "SYS_ADMIN"

POD_SECURITY_NOTICE = (
    "the istio-proxy container is privileged, adds SYS_ADMIN and mounts hostPath /lib/modules and /usr/src: "
    "each violates the Pod Security Standards' Baseline level, so the namespace must enforce `privileged` "
    "(label pod-security.kubernetes.io/enforce=privileged); otherwise the API server accepts the "
    "Deployment but refuses its pods. It also runs as root (runAsUser 0, runAsNonRoot false), because "
    "Istio's template otherwise keeps runAsUser 1337 and runAsNonRoot true, and a tracer running as UID 1337 "
    "cannot load BPF programs."
)

_MARKER = re.compile(r"(---|\.\.\.)(?=\s|$)")
_MARKER_TAIL = re.compile(r"\s*(#.*)?")  # what may follow a marker on its line and still be kept verbatim
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_FIX = "fix the manifest; `kubectl apply --dry-run=client -f FILE` checks it too"


@dataclass(frozen=True, kw_only=True)
class SidecarImage:
    """The image `istio-proxy` runs: pinned by digest, or a tag for records made before hookbuild."""

    reference: str
    release: str
    pinned: bool


@dataclass(frozen=True, kw_only=True)
class Workload:
    kind: str
    name: str
    namespace: str | None
    document: int  # 1-based index in the stream
    changed: bool

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name} (document {self.document})"


@dataclass(frozen=True, kw_only=True)
class Injected:
    text: str
    workloads: tuple[Workload, ...]


def image_reference(repository_or_tag_ref: str, digest: str | None) -> str:
    """`repo@sha256:...` from a published reference (tag or not) and its digest; the reference if none."""
    if digest is not None and not _DIGEST.fullmatch(digest):
        raise InjectError(
            f"invalid image digest {digest!r} for {repository_or_tag_ref}",
            hint="a digest is sha256: followed by 64 lowercase hex digits",
        )
    return pinned(repository_or_tag_ref, digest)


def sidecar_image(release: str, *, image: str, digest: str | None) -> SidecarImage:
    """Describe the image to inject: pinned by `digest` when the record has one, else the tag `image`."""
    reference = image_reference(image, digest)
    if not reference or any(ch.isspace() for ch in reference):
        raise InjectError(
            f"release {release} records an invalid image reference {reference!r}",
            hint="fix the image of this release in versions.toml",
        )
    return SidecarImage(reference=reference, release=release, pinned=digest is not None)


def resolve(versions_file: Path, release: str) -> SidecarImage:
    """The image of `release` (e.g. `istio@12.0`) as recorded in versions.toml."""
    from hookbuild import record  # owns versions.toml; raises VersionError/RecordError for unknown releases

    entry = record.load(versions_file).get(release)
    if entry.status is not record.Status.WORKING:
        reason = f": {entry.status_reason}" if entry.status_reason else ""
        log.warning("release %s is marked %s in %s%s", entry.ref, entry.status, versions_file, reason)
    if entry.release is not None:
        return sidecar_image(entry.ref, image=entry.release.image, digest=entry.release.digest)
    if entry.image is None:
        raise InjectError(
            f"release {entry.ref} records no image in {versions_file}",
            hint="publish it with `invoke release`, or record the image it was pushed as",
        )
    return sidecar_image(entry.ref, image=entry.image, digest=None)


def read_manifest(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InjectError(f"manifest {path} not found", hint="pass -f FILE, or '-' to read stdin") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InjectError(f"cannot read manifest {path}: {exc}", hint="pass a UTF-8 YAML file") from exc


def write_manifest(path: Path, text: str) -> None:
    """Write atomically: a failed or interrupted run never leaves half a manifest behind."""
    try:
        fsutil.atomic_write(path, text)
    except OSError as exc:
        raise InjectError(f"cannot write {path}: {exc}", hint="check the directory is writable") from exc


# --- the YAML stream --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    text: str
    line: int  # 0-based line of its first character in the stream
    is_marker: bool


def _split(text: str) -> Iterator[_Chunk]:
    """Marker lines (`---`, `...`, optionally with a comment) and the document texts between them."""
    body: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(keepends=True)):
        match = _MARKER.match(line)
        if match and _MARKER_TAIL.fullmatch(line[match.end() :].rstrip("\r\n")):
            if body:
                yield _Chunk("".join(body), start, False)
            yield _Chunk(line, number, True)
            body, start = [], number + 1
        else:
            # A marker followed by content (`--- !tag`, `--- {a: 1}`) starts a document we must parse whole.
            body.append(line)
    if body:
        yield _Chunk("".join(body), start, False)


def _guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) as ruamel.yaml wants them, from the first nested mapping and sequence."""
    mapping: int | None = None
    offset: int | None = None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for above, below in itertools.pairwise(lines):
        head = above.split(" #", 1)[0].rstrip()
        if not head.endswith(":") or head.lstrip().startswith("- "):
            continue
        outer = len(above) - len(above.lstrip())
        inner = len(below) - len(below.lstrip())
        if below.lstrip().startswith("- "):
            if offset is None and inner >= outer:
                offset = inner - outer
        elif mapping is None and inner > outer:
            mapping = inner - outer
        if mapping is not None and offset is not None:
            break
    mapping = mapping or 2
    offset = 2 if offset is None else offset
    return mapping, offset + 2, offset


def _yaml(indent: tuple[int, int, int] = (2, 4, 2)) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold long strings (commands, JSON annotations) that were on one line
    mapping, sequence, offset = indent
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _parse(chunk: _Chunk, source: str) -> Any:
    try:
        return _yaml().load(chunk.text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {chunk.line + mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise InjectError(
            f"{source}: invalid YAML{where}: {problem}",
            hint="fix the manifest; `kubectl apply --dry-run=client -f FILE` shows the same",
        ) from exc
    except YAMLError as exc:
        raise InjectError(
            f"{source}: invalid YAML near line {chunk.line + 1}: {exc}", hint="fix the manifest"
        ) from exc


def _dump(document: Any, chunk: _Chunk) -> str:
    stream = io.StringIO()
    yaml = _yaml(_guess_indent(chunk.text))
    # A marker carrying content (`--- !tag ...`) was part of the chunk, so it must come back.
    yaml.explicit_start = bool(_MARKER.match(chunk.text))
    yaml.dump(document, stream)
    return stream.getvalue()


# --- workloads --------------------------------------------------------------------------------------


def _group(api_version: Any) -> str | None:
    if not isinstance(api_version, str):
        return None
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def _template_path(document: Any) -> tuple[str, ...] | None:
    if not isinstance(document, dict):
        return None
    group = _group(document.get("apiVersion"))
    kind = document.get("kind")
    if group is None or not isinstance(kind, str):
        return None
    return WORKLOAD_TEMPLATES.get((group, kind))


def _workload(document: Any, number: int, changed: bool = False) -> Workload:
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    namespace = metadata.get("namespace")
    return Workload(
        kind=str(document.get("kind")),
        name=str(metadata.get("name") or metadata.get("generateName") or "<unnamed>"),
        namespace=str(namespace) if namespace else None,
        document=number,
        changed=changed,
    )


def _mapping(parent: CommentedMap, key: str) -> CommentedMap:
    """parent[key] as a mapping, created (at the end) when missing."""
    value = parent.get(key)
    if value is None:
        value = CommentedMap()
        parent[key] = value
    return value  # type: ignore[no-any-return]


def _sequence(parent: CommentedMap, key: str) -> CommentedSeq:
    value = parent.get(key)
    if value is None:
        value = CommentedSeq()
        parent[key] = value
    return value  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    """Comment-free plain data, for comparing definitions regardless of formatting."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, str):
        return str(value)
    return value


def _same(current: Any, wanted: Any) -> bool:
    # `0 == False` in Python, but `runAsUser: false` is not `runAsUser: 0`; a quoted "true" is not `true`.
    if any(isinstance(value, bool | str) for value in (current, wanted)):
        return type(_plain(current)) is type(_plain(wanted)) and bool(current == wanted)
    return bool(current == wanted)


def _set(mapping: CommentedMap, key: str, value: Any) -> None:
    if key not in mapping or not _same(mapping[key], value):
        mapping[key] = value


class _Editor:
    """Edits one pod template in place; `where` names the workload in errors."""

    def __init__(self, template: CommentedMap, where: str) -> None:
        self.template = template
        self.where = where
        spec = template.get("spec")
        if not isinstance(spec, CommentedMap):
            raise InjectError(
                f"{where}: the pod template has no spec",
                hint="a workload's pod template needs spec.containers",
            )
        containers = spec.get("containers")
        if not isinstance(containers, CommentedSeq) or not containers:
            raise InjectError(
                f"{where}: the pod template has no containers",
                hint="a pod needs at least one container in spec.containers",
            )
        self.spec = spec

    def _checked_list(self, key: str, owner: CommentedMap, what: str) -> None:
        value = owner.get(key)
        if value is not None and not isinstance(value, CommentedSeq):
            raise InjectError(f"{self.where}: {what} {key} is not a list", hint=_FIX)
        for item in value or ():
            if not isinstance(item, CommentedMap) or not isinstance(item.get("name"), str):
                raise InjectError(f"{self.where}: an entry of {what} {key} has no name", hint=_FIX)

    def annotate(self, image: SidecarImage) -> None:
        if "/" not in image.reference:
            raise InjectError(
                f"release {image.release}: image {image.reference!r} is not a full reference",
                hint=f"Istio honours {PROXY_IMAGE_ANNOTATION} only when its value contains '/' "
                "(registry/repository:tag or @digest); record the release with its registry",
            )
        if self.template.get("metadata") is None:
            self.template.insert(0, "metadata", CommentedMap())  # where kubectl and people put it
        annotations = _mapping(self.template["metadata"], "annotations")
        _set(annotations, PROXY_IMAGE_ANNOTATION, image.reference)

    def sidecar(self, image: SidecarImage) -> None:
        for key in ("initContainers", "containers"):
            self._checked_list(key, self.spec, "spec")
        self._checked_list("volumes", self.spec, "spec")
        container = self._container()
        _set(container, "image", image.reference)
        self._security_context(container)
        self._checked_list("volumeMounts", container, CONTAINER)
        for volume in VOLUMES:
            self._mount(container, volume)

    def _container(self) -> CommentedMap:
        # Istio's native-sidecar mode runs istio-proxy as an init container: update it there if the user has.
        for key in ("containers", "initContainers"):
            for container in self.spec.get(key) or ():
                if container.get("name") == CONTAINER:
                    return container  # type: ignore[no-any-return]
        container = CommentedMap()
        container["name"] = CONTAINER
        self.spec["containers"].append(container)
        return container

    def _security_context(self, container: CommentedMap) -> None:
        context = container.get("securityContext")
        if context is None:
            context = container["securityContext"] = CommentedMap()
        elif not isinstance(context, CommentedMap):
            raise InjectError(f"{self.where}: {CONTAINER} securityContext is not a mapping", hint=_FIX)
        for key, value in SECURITY_CONTEXT:
            _set(context, key, value)
        capabilities = _mapping(context, "capabilities")
        add = _sequence(capabilities, "add")
        if CAPABILITY not in add:
            add.append(CAPABILITY)

    def _mount(self, container: CommentedMap, volume: HostVolume) -> None:
        mounts = _sequence(container, "volumeMounts")
        existing = next((m for m in mounts if m.get("mountPath") == volume.mount_path), None)
        # A mount the user already has at this path is kept if its volume is what the tracer needs.
        name = existing["name"] if existing is not None else volume.name
        volumes = _sequence(self.spec, "volumes")
        defined = next((v for v in volumes if v.get("name") == name), None)
        if defined is None:
            entry = CommentedMap()
            entry["name"] = name
            for key, value in volume.source.items():
                entry[key] = _commented(value)
            volumes.append(entry)
        else:
            have = {key: _plain(value) for key, value in defined.items() if key != "name"}
            if have != volume.source:
                raise InjectError(
                    f"{self.where}: volume {name!r} is already defined as {have}, but the tracer needs "
                    f"{volume.source} there (mounted at {volume.mount_path})",
                    hint=f"rename your volume {name!r}, or define it as the tracer needs; hookbuild never "
                    "overwrites a user's volume",
                )
        if existing is None:
            mount = CommentedMap()
            mount["name"] = name
            mount["mountPath"] = volume.mount_path
            mounts.append(mount)


def _commented(value: Any) -> Any:
    if isinstance(value, dict):
        mapping = CommentedMap()
        for key, item in value.items():
            mapping[key] = _commented(item)
        return mapping
    return value


def _pod_templates(document: Any, number: int) -> Iterator[tuple[Any, CommentedMap, str]]:
    """(workload document, pod template, description) for a workload or each workload item of a List."""
    items = document.get("items") if isinstance(document, dict) and document.get("kind") == "List" else None
    if isinstance(items, list):
        for item in items:
            yield from _pod_templates(item, number)
        return
    path = _template_path(document)
    if path is None:
        return
    described = _workload(document, number).describe()
    node = document
    for key in path:
        child = node.get(key) if isinstance(node, dict) else None
        if child is None:
            raise InjectError(
                f"{described}: missing {'.'.join(path)}",
                hint="the workload needs a pod template to inject the sidecar into",
            )
        node = child
    if not isinstance(node, CommentedMap):
        raise InjectError(f"{described}: {'.'.join(path) or 'the pod'} is not a mapping", hint=_FIX)
    yield document, node, described


def inject(
    text: str,
    *,
    image: SidecarImage,
    annotation_only: bool = False,
    source: str = "<stdin>",
) -> Injected:
    """Add the customized `istio-proxy` to every workload in a YAML stream (or only its image annotation)."""
    edit: Callable[[_Editor], None] = (
        (lambda editor: editor.annotate(image)) if annotation_only else (lambda editor: editor.sidecar(image))
    )
    pieces: list[str] = []
    workloads: list[Workload] = []
    number = 0
    for chunk in _split(text):
        if chunk.is_marker:
            pieces.append(chunk.text)
            continue
        number += 1
        document = _parse(chunk, source)
        try:
            found = list(_pod_templates(document, number))
            if not found:
                pieces.append(chunk.text)
                continue
            before = _dump(document, chunk)
            for _owner, template, described in found:
                edit(_Editor(template, described))
        except InjectError as exc:  # say which file, not only which document
            raise InjectError(f"{source}: {exc.message}", hint=exc.hint) from None
        after = _dump(document, chunk)
        # An already injected document keeps its exact bytes: that makes a second run a no-op by construction.
        pieces.append(after if after != before else chunk.text)
        workloads.extend(_workload(owner, number, changed=before != after) for owner, _t, _d in found)
    if not workloads:
        raise InjectError(
            f"{source}: no workloads found",
            hint=f"inject rewrites {', '.join(WORKLOAD_KINDS)} manifests; other kinds pass through unchanged",
        )
    if not annotation_only:
        log.warning("%s", POD_SECURITY_NOTICE)
    if not image.pinned:
        log.warning(
            "release %s was recorded before hookbuild and has no digest: using the tag %s, which can move",
            image.release,
            image.reference,
        )
    return Injected(text="".join(_ensure_newlines(pieces)), workloads=tuple(workloads))


def _ensure_newlines(pieces: Sequence[str]) -> Iterator[str]:
    # A document without a final newline must not run into the next marker line.
    for index, piece in enumerate(pieces):
        if index < len(pieces) - 1 and piece and not piece.endswith("\n"):
            yield piece + "\n"
        else:
            yield piece
