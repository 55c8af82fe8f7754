"""What a release is injected into, per variant, and what that container needs for a uprobe tracer.

- istio, istio-perf: the `istio-proxy` container Istio merges over its injected sidecar (added when a pod
  has none; patched in place when the pod declares one, also as a native sidecar in `initContainers`).
  Istio's injection policy applies, and the proxy's group is set explicitly (see `PROXY_GID`).
- cilium: the Envoy container of the `cilium-envoy` DaemonSet; a manifest without one is refused.
- envoy (or any release with `--container NAME`): a named Envoy container, patched where it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hookbuild.errors import UsageError

ISTIO_PROXY = "istio-proxy"
CILIUM_ENVOY = "cilium-envoy"
MESH_VARIANTS = ("istio", "istio-perf")

# Istio's proxy GID. istio-iptables keeps Envoy's own traffic out of the redirect by owner: `--uid-owner`
# with the proxy UID (never 0) and `--gid-owner` with this GID. A proxy that runs as root for the tracer is
# only still excluded through its group, which Istio's template sets to 1337; set it explicitly so a user
# securityContext or a changed template cannot lose it.
PROXY_GID = 1337

# What a uprobe tracer needs from the container's securityContext. Istio's template otherwise keeps
# runAsUser 1337, runAsNonRoot true, readOnlyRootFilesystem true and drops ALL capabilities; a tracer
# `kubectl exec`'d into the container runs as the container's user, and as UID 1337 it cannot load BPF
# programs even with privileged and SYS_ADMIN, so the container runs as root. The API server rejects
# privileged together with allowPrivilegeEscalation false, so both are set. bcc and perf write outside /tmp.
SECURITY_CONTEXT: tuple[tuple[str, Any], ...] = (
    ("allowPrivilegeEscalation", True),
    ("privileged", True),
    ("runAsUser", 0),
    ("runAsNonRoot", False),
    ("readOnlyRootFilesystem", False),
)
CAPABILITY = "SYS_ADMIN"


@dataclass(frozen=True, kw_only=True)
class HostVolume:
    """A volume the tracer needs, named so it can never be (or share) one of the app's volumes."""

    name: str
    mount_path: str
    source: dict[str, Any]


# bcc compiles against the node's kernel headers (/lib/modules/$(uname -r)/build links into /usr/src on
# Debian and Ubuntu); tracers write their output and caches to /tmp.
VOLUMES: tuple[HostVolume, ...] = (
    HostVolume(
        name="hookbuild-lib-modules",
        mount_path="/lib/modules",
        source={"hostPath": {"path": "/lib/modules", "type": "Directory"}},
    ),
    HostVolume(
        name="hookbuild-usr-src",
        mount_path="/usr/src",
        source={"hostPath": {"path": "/usr/src", "type": "Directory"}},
    ),
    HostVolume(name="hookbuild-tmp", mount_path="/tmp", source={"emptyDir": {}}),
)


@dataclass(frozen=True, kw_only=True)
class Target:
    """The container a release goes into, and how."""

    variant: str
    container: str
    create: bool  # add the container to pods that have none (Istio merges it over its sidecar)
    mesh: bool  # Istio's injection policy applies and the proxy GID is set
    gid: int | None  # a GID given on the command line; None: the manifest's, else PROXY_GID

    def describe(self) -> str:
        return f"the {self.container} container"


def for_release(variant: str, *, container: str | None = None, gid: int | None = None) -> Target:
    """The target of a release of `variant`; `container` names a plain Envoy container instead."""
    if gid is not None and not 0 < gid < 2**31:
        raise UsageError(f"invalid proxy GID {gid}", hint="give the mesh's proxy GID, e.g. 1337")
    if container and container != ISTIO_PROXY:
        return Target(variant=variant, container=container, create=False, mesh=False, gid=None)
    if variant in MESH_VARIANTS:
        return Target(variant=variant, container=ISTIO_PROXY, create=True, mesh=True, gid=gid)
    if variant == "cilium":
        return Target(variant=variant, container=CILIUM_ENVOY, create=False, mesh=False, gid=None)
    raise UsageError(
        f"releases of variant {variant} have no container they go into by default",
        hint="name the Envoy container with --container NAME (e.g. a gateway's envoy container)",
    )
