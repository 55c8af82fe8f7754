# (hookbuild sample) Per-repo overrides, read by Makefile.
# this repo is not on the container plan by default
BUILD_WITH_CONTAINER ?= 0

# The sample's build container, made locally by scripts/setup.sh. Upstream:
# gcr.io/istio-testing/build-tools-proxy:release-1.2x-<sha> (registry.istio.io/testing/... on master),
# computed by common/scripts/setup_env.sh from IMAGE_NAME/IMAGE_VERSION.
IMAGE_NAME ?= build-tools-proxy
IMG ?= hookbuild-sample/build-tools-proxy:sample
