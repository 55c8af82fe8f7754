"""A page rendered by real headless Chromium (Debian's `chromium`): its DOM after layout, and its pixels."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run")


@dataclass(frozen=True)
class Rendered:
    dom: str
    pixels: Counter[tuple[int, int, int]]
    """How many pixels of each RGB colour the screenshot holds."""


def render(page: Path, tmp_path: Path, *, width: int = 900, height: int = 3000) -> Rendered:
    """Open `page` (a file: no network) in headless Chromium; dump its DOM and take a screenshot."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium not found; run scripts/setup.sh")
    profile = tmp_path / "chromium-profile"  # never the user's profile
    common = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
    url = page.resolve().as_uri()
    dom = subprocess.run(
        [*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    )
    shot = tmp_path / "screenshot.png"
    subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    return Rendered(dom=dom.stdout, pixels=_pixels(shot.read_bytes()))


def _pixels(png: bytes) -> Counter[tuple[int, int, int]]:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) into colour counts."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, data, header = 8, b"", b""
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind, body = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        header = body if kind == b"IHDR" else header
        data += body if kind == b"IDAT" else b""
        offset += 12 + length
    width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, "unexpected PNG format"
    channels = 4 if colour == 6 else 3
    raw, stride = zlib.decompress(data), width * channels
    previous, counts = bytearray(stride), Counter[tuple[int, int, int]]()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        counts.update(tuple(line[i : i + 3]) for i in range(0, stride, channels))  # type: ignore[misc]
        previous = line
    return counts
