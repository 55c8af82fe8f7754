# No-op stand-in for envoy/bazel/repositories.bzl (upstream declares ~100 deps).
def envoy_dependencies(skip_targets = []):
    pass
