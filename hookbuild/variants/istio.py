"""The Istio sidecar: Envoy built inside istio/proxy, replacing /usr/local/bin/envoy in istio/proxyv2."""

from hookbuild.build.systems import istio_make
from hookbuild.variants.variant import Variant

VARIANT = Variant(
    name="istio",
    title="Modified Istio proxy",
    image_name="istio-proxy",
    dockerfile="custom_istio.dockerfile",
    binary_in_image="/usr/local/bin/envoy",
    base_image="docker.io/istio/proxyv2:1.28.0",
    sample_base_image="hookbuild-sample/proxyv2:sample",
    build_system=istio_make.SYSTEM,
    target="build_envoy",
    symbols_config="release-symbol",
    samples={"envoy": "envoy", "proxy": "proxy"},
    sample_shapes={
        "1.13": {"envoy": "envoy", "proxy": "proxy-1.13"}
    },  # //src/envoy:envoy, unanchored blocklist
    build_image_setting="istio_build_image",
    sample_build_image="hookbuild-sample/build-tools-proxy:sample",
)
