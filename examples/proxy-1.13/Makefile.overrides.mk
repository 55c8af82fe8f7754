# (hookbuild sample) Per-repo overrides, read by Makefile (as istio/proxy release-1.13).
# this repo is not on the container plan by default
BUILD_WITH_CONTAINER ?= 0
IMAGE_NAME ?= build-tools-proxy
