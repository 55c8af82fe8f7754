"""What the task layer prints: JSON for scripts and CI, and errors as one line with an exit code."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(data: Any) -> None:
    """Indented JSON; a list prints one compact item per line (json's C encoder: a 10,000-entry query's
    output costs milliseconds, where indenting every item in Python costs most of a second)."""
    if isinstance(data, list):
        encode = json.JSONEncoder(default=str).encode  # json.dumps(item, default=str), one encoder for all
        items = ",\n".join(f"  {encode(item)}" for item in data)
        sys.stdout.write(f"[\n{items}\n]\n" if data else "[]\n")
        return
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
