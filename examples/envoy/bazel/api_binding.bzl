# No-op stand-in for envoy/bazel/api_binding.bzl (upstream binds @envoy_api).
def envoy_api_binding():
    pass
