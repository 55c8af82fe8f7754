"""Secrets never reach logs, files or argv: every value registered here is masked wherever text leaves us."""

from __future__ import annotations

import logging
import threading

MASK = "********"
ENV_NAMES = ("HOOKBUILD_REGISTRY_PASSWORD", "HOOKBUILD_BAZEL_REMOTE_HEADER", "HOOKBUILD_SIGNING_KEY_PASSWORD")
"""Secret settings in our own environment: never inherited by the processes we start (a build container
takes the whole environment along, where `docker inspect` and every build action can read it)."""
_lock = threading.Lock()
_values: set[str] = set()


def register(value: str | None) -> None:
    """Mark a value (password, token, header) as secret for the rest of the process."""
    if value and len(value) >= 3:
        with _lock:
            _values.add(value)


def redact(text: str) -> str:
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Applied to every hookbuild handler, so a secret in any message or argument is masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True
