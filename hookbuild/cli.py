"""Helpers for the thin task layer in tasks.py: errors become one line and an exit code, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from invoke.exceptions import Exit

from hookbuild.errors import HookbuildError
from hookbuild.secrets import redact


@contextmanager
def errors_to_exit() -> Iterator[None]:
    """The only place a HookbuildError turns into output: `error: ...` on stderr, its exit code."""
    try:
        yield
    except HookbuildError as exc:
        raise Exit(redact(f"error: {exc.line()}"), code=exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit("error: interrupted", code=130) from None


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
