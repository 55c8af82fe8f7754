"""What the task layer prints: JSON for scripts and CI, and errors as one line with an exit code."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(data: Any) -> None:
    """Indented JSON: an object one key per line, a list one compact item per line.

    Every item goes through json's C encoder: indenting each one in Python (`json.dumps(indent=2)`) costs
    most of a second for a 10,000-entry query and tens of milliseconds for a binary's thousands of
    hookpoints."""
    sys.stdout.write(_render(data, "") + "\n")


_encode = json.JSONEncoder(default=str).encode


def _render(value: Any, pad: str) -> str:
    inner = pad + "  "
    if isinstance(value, dict) and value:
        # a key is encoded as json.dumps does it: strings as they are, 1 / None / True as "1" / "null" / "true"
        fields = ",\n".join(
            f"{inner}{_encode(key if isinstance(key, str) else _encode(key))}: {_render(item, inner)}"
            for key, item in value.items()
        )
        return f"{{\n{fields}\n{pad}}}"
    if isinstance(value, (list, tuple)) and value:
        items = ",\n".join(f"{inner}{_encode(item)}" for item in value)
        return f"[\n{items}\n{pad}]"
    return _encode(value)
