"""trace_all.sh against real containers: the kubectl shim maps pods onto docker, bpftrace really attaches.

Each fake sidecar runs the same image (so every Envoy shares one inode, as on a real node) with pilot-agent
(sh) as PID 1 and the g++ -static stand-in Envoy as its child, calling a different set of hookpoints per
container: a trace that shows another container's hookpoints would prove the PID filter broken.
Exec mode runs the host's bpftrace inside the sidecar (mounted read-only with its libraries), for real.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hookbuild.binary import symbols
from hookbuild.probes import trace_all

DATA = Path(__file__).parent / "data" / "trace"
SHIM = Path(__file__).parent / "shims" / "kubectl"
DECODE = "_ZN5Envoy4Http22hookpointDecodeHeadersEi"
ENCODE = "_ZN5Envoy4Http19hookpointEncodeDataEi"


@pytest.fixture(scope="module")
def envoy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("g++") is None:
        pytest.fail("g++ not found; run scripts/setup.sh")
    binary = tmp_path_factory.mktemp("envoy") / "envoy"
    subprocess.run(["g++", "-O2", "-static", "-o", str(binary), str(DATA / "envoy.cc")], check=True)
    return binary


@pytest.fixture(scope="module")
def script(envoy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trace_all.write(tmp_path_factory.mktemp("dist"), symbols.read_binary(envoy), release="istio@12.0")


def test_script_is_filled_in_and_valid_bash(script: Path) -> None:
    text = script.read_text()
    assert os.access(script, os.X_OK)
    assert not re.search(r"@@[A-Z_]+@@", text)
    assert f"uprobe:/usr/local/bin/envoy:{DECODE} /pid == $1/" in text
    assert f"uprobe:/proc/@HOSTPID@/root/usr/local/bin/envoy:{ENCODE} /pid == $1/" in text
    assert 'BPFTRACE_FLAGS=""' in text  # probed by name: no --unsafe
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_usage_errors(script: Path, tmp_path: Path) -> None:
    ran = subprocess.run(["bash", str(script), "-m", "sideways"], capture_output=True, text=True, check=False)
    assert ran.returncode == 2 and "mode must be exec or node" in ran.stderr
    ran = subprocess.run(["bash", str(script), "-h"], capture_output=True, text=True, check=False)
    assert ran.returncode == 0 and "-l SELECTOR" in ran.stderr


# --- real containers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image(docker_client: Any, envoy: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import docker

    try:
        docker_client.images.get("hookbuild/busybox:1")
    except docker.errors.ImageNotFound:
        pytest.fail("image hookbuild/busybox:1 missing; run scripts/setup.sh")
    context = tmp_path_factory.mktemp("sidecar")
    shutil.copy(envoy, context / "envoy")
    shutil.copy(DATA / "pilot-agent", context / "pilot-agent")
    (context / "pilot-agent").chmod(0o755)
    (context / "Dockerfile").write_text(
        "FROM hookbuild/busybox:1\n"
        "COPY envoy /usr/local/bin/envoy\n"
        "COPY pilot-agent /usr/local/bin/pilot-agent\n"
        'ENTRYPOINT ["/usr/local/bin/pilot-agent"]\n'
    )
    tag = f"hookbuild-test/fake-sidecar:{uuid.uuid4().hex[:8]}"
    docker_client.images.build(path=str(context), tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


class Pods:
    """Fake sidecar pods: containers labelled the way the kubectl shim reads them; all removed at the end."""

    def __init__(self, client: Any, image: str) -> None:
        self.client, self.image, self.run = client, image, uuid.uuid4().hex[:6]
        self.containers: list[Any] = []

    def start(self, namespace: str, name: str, which: str, *, envoy: bool = True, **kwargs: Any) -> str:
        pod = f"{name}-{self.run}"
        container = self.client.containers.run(
            self.image,
            [which],
            detach=True,
            name=f"hookbuild-test-{namespace}-{pod}",
            environment={} if envoy else {"PILOT_AGENT_NO_ENVOY": "1"},
            labels={
                "io.kubernetes.pod.namespace": namespace,
                "io.kubernetes.pod.name": pod,
                "io.kubernetes.container.name": "istio-proxy",
                "app": name,
                "hookbuild-test": self.run,
            },
            **kwargs,
        )
        self.containers.append(container)
        return pod

    def remove(self) -> None:
        for container in self.containers:
            container.remove(force=True)


@pytest.fixture
def pods(docker_client: Any, image: str) -> Iterator[Pods]:
    if os.geteuid() != 0 or shutil.which("bpftrace") is None:
        pytest.fail("bpftrace tests need root and bpftrace; run scripts/setup.sh as root")
    if not Path("/sys/kernel/tracing/uprobe_events").exists():
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"], check=True)
    made = Pods(docker_client, image)
    yield made
    made.remove()


def trace(script: Path, out: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), "-o", str(out), *args],
        env={**os.environ, "KUBECTL": str(SHIM)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def hits(path: Path) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^@hits\[(\w+)\]: (\d+)$", path.read_text(), re.M)}


@pytest.mark.docker
@pytest.mark.bpf
def test_node_mode_traces_each_envoy_and_reports_failed_pods(
    script: Path, pods: Pods, tmp_path: Path
) -> None:
    decode = pods.start("shop", "decode", "decode")
    encode = pods.start("shop", "encode", "encode")
    both = pods.start("web", "both", "both")
    broken = pods.start("web", "broken", "both", envoy=False)
    time.sleep(0.5)
    ran = trace(script, tmp_path, "-m", "node", "-l", f"hookbuild-test={pods.run}", "-d", "3")
    assert ran.returncode == 1, ran.stderr  # one pod failed, the others were traced
    assert f"FAILED web/{broken}: no /usr/local/bin/envoy process" in ran.stderr
    assert "3 of 4 pod(s) traced, 1 failed" in ran.stderr
    # Each file holds only its own Envoy's hookpoints, though every container shares the binary's inode.
    assert set(hits(tmp_path / f"shop_{decode}.txt")) == {DECODE}
    assert set(hits(tmp_path / f"shop_{encode}.txt")) == {ENCODE}
    counts = hits(tmp_path / f"web_{both}.txt")
    assert set(counts) == {DECODE, ENCODE}
    # ~5 ms per loop for 3 s: hundreds of hits, not the triple an unfiltered tracer would count.
    assert 100 < counts[DECODE] < 900, counts


@pytest.mark.docker
@pytest.mark.bpf
def test_namespace_and_selector_choose_pods(script: Path, pods: Pods, tmp_path: Path) -> None:
    first = pods.start("shop", "one", "decode")
    pods.start("web", "two", "decode")
    time.sleep(0.5)
    ran = trace(script, tmp_path, "-m", "node", "-n", "shop", "-l", f"hookbuild-test={pods.run}", "-d", "1")
    assert ran.returncode == 0, ran.stderr
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == [f"shop_{first}.txt"]
    ran = trace(script, tmp_path / "none", "-m", "node", "-l", "app=nothing-here", "-d", "1")
    assert ran.returncode == 1 and "no pods with an istio-proxy container" in ran.stderr


def _tracers(out: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"bpftrace") and any(str(out).encode() in arg for arg in argv):
                found.append(int(proc.name))
    return found


@pytest.mark.docker
@pytest.mark.bpf
def test_sigint_stops_every_tracer(script: Path, pods: Pods, tmp_path: Path) -> None:
    names = [pods.start("shop", f"p{i}", "both") for i in range(3)]
    time.sleep(0.5)
    proc = subprocess.Popen(
        ["bash", str(script), "-m", "node", "-o", str(tmp_path), "-l", f"hookbuild-test={pods.run}"],
        env={**os.environ, "KUBECTL": str(SHIM)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(_tracers(tmp_path)) < 3 or not all(
        "tracing" in (tmp_path / f"shop_{n}.txt").read_text()
        for n in names
        if (tmp_path / f"shop_{n}.txt").exists()
    ):
        assert time.monotonic() < deadline and proc.poll() is None, "tracers did not start"
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)  # to the script only, as `kill -INT`; Ctrl-C also reaches the tracers
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopping 3 tracer(s)" in err
    assert _tracers(tmp_path) == []
    for name in names:
        assert set(hits(tmp_path / f"shop_{name}.txt")) == {DECODE, ENCODE}  # counts printed on the way out


@pytest.mark.docker
@pytest.mark.bpf
def test_exec_mode_runs_bpftrace_inside_the_sidecar(script: Path, pods: Pods, tmp_path: Path) -> None:
    # bpftrace cannot be built into busybox; the host's binary and libraries are mounted read-only instead.
    # CAP_SYS_ADMIN stands for `privileged` (this engine cannot grant every capability).
    volumes = [
        "/usr/bin/bpftrace:/usr/bin/bpftrace:ro",
        "/usr/lib:/usr/lib:ro",
        "/usr/lib:/lib:ro",  # /lib64/ld-linux-x86-64.so.2 links to /lib/x86_64-linux-gnu/
        "/usr/lib64:/lib64:ro",
        "/sys/kernel/tracing:/sys/kernel/tracing",
    ]
    extra = {"volumes": volumes, "cap_add": ["SYS_ADMIN", "SYS_PTRACE"]}
    extra["security_opt"] = ["seccomp=unconfined"]
    decode = pods.start("exec", "decode", "decode", **extra)
    encode = pods.start("exec", "encode", "encode", **extra)
    time.sleep(0.5)
    ran = trace(script, tmp_path, "-m", "exec", "-n", "exec", "-l", f"hookbuild-test={pods.run}", "-d", "4")
    assert ran.returncode == 0, ran.stderr + "".join(p.read_text() for p in tmp_path.glob("*.txt"))
    assert set(hits(tmp_path / f"exec_{decode}.txt")) == {DECODE}
    assert set(hits(tmp_path / f"exec_{encode}.txt")) == {ENCODE}
    assert "in the sidecar is pid" in (tmp_path / f"exec_{decode}.txt").read_text()


def test_trace_script_task_writes_the_script(envoy: Path, tmp_path: Path) -> None:
    from conftest import run_invoke

    ran = run_invoke("trace-script", "-r", "istio@12.0", "-b", str(envoy), "-o", str(tmp_path))
    assert ran.returncode == 0, ran.stderr
    assert os.access(tmp_path / "trace_all.sh", os.X_OK)
    ran = run_invoke("trace-script", "-r", "istio@12", "-b", str(envoy), "-o", str(tmp_path))
    assert ran.returncode == 2 and ran.stderr.startswith("error: invalid version '12'")
