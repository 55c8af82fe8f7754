# Upstream: the list of Envoy extensions compiled into istio-proxy (read by
# @envoy via @envoy_build_config). Unused by the sample build.
EXTENSIONS = {}
