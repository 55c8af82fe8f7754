#!/usr/bin/env bash
# Mini copy of envoyproxy/envoy ci/do_ci.sh as it was before the 2023 rework
# (2021-2022: BAZEL_BUILD_OPTIONS array, contrib, `if/elif` over "bazel.*" targets):
#   bazel.release.server_only  -> ${ENVOY_DELIVERY_DIR}/envoy/envoy  (-c opt, symbols kept;
#                                 upstream adds envoy.dwp beside it)
#   bazel.debug.server_only    -> ${ENVOY_DELIVERY_DIR}/envoy/envoy  (-c dbg)
#   bazel.dev                  -> ${ENVOY_DELIVERY_DIR}/envoy/envoy  (fastbuild)
# with ENVOY_BUILD_DIR=/build/envoy (no arch directory yet) and
# ENVOY_DELIVERY_DIR=$ENVOY_BUILD_DIR/source/exe inside run_envoy_docker.sh.
# There is no release.server_only and no release.tar.zst in this generation.

set -e

# TODO(phlax): Clarify and/or integrate SRCDIR and ENVOY_SRCDIR
export SRCDIR="${SRCDIR:-$PWD}"
export ENVOY_SRCDIR="${ENVOY_SRCDIR:-$PWD}"

# shellcheck source=ci/build_setup.sh
. "$(dirname "$0")"/build_setup.sh

cd "${SRCDIR}"

echo "building using ${NUM_CPUS} CPUs"
echo "building for ${ENVOY_BUILD_ARCH}"

function bazel_binary_build() {
  local BINARY_TYPE="$1"
  if [[ "${BINARY_TYPE}" == "release" ]]; then
    COMPILE_TYPE="opt"
  elif [[ "${BINARY_TYPE}" == "debug" ]]; then
    COMPILE_TYPE="dbg"
  elif [[ "${BINARY_TYPE}" == "fastbuild" ]]; then
    COMPILE_TYPE="fastbuild"
  fi

  local BUILD_TARGET="$2"
  local EXE_NAME="$3"
  local FINAL_DELIVERY_DIR="${ENVOY_DELIVERY_DIR}"/"${EXE_NAME}"
  mkdir -p "${FINAL_DELIVERY_DIR}"

  echo "Building (type=${BINARY_TYPE} target=${BUILD_TARGET} name=${EXE_NAME})..."
  ENVOY_BIN=$(echo "${BUILD_TARGET}" | sed -e 's#^@\([^/]*\)/#external/\1#;s#^//##;s#:#/#')
  echo "ENVOY_BIN=${ENVOY_BIN}"

  bazel build "${BAZEL_BUILD_OPTIONS[@]}" -c "${COMPILE_TYPE}" "${BUILD_TARGET}"

  # Copy the built envoy binary somewhere that we can access outside of the
  # container.
  cp -f bazel-bin/"${ENVOY_BIN}" "${FINAL_DELIVERY_DIR}"/envoy
  chmod 0755 "${FINAL_DELIVERY_DIR}"/envoy
  # Upstream also builds ${ENVOY_BUILD_DEBUG_INFORMATION} and copies envoy.dwp
  # here, then cp_binary_for_image_build; the sample keeps DWARF in the binary.
}

function bazel_envoy_binary_build() {
  bazel_binary_build "$1" "${ENVOY_BUILD_TARGET}" envoy
}

CI_TARGET=$1
shift || true

if [[ "$CI_TARGET" == "bazel.release.server_only" ]]; then
  echo "bazel release build..."
  bazel_envoy_binary_build release
  exit 0
elif [[ "$CI_TARGET" == "bazel.debug.server_only" ]]; then
  echo "bazel debug build..."
  bazel_envoy_binary_build debug
  exit 0
elif [[ "$CI_TARGET" == "bazel.dev" ]]; then
  echo "bazel fastbuild build..."
  bazel_envoy_binary_build fastbuild
  exit 0
else
  echo "Invalid do_ci.sh target, see ci/README.md for valid targets."
  exit 1
fi
