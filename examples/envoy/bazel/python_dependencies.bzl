# Stand-in for envoy/bazel/python_dependencies.bzl. Upstream creates the pip
# hub repository @base_pip3, whose requirements.bzl istio/proxy's WORKSPACE
# loads next; this creates an offline one with a no-op install_deps().

def _base_pip3_impl(rctx):
    rctx.file("BUILD.bazel", "")
    rctx.file("requirements.bzl", "def install_deps():\n    pass\n")

_base_pip3 = repository_rule(implementation = _base_pip3_impl)

def envoy_python_dependencies():
    if "base_pip3" not in native.existing_rules():
        _base_pip3(name = "base_pip3")
