#!/usr/bin/env bash
# Mini copy of envoyproxy/envoy ci/do_ci.sh, with the targets hookbuild uses:
#   release.server_only         -> ${ENVOY_BUILD_DIR}/bin/release.tar.zst
#                                  (envoy, envoy-contrib stripped; dbg/envoy,
#                                  dbg/envoy-contrib with symbols)
#   release.server_only.binary  -> ${ENVOY_DELIVERY_DIR}/envoy/envoy  (-c opt)
#   dev                         -> ${ENVOY_DELIVERY_DIR}/envoy/envoy  (fastbuild)
#   debug.server_only           -> ${ENVOY_DELIVERY_DIR}/envoy/envoy  (-c dbg)
# with ENVOY_BUILD_DIR=/build/envoy/x64 and ENVOY_DELIVERY_DIR=$ENVOY_BUILD_DIR/source/exe
# inside run_envoy_docker.sh.

set -e

export SRCDIR="${SRCDIR:-$PWD}"
export ENVOY_SRCDIR="${ENVOY_SRCDIR:-$PWD}"

# shellcheck source=ci/build_setup.sh
. "$(dirname "$0")"/build_setup.sh

echo "building using ${NUM_CPUS} CPUs"
echo "building for ${ENVOY_BUILD_ARCH}"

cd "${SRCDIR}"

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
  # Upstream also copies envoy.dwp (split DWARF) here; the sample keeps DWARF
  # inside the binary.
}

function bazel_envoy_binary_build() {
  bazel_binary_build "$1" "${ENVOY_BUILD_TARGET}" envoy
}

CI_TARGET=$1
shift || true

if [[ "$CI_TARGET" =~ bazel.* ]]; then
    ORIG_CI_TARGET="$CI_TARGET"
    CI_TARGET="$(echo "${CI_TARGET}" | cut -d. -f2-)"
    echo "Using \`${ORIG_CI_TARGET}\` is deprecated, please use \`${CI_TARGET}\`"
fi

case $CI_TARGET in
    release.server_only)
        ENVOY_BINARY_DIR="${ENVOY_BUILD_DIR}/bin"
        if [[ -e "${ENVOY_BINARY_DIR}" ]]; then
            echo "Existing output directory found (${ENVOY_BINARY_DIR}), removing ..."
            rm -rf "${ENVOY_BINARY_DIR}"
        fi
        mkdir -p "$ENVOY_BINARY_DIR"
        BAZEL_RELEASE_OPTIONS=(
            --stripopt=--strip-all
            -c opt)
        # Build release binaries
        bazel build "${BAZEL_BUILD_OPTIONS[@]}" \
              "${BAZEL_RELEASE_OPTIONS[@]}" \
              //distribution/binary:release
        # Copy release binaries to binary export directory
        cp -a \
           "bazel-bin/distribution/binary/release.tar.zst" \
           "${ENVOY_BINARY_DIR}/release.tar.zst"
        echo "Release files created in ${ENVOY_BINARY_DIR}"
        ;;

    release.server_only.binary)
        echo "bazel release build..."
        bazel_envoy_binary_build release
        ;;

    dev)
        echo "bazel fastbuild build..."
        bazel_envoy_binary_build fastbuild
        ;;

    debug.server_only)
        echo "bazel debug build..."
        bazel_envoy_binary_build debug
        ;;

    info)
        bazel info "${BAZEL_BUILD_OPTIONS[@]}"
        ;;

    *)
        echo "Invalid do_ci.sh target (${CI_TARGET}), see ci/README.md for valid targets."
        exit 1
        ;;
esac
