"""Building Envoy: the sources, the WORKSPACE edit, the build systems, and where the binary lands."""
