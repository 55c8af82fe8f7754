"""Terminal views of the record for `invoke versions`. rich is imported only when a table is drawn."""

from __future__ import annotations

from typing import Any

from hookbuild.record.model import Change, Entry, Record, Status, iso


def select(
    record: Record, *, variant: str | None = None, include_all: bool = False, supports: str | None = None
) -> tuple[Entry, ...]:
    """Entries to list, newest first per variant; deprecated ones only with include_all. With `supports`:
    verified claims first, never a planned version."""
    if variant:
        record.variant(variant)  # an unknown variant is an error, not an empty list
    if supports is not None:
        chosen = record.supporting(supports, include_all=include_all)
    else:
        chosen = tuple(
            entry
            for name in record.variants()
            for entry in record.of(name)
            if include_all or entry.status is not Status.DEPRECATED
        )
    return tuple(entry for entry in chosen if variant in (None, entry.variant))


def as_json(entry: Entry, *, supports: str | None = None) -> dict[str, Any]:
    data = entry.as_json()
    if supports is not None:
        data["claim"] = entry.claim(supports)
    return data


def _status(entry: Entry) -> str:
    return str(entry.status) + (" ✅" if entry.verified else "")


def table(entries: tuple[Entry, ...], *, title: str = "versions", supports: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(title=title, title_justify="left")
    columns = ("version", "status", "claim", "summary") if supports else ("version", "status", "summary")
    for column in (*columns, "features"):
        view.add_column(column, overflow="fold")
    for entry in entries:
        style = {Status.DEPRECATED: "dim", Status.TEST_ONLY: "yellow", Status.PLANNED: "cyan"}.get(
            entry.status
        )
        features = ", ".join(
            f"{f}" if entry.claim(f) == "verified" else f"{f} (by hand)" for f in entry.features
        )
        claim = (entry.claim(supports) or "",) if supports else ()
        view.add_row(entry.ref, _status(entry), *claim, entry.summary, features, style=style)
    console = Console()
    if entries:
        console.print(view)
        if supports and any(entry.claim(supports) == "by hand" for entry in entries):
            console.print(f"'by hand': {supports} was claimed by hand, not checked in a built image")
    else:
        console.print(f"{title}: none recorded (try --all)")


def change_line(change: Change) -> str:
    when = iso(change.at) if change.at else "(by hand)"
    return f"{when}  {change.status}" + (f": {change.reason}" if change.reason else "")


def show(entry: Entry) -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(show_header=False, title=entry.ref, title_justify="left", box=None)
    view.add_column("key", style="bold")
    view.add_column("value", overflow="fold")
    data = entry.as_json()
    for key, value in data.items():
        if key in ("ref", "variant", "release", "history", "claims", "status_reason") or value in (
            None,
            [],
            "",
        ):
            continue
        view.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    view.add_row("claims", "\n".join(f"{name}: {claim}" for name, claim in data["claims"].items()) or "-")
    view.add_row("history", "\n".join(change_line(change) for change in entry.changes))
    if entry.release is not None:
        for key, value in data["release"].items():
            if key == "hookpoints":
                value = "\n".join(point["demangled"] for point in value)
            elif isinstance(value, list):
                value = ", ".join(map(str, value))
            view.add_row(f"release.{key}", str(value))
    Console().print(view)
