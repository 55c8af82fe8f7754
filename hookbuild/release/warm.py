"""The imports of the stages after the build, done while the build runs.

Waiting on the build leaves the GIL free, so a thread can import what the stages after it need (~0.5 s: the
Docker SDK, numpy-free symbols, the probe templates, tomlkit, cryptography, the CycloneDX model and its JSON
writer) off the release's critical path. hookbuild has no import cycle (tests/test_layout.py), so
the main thread importing the same modules meanwhile only waits for them; nothing is imported that a release
would not import anyway. Nothing before the build imports on a thread: a Ctrl-C that lands while the main
thread imports too can leave Python's import locks held for good (seen: a release that never ended).
"""

from __future__ import annotations

import threading


def import_later_stages() -> threading.Thread:
    """Start importing them on a daemon thread; returns it (nothing needs to wait for it)."""
    thread = threading.Thread(target=_import, name="hookbuild-imports", daemon=True)
    thread.start()
    return thread


def _import() -> None:
    import cryptography.hazmat.primitives.asymmetric.ed25519  # noqa: F401 (sign)
    import cyclonedx.model.bom  # (sbom: cyclonedx's modules take ~0.2 s to import)
    import cyclonedx.model.component
    import cyclonedx.output.json  # noqa: F401
    import docker  # noqa: F401 (locate, image, push; nothing before the build uses the SDK)
    import packageurl  # noqa: F401
    import tomlkit  # noqa: F401 (record)

    from hookbuild.binary import symbols  # noqa: F401
    from hookbuild.probes import scripts, trace_all  # noqa: F401
    from hookbuild.supply import stage  # noqa: F401
