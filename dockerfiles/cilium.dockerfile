# cilium/cilium-envoy with the hookpoint build in place of its own cilium-envoy.
# Upstream builds this image with BuildKit (docker buildx); replacing one file needs no BuildKit feature, so
# the engine's classic builder (what the Docker SDK speaks) makes the same image.
ARG BASE_IMAGE=quay.io/cilium/cilium-envoy:v1.34.4-1754043245-30bbbb7ee2f1d01270a5cd1ba8d6ac4bd7a5e6a8
FROM ${BASE_IMAGE}
COPY envoy /usr/bin/cilium-envoy
COPY tracing/ /usr/local/share/hookbuild/
