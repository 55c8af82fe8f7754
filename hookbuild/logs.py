"""Logging for the task layer: rich on a terminal, plain timestamped lines in CI. The library only logs."""

from __future__ import annotations

import logging
import os
import sys

from hookbuild.secrets import RedactingFilter


def setup(*, verbose: bool = False) -> None:
    logger = logging.getLogger("hookbuild")
    for old in [h for h in logger.handlers if getattr(h, "_hookbuild", False)]:
        logger.removeHandler(old)  # run again in one process (main(argv)): write to today's stderr
    level = logging.DEBUG if verbose or os.environ.get("HOOKBUILD_DEBUG") else logging.INFO
    handler: logging.Handler
    if sys.stderr.isatty() and not os.environ.get("CI"):
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, markup=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter())
    setattr(handler, "_hookbuild", True)  # noqa: B010  (marks our handler for the next setup)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
