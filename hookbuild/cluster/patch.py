"""Plan the edits that put a release into one pod template, and the ones that take it out again.

Every change goes into a marker annotation on the pod template (`hookbuild.io/injected`): the entries that
were added (as paths from the template) and the original text of each scalar that was replaced. `--remove`
reads it back and deletes exactly those lines and restores exactly that text, so inject then remove gives
the original bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from hookbuild.cluster.targets import CAPABILITY, PROXY_GID, SECURITY_CONTEXT, VOLUMES, HostVolume, Target
from hookbuild.cluster.workloads import FIX, entry, get, item, text, value
from hookbuild.cluster.yamltext import Editor, Layout
from hookbuild.errors import InjectError

MARKER = "hookbuild.io/injected"
PROXY_IMAGE_ANNOTATION = "sidecar.istio.io/proxyImage"

Path = tuple[str, ...]


@dataclass(kw_only=True)
class Marker:
    """What hookbuild changed in a pod template: the contents of the marker annotation."""

    release: str
    container: str | None  # the container the release went into (None: annotation only)
    final_newline: bool = False  # the stream's last line had no line break; inject gave it one
    added: list[Path] = field(default_factory=list)
    replaced: dict[Path, str] = field(default_factory=dict)  # path -> the original source text

    def dump(self) -> str:
        data: dict[str, Any] = {
            "release": self.release,
            "container": self.container,
            "added": [_pointer(path) for path in self.added],
            "replaced": {_pointer(path): text for path, text in self.replaced.items()},
        }
        if self.final_newline:
            data["final_newline"] = True
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def load(cls, text: str, where: str) -> Marker:
        try:
            data = json.loads(text)
            return cls(
                release=str(data["release"]),
                container=data.get("container"),
                final_newline=data.get("final_newline") is True,
                added=[_path(pointer) for pointer in data["added"]],
                replaced={_path(pointer): str(old) for pointer, old in data["replaced"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InjectError(
                f"{where}: unreadable {MARKER} annotation ({exc})",
                hint="restore it from the injected manifest, or remove the injection by hand",
            ) from None


def _pointer(path: Path) -> str:
    """A JSON pointer (RFC 6901); list items are named by their `name`, e.g. /spec/volumes/hookbuild-tmp."""
    return "".join("/" + step.replace("~", "~0").replace("/", "~1") for step in path)


def _path(pointer: str) -> Path:
    if not pointer.startswith("/"):
        raise ValueError(f"not a JSON pointer: {pointer!r}")
    return tuple(step.replace("~1", "/").replace("~0", "~") for step in pointer[1:].split("/"))


@dataclass(frozen=True, kw_only=True)
class Outcome:
    native: bool  # the target is a native sidecar (an init container)


def _name(element: Any) -> str:
    """How a path names a list item: a mapping by its `name`, a scalar by itself."""
    return str(element["name"]) if isinstance(element, dict) else str(element)


def _same(node: Node, wanted: Any) -> bool:
    # `0 == False` in Python, but `runAsUser: false` is not `runAsUser: 0`; a quoted "true" is not `true`.
    have = value(node)
    return type(have) is type(wanted) and bool(have == wanted)


class Patcher:
    """Edits one pod template through `editor`, recording each change in `marker`."""

    def __init__(self, editor: Editor, lay: Layout, marker: Marker, where: str) -> None:
        self.editor = editor
        self.lay = lay
        self.marker = marker
        self.where = where
        self.since = len(editor.edits)  # this template's edits are the editor's from here on

    @property
    def changed(self) -> bool:
        return len(self.editor.edits) > self.since

    def _covered(self, path: Path) -> bool:
        return any(path[: len(added)] == added for added in self.marker.added)

    def add(self, parent: Node, path: Path, wanted: Any, *, first: bool = False) -> None:
        """Give `parent` (at `path[:-1]`) the entry `path[-1]: wanted`; it has none, or a null one."""
        self.record_new(parent, path, wanted)
        self.emit_new(parent, path, wanted, first=first)

    def record_new(self, parent: Node, path: Path, wanted: Any) -> None:
        """Record in the marker what `emit_new` adds, so that --remove can take exactly that out again."""
        found = entry(parent, path[-1])
        if found is None:
            self._record(path)
            return
        null = found[2]
        if null.start_mark.index == null.end_mark.index and isinstance(wanted, dict | list) and wanted:
            # `volumes:` with nothing after it gets lines below: those come out again, the key stays.
            for name in wanted if isinstance(wanted, dict) else [_name(element) for element in wanted]:
                self._record((*path, name))
        elif not self._covered(path) and path not in self.marker.replaced:
            self.marker.replaced[path] = self.editor.source(null)

    def emit_new(self, parent: Node, path: Path, wanted: Any, *, first: bool = False) -> None:
        assert isinstance(parent, MappingNode)
        found = entry(parent, path[-1])
        if found is None:
            self.editor.put(parent, path[-1], wanted, self.lay, len(path) - 1, first=first)
        else:
            self.editor.fill(found[1], found[2], wanted, self.lay, bool(parent.flow_style), len(path) - 1)

    def _record(self, path: Path) -> None:
        if not self._covered(path):
            self.marker.added.append(path)

    def append(self, sequence: SequenceNode, path: Path, items: dict[str, Any]) -> None:
        """Append `items` (name -> item) to the list at `path`."""
        if not items:
            return
        self.editor.append(sequence, list(items.values()), self.lay, len(path))
        for name in items:
            if not self._covered((*path, name)):
                self.marker.added.append((*path, name))

    def set(self, mapping: Node, path: Path, wanted: Any) -> None:
        """`path[-1]: wanted` in `mapping`, replacing a different scalar."""
        node = get(mapping, path[-1])
        if node is None:
            self.add(mapping, path, wanted)
            return
        if not isinstance(node, ScalarNode):
            raise InjectError(f"{self.where}: {'.'.join(path)} is not a single value", hint=FIX)
        if _same(node, wanted):
            return
        if not self._covered(path) and path not in self.marker.replaced:
            self.marker.replaced[path] = self.editor.source(node)
        self.editor.replace(node, wanted, self.lay)

    def mapping(self, parent: Node, path: Path, what: str) -> MappingNode | None:
        node = get(parent, path[-1])
        if node is not None and not isinstance(node, MappingNode):
            raise InjectError(f"{self.where}: {what} {path[-1]} is not a mapping", hint=FIX)
        return node

    def sequence(self, parent: Node, path: Path, what: str) -> SequenceNode | None:
        node = get(parent, path[-1])
        if node is not None and not isinstance(node, SequenceNode):
            raise InjectError(f"{self.where}: {what} {path[-1]} is not a list", hint=FIX)
        for element in node.value if node is not None else ():
            if path[-1] != "add" and not isinstance(get(element, "name"), ScalarNode):
                raise InjectError(f"{self.where}: an entry of {what} {path[-1]} has no name", hint=FIX)
        return node


# --- the tracer's container ----------------------------------------------------------------------------


def _security(target: Target, gid: int | None) -> dict[str, Any]:
    context: dict[str, Any] = dict(SECURITY_CONTEXT)
    if gid is not None:
        context["runAsGroup"] = gid
    context["capabilities"] = {"add": [CAPABILITY]}
    return context


def _new_container(target: Target, image: str) -> dict[str, Any]:
    return {
        "name": target.container,
        "image": image,
        "securityContext": _security(target, (target.gid or PROXY_GID) if target.mesh else None),
        "volumeMounts": [{"name": v.name, "mountPath": v.mount_path} for v in VOLUMES],
    }


def sidecar(p: Patcher, template: MappingNode, target: Target, image: str) -> Outcome | None:
    """Put the release into the target container of one pod template; None when the pod has no target."""
    spec = p.mapping(template, ("spec",), "the pod template's")
    containers = get(spec, "containers")
    if spec is None or not isinstance(containers, SequenceNode) or not containers.value:
        raise InjectError(
            f"{p.where}: the pod template has no containers",
            hint="a pod needs at least one container in spec.containers",
        )
    p.sequence(spec, ("spec", "containers"), "spec")
    init = p.sequence(spec, ("spec", "initContainers"), "spec")
    # Istio's native-sidecar mode runs istio-proxy as an init container: patch it where the user has it.
    for key, sequence in (("initContainers", init), ("containers", containers)):
        found = item(sequence, target.container)
        if found is not None:
            assert isinstance(found[1], MappingNode)
            needed = _patch_container(p, found[1], ("spec", key, target.container), target, image, spec)
            _volumes(p, spec, needed)
            return Outcome(native=key == "initContainers")
    if not target.create:
        return None
    p.append(containers, ("spec", "containers"), {target.container: _new_container(target, image)})
    _volumes(p, spec, list(VOLUMES))
    return Outcome(native=False)


def _patch_container(
    p: Patcher, container: MappingNode, path: Path, target: Target, image: str, spec: MappingNode
) -> list[HostVolume]:
    """Patch an existing container in place; the volumes it mounts under hookbuild's names."""
    p.set(container, (*path, "image"), image)
    context_path = (*path, "securityContext")
    context = p.mapping(container, context_path, target.container)
    gid = target.gid if target.gid is not None else (PROXY_GID if target.mesh else None)
    if context is None:
        p.add(container, context_path, _security(target, gid))
    else:
        for key, wanted in SECURITY_CONTEXT:
            p.set(context, (*context_path, key), wanted)
        # The manifest's own runAsGroup is the mesh's GID unless the command line gives one.
        if target.mesh and (target.gid is not None or get(context, "runAsGroup") is None):
            p.set(context, (*context_path, "runAsGroup"), gid)
        caps_path = (*context_path, "capabilities")
        capabilities = p.mapping(context, caps_path, "securityContext")
        if capabilities is None:
            p.add(context, caps_path, {"add": [CAPABILITY]})
        else:
            add = p.sequence(capabilities, (*caps_path, "add"), "capabilities")
            if add is None:
                p.add(capabilities, (*caps_path, "add"), [CAPABILITY])
            elif item(add, CAPABILITY) is None:
                p.append(add, (*caps_path, "add"), {CAPABILITY: CAPABILITY})
    mounts_path = (*path, "volumeMounts")
    mounts = p.sequence(container, mounts_path, target.container)
    missing, needed = [], []
    for volume in VOLUMES:
        taken = (
            next((m for m in mounts.value if text(get(m, "mountPath")) == volume.mount_path), None)
            if (mounts is not None)
            else None
        )
        name = text(get(taken, "name")) if taken is not None else volume.name
        if name != volume.name:
            # A mount the user already has at this path stays if its volume is what the tracer needs.
            defined = item(get(spec, "volumes"), name or "")
            have = {k: v for k, v in value(defined[1]).items() if k != "name"} if defined else None
            if have != volume.source:
                raise InjectError(
                    f"{p.where}: {target.container} already mounts {name!r} at {volume.mount_path}, where the "
                    f"tracer needs {volume.source}",
                    hint=f"move that mount, or let hookbuild add its own {volume.name!r}",
                )
            continue
        needed.append(volume)
        if taken is None:
            missing.append({"name": volume.name, "mountPath": volume.mount_path})
    if mounts is None:
        p.add(container, mounts_path, missing)
    else:
        p.append(mounts, mounts_path, {mount["name"]: mount for mount in missing})
    return needed


