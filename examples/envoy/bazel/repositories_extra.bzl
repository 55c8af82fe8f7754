# Stand-in for envoy/bazel/repositories_extra.bzl. istio/proxy calls it with
# ignore_root_user_error = True (hermetic Python refuses root otherwise).
def envoy_dependencies_extra(
        python_version = "3.12",
        ignore_root_user_error = False):
    pass
