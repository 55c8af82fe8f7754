"""The supply chain of a release (issue 13): what is in the image and where it came from, signed.

sbom (CycloneDX of the image's packages and the Envoy binary) · provenance (in-toto Statement, SLSA v1) ·
signing (keys, DSSE) · attach (cosign's `sha256-<hex>.att/.sbom` tags) · stage (the release's sign stage) ·
verify (fail closed) · promote (by digest, with the attachments). They speak to registries through
hookbuild.images.registry_api.
"""