def _volumes(p: Patcher, spec: MappingNode, needed: list[HostVolume]) -> None:
    path = ("spec", "volumes")
    volumes = p.sequence(spec, path, "spec")
    wanted = []
    for volume in needed:
        defined = item(volumes, volume.name)
        if defined is None:
            wanted.append({"name": volume.name, **volume.source})
            continue
        have = {k: v for k, v in value(defined[1]).items() if k != "name"}
        if have != volume.source:
            raise InjectError(
                f"{p.where}: volume {volume.name!r} is already defined as {have}, but the tracer needs "
                f"{volume.source}",
                hint=f"rename your volume {volume.name!r}: hookbuild never overwrites a volume",
            )
    if not wanted:
        return
    if volumes is None:
        p.add(spec, path, wanted)
    else:
        p.append(volumes, path, {volume["name"]: volume for volume in wanted})


# --- annotations ------------------------------------------------------------------------------------------


def annotate(p: Patcher, template: MappingNode, entries: dict[str, str]) -> None:
    """Set annotations on the pod template, the marker last (it records what the others changed)."""
    metadata = p.mapping(template, ("metadata",), "the pod template's")
    annotations = p.mapping(metadata, ("metadata", "annotations"), "metadata") if metadata else None
    if annotations is not None:
        for key, wanted in entries.items():
            p.set(annotations, ("metadata", "annotations", key), wanted)
    elif not (p.changed or entries):
        return
    # Else the first level missing (or null) gets the annotations: metadata, or its annotations.
    parent, path = (template, ("metadata",)) if metadata is None else (metadata, ("metadata", "annotations"))
    if annotations is None:  # the marker is among what is added (its value is not known yet)
        planned = {**entries, MARKER: ""}
        p.record_new(parent, path, {"annotations": planned} if metadata is None else planned)
    marker = _merged_marker(p, annotations)
    if marker is None:
        return
    entries = {**entries, MARKER: marker}
    if annotations is None:
        # A new metadata goes first, where people and kubectl write it; new annotations after the labels.
        p.emit_new(
            parent, path, {"annotations": entries} if metadata is None else entries, first=metadata is None
        )
    else:
        p.set(annotations, ("metadata", "annotations", MARKER), marker)


