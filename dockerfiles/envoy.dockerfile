# The Envoy image with the hookpoint build (dbg/envoy of release.tar.zst: with symbols) in place of its own.
ARG BASE_IMAGE=docker.io/envoyproxy/envoy:v1.36.2
FROM ${BASE_IMAGE}
COPY envoy /usr/local/bin/envoy
COPY tracing/ /usr/local/share/hookbuild/
