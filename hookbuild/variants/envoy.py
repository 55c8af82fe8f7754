"""Plain Envoy, built by Envoy's own CI scripts, replacing /usr/local/bin/envoy in the Envoy image."""

from hookbuild.build.systems import envoy_ci
from hookbuild.variants.variant import Variant

VARIANT = Variant(
    name="envoy",
    title="Modified Envoy",
    image_name="envoy",
    dockerfile="envoy.dockerfile",
    binary_in_image="/usr/local/bin/envoy",
    base_image="docker.io/envoyproxy/envoy:v1.36.2",
    sample_base_image="hookbuild-sample/envoy:sample",
    build_system=envoy_ci.SYSTEM,
    target="release.server_only",
    symbols_config=None,  # release.server_only ships dbg/envoy with symbols beside the stripped one
    needs_proxy=False,
    samples={"envoy": "envoy"},
    sample_shapes={"2022": {"envoy": "envoy-2022"}},  # bazel.release.server_only, no arch dir, no bundle
    build_image_setting="envoy_build_image",
    sample_build_image="hookbuild-sample/envoy-build:sample",
)
