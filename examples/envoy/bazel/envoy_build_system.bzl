# Stand-in for envoy/bazel/envoy_build_system.bzl. Upstream defines
# envoy_cc_binary & co. on top of rules_cc, which cannot be fetched offline;
# the sample builds with genrules and the host g++ instead (see
# //source/exe:BUILD). Kept so that `load("@envoy//bazel:envoy_build_system.bzl", ...)`
# resolves for consumers.

def envoy_package():
    pass

ENVOY_SAMPLE_COPTS = "-std=c++17 -O2 -g -Wall -Werror -fno-omit-frame-pointer"

def envoy_sample_binary(name, srcs, flavor = "envoy", visibility = ["//visibility:public"]):
    """A statically linked C++ binary built by the host g++ (output file = `name`).

    Always `-O2 -g`: stripping is the consumer's (or --config=release's) business.
    `-static-pie` because the sample images are busybox with no libstdc++.
    """
    native.genrule(
        name = name + "_genrule",
        srcs = srcs + ["@envoy//source/common/common:headers"],
        outs = [name],
        tools = ["@envoy//:VERSION.txt"],
        cmd = " ".join([
            "ROOT=$$(dirname $(location @envoy//:VERSION.txt));",
            "g++ " + ENVOY_SAMPLE_COPTS,
            "-I$$ROOT",
            "-DENVOY_VERSION=\\\"$$(cat $(location @envoy//:VERSION.txt))\\\"",
            "-DENVOY_BUILD_FLAVOR=\\\"" + flavor + "\\\"",
            "-static-pie -o $@",
            "$$(for f in $(SRCS); do case $$f in *.cc) echo $$f;; esac; done)",
        ]),
        message = "Compiling and linking " + name + " (host g++)",
        visibility = visibility,
    )
