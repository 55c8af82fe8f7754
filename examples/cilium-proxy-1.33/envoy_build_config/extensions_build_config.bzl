# Upstream: the Envoy extensions compiled into cilium-envoy. Unused by the sample.
EXTENSIONS = {}
