"""Uprobe scripts generated from a release's hookpoints: the seed's hand-written bcc script, done right.

Both scripts take the PID of one Envoy and filter on it: a uprobe sits on the file's inode, which every
container of the same image on a node shares, so without the filter a tracer counts every Envoy on the node.

- `trace.bt` (bpftrace; needs no kernel headers): `bpftrace [-f json] trace.bt PID`; counts hits per
  hookpoint and times the hops between hookpoints of the same stream (`latency`), printing them every flush
  period and on exit (Ctrl-C). Stripped binaries are probed by file offset: `bpftrace --unsafe`.
- `trace_bcc.py` (bcc; needs kernel headers): `python3 trace_bcc.py --pid PID [--binary PATH]`.

The binary path defaults to where the image puts Envoy; from the node use
`/proc/<pid>/root/usr/local/bin/envoy`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from hookbuild import fsutil
from hookbuild.binary.symbols import BinaryInfo, Hookpoint
from hookbuild.errors import SymbolError
from hookbuild.probes import latency

DEFAULT_BINARY = "/usr/local/bin/envoy"
BPFTRACE_SCRIPT = "trace.bt"
BCC_SCRIPT = "trace_bcc.py"
BCC_TEMPLATE = "trace_bcc.py.tmpl"
HOOKPOINTS_FILE = "hookpoints.json"
MAX_PIDS = 64
"""Envoys one tracer with a PID set takes (`$1`..`$64`); trace_all.sh starts another tracer beyond."""

_SAFE_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./<>+@-]+$")


def _resolve(
    info_or_hookpoints: BinaryInfo | Sequence[Hookpoint], stripped: bool | None
) -> tuple[tuple[Hookpoint, ...], bool, str]:
    if isinstance(info_or_hookpoints, BinaryInfo):
        info = info_or_hookpoints
        origin = f"{info.path} (sha256 {info.sha256}, build-id {info.build_id or 'none'})"
        hookpoints, is_stripped = info.hookpoints, info.stripped if stripped is None else stripped
    else:
        hookpoints, is_stripped, origin = tuple(info_or_hookpoints), bool(stripped), "hookpoint list"
    if not hookpoints:
        raise SymbolError(
            f"no hookpoints to trace in {origin}", hint="check --pattern, or pass --debug-binary"
        )
    return hookpoints, is_stripped, origin


def _by_address(hookpoint: Hookpoint, stripped: bool) -> bool:
    """A stripped binary keeps only .dynsym: anything else must be probed by address."""
    return stripped and hookpoint.table != "dynsym"


def _check_binary(binary: str) -> None:
    if not _SAFE_PATH.match(binary):
        raise SymbolError(
            f"binary path {binary!r} has characters a probe spec cannot hold",
            hint="use a plain absolute path such as /usr/local/bin/envoy",
        )


def needs_unsafe(
    info_or_hookpoints: BinaryInfo | Sequence[Hookpoint], *, stripped: bool | None = None
) -> bool:
    """Whether the bpftrace script probes by address (bpftrace then wants `--unsafe`)."""
    hookpoints, is_stripped, _ = _resolve(info_or_hookpoints, stripped)
    return any(_by_address(h, is_stripped) for h in hookpoints)


def bpftrace_script(
    info_or_hookpoints: BinaryInfo | Sequence[Hookpoint],
    *,
    binary: str = DEFAULT_BINARY,
    stripped: bool | None = None,
    pid_set: bool = False,
    timing: latency.Timing = latency.DEFAULT_TIMING,
) -> str:
    """A bpftrace program counting hits per hookpoint, and timing hops between hookpoints that carry an id.

    It traces the process given as `$1`; with `pid_set`, every pid given (`$1`..`$MAX_PIDS`), keying its
    maps by pid (one tracer per binary on a node: uprobes are attached once). Hookpoints are probed by
    mangled name or, when the binary is stripped, at their file offset (then run `bpftrace --unsafe`).
    """
    hookpoints, is_stripped, origin = _resolve(info_or_hookpoints, stripped)
    _check_binary(binary)
    unsafe = any(_by_address(h, is_stripped) for h in hookpoints)
    bits = [latency.id_bits(h.demangled) for h in hookpoints]
    timed = any(bits)
    run = f"bpftrace{' --unsafe' if unsafe else ''} -f json {BPFTRACE_SCRIPT} PID{' [PID...]' if pid_set else ''}"
    lines = [*_header(origin, run, binary, unsafe=unsafe, pid_set=pid_set), "BEGIN", "{"]
    lines += [
        "  if ($1 == 0) {",
        f'    printf("usage: {run}\\n");',
        "    exit();",
        "  }",
    ]
    if pid_set:
        lines += [f"  if (${n} != 0) {{ @traced[(uint32)${n}] = 1; }}" for n in range(1, MAX_PIDS + 1)]
    if timed:
        lines += latency.declarations()
    rows = [(h.name, h.demangled, b) for h, b in zip(hookpoints, bits, strict=True)]
    others = " and the other pids given" if pid_set else ""
    lines += [
        latency.table_line(rows, timing),
        f'  printf("hookbuild: tracing {len(hookpoints)} hookpoints in pid %d{others}; Ctrl-C to stop\\n", $1);',
        "}",
        "",
    ]
    key = "pid, " if pid_set else ""
    for index, (hp, id_bits) in enumerate(zip(hookpoints, bits, strict=True)):
        # bpftrace 0.17 takes a stripped binary's address as a file offset (seen here on an LLD PIE, where
        # offset != vaddr: the vaddr fails to attach); bcc's addr= wants the vaddr and converts it itself.
        if _by_address(hp, is_stripped):
            where = f"{hp.file_offset:#x}"
        else:
            where = hp.name if _SAFE_SYMBOL.match(hp.name) else f'"{hp.name}"'
        lines += [
            f"// {_comment(hp.demangled)}",
            f"uprobe:{binary}:{where} {'/@traced[pid]/' if pid_set else '/pid == $1/'}",
            "{",
            f'  @hits[{key}"{hp.name}"] = count();',
        ]
        if id_bits:
            lines += latency.timed_body(index, len(hookpoints), id_bits, timing, keyed=pid_set)
        lines += ["}", ""]
    lines += latency.flush_block(timing, timed=timed)
    lines += latency.end_block(timed=timed, keyed=pid_set)
    return "\n".join(lines)


def _header(origin: str, run: str, binary: str, *, unsafe: bool, pid_set: bool) -> list[str]:
    lines = [
        "#!/usr/bin/env bpftrace",
        "/*",
        f" * Generated by hookbuild from {origin}.",
        f" * Usage: {run}",
    ]
    if pid_set:
        lines += [
            f" *   PIDs: the Envoys to trace, all running this binary (up to {MAX_PIDS}). Uprobes sit on the",
            " *   file's inode: one tracer attaches once for every container of the image on the node.",
        ]
    else:
        lines += [
            " *   PID: the Envoy to trace. Uprobes sit on the file's inode, shared by every container of this",
            " *   image on the node: the pid filter keeps this tracer to one Envoy.",
        ]
    if unsafe:
        lines.append(" *   Stripped binary: hookpoints are probed by file offset, which needs --unsafe.")
    return [
        *lines,
        f" * Binary: {binary} (from the node: /proc/<pid>/root followed by its path in the image).",
        " * Prints, first, the hookpoint table (JSON); then every flush period and on exit (Ctrl-C)",
        " * @hits[<mangled name>]: hits, and @lat[KEY]: hops between hookpoints of the same id",
        " * (KEY = (from * N + to) * 1024 + log-linear bucket; `invoke trace-report` reads it);",
        " * sampled hops as `hop PID FROM TO ID START_NS DURATION_NS`. Run with -f json for machines.",
        " */",
        "",
    ]


def bcc_script(
    info_or_hookpoints: BinaryInfo | Sequence[Hookpoint],
    *,
    binary: str = DEFAULT_BINARY,
    stripped: bool | None = None,
) -> str:
    """A Python bcc program: `attach_uprobe(sym=MANGLED)` (`addr=` when stripped) per hookpoint; `--pid`.

    The program's text is templates/trace_bcc.py.tmpl; this fills in the hookpoints.
    """
    hookpoints, is_stripped, origin = _resolve(info_or_hookpoints, stripped)
    _check_binary(binary)
    attach = []
    for i, hp in enumerate(hookpoints):
        where = f"addr={hp.address:#x}" if _by_address(hp, is_stripped) else f"sym={hp.name!r}"
        attach.append(
            f'    bpf.attach_uprobe(name=args.binary, {where}, fn_name="hook_{i}", pid=args.pid)'
            f"  # {_comment(hp.demangled)}"
        )
    values = {
        "@@ORIGIN@@": _comment(origin),
        "@@SCRIPT@@": BCC_SCRIPT,
        "@@BINARY@@": repr(binary),
        "@@HOOKPOINTS@@": "\n".join(
            f"    ({h.name!r}, {h.demangled!r}, {h.address:#x})," for h in hookpoints
        ),
        "@@COUNT@@": str(len(hookpoints)),
        "@@HANDLERS@@": "\n".join(
            f"int hook_{i}(struct pt_regs *ctx) {{ return hit({i}); }}" for i in range(len(hookpoints))
        ),
        "@@ATTACH@@": "\n".join(attach),
    }
    text = resources.files("hookbuild.probes").joinpath("templates", BCC_TEMPLATE).read_text(encoding="utf-8")
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def write_scripts(info: BinaryInfo, dest: Path, *, binary: str = DEFAULT_BINARY) -> tuple[Path, ...]:
    """Write `trace.bt`, `trace_bcc.py` (both executable) and `hookpoints.json` into `dest`."""
    outputs = {
        BPFTRACE_SCRIPT: bpftrace_script(info, binary=binary),
        BCC_SCRIPT: bcc_script(info, binary=binary),
        HOOKPOINTS_FILE: json.dumps(info.to_dict(), indent=2) + "\n",
    }
    try:
        dest.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in outputs.items():
            path = dest / name
            written.append(fsutil.atomic_write(path, text, mode=0o644 if name == HOOKPOINTS_FILE else 0o755))
    except OSError as exc:
        raise SymbolError(
            f"cannot write uprobe scripts to {dest}: {exc.strerror}", hint="pass a directory you can write"
        ) from None
    return tuple(written)


def _comment(text: str) -> str:
    return text.replace("*/", "* /").replace("\n", " ").replace('"""', "'''")
