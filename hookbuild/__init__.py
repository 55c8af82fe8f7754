"""hookbuild: build Envoy with hookpoint functions, ship it as an image, record it, trace it with uprobes.

Kept import-light on purpose: queries (`invoke versions`) must not pay for docker, git or numpy.
"""

__version__ = "0.1.0"
