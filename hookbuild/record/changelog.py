"""The record as Markdown release notes, in the shape of the seed's hand-kept "Version Record"."""

from __future__ import annotations

from typing import Any

from hookbuild.record.model import Entry, Record, Status, iso


def render(record: Record, *, variant: str | None = None, title: str = "Version Record") -> str:
    """Markdown: one section per variant (its title), versions oldest first, like the seed's record."""
    names = [variant] if variant else list(record.variants())
    lines = [f"## {title}", ""]
    for name in names:
        info = record.variant(name)
        entries = record.of(name)[::-1]
        lines.append(f"### {info.title}")
        if not entries:
            lines.append("- (no versions yet)")
        lines += [_line(entry) for entry in entries]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def as_json(record: Record, *, variant: str | None = None) -> list[dict[str, Any]]:
    """The changelog as data: each variant (title) with its versions oldest first, each with its history."""
    names = [variant] if variant else list(record.variants())
    return [
        {
            "variant": name,
            "title": record.variant(name).title,
            "versions": [
                {
                    "ref": entry.ref,
                    "version": str(entry.version),
                    "status": str(entry.status),
                    "summary": entry.summary,
                    "features": {feature: entry.claim(feature) for feature in entry.features},
                    "reference": entry.reference,
                    "history": [
                        {"status": str(c.status), "reason": c.reason, "at": iso(c.at) if c.at else None}
                        for c in entry.changes
                    ],
                }
                for entry in record.of(name)[::-1]
            ],
        }
        for name in names
    ]


def _history(entry: Entry) -> str:
    """Earlier statuses and their reasons, oldest first (the current one is in the label)."""
    earlier = [
        f"{change.status}"
        + (f" ({change.reason.rstrip('.')})" if change.reason else "")
        + (f" on {change.at:%Y-%m-%d}" if change.at else "")
        for change in entry.changes[:-1]
    ]
    return f" Before: {'; '.join(earlier)}." if earlier else ""


def _line(entry: Entry) -> str:
    label = str(entry.version) if entry.status is Status.WORKING else f"{entry.version} ({entry.status})"
    text = _sentence(entry.summary)
    if entry.reason and (entry.status in (Status.DEPRECATED, Status.TEST_ONLY) or entry.status_reason):
        text += f" Reason: {_sentence(entry.reason)}"
    text += _history(entry)
    if entry.supersedes is not None:
        text += f" Supersedes {entry.supersedes}."
    if entry.based_on:
        text += f" Based on {entry.based_on}."
    if entry.upstream is not None:
        versions = [f"{name.capitalize()} {value}" for name, value in vars(entry.upstream).items() if value]
        text += " Upstream: " + ", ".join(versions) + "."
    if entry.packages:
        text += " Packages: " + ", ".join(f"`{p}`" for p in entry.packages) + "."
    if entry.features:
        text += " Features: " + ", ".join(entry.features) + "."
    if entry.status is Status.TEST_ONLY:
        text += " **Only for test**"
    if entry.release is not None:
        text += f" Image `{entry.release.pinned}`."
    if entry.verified:
        text += " ✅"
    return f"- {label}: {text}"


def _sentence(text: str) -> str:
    text = text.strip()
    if text[:2].islower():  # "adds ..." -> "Adds ...", but keep "gRPC ..." as written
        text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?", ")")) and not text.endswith("()") else f"{text}."
