"""Image references as Docker reads them: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`, and registries."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hookbuild.errors import UsageError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]{1,5})?)"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_REFERENCE = re.compile(
    rf"(?:(?P<registry>{_REGISTRY})/)?(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>sha256:[a-f0-9]{{64}}))?"
)


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    registry: str
    repository: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        match = _REFERENCE.fullmatch(text)
        if not match or not match.group("tag"):
            raise UsageError(
                f"invalid image reference {text!r}",
                hint="write REGISTRY/NAMESPACE/NAME:TAG, e.g. 127.0.0.1:5000/hookbuild/istio-proxy:12.1",
            )
        registry = match.group("registry") or ""
        if registry and "." not in registry and ":" not in registry and registry != "localhost":
            # docker's rule: a first component without '.' or ':' is a Docker Hub namespace.
            return cls(
                registry="docker.io",
                repository=f"{registry}/{match.group('repository')}",
                tag=match.group("tag"),
            )
        return cls(
            registry=registry or "docker.io", repository=match.group("repository"), tag=match.group("tag")
        )

    @classmethod
    def parse_any(cls, text: str) -> ImageRef:
        """Also accept `repo@sha256:...` and an untagged `repo` (the tag then reads `latest`)."""
        match = _REFERENCE.fullmatch(text)
        if not match:
            return cls.parse(text)  # raises the usual error
        tag = match.group("tag") or "latest"
        return cls.parse(
            f"{match.group('registry') + '/' if match.group('registry') else ''}"
            f"{match.group('repository')}:{tag}"
        )

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"

    def pinned(self, digest: str) -> str:
        """`registry/repo@sha256:...`: the image to deploy, immune to the tag moving."""
        return f"{self.name}@{digest}"


def validate_registry(registry: str) -> str:
    if not re.fullmatch(_REGISTRY, registry):
        raise UsageError(
            f"invalid registry {registry!r}",
            hint="write HOST[:PORT] without a scheme or path, e.g. 127.0.0.1:5000 or quay.io",
        )
    return registry


def validate_namespace(namespace: str) -> str:
    """The namespace part of `REGISTRY/NAMESPACE/NAME:TAG`, as Docker allows it."""
    if not re.fullmatch(rf"{_COMPONENT}(?:/{_COMPONENT})*", namespace):
        raise UsageError(
            f"invalid namespace {namespace!r} (--namespace, setting namespace, HOOKBUILD_NAMESPACE)",
            hint="lowercase letters and digits, separated by '.', '_' or '-', with '/' between levels: "
            "e.g. myorg or my-org/tracing",
        )
    return namespace


def pinned(reference: str, digest: str | None) -> str:
    """`reference` pinned by `digest` (its tag dropped); unchanged without a digest."""
    if digest is None:
        return reference
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return f"{name}@{digest}"
