"""Envoy binaries: ELF reading, hookpoint symbols, their cache, demangling, and diffs between builds."""
