# The seed's custom_istio.dockerfile: istio/proxyv2 with the hookpoint Envoy in place of its own.
# pilot-agent stays (the sidecar's entrypoint, and istio-init uses the same image), only Envoy changes.
ARG BASE_IMAGE=docker.io/istio/proxyv2:1.28.0
FROM ${BASE_IMAGE}
COPY envoy /usr/local/bin/envoy
# Uprobe scripts and trace_all.sh for this exact binary, so a sidecar carries its own tracer.
COPY tracing/ /usr/local/share/hookbuild/
