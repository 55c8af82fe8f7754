# The seed's custom_istio.dockerfile: istio/proxyv2 with the hookpoint Envoy in place of its own.
# pilot-agent stays (the sidecar's entrypoint, and istio-init uses the same image), only Envoy changes.
ARG BASE_IMAGE=docker.io/istio/proxyv2:1.28.0
FROM ${BASE_IMAGE}
# bpftrace, so `trace_all.sh -m exec` can run the release's trace.bt inside the sidecar, and the extra
# packages a version records (istio 12.0: linux-tools-* for perf); proxyv2 is Ubuntu-based, apt works.
# istio-perf images are built FROM an istio release's image and carry it too.
ARG TRACER_PACKAGES="bpftrace"
ARG PACKAGES=""
RUN if [ -n "$TRACER_PACKAGES$PACKAGES" ]; then \
      export DEBIAN_FRONTEND=noninteractive \
      && apt-get update && apt-get install -y --no-install-recommends $TRACER_PACKAGES $PACKAGES \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY envoy /usr/local/bin/envoy
# Uprobe scripts and trace_all.sh for this exact binary, so a sidecar carries its own tracer.
COPY tracing/ /usr/local/share/hookbuild/
