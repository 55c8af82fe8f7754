"""Cilium's Envoy: built in cilium/proxy with cilium's patches, replacing /usr/bin/cilium-envoy."""

from hookbuild.build.systems import cilium_make
from hookbuild.variants.variant import Variant

VARIANT = Variant(
    name="cilium",
    title="Cilium Envoy modified",
    image_name="cilium-envoy",
    dockerfile="cilium.dockerfile",
    binary_in_image="/usr/bin/cilium-envoy",
    base_image="quay.io/cilium/cilium-envoy:v1.34.4-1754043245-30bbbb7ee2f1d01270a5cd1ba8d6ac4bd7a5e6a8",
    sample_base_image="hookbuild-sample/cilium-envoy:sample",
    build_system=cilium_make.SYSTEM,
    target="bazel-bin/cilium-envoy",
    symbols_config="release_debug",
    can_strip=True,
    samples={"envoy": "envoy", "proxy": "cilium-proxy"},
    sample_shapes={"1.33": {"envoy": "envoy", "proxy": "cilium-proxy-1.33"}},  # DEBUG only, no RELEASE_DEBUG
    build_image_setting="cilium_build_image",
    sample_build_image="hookbuild-sample/envoy-build:sample",
    # The sample builder is busybox: the host toolchain (bash, make, bazel, java, g++) comes in read-only.
    sample_container_options=tuple(
        word for path in ("/usr", "/lib", "/lib64", "/bin", "/etc") for word in ("-v", f"{path}:{path}:ro")
    ),
)
