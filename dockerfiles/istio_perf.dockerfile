# istio-perf: a recorded istio release image (pinned by digest) + perf + the perf-FIFO helper.
# The Envoy stays the base's (the release's hookpoint build); the build context's `envoy` is not used.
# Build context: this file, perf-fifo (from dockerfiles/), tracing/ (the release's uprobe scripts).
#   build args: BASE_IMAGE  e.g. 127.0.0.1:5000/hookbuild/istio-proxy@sha256:...
#               PACKAGES    apt packages, e.g. the record's "linux-tools-6.8.0-71-generic" (Ubuntu base)
#                           or "linux-perf" (Debian base); empty: install nothing
ARG BASE_IMAGE=docker.io/istio/proxyv2:1.28.0
FROM ${BASE_IMAGE}
# istio/proxyv2 sets no USER (the injector sets runAsUser 1337); root for apt in any case.
USER root
ARG PACKAGES=""
RUN if [ -n "${PACKAGES}" ]; then \
        export DEBIAN_FRONTEND=noninteractive \
        && apt-get update \
        && apt-get install -y --no-install-recommends ${PACKAGES} \
        && rm -rf /var/lib/apt/lists/*; \
    fi
# Starts/stops `perf record` on Envoy when Envoy writes "start [NAME]" / "stop" to its FIFO:
#   hookbuild-perf-fifo [/tmp/hookbuild-perf.fifo]   (perf_event_open: add SYS_ADMIN, or privileged)
COPY perf-fifo /usr/local/bin/hookbuild-perf-fifo
RUN chmod 0755 /usr/local/bin/hookbuild-perf-fifo
COPY tracing/ /usr/local/share/hookbuild/
