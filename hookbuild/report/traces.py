"""Reading trace files: the NDJSON that `trace_all.sh` writes per pod (or `bpftrace -f json trace.bt PID`).

A file is bpftrace's `-f json` stream, preceded by `trace_all.sh`'s `hookbuild_pod` lines naming the pod(s)
it traces (namespace, pod, container, pid on the node). The program prints, as `printf` lines, its hookpoint
table (a JSON object), sampled hops (`hop PID FROM TO ID START_NS DURATION_NS`), `hookbuild: flush` and, on a
clean stop, `hookbuild: end`; maps `@hits` and `@lat` come as full snapshots, so the last complete one is
the trace: a tracer killed mid-write loses at most the line it was writing. Keys carry the pid first
(`PID,KEY`) when one tracer traced several Envoys.

Nothing here is fatal: a file that cannot be read, holds no table, or was cut off is listed with what is
wrong, and what it still holds is used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hookbuild.errors import UsageError
from hookbuild.probes import latency

TRACE_SUFFIX = ".json"
FAILED_SUFFIX = ".failed"


class ReportError(UsageError):
    """The trace directory cannot be read, or holds no trace at all."""


@dataclass(frozen=True, kw_only=True)
class Hookpoint:
    index: int
    name: str
    demangled: str


@dataclass(frozen=True, kw_only=True)
class Hop:
    """One sampled hop of one request: `source` -> `target` on id `ident`, starting at `start_ns`."""

    source: str
    target: str
    ident: int
    start_ns: int
    duration_ns: int


@dataclass(frozen=True, kw_only=True)
class PodTrace:
    """What one Envoy's tracer saw."""

    namespace: str
    pod: str
    container: str
    file: Path
    complete: bool
    """The tracer stopped cleanly (its END ran): counts cover the whole trace."""
    hits: Mapping[str, int]
    """Demangled hookpoint -> hits."""
    latency: Mapping[tuple[str, str], Mapping[int, int]]
    """(from, to) demangled -> {bucket: count} (buckets of `probes.latency`)."""
    hops: tuple[Hop, ...]

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.pod}" if self.namespace else self.pod


@dataclass(frozen=True, kw_only=True)
class Problem:
    """A pod or file the report could not use in full, and why."""

    where: str
    problem: str


@dataclass(frozen=True, kw_only=True)
class Traces:
    pods: tuple[PodTrace, ...]
    problems: tuple[Problem, ...]


@dataclass(kw_only=True)
class _Stream:
    """What one file's lines add up to, before it is split into pods."""

    labels: dict[int, dict[str, str]] = field(default_factory=dict)
    table: dict[int, Hookpoint] = field(default_factory=dict)
    maps: dict[str, dict[str, int]] = field(default_factory=dict)
    hops: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    ended: bool = False
    broken_lines: int = 0
    errors: list[str] = field(default_factory=list)


def load(directory: Path, *, required: bool = True) -> Traces:
    """Every trace file in `directory` (`*.json`), plus the pods `trace_all.sh` marked as failed.

    `required`: a directory without any is an error (not when it holds something else to report on).
    """
    if not directory.is_dir():
        raise ReportError(
            f"trace directory {directory} does not exist",
            hint="pass the directory trace_all.sh wrote with -o DIR",
        )
    pods: list[PodTrace] = []
    problems: list[Problem] = []
    for failed in sorted(directory.glob(f"*{FAILED_SUFFIX}")):
        reason = _read_text(failed).strip() or "tracer failed"
        problems.append(Problem(where=failed.name.removesuffix(FAILED_SUFFIX), problem=reason))
    for path in sorted(directory.glob(f"*{TRACE_SUFFIX}")):
        found, trouble = load_file(path)
        pods += found
        problems += trouble
    if required and not pods and not problems:
        raise ReportError(
            f"no trace files (*.json) in {directory}",
            hint="run trace_all.sh -o DIR first, or `bpftrace -f json trace.bt PID > DIR/POD.json`",
        )
    return Traces(pods=tuple(pods), problems=tuple(problems))


