"""Container images: references, the Docker engine (build, check, copy), and registries (push through the
engine, read back; the registry HTTP API v2 for tags, manifests and blobs by digest)."""