def _merged_marker(p: Patcher, annotations: MappingNode | None) -> str | None:
    """The marker to write (None: leave the one there), merged with one an earlier run wrote."""
    p.marker.final_newline = p.editor.appends_to_last_line(p.since)
    node = get(annotations, MARKER)
    if node is None:
        return p.marker.dump() if p.changed or p.marker.added else None
    earlier = Marker.load(value(node), p.where)
    merged = Marker(
        release=p.marker.release,
        container=p.marker.container,
        final_newline=earlier.final_newline or p.marker.final_newline,
        added=list(earlier.added),
        replaced=dict(earlier.replaced),
    )
    for path in p.marker.added:
        if path not in merged.added and path != ("metadata", "annotations", MARKER):
            merged.added.append(path)
    for path, old in p.marker.replaced.items():
        if path != ("metadata", "annotations", MARKER):
            merged.replaced.setdefault(path, old)  # the oldest original is what --remove restores
    if merged == earlier:
        return None
    return merged.dump()


# --- taking it out again ------------------------------------------------------------------------------


def take_out(editor: Editor, template: MappingNode, where: str) -> str | None:
    """Undo what the marker records; the release it names, or None when the template has no marker."""
    annotations = get(get(template, "metadata"), "annotations")
    node = get(annotations, MARKER)
    if node is None:
        return None
    marker = Marker.load(value(node), where)
    editor.strip_final_newline = editor.strip_final_newline or marker.final_newline
    doomed: dict[int, tuple[MappingNode | SequenceNode, set[int]]] = {}
    for path in marker.added:
        located = _locate(template, path)
        if located is not None:  # gone already: someone took it out by hand
            parent, index = located
            doomed.setdefault(id(parent), (parent, set()))[1].add(index)
    if not any(path in marker.added for path in (("metadata",), ("metadata", "annotations"))):
        located = _locate(template, ("metadata", "annotations", MARKER))
        assert located is not None
        doomed.setdefault(id(located[0]), (located[0], set()))[1].add(located[1])
    for parent, indices in doomed.values():
        editor.delete(parent, sorted(indices))
    for path, original in marker.replaced.items():
        located = _locate(template, path)
        if located is not None and not any(path[: len(added)] == added for added in marker.added):
            parent, index = located
            element = parent.value[index]
            editor.restore(element[1] if isinstance(element, tuple) else element, original)
    return marker.release


def _locate(template: Node, path: Path) -> tuple[MappingNode | SequenceNode, int] | None:
    """(parent, index) of the element at `path`: a mapping key, or a list item by its name."""
    node: Node | None = template
    for depth, step in enumerate(path):
        if isinstance(node, MappingNode):
            found = entry(node, step)
            index = None if found is None else found[0]
        else:
            named = item(node, step)
            index = None if named is None else named[0]
        if index is None or not isinstance(node, MappingNode | SequenceNode):
            return None
        if depth == len(path) - 1:
            return node, index
        element = node.value[index]
        node = element[1] if isinstance(element, tuple) else element
    return None
