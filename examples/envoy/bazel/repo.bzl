# No-op stand-in for envoy/bazel/repo.bzl.
def envoy_repo():
    pass
