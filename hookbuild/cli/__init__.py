"""The task layer: one module of Invoke tasks per room, all through `cli.task.task`.

`namespace()` is the whole collection (tasks.py exposes it to `invoke`); `main(argv)` runs it in process,
as `invoke ARGV` would, and returns the exit code: the fast test lane and embedding use it.
"""

from __future__ import annotations

from collections.abc import Sequence

from invoke.collection import Collection


def namespace() -> Collection:
    from hookbuild.cli import cluster, record, release, report, supply, symbols

    return Collection(
        release.release,
        record.versions,
        record.bump,
        record.deprecate,
        record.changelog,
        symbols.symbols,
        symbols.trace_script,
        cluster.inject,
        supply.verify,
        supply.promote,
        report.trace_report,
    )


def main(argv: Sequence[str]) -> int:
    """Run `invoke ARGV` against hookbuild's tasks in this process; the exit code `invoke` would give."""
    from invoke.program import Program

    try:
        Program(namespace=namespace(), binary="invoke").run(["invoke", *argv], exit=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