def load_file(path: Path) -> tuple[list[PodTrace], list[Problem]]:
    """The pods one file traced, and what is wrong with it."""
    try:
        text = _read_text(path)
    except OSError as exc:
        return [], [Problem(where=path.name, problem=f"cannot read: {exc.strerror}")]
    stream = _parse(text)
    problems = [Problem(where=path.name, problem=error) for error in stream.errors]
    if not stream.table:
        problems.append(
            Problem(where=path.name, problem="no hookpoint table: not a hookbuild trace, or empty")
        )
        return [], problems
    if not stream.ended:
        problems.append(
            Problem(where=path.name, problem="partial: the tracer did not stop cleanly; last flush used")
        )
    if stream.broken_lines:
        problems.append(Problem(where=path.name, problem=f"{stream.broken_lines} cut-off line(s) skipped"))
    return _split(path, stream), problems


def _read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _parse(text: str) -> _Stream:
    stream = _Stream()
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            message = json.loads(line)
            kind, data = message["type"], message.get("data")
        except (ValueError, KeyError, TypeError):
            stream.broken_lines += 1
            continue
        if kind == "hookbuild_pod" and isinstance(data, dict):
            stream.labels[int(data.get("pid") or 0)] = {k: str(v) for k, v in data.items()}
        elif kind == "printf" and isinstance(data, str):
            _printf(stream, data)
        elif kind == "map" and isinstance(data, dict):
            for name, values in data.items():
                if isinstance(values, dict):
                    stream.maps[name] = {str(k): int(v) for k, v in values.items()}
        elif kind in ("error", "errorf", "runtime_error", "helper_error") and len(stream.errors) < 5:
            stream.errors.append(f"bpftrace: {data if data is not None else message}")
    return stream


def _printf(stream: _Stream, data: str) -> None:
    if data.startswith("{"):
        try:
            table = json.loads(data)
            rows = table["hookpoints"]
            stream.table = {
                int(row["index"]): Hookpoint(
                    index=int(row["index"]), name=row["name"], demangled=row["demangled"]
                )
                for row in rows
            }
        except (ValueError, KeyError, TypeError):
            stream.broken_lines += 1
    elif data.startswith("hop "):
        fields = data.split()
        if len(fields) == 7 and all(f.isdigit() for f in fields[1:]):
            pid, source, target, ident, start, duration = (int(f) for f in fields[1:])
            stream.hops.append((pid, source, target, ident, start, duration))
    elif data.startswith("hookbuild: end"):
        stream.ended = True


def _keys(values: Mapping[str, int]) -> Iterator[tuple[int, str, int]]:
    """(pid or 0, key, value): keys are `KEY` or `PID,KEY`."""
    for key, value in values.items():
        pid, _, rest = key.rpartition(",") if "," in key else ("0", "", key)
        yield (int(pid) if pid.isdigit() else 0), rest, value


def _split(path: Path, stream: _Stream) -> list[PodTrace]:
    count = len(stream.table)
    name = {i: h.demangled for i, h in stream.table.items()}
    by_name = {h.name: h.demangled for h in stream.table.values()}
    hits: dict[int, dict[str, int]] = {}
    for pid, key, value in _keys(stream.maps.get("@hits", {})):
        hits.setdefault(pid, {})[by_name.get(key, key)] = value
    lat: dict[int, dict[tuple[str, str], dict[int, int]]] = {}
    for pid, key, value in _keys(stream.maps.get("@lat", {})):
        if not key.isdigit():
            continue
        source, target, bucket = latency.split_key(int(key), count)
        if source in name and target in name:
            lat.setdefault(pid, {}).setdefault((name[source], name[target]), {})[bucket] = value
    hops: dict[int, list[Hop]] = {}
    for pid, source, target, ident, start, duration in stream.hops:
        if source in name and target in name:
            hop = Hop(
                source=name[source], target=name[target], ident=ident, start_ns=start, duration_ns=duration
            )
            hops.setdefault(pid, []).append(hop)
    keyed = any(pid for pid in (*hits, *lat))  # one tracer, several Envoys: maps keyed by pid
    pids = sorted(set(stream.labels) | set(hits) | set(lat)) if keyed else [0]
    pods = []
    for pid in pids:
        label = stream.labels.get(pid) or (
            next(iter(stream.labels.values())) if not keyed and stream.labels else {}
        )
        pods.append(
            PodTrace(
                namespace=label.get("namespace", ""),
                pod=label.get("pod", path.stem if not keyed else f"{path.stem}-pid{pid}"),
                container=label.get("container", ""),
                file=path,
                complete=stream.ended,
                hits=hits.get(pid if keyed else 0, {}),
                latency=lat.get(pid if keyed else 0, {}),
                hops=tuple(hops.get(pid, []) if keyed else [h for hs in hops.values() for h in hs]),
            )
        )
    return pods
