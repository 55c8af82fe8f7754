"""Where a release's files live on this machine, and reading its binary back: dist/<variant>/<version>/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from hookbuild.errors import SymbolError, UsageError

if TYPE_CHECKING:
    from hookbuild.binary.symbols import BinaryInfo
    from hookbuild.config import Settings
    from hookbuild.version import Version


def release_dir(settings: Settings, versions_file: Path, variant: str, version: Version) -> Path:
    """dist/<variant>/<version>: the binary, build log and scripts of one release.

    Releases recorded in the sample scratch record live under dist/sample/ beside that record.
    """
    scratch = settings.dist / "sample"
    sample = versions_file.resolve() == (scratch / "versions.toml").resolve()
    return (scratch if sample else settings.dist) / variant / str(version)


def binary_info(
    target: str,
    *,
    settings: Settings,
    versions_file: Path,
    pattern: str,
    debug_binary: Path | None = None,
    cache_dir: Path | None = None,
) -> BinaryInfo:
    """Hookpoints of a binary path, or of a release VARIANT@X.Y: its binary, else its hookpoints.json."""
    from hookbuild.binary import symbols

    if not target:
        raise UsageError("no binary given", hint="invoke symbols PATH|VARIANT@X.Y (invoke --help symbols)")
    path = Path(target)
    if "@" not in target or path.exists():
        return symbols.read_binary(path, pattern=pattern, debug_binary=debug_binary, cache_dir=cache_dir)
    from hookbuild import record  # only for a release: a path never pays for loading the record's model

    entry = record.load(versions_file).get(target)
    where = release_dir(settings, versions_file, entry.variant, entry.version)
    if (where / "envoy").is_file():
        return symbols.read_binary(
            where / "envoy", pattern=pattern, debug_binary=debug_binary, cache_dir=cache_dir
        )
    saved = where / "hookpoints.json"
    if saved.is_file():
        try:
            return symbols.BinaryInfo.from_dict(json.loads(saved.read_text(encoding="utf-8")))
        except ValueError as exc:
            raise SymbolError(
                f"{saved}: invalid JSON ({exc})", hint="release it again, or pass the binary"
            ) from None
    raise SymbolError(
        f"{target}: neither {where / 'envoy'} nor {saved} exists on this machine",
        hint="release it here (invoke release) or pass the binary path",
    )
