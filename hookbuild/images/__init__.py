"""Container images: references, the Docker engine (build, check, copy), and registries (push, read back)."""
