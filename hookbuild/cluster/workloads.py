"""Find the workloads of a manifest stream and their pod templates, as parsed nodes with positions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from hookbuild.errors import InjectError

# (API group, kind) -> path from the object to its pod template. A Pod is its own template.
WORKLOAD_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): (),
    ("", "ReplicationController"): ("spec", "template"),
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("extensions", "Deployment"): ("spec", "template"),
    ("extensions", "DaemonSet"): ("spec", "template"),
    ("extensions", "ReplicaSet"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
    ("apps.openshift.io", "DeploymentConfig"): ("spec", "template"),  # Istio injects these too
}
WORKLOAD_KINDS = tuple(sorted({kind for _group, kind in WORKLOAD_TEMPLATES}))
FIX = "fix the manifest; `kubectl apply --dry-run=client -f FILE` checks it too"


@dataclass(frozen=True, kw_only=True)
class Found:
    """One workload: where it is, and the node of its pod template."""

    kind: str
    name: str
    namespace: str | None
    document: int  # 1-based index in the stream
    template: MappingNode

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name} (document {self.document})"


# --- reading nodes ----------------------------------------------------------------------------------------


def entry(mapping: Node | None, key: str) -> tuple[int, ScalarNode, Node] | None:
    """(index, key node, value node) of `key` in a mapping node."""
    if not isinstance(mapping, MappingNode):
        return None
    for index, (name, value) in enumerate(mapping.value):
        if isinstance(name, ScalarNode) and name.value == key:
            return index, name, value
    return None


def get(mapping: Node | None, key: str) -> Node | None:
    found = entry(mapping, key)
    return None if found is None or is_null(found[2]) else found[2]


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def text(node: Node | None) -> str | None:
    """A scalar's value as written (`"false"` and `false` both give `false`); None for anything else."""
    return node.value if isinstance(node, ScalarNode) and not is_null(node) else None


def value(node: Node) -> Any:
    """Plain data of a node (typed: `true` is a bool, `"1"` a string)."""
    return yaml.constructor.SafeConstructor().construct_document(node)


def item(sequence: Node | None, name: str) -> tuple[int, Node] | None:
    """The element of a list named `name` (a mapping with that `name`, or that scalar)."""
    if not isinstance(sequence, SequenceNode):
        return None
    for index, element in enumerate(sequence.value):
        if text(element) == name or text(get(element, "name")) == name:
            return index, element
    return None


# --- workloads ------------------------------------------------------------------------------------------


def _group(api_version: str | None) -> str | None:
    if api_version is None:
        return None
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def find(root: Node, number: int) -> Iterator[Found]:
    """The workloads of one document: itself, or each workload item of a List."""
    if text(get(root, "kind")) == "List" and text(get(root, "apiVersion")) == "v1":
        items = get(root, "items")
        for element in items.value if isinstance(items, SequenceNode) else ():
            yield from find(element, number)
        return
    group = _group(text(get(root, "apiVersion")))
    kind = text(get(root, "kind"))
    path = WORKLOAD_TEMPLATES.get((group, kind)) if group is not None and kind else None
    if path is None or kind is None:
        return
    metadata = get(root, "metadata")
    name = text(get(metadata, "name")) or text(get(metadata, "generateName")) or "<unnamed>"
    namespace = text(get(metadata, "namespace"))
    where = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
    where += f" (document {number})"
    node: Node | None = root
    for key in path:
        node = get(node, key)
        if node is None:
            raise InjectError(
                f"{where}: missing {'.'.join(path)}", hint="the workload needs a pod template to inject into"
            )
    if not isinstance(node, MappingNode):
        raise InjectError(f"{where}: {'.'.join(path) or 'the pod'} is not a mapping", hint=FIX)
    yield Found(kind=kind, name=name, namespace=namespace, document=number, template=node)


def near(template: MappingNode) -> list[tuple[Node, Node]]:
    """Entries of a pod template whose indentation new entries copy: its spec, containers and volumes."""
    found: list[tuple[Node, Node]] = []
    spec = entry(template, "spec")
    if spec is not None:
        found.append((spec[1], spec[2]))
        for key in ("containers", "volumes", "initContainers"):
            child = entry(spec[2], key)
            if child is not None:
                found.append((child[1], child[2]))
    return found
