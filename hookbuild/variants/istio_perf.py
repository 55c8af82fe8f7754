"""Istio with perf: a recorded istio release's image plus perf and the FIFO helper that starts it.

The seed's "insert fifo write to open perf": Envoy writes `start`/`stop` lines to a FIFO and
hookbuild-perf-fifo turns them into `perf record` runs on that Envoy. Nothing is compiled: the Envoy (and
its hookpoints) is the one of the release it builds on.
"""

from hookbuild.variants.variant import Variant

VARIANT = Variant(
    name="istio-perf",
    title="Istio perf",
    image_name="istio-perf",
    dockerfile="istio_perf.dockerfile",
    binary_in_image="/usr/local/bin/envoy",
    base_image="",  # the based_on release's image, pinned by digest
    sample_base_image="",
    build_system=None,
    needs_proxy=False,
    builds_on="istio",
    sample_packages=("linux-perf",),  # the sample proxyv2 is Debian; Istio's is Ubuntu (linux-tools-*)
    context_files=("perf-fifo",),
    check_command=("perf", "--version"),
)
