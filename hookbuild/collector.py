"""The cyclic garbage collector, paused while hookbuild makes many objects that are in no cycle.

Reference counting frees such objects; the collector would only walk the growing heap again and again.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic collector paused while a record is parsed, validated, pickled or unpickled: that makes some
    ten objects per entry, none of them in a cycle (reference counting frees them), and the collector would
    walk the growing heap again and again, a third of a 10,000-entry load. Nested pauses are one pause."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
