# No-op stand-in for envoy/bazel/api_repositories.bzl.
def envoy_api_dependencies():
    pass
