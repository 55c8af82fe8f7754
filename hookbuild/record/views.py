"""Terminal views of the record for `invoke versions`. rich is imported only when a table is drawn."""

from __future__ import annotations

from hookbuild.record.model import Entry, Record, Status


def select(
    record: Record, *, variant: str | None = None, include_all: bool = False, supports: str | None = None
) -> tuple[Entry, ...]:
    """Entries to list, newest first per variant; deprecated ones only with include_all."""
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


def table(entries: tuple[Entry, ...], *, title: str = "versions") -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(title=title, title_justify="left")
    for column in ("version", "status", "summary", "features"):
        view.add_column(column, overflow="fold")
    for entry in entries:
        status = str(entry.status) + (" ✅" if entry.verified else "")
        style = {Status.DEPRECATED: "dim", Status.TEST_ONLY: "yellow"}.get(entry.status)
        view.add_row(entry.ref, status, entry.summary, ", ".join(entry.features), style=style)
    console = Console()
    if entries:
        console.print(view)
    else:
        console.print(f"{title}: none recorded (try --all)")


def show(entry: Entry) -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(show_header=False, title=entry.ref, title_justify="left", box=None)
    view.add_column("key", style="bold")
    view.add_column("value", overflow="fold")
    for key, value in entry.as_json().items():
        if key in ("ref", "variant", "release") or value in (None, [], ""):
            continue
        view.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    if entry.release is not None:
        for key, value in entry.as_json()["release"].items():
            if key == "hookpoints":
                value = "\n".join(point["demangled"] for point in value)
            elif isinstance(value, list):
                value = ", ".join(map(str, value))
            view.add_row(f"release.{key}", str(value))
    Console().print(view)
