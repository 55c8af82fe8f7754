# No-op stand-in for envoy/bazel/dependency_imports.bzl.
def envoy_dependency_imports(go_version = None, jq_version = None, yq_version = None, buf_version = None):
    pass
