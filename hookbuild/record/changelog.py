"""The record as Markdown release notes, in the shape of the seed's hand-kept "Version Record"."""

from __future__ import annotations

from hookbuild.record.model import Entry, Record, Status


def render(record: Record, *, variant: str | None = None, title: str = "Version Record") -> str:
    """Markdown: one section per variant (its title), versions oldest first, like the seed's record."""
    names = [variant] if variant else list(record.variants())
    lines = [f"## {title}", ""]
    for name in names:
        info = record.variant(name)
        entries = sorted(record.of(name), key=lambda e: e.version)
        lines.append(f"### {info.title}")
        if not entries:
            lines.append("- (no versions yet)")
        lines += [_line(entry) for entry in entries]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _line(entry: Entry) -> str:
    label = str(entry.version) if entry.status is Status.WORKING else f"{entry.version} ({entry.status})"
    text = _sentence(entry.summary)
    if entry.status_reason:
        text += f" Reason: {_sentence(entry.status_reason)}"
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
