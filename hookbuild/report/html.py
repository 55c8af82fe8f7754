"""The report as one self-contained HTML page: inline SVG and CSS, no script, nothing fetched.

Per hookpoint pair: a table of count and percentiles per pod, and a figure of the latency distribution per
pod (cumulative, on a log time axis, so pods with different speeds stay readable on one scale). Per pod: a
request timeline, the sampled requests as rows of hops from their first hookpoint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

from hookbuild import fsutil
from hookbuild.probes import latency
from hookbuild.report import flame, summary
from hookbuild.report.traces import Hop, PodTrace, Traces

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
"""Pods' colours."""
PAIR_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f")
"""Pairs' colours in the timelines: apart from the pods', so a figure never reads as another."""
WIDTH, HEIGHT, MARGIN, TOP = 720, 230, 56, 12
TIMELINE_REQUESTS = 12

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 60em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; } code { font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 2px 10px; text-align: right; }
th { border-bottom: 1px solid #999; } td:first-child, th:first-child { text-align: left; }
.problems { color: #a33; } svg { display: block; margin: 0.5em 0; } svg text { font-size: 11px; }
.flame text { font-size: 10px; fill: #000; } .flame rect { stroke: #fff; stroke-width: 0.3; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.3em; }
"""


def render(
    traces: Traces, *, profiles: Sequence[flame.Profile] = (), title: str = "hookbuild trace report"
) -> str:
    """The whole page."""
    colours = {pod.label: COLOURS[i % len(COLOURS)] for i, pod in enumerate(traces.pods)}
    pairs = summary.pairs(traces.pods)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{len(traces.pods)} pod(s) traced, {len(pairs)} hookpoint pair(s) timed.</p>",
        _problems(traces),
        _pairs_table(pairs),
    ]
    for number, pair in enumerate(pairs):
        parts.append(_pair_section(number, pair, traces.pods, colours))
    pair_colours = {(p.source, p.target): PAIR_COLOURS[i % len(PAIR_COLOURS)] for i, p in enumerate(pairs)}
    parts.append("<h2>Request timelines</h2>")
    parts.append(
        "<p>Sampled requests (one id in the program's sampling rate), each a row of its hops from its first "
        "hookpoint; colours are pairs.</p>"
    )
    for pod in traces.pods:
        parts.append(_timeline(pod, pair_colours))
    if profiles:
        parts.append("<h2>Profiles</h2><p>perf samples, folded: the root at the bottom, width is time.</p>")
        parts += [f"<h3>{escape(p.name)} ({p.samples} samples)</h3>{flame.svg(p)}" for p in profiles]
    parts.append("</body></html>\n")
    return "\n".join(part for part in parts if part)


def write(traces: Traces, path: Path, *, profiles: Sequence[flame.Profile] = ()) -> Path:
    """Write the page to `path` atomically."""
    from hookbuild.report.traces import ReportError

    try:
        return fsutil.atomic_write(path, render(traces, profiles=profiles), mode=0o644)
    except OSError as exc:
        raise ReportError(
            f"cannot write {path}: {exc.strerror}", hint="pass --html a file you can write"
        ) from None


def _problems(traces: Traces) -> str:
    if not traces.problems:
        return ""
    items = "".join(f"<li><code>{escape(p.where)}</code>: {escape(p.problem)}</li>" for p in traces.problems)
    return f'<div class="problems"><h2>Problems</h2><ul>{items}</ul></div>'


def _short(demangled: str) -> str:
    """`Envoy::Http::hookpointDecodeHeaders(unsigned long, ...)` -> `Http::hookpointDecodeHeaders`."""
    name = demangled.split("(", 1)[0]
    return "::".join(name.split("::")[-2:])


def _pairs_table(pairs: Sequence[summary.Pair]) -> str:
    rows = "".join(
        f'<tr><td><a href="#pair-{i}">{escape(_short(p.source))} &rarr; {escape(_short(p.target))}</a></td>'
        f"<td>{p.overall.count}</td><td>{p.overall.p50_us:.1f}</td><td>{p.overall.p90_us:.1f}</td>"
        f"<td>{p.overall.p99_us:.1f}</td></tr>"
        for i, p in enumerate(pairs)
    )
    return (
        "<table><tr><th>pair (cluster-wide)</th><th>count</th><th>p50 µs</th><th>p90 µs</th><th>p99 µs</th></tr>"
        f"{rows}</table>"
    )


def _pair_section(
    number: int, pair: summary.Pair, pods: Sequence[PodTrace], colours: Mapping[str, str]
) -> str:
    rows = "".join(
        f'<tr><td><span class="swatch" style="background:{colours.get(label, "#000")}"></span>{escape(label)}</td>'
        f"<td>{s.count}</td><td>{s.p50_us:.1f}</td><td>{s.p90_us:.1f}</td><td>{s.p99_us:.1f}</td></tr>"
        for label, s in pair.pods.items()
    )
    curves = {
        pod.label: pod.latency[(pair.source, pair.target)]
        for pod in pods
        if (pair.source, pair.target) in pod.latency
    }
    return (
        f'<section id="pair-{number}" class="pair"><h2>{escape(_short(pair.source))} &rarr; '
        f"{escape(_short(pair.target))}</h2>"
        f"<p><code>{escape(pair.source)}</code> &rarr; <code>{escape(pair.target)}</code></p>"
        "<table><tr><th>pod</th><th>count</th><th>p50 µs</th><th>p90 µs</th><th>p99 µs</th></tr>"
        f"{rows}</table>{_distribution(curves, colours)}</section>"
    )


def _distribution(curves: Mapping[str, Mapping[int, int]], colours: Mapping[str, str]) -> str:
    """Cumulative share of requests against latency (log axis), one step line per pod."""
    bounds = [latency.bucket_bounds(b) for buckets in curves.values() for b, c in buckets.items() if c]
    if not bounds:
        return ""
    low = max(1.0, min(b[0] for b in bounds) / 1000)
    high = max(b[1] for b in bounds) / 1000
    lo_exp, hi_exp = math.floor(math.log10(low)), math.ceil(math.log10(high * 1.01))
    hi_exp = max(hi_exp, lo_exp + 1)
    plot_w, plot_h = WIDTH - 2 * MARGIN, HEIGHT - TOP - MARGIN

    def x(us: float) -> float:
        return MARGIN + (math.log10(max(us, 10.0**lo_exp)) - lo_exp) / (hi_exp - lo_exp) * plot_w

    def y(share: float) -> float:
        return TOP + (1 - share) * plot_h

    shapes = [_axes(plot_w, plot_h, "latency (µs, log scale)", "share of requests")]
    ticks = [
        m * 10.0**exp for exp in range(lo_exp, hi_exp + 1) for m in (1, 2, 5) if m * 10.0**exp <= 10.0**hi_exp
    ]
    for tick in ticks:
        shapes.append(
            f'<line x1="{x(tick):.1f}" y1="{y(0):.1f}" x2="{x(tick):.1f}" y2="{y(1):.1f}" stroke="#ddd"/>'
            f'<text x="{x(tick):.1f}" y="{y(0) + 14:.1f}" text-anchor="middle">{tick:g}</text>'
        )
    for share in (0.5, 0.9, 0.99):
        shapes.append(
            f'<line x1="{MARGIN}" y1="{y(share):.1f}" x2="{MARGIN + plot_w}" y2="{y(share):.1f}" stroke="#eee"/>'
            f'<text x="{MARGIN - 4}" y="{y(share) + 4:.1f}" text-anchor="end">p{share * 100:g}</text>'
        )
    for label, buckets in curves.items():
        total = sum(buckets.values())
        seen, points = 0, [f"{x(low):.1f},{y(0):.1f}"]
        for bucket in sorted(buckets):
            start, end = (v / 1000 for v in latency.bucket_bounds(bucket))
            points.append(f"{x(start):.1f},{y(seen / total):.1f}")
            seen += buckets[bucket]
            points.append(f"{x(end):.1f},{y(seen / total):.1f}")
        shapes.append(
            f'<polyline class="cdf" data-pod="{escape(label)}" fill="none" stroke-width="2" '
            f'stroke="{colours.get(label, "#000")}" points="{" ".join(points)}"/>'
        )
    return _svg("latency distribution per pod", shapes)


def _axes(plot_w: float, plot_h: float, x_label: str, y_label: str) -> str:
    return (
        f'<rect x="{MARGIN}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>'
        f'<text x="{MARGIN + plot_w / 2}" y="{HEIGHT - 16}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2})">{escape(y_label)}</text>'
    )


def _svg(title: str, shapes: Sequence[str], height: int = HEIGHT) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img"><title>{escape(title)}</title>{"".join(shapes)}</svg>'
    )


def _requests(hops: Sequence[Hop]) -> list[list[Hop]]:
    """Sampled hops grouped by id, the first TIMELINE_REQUESTS requests."""
    grouped: dict[int, list[Hop]] = {}
    for hop in sorted(hops, key=lambda h: h.start_ns):
        grouped.setdefault(hop.ident, []).append(hop)
    return list(grouped.values())[:TIMELINE_REQUESTS]


def _timeline(pod: PodTrace, pair_colours: Mapping[tuple[str, str], str]) -> str:
    requests = _requests(pod.hops)
    header = f"<h3>{escape(pod.label)}</h3>"
    if not requests:
        return header + "<p>No sampled requests.</p>"
    longest = max(sum(h.duration_ns for h in request) for request in requests) / 1000 or 1.0
    row, top = 18, 24
    height = top + row * len(requests) + 34
    plot_w = WIDTH - 2 * MARGIN
    shapes = []
    for number, request in enumerate(requests):
        origin = request[0].start_ns
        y0 = top + number * row
        shapes.append(f'<text x="{MARGIN - 4}" y="{y0 + 12}" text-anchor="end">id {request[0].ident}</text>')
        for hop in request:
            x0 = MARGIN + (hop.start_ns - origin) / 1000 / longest * plot_w
            width = max(1.0, hop.duration_ns / 1000 / longest * plot_w)
            colour = pair_colours.get((hop.source, hop.target), "#777")
            shapes.append(
                f'<rect class="hop" x="{x0:.1f}" y="{y0}" width="{width:.1f}" height="{row - 4}" fill="{colour}">'
                f"<title>{escape(_short(hop.source))} → {escape(_short(hop.target))}: "
                f"{hop.duration_ns / 1000:.1f} µs</title></rect>"
            )
    axis_y = top + row * len(requests) + 4
    shapes.append(f'<line x1="{MARGIN}" y1="{axis_y}" x2="{MARGIN + plot_w}" y2="{axis_y}" stroke="#999"/>')
    shapes.append(f'<text x="{MARGIN}" y="{axis_y + 14}">0</text>')
    shapes.append(
        f'<text x="{MARGIN + plot_w}" y="{axis_y + 14}" text-anchor="end">{longest:.0f} µs since the request\'s '
        "first hookpoint</text>"
    )
    return header + _svg(f"request timeline of {pod.label}", shapes, height)
