#!/usr/bin/env bash
# Mini copy of envoyproxy/envoy ci/build_setup.sh (2021-2022): sourced by do_ci.sh.
# ENVOY_BUILD_DIR has no arch directory in this generation.

set -e

export ENVOY_BUILD_ARCH="${ENVOY_BUILD_ARCH:-$(uname -m)}"
export NUM_CPUS="${NUM_CPUS:-$(nproc)}"
export ENVOY_SRCDIR="${ENVOY_SRCDIR:-$PWD}"
export ENVOY_BUILD_TARGET="${ENVOY_BUILD_TARGET:-//source/exe:envoy-static}"
export ENVOY_CONTRIB_BUILD_TARGET="${ENVOY_CONTRIB_BUILD_TARGET:-//contrib/exe:envoy-static}"

if [[ -z "${BUILD_DIR}" ]]; then
    echo "BUILD_DIR not set - defaulting to ~/.cache/envoy-bazel" >&2
    BUILD_DIR="${HOME}/.cache/envoy-bazel"
fi
export BUILD_DIR

read -ra BAZEL_BUILD_EXTRA_OPTIONS <<< "${BAZEL_BUILD_EXTRA_OPTIONS:-}"
read -ra BAZEL_EXTRA_TEST_OPTIONS <<< "${BAZEL_EXTRA_TEST_OPTIONS:-}"

function cleanup() {
  # Remove build artifacts. This doesn't mess with incremental builds as these
  # are just symlinks.
  rm -rf "${ENVOY_SRCDIR}"/bazel-*
}

cleanup
trap cleanup EXIT

# NB: do not use bazel before here to ensure correct directories.
_bazel="$(which bazel)"

BAZEL_STARTUP_OPTIONS=(
    "--output_user_root=${BUILD_DIR}/bazel_root"
    "--output_base=${BUILD_DIR}/bazel_root/base")

bazel () {
    "$_bazel" "${BAZEL_STARTUP_OPTIONS[@]}" "$@"
}

BAZEL_BUILD_OPTIONS=(
  "--verbose_failures"
  "--noshow_progress"
  "--noshow_loading_progress"
  "--local_cpu_resources=${NUM_CPUS}"
  "--repository_cache=${BUILD_DIR}/repository_cache"
  "${BAZEL_BUILD_EXTRA_OPTIONS[@]}"
  "${BAZEL_EXTRA_TEST_OPTIONS[@]}")

if [[ -n "${BAZEL_REMOTE_CACHE}" ]]; then
    BAZEL_BUILD_OPTIONS+=("--remote_cache=${BAZEL_REMOTE_CACHE}")
fi

# Also setup some space for building Envoy standalone.
export ENVOY_BUILD_DIR="${BUILD_DIR}"/envoy
mkdir -p "${ENVOY_BUILD_DIR}"

# This is where we copy build deliverables to.
export ENVOY_DELIVERY_DIR="${ENVOY_BUILD_DIR}"/source/exe
mkdir -p "${ENVOY_DELIVERY_DIR}"
