#!/usr/bin/env bash
# Upstream (2021-2022) reads the build image SHA from .bazelrc's rbe-toolchain
# container line; the sample names a tag that is not on this machine.
ENVOY_BUILD_SHA="${ENVOY_BUILD_SHA:-2022-sample}"
ENVOY_BUILD_CONTAINER_SHA="${ENVOY_BUILD_CONTAINER_SHA:-}"
