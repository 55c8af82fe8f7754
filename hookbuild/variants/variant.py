"""A variant's recipe as data: sources, build system, image, where the binary goes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hookbuild.build.spec import BuildSystem


@dataclass(frozen=True, kw_only=True)
class Variant:
    name: str
    title: str
    image_name: str
    dockerfile: str  # file name under dockerfiles/
    binary_in_image: str
    base_image: str  # the upstream image the release is built FROM
    sample_base_image: str  # the locally made stand-in (scripts/setup.sh)
    build_system: BuildSystem | None  # None: the binary comes from the `builds_on` release's image
    target: str = ""  # the build system's target, e.g. istio/proxy's `build_envoy`
    symbols_config: str | None = None  # Bazel config that keeps symbols (release configs strip hookpoints)
    needs_proxy: bool = True
    can_strip: bool = False  # offers a stripped release traced through a debug build's addresses
    samples: dict[str, str] = field(default_factory=dict)  # role -> folder under examples/
    sample_shapes: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # older upstream shapes: name -> samples
    build_image_setting: str | None = None  # the Settings field naming this variant's build image
    sample_build_image: str | None = None  # the locally made build image the samples build in
    sample_container_options: tuple[str, ...] = ()  # `docker run` options of the samples' build container
    builds_on: str | None = None  # a variant whose recorded release image this one is built FROM
    sample_packages: tuple[str, ...] = ()  # the image packages of a sample release (Debian names)
    context_files: tuple[str, ...] = ()  # extra files from dockerfiles/ the Dockerfile COPYs
    check_command: tuple[str, ...] | None = None  # must run in the built image before it is pushed
