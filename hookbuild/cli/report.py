"""The report's task: `trace-report DIR` merges the per-pod trace files of `trace_all.sh` into percentiles."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context

from hookbuild.cli.task import task
from hookbuild.config import Settings


@task(
    positional=["directory"],
    help={
        "directory": "the directory trace_all.sh wrote (-o DIR): one <namespace>_<pod>.json per pod",
        "json": "print the report as JSON: per pair count, p50_us, p90_us, p99_us, cluster-wide and per pod",
        "html": "also write a self-contained HTML page (figures per pair, request timelines, flame graphs of"
        " DIR/*.perf.txt, `perf script` output) to this file",
    },
    name="trace-report",
)
def trace_report(c: Context, settings: Settings, directory: str, json: bool = False, html: str = "") -> None:
    """Latency between hookpoints, per pair, cluster-wide and per pod, from trace_all.sh's output."""
    import logging
    import sys

    from hookbuild.cli.output import print_json
    from hookbuild.report import flame, summary, traces
    from hookbuild.report import html as page

    profiles = flame.load(Path(directory)) if Path(directory).is_dir() else ()
    found = traces.load(Path(directory), required=not profiles)
    log = logging.getLogger("hookbuild")
    for problem in found.problems:
        log.warning("%s: %s", problem.where, problem.problem)
    if html:
        log.info("wrote %s", page.write(found, Path(html), profiles=profiles))
    if json:
        print_json(summary.to_dict(found, profiles))
    else:
        sys.stdout.write(summary.text(found, profiles))
