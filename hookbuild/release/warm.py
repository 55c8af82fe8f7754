"""Imports done on a thread while the release waits on something else: the Docker SDK while the plan asks
git, and the stages after the build while the build runs.

Waiting on the build leaves the GIL free, so a thread can import what the hookpoints, scripts, sign and record
stages need (~0.35 s: numpy-free symbols, the probe templates, tomlkit, cryptography, the CycloneDX model and
its JSON writer) off the release's critical path. hookbuild has no import cycle (tests/test_layout.py), so
the main thread importing the same modules meanwhile only waits for them; nothing is imported that a release
would not import anyway.
"""

from __future__ import annotations

import threading


def import_engine() -> threading.Thread:
    """Start importing the Docker SDK (and requests) on a daemon thread, at the start of a release.

    Every release needs it: the base image stage talks to the engine, and a retry reads the registry with
    the Docker config's credentials. The plan and the sources stage before them mostly wait on git, and
    the import proceeds meanwhile.
    """
    thread = threading.Thread(target=_import_engine, name="hookbuild-imports", daemon=True)
    thread.start()
    return thread


def _import_engine() -> None:
    import contextlib

    # A failed import is reported, as one line, by the stage that needs the module; a release that ends
    # early (a refused plan) may end while this thread still imports, which must not print anything.
    with contextlib.suppress(Exception):
        import docker.auth  # noqa: F401 (docker, requests)


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
    import packageurl  # noqa: F401
    import tomlkit  # noqa: F401 (record)

    from hookbuild.binary import symbols  # noqa: F401
    from hookbuild.probes import scripts, trace_all  # noqa: F401
    from hookbuild.supply import stage  # noqa: F401
