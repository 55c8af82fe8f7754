#!/usr/bin/env bash
# Mini copy of envoyproxy/envoy ci/run_envoy_docker.sh (Linux branch only), 2021-2022:
# image envoyproxy/envoy-build-ubuntu:${ENVOY_BUILD_SHA}, and BAZEL_STARTUP_EXTRA_OPTIONS is
# NOT passed into the container (only BAZEL_STARTUP_OPTIONS).
#   ./ci/run_envoy_docker.sh './ci/do_ci.sh release.server_only'
# Image: ${IMAGE_NAME}:${IMAGE_ID} (exported as ENVOY_BUILD_IMAGE), defaults as upstream:
#   IMAGE_NAME=envoyproxy/envoy-build-ubuntu, IMAGE_ID=${ENVOY_BUILD_SHA} (not on this machine:
#   hookbuild passes IMAGE_NAME/IMAGE_ID from its envoy build-image setting).
# Mounts: the checkout ($PWD) at /source, ENVOY_DOCKER_BUILD_DIR
#   (default /tmp/envoy-docker-build) at /build.
set -e

CURRENT_SCRIPT_DIR="$(realpath "$(dirname "${BASH_SOURCE[0]}")")"

# shellcheck source=ci/envoy_build_sha.sh
. "${CURRENT_SCRIPT_DIR}"/envoy_build_sha.sh

read -ra ENVOY_DOCKER_OPTIONS <<< "${ENVOY_DOCKER_OPTIONS:-}"

export HTTP_PROXY="${HTTP_PROXY:-${http_proxy:-}}"
export HTTPS_PROXY="${HTTPS_PROXY:-${https_proxy:-}}"
export NO_PROXY="${NO_PROXY:-${no_proxy:-}}"

[[ -z "${IMAGE_NAME}" ]] && IMAGE_NAME="envoyproxy/envoy-build-ubuntu"
# Upstream runs as root and drops to a `envoybuild` user with the host UID via
# useradd/sudo; the sample image (busybox) has neither, so it stays root.
ENVOY_DOCKER_OPTIONS+=(-u root:root)
DEFAULT_ENVOY_DOCKER_BUILD_DIR=/tmp/envoy-docker-build
BUILD_DIR_MOUNT_DEST=/build
SOURCE_DIR="${PWD}"
SOURCE_DIR_MOUNT_DEST=/source
START_COMMAND=(
    "/bin/bash"
    "-lc"
    "cd /source && $*")

# The IMAGE_ID defaults to the CI hash but can be set to an arbitrary image ID (found with 'docker
# images').
if [[ -z "${IMAGE_ID}" ]]; then
    IMAGE_ID="${ENVOY_BUILD_SHA}"
    if [[ -n "$ENVOY_BUILD_CONTAINER_SHA" ]]; then
        IMAGE_ID="${ENVOY_BUILD_SHA}@sha256:${ENVOY_BUILD_CONTAINER_SHA}"
    fi
fi
[[ -z "${ENVOY_DOCKER_BUILD_DIR}" ]] && ENVOY_DOCKER_BUILD_DIR="${DEFAULT_ENVOY_DOCKER_BUILD_DIR}"
mkdir -p "${ENVOY_DOCKER_BUILD_DIR}"

[[ -t 1 ]] && ENVOY_DOCKER_OPTIONS+=("-it")

export ENVOY_BUILD_IMAGE="${IMAGE_NAME}:${IMAGE_ID}"

VOLUMES=(
    -v "${ENVOY_DOCKER_BUILD_DIR}":"${BUILD_DIR_MOUNT_DEST}"
    -v "${SOURCE_DIR}":"${SOURCE_DIR_MOUNT_DEST}")

# hookbuild sample only: the build image is busybox, so the host toolchain
# (bash, bazel, java, g++, strip, zstd) is mounted read-only. Set
# ENVOY_SAMPLE_HOST_MOUNTS="" to use a real build image.
read -ra SAMPLE_HOST_MOUNTS <<< "${ENVOY_SAMPLE_HOST_MOUNTS--v /usr:/usr:ro -v /lib:/lib:ro -v /lib64:/lib64:ro -v /bin:/bin:ro -v /etc:/etc:ro}"
VOLUMES+=("${SAMPLE_HOST_MOUNTS[@]}")

export BUILD_DIR="${BUILD_DIR_MOUNT_DEST}"

docker run --rm \
       "${ENVOY_DOCKER_OPTIONS[@]}" \
       "${VOLUMES[@]}" \
       -e BUILD_DIR \
       -e HTTP_PROXY \
       -e HTTPS_PROXY \
       -e NO_PROXY \
       -e BAZEL_STARTUP_OPTIONS \
       -e BAZEL_BUILD_EXTRA_OPTIONS \
       -e BAZEL_EXTRA_TEST_OPTIONS \
       -e BAZEL_REMOTE_CACHE \
       -e NUM_CPUS \
       -e ENVOY_BUILD_IMAGE \
       -e ENVOY_SRCDIR \
       -e ENVOY_BUILD_TARGET \
       -e ENVOY_BUILD_DEBUG_INFORMATION \
       -e ENVOY_BUILD_ARCH \
       "${ENVOY_BUILD_IMAGE}" \
       "${START_COMMAND[@]}"
