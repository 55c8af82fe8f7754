"""Latency between hookpoints, in the generated bpftrace program: the id, the buckets, the program blocks.

A hookpoint whose demangled signature starts with an integer (a stream or connection id) is timed: the
program keeps, per (pid, id), the last hookpoint seen and when, and on the next hookpoint of that id counts
the elapsed nanoseconds into `@lat[KEY]`, `KEY = (from * N + to) * 1024 + bucket`: one integer key, so `-f
json` prints it the same way in every bpftrace version. Buckets are log-linear (16 per power of two, a
relative width of 1/16 to 1/32): a percentile read at a bucket's middle is within 3.2% of the truth, where
bpftrace's power-of-two `hist()` is off by up to 50%.

Memory stays bounded without knowing which hookpoint ends a stream: the (pid, id) state lives in
generations, one per flush period; an id not seen for one to two periods is freed with its generation. A
stream's hops are timed as long as each is shorter than a period. Hookpoints without an id only count hits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

SUB_BUCKETS = 16
"""Buckets per power of two."""
_SUB_BITS = 4
GENERATIONS = 3
"""Id state lives in three maps, one per flush period: written, read, and being cleared."""
BUCKETS_PER_PAIR = 1024
"""Room for every bucket of a 64-bit value: (63 - 3) * 16 + 15 < 1024."""

# Integer types a first parameter may have to be read as an id, with the mask for their width: the upper
# half of a 64-bit register holding a 32-bit argument is not defined by the ABI.
_ID_TYPES = {
    "long": 64, "unsigned long": 64, "long long": 64, "unsigned long long": 64,
    "int": 32, "unsigned int": 32, "unsigned": 32, "short": 16, "unsigned short": 16,
}  # fmt: skip


def id_bits(demangled: str) -> int | None:
    """Bits of the integer id a hookpoint's first parameter carries, or None when it carries none.

    Member functions (a `this` in the first register) are recognised only when const-qualified; hookpoints
    are free functions by hookbuild's convention.
    """
    match = re.search(r"\(([^()]*)\)\s*(const)?\s*$", demangled.split(" [clone ", 1)[0])
    if match is None or match.group(2):
        return None
    first = match.group(1).split(",", 1)[0].strip()
    return _ID_TYPES.get(first)


def bucket_of(nanoseconds: int) -> int:
    """The bucket a duration falls in (what the generated program computes)."""
    if nanoseconds < 2 * SUB_BUCKETS:
        return nanoseconds
    top = nanoseconds.bit_length() - 1
    return (top - _SUB_BITS + 1) * SUB_BUCKETS + ((nanoseconds >> (top - _SUB_BITS)) & (SUB_BUCKETS - 1))


def bucket_bounds(bucket: int) -> tuple[int, int]:
    """[low, high) nanoseconds of a bucket."""
    if bucket < 2 * SUB_BUCKETS:
        return bucket, bucket + 1
    top = bucket // SUB_BUCKETS + _SUB_BITS - 1
    width = 1 << (top - _SUB_BITS)
    low = (SUB_BUCKETS + bucket % SUB_BUCKETS) * width
    return low, low + width


@dataclass(frozen=True, kw_only=True)
class Timing:
    """How the program times hookpoints: flush period, timeline sampling."""

    flush_seconds: int = 5
    """Maps are printed (a full snapshot) this often, and id state older than a period is dropped."""
    sample_every: int = 16
    """Timeline: one id in this many has its hops printed as events..."""
    events_per_flush: int = 256
    """...at most this many per flush period, so a busy Envoy cannot flood the output."""


DEFAULT_TIMING = Timing()


def pair_key(source: int, target: int, count: int) -> int:
    """The `@lat` key of the pair's bucket 0; add the bucket."""
    return (source * count + target) * BUCKETS_PER_PAIR


def split_key(key: int, count: int) -> tuple[int, int, int]:
    """(from index, to index, bucket) of an `@lat` key."""
    pair, bucket = divmod(key, BUCKETS_PER_PAIR)
    source, target = divmod(pair, count)
    return source, target, bucket


