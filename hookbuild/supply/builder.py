"""Which image a build ran in, for the provenance: the build container is seen while it runs.

The build systems choose their container in the checkout's own scripts (istio/proxy's IMG, Envoy's
ENVOY_BUILD_IMAGE) and run it with `--rm`, so hookbuild cannot ask beforehand nor inspect afterwards.
While the build runs, a thread lists the engine's running containers (one API call, mounts included) and
keeps those that mount one of this build's checkouts: on a shared engine that is exactly this build's
containers. A build on the host (cilium's make) sees none, and none is recorded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("hookbuild")

POLL_SECONDS = 0.5


@dataclass(frozen=True, kw_only=True)
class BuildImage:
    name: str  # as the container was started, e.g. hookbuild-sample/build-tools-proxy:sample
    image_id: str  # the local image ID (config digest) it ran


@contextmanager
def watching(sources: tuple[Path | None, ...]) -> Iterator[list[BuildImage]]:
    """Yield a list that, once the block ends, holds the images of the containers that mounted `sources`."""
    found: dict[str, BuildImage] = {}
    stop = threading.Event()
    wanted = {str(path.resolve()) for path in sources if path is not None}
    thread = threading.Thread(
        target=_poll, args=(wanted, found, stop), name="hookbuild-build-images", daemon=True
    )
    thread.start()
    images: list[BuildImage] = []
    try:
        yield images
    finally:
        stop.set()
        thread.join(timeout=10)
        images.extend(sorted(set(found.values()), key=lambda image: image.name))


def _poll(wanted: set[str], found: dict[str, BuildImage], stop: threading.Event) -> None:
    """Runs beside the build; any engine problem only means no build image is recorded, never a failure."""
    from hookbuild.images import engine

    try:
        client = engine.connect()  # its own connection: the release's client stays on the main thread
    except Exception:  # a missing engine is the build's to report, not this thread's
        return
    try:
        while not stop.wait(POLL_SECONDS):
            for summary in client.api.containers():
                if engine.mounts_any(summary, wanted):
                    found[str(summary["Id"])] = BuildImage(
                        name=str(summary.get("Image", "")), image_id=str(summary.get("ImageID", ""))
                    )
    except Exception as exc:  # see the docstring
        log.debug("build image watch stopped: %s", exc)
    finally:
        client.close()
