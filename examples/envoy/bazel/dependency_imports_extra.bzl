# No-op stand-in for envoy/bazel/dependency_imports_extra.bzl.
def envoy_dependency_imports_extra():
    pass
