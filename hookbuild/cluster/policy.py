"""Istio's injection policy (istio/istio pkg/kube/inject `injectRequired`): which pods Istio never injects.

A sidecar merged into a pod Istio skips is never merged: the pod keeps a bare, privileged, root
`istio-proxy` running `pilot-agent` without arguments, which exits. So those pods are left alone.
"""

from __future__ import annotations

from hookbuild.cluster.workloads import Found, get, text

INJECT = "sidecar.istio.io/inject"
# Istio's IgnoredNamespaces: system namespaces it never injects into.
IGNORED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "local-path-storage")


def skip_reason(found: Found) -> str | None:
    """Why Istio would not inject this workload's pods, or None when it would."""
    spec = get(found.template, "spec")
    if text(get(spec, "hostNetwork")) in ("true", "True", "TRUE"):
        return "hostNetwork: true"
    if found.namespace in IGNORED_NAMESPACES:
        return f"namespace {found.namespace}"
    metadata = get(found.template, "metadata")
    label = text(get(get(metadata, "labels"), INJECT))
    annotation = text(get(get(metadata, "annotations"), INJECT))
    # The label is the newer API; when both are set Istio follows the label.
    if label is not None:
        return f'label {INJECT}: "false"' if label == "false" else None
    if annotation == "false":
        return f'annotation {INJECT}: "false"'
    return None
