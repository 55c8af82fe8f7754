"""The version record, versions.toml: the model and its queries, validation on load, the one write path,
and what is shown of it (tables, the changelog).

`from hookbuild import record` gives the read API (`record.load`, `record.Entry`, ...); edits are in
`hookbuild.record.edit`, which alone imports tomlkit.
"""

from hookbuild.record.model import (
    Entry,
    Hookpoint,
    Provenance,
    Record,
    Status,
    Upstream,
    VariantSection,
    iso,
    parse_ref,
)
from hookbuild.record.schema import load, loads

__all__ = [
    "Entry",
    "Hookpoint",
    "Provenance",
    "Record",
    "Status",
    "Upstream",
    "VariantSection",
    "iso",
    "load",
    "loads",
    "parse_ref",
]