def timed_body(index: int, count: int, bits: int, timing: Timing, *, keyed: bool) -> list[str]:
    """The statements of hookpoint `index`'s probe that time the hop from the id's previous hookpoint.

    `keyed`: one tracer for several Envoys, so `@lat` is keyed by pid first.
    """
    mask = "" if bits == 64 else f" & {(1 << bits) - 1:#x}"
    lines = [
        "  $now = nsecs;",
        f"  $id = arg0{mask};",
        "  $from = (uint64)0;",
        "  $then = (uint64)0;",
    ]
    # Look in the current generation, then in the previous one (moving the id into the current one).
    for gen in range(GENERATIONS):
        previous = (gen + GENERATIONS - 1) % GENERATIONS
        lines += [
            *_branch(gen),
            f"    $from = @hp{gen}[pid, $id];",
            f"    $then = @ts{gen}[pid, $id];",
            "    if ($from == 0) {",
            f"      $from = @hp{previous}[pid, $id];",
            f"      $then = @ts{previous}[pid, $id];",
            f"      delete(@hp{previous}[pid, $id]);",
            f"      delete(@ts{previous}[pid, $id]);",
            "    }",
            f"    @hp{gen}[pid, $id] = (uint64){index + 1};",
            f"    @ts{gen}[pid, $id] = $now;",
        ]
    lines.append("  " + "}" * (GENERATIONS - 1))
    lines += [
        "  if ($from != 0) {",
        "    $d = $now - $then;",
        # floor(log2($d)) by halving: bpftrace 0.17 has no loops to spare and no log2().
        "    $top = (uint64)0;",
        "    $v = $d;",
    ]
    for shift in (32, 16, 8, 4, 2, 1):
        lines.append(f"    if ($v >> {shift}) {{ $top = $top + {shift}; $v = $v >> {shift}; }}")
    lines += [
        "    $bucket = $d;",
        f"    if ($d >> {_SUB_BITS + 1}) {{",
        f"      $bucket = ($top - {_SUB_BITS - 1}) * {SUB_BUCKETS}"
        f" + (($d >> ($top - {_SUB_BITS})) & {SUB_BUCKETS - 1});",
        "    }",
        f"    @lat[{'pid, ' if keyed else ''}($from - 1) * {count * BUCKETS_PER_PAIR} + {index * BUCKETS_PER_PAIR}"
        " + $bucket] = count();",
        f"    if ($id % {timing.sample_every} == 0 && @events < {timing.events_per_flush}) {{",
        "      @events = @events + 1;",
        f'      printf("hop %d %d %d %llu %llu %llu\\n", pid, $from - 1, {index}, $id, $then, $d);',
        "    }",
        "  }",
    ]
    return lines


def _branch(gen: int) -> list[str]:
    """The head of generation `gen`'s branch of an `if (@gen == 0) {..} else { if (@gen == 1) {..} else {..} }`."""
    if gen == 0:
        return ["  if (@gen == 0) {"]
    if gen == GENERATIONS - 1:
        return ["  } else {"]
    return [f"  }} else {{ if (@gen == {gen}) {{"]


def flush_block(timing: Timing, *, timed: bool) -> list[str]:
    """Print a snapshot of the counts; move to the next generation, clearing the oldest.

    `clear()` runs in bpftrace's user space, a moment after the program asks: the map it clears must be one
    no probe writes then. Of three generations the probes write the current one and read the previous one;
    the third, cleared now, is written again only a period later.
    """
    lines = [f"interval:s:{timing.flush_seconds}", "{", "  print(@hits);"]
    if timed:
        lines.append("  print(@lat);")
        for gen in range(GENERATIONS):
            oldest = (gen + GENERATIONS - 1) % GENERATIONS
            lines += [
                *_branch(gen),
                f"    clear(@hp{oldest});",
                f"    clear(@ts{oldest});",
                f"    @gen = {(gen + 1) % GENERATIONS};",
            ]
        lines += ["  " + "}" * (GENERATIONS - 1), "  @events = 0;"]
    return [*lines, '  printf("hookbuild: flush %llu\\n", nsecs);', "}", ""]


def end_block(*, timed: bool, keyed: bool) -> list[str]:
    """The last snapshot, a marker that the trace is complete, and no dump of the state maps."""
    printed = ("hits", "lat") if timed else ("hits",)
    maps = [f"{kind}{gen}" for gen in range(GENERATIONS) for kind in ("hp", "ts")]
    state = ((*maps, "gen", "events") if timed else ()) + (("traced",) if keyed else ())
    return [
        "END",
        "{",
        *(f"  print(@{name});" for name in printed),
        '  printf("hookbuild: end %llu\\n", nsecs);',
        *(f"  clear(@{name});" for name in (*printed, *state)),
        "}",
        "",
    ]


def table_line(rows: Sequence[tuple[str, str, int | None]], timing: Timing) -> str:
    """A `printf` of the hookpoint table as one JSON object, so every output names its own hookpoints."""
    table = {
        "hookbuild_trace": 1,
        "flush_seconds": timing.flush_seconds,
        "sub_buckets": SUB_BUCKETS,
        "hookpoints": [
            {"index": i, "name": name, "demangled": demangled, "id_bits": bits}
            for i, (name, demangled, bits) in enumerate(rows)
        ],
    }
    text = json.dumps(table, separators=(",", ":"))
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'  printf("{escaped}\\n");'


def declarations() -> list[str]:
    """BEGIN statements giving the id state maps their types before any probe reads them.

    bpftrace 0.17 types a map at its first use in the program text, and a probe reads the state before it
    writes it.
    """
    lines = ["  @gen = 0;", "  @events = 0;"]
    for gen in range(GENERATIONS):
        lines += [
            f"  @hp{gen}[pid, (uint64)0] = (uint64)0;",
            f"  @ts{gen}[pid, (uint64)0] = nsecs;",
            f"  delete(@hp{gen}[pid, (uint64)0]);",
            f"  delete(@ts{gen}[pid, (uint64)0]);",
        ]
    return lines
