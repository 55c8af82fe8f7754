# The seed's custom_istio.dockerfile: istio/proxyv2 with the hookpoint Envoy in place of its own.
# pilot-agent stays (the sidecar's entrypoint, and istio-init uses the same image), only Envoy changes.
ARG BASE_IMAGE=docker.io/istio/proxyv2:1.28.0
FROM ${BASE_IMAGE}
# Extra packages a version records (istio 12.0: linux-tools-* for perf); proxyv2 is Ubuntu-based.
ARG PACKAGES=""
RUN if [ -n "$PACKAGES" ]; then \
      apt-get update && apt-get install -y --no-install-recommends $PACKAGES && rm -rf /var/lib/apt/lists/*; \
    fi
COPY envoy /usr/local/bin/envoy
# Uprobe scripts and trace_all.sh for this exact binary, so a sidecar carries its own tracer.
COPY tracing/ /usr/local/share/hookbuild/
