#!/bin/bash

# WARNING: DO NOT EDIT, THIS FILE IS PROBABLY A COPY
#
# (hookbuild sample) Copy of istio/common-files common/scripts/run.sh, plus one
# sample-only block (SAMPLE_HOST_MOUNTS) and without the go/cargo volumes.
#
# Runs "$@" in the build container ${IMG}: the checkout at /work, the named
# volume `cache` at /home/.cache (Bazel's output base lives there, so the
# `bazel-bin` link left in the checkout dangles on the host), HOME=/home, the
# caller's environment passed through an env file (minus ENV_BLOCKLIST).
# Hooks: CONDITIONAL_HOST_MOUNTS (appended), CONTAINER_OPTIONS, DOCKER_RUN_OPTIONS.

set -e

WD=$(dirname "$0")
WD=$(cd "$WD"; pwd)

export FOR_BUILD_CONTAINER=1
# shellcheck disable=SC1090,SC1091
source "${WD}/setup_env.sh"


MOUNT_SOURCE="${MOUNT_SOURCE:-${PWD}}"
MOUNT_DEST="${MOUNT_DEST:-/work}"

read -ra DOCKER_RUN_OPTIONS <<< "${DOCKER_RUN_OPTIONS:-}"

[[ -t 1 ]] && DOCKER_RUN_OPTIONS+=("-it")
[[ ${UID} -ne 0 ]] && DOCKER_RUN_OPTIONS+=(-u "${UID}:${DOCKER_GID}")

# hookbuild sample only: the build image is busybox, so the host toolchain (bash,
# make, bazel, java, g++) is mounted read-only. SAMPLE_HOST_MOUNTS="" disables it.
SAMPLE_HOST_MOUNTS="${SAMPLE_HOST_MOUNTS---mount type=bind,source=/usr,destination=/usr,readonly --mount type=bind,source=/lib,destination=/lib,readonly --mount type=bind,source=/lib64,destination=/lib64,readonly --mount type=bind,source=/bin,destination=/bin,readonly --mount type=bind,source=/etc,destination=/etc,readonly}"

# $CONTAINER_OPTIONS becomes an empty arg when quoted, so SC2086 is disabled for the
# following command only
# shellcheck disable=SC2086
"${CONTAINER_CLI}" run \
    --rm \
    "${DOCKER_RUN_OPTIONS[@]}" \
    --init \
    --sig-proxy=true \
    ${DOCKER_SOCKET_MOUNT:--v /var/run/docker.sock:/var/run/docker.sock} \
    $CONTAINER_OPTIONS \
    --env-file <(env | grep -v ${ENV_BLOCKLIST}) \
    -e IN_BUILD_CONTAINER=1 \
    -e TZ="${TIMEZONE:-$TZ}" \
    --mount "type=bind,source=${MOUNT_SOURCE},destination=/work" \
    --mount "type=volume,source=cache,destination=/home/.cache" \
    ${SAMPLE_HOST_MOUNTS} \
    ${CONDITIONAL_HOST_MOUNTS} \
    -w "${MOUNT_DEST}" "${IMG}" "$@"
