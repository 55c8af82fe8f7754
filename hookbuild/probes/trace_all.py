"""`trace_all.sh`, the seed's last step, generated per release from its hookpoints.

The script lists every pod with an `istio-proxy` container (or native sidecar) through kubectl (or
`$KUBECTL`), finds each sidecar's Envoy (a child of pilot-agent), and traces it: from the node with one
bpftrace per Envoy binary for all its pods (uprobes attach once per inode; benchmarks/bench_trace.py has the
figures), or inside the sidecar. One JSON file per pod, labelled with namespace, pod and container, for
`invoke trace-report`. The shell text lives in templates/trace_all.sh.tmpl; this module only fills in the
programs made by `probes.bpftrace_script`.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from hookbuild import fsutil
from hookbuild.binary.symbols import BinaryInfo
from hookbuild.errors import SymbolError
from hookbuild.probes import latency
from hookbuild.probes import scripts as probes

SCRIPT = "trace_all.sh"
TEMPLATE = "trace_all.sh.tmpl"
ENVOY = probes.DEFAULT_BINARY
CONTAINER = "istio-proxy"
# Node mode probes the sidecar's binary through its root: /proc/<pid on the node>/root/usr/local/bin/envoy.
HOST_PID = "@HOSTPID@"
_PLACEHOLDER = re.compile(r"@@[A-Z_]+@@")
_END = "HOOKBUILD_PROGRAM_END"


def _template() -> str:
    return resources.files("hookbuild.probes").joinpath("templates", TEMPLATE).read_text(encoding="utf-8")


def render(info: BinaryInfo, *, release: str, binary: str = ENVOY, container: str = CONTAINER) -> str:
    """The text of trace_all.sh for the binary `info` describes, released as `release` (e.g. istio@12.0).

    `binary` is where the image keeps Envoy (/usr/bin/cilium-envoy in Cilium's image); `container` is the
    Envoy container of pods whose hookbuild.io/injected annotation names none.
    """
    in_sidecar = probes.bpftrace_script(info, binary=binary)
    on_node = probes.bpftrace_script(info, binary=f"/proc/{HOST_PID}/root{binary}", pid_set=True)
    for program in (in_sidecar, on_node):
        if any(line.strip() == _END for line in program.splitlines()):
            raise SymbolError(f"the bpftrace program holds the line {_END}", hint="rename that hookpoint")
    values = {
        "@@RELEASE@@": release,
        "@@ENVOY@@": binary,
        "@@CONTAINER@@": container,
        "@@ORIGIN@@": f"{info.path.name} (sha256 {info.sha256[:12]}, build-id {info.build_id or 'none'})",
        "@@COUNT@@": str(len(info.hookpoints)),
        "@@BPFTRACE_FLAGS@@": "--unsafe" if probes.needs_unsafe(info) else "",
        "@@EXEC_PROGRAM@@": in_sidecar.rstrip("\n"),
        "@@NODE_PROGRAM@@": on_node.rstrip("\n"),
        "@@FLUSH@@": str(latency.DEFAULT_TIMING.flush_seconds),
        "@@MAX_PIDS@@": str(probes.MAX_PIDS),
    }
    text = _template()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    leftover = _PLACEHOLDER.search(text)
    if leftover:  # a template edit added a placeholder this module does not fill
        raise SymbolError(f"{TEMPLATE}: unfilled placeholder {leftover.group()}", hint="fill it in render()")
    return text


def write(dest_dir: Path, info: BinaryInfo, *, release: str, binary: str = ENVOY) -> Path:
    """Write `dest_dir/trace_all.sh` (executable), atomically; returns its path."""
    text = render(info, release=release, binary=binary)
    path = dest_dir / SCRIPT
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write(path, text, mode=0o755)
    except OSError as exc:
        raise SymbolError(
            f"cannot write {path}: {exc.strerror}", hint="pass --output a directory you can write"
        ) from None
    return path
