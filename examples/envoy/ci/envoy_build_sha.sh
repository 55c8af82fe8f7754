#!/usr/bin/env bash
# Upstream derives the build image tag from .github/config.yml / .bazelrc; the
# sample's build image is made locally by scripts/setup.sh.
ENVOY_BUILD_SHA="${ENVOY_BUILD_SHA:-sample}"
ENVOY_BUILD_CONTAINER_SHA="${ENVOY_BUILD_CONTAINER_SHA:-}"
