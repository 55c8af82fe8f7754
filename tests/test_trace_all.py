"""trace_all.sh against real containers: the kubectl shim maps pods onto docker, bpftrace really attaches.

Each fake sidecar runs the same image (so every Envoy shares one inode, as on a real node) with pilot-agent
(sh) as PID 1 and the g++ -static stand-in Envoy as its child, calling a different set of hookpoints per
container: a trace that shows another container's hookpoints would prove the PID filter (or the split of
the one node tracer's output per pod) broken. Exec mode runs the host's bpftrace inside the sidecar (mounted
read-only with its libraries), for real. Every trace file is read the way `invoke trace-report` reads it.
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
from hookbuild.report import traces

DATA = Path(__file__).parent / "data" / "trace"
SHIM = Path(__file__).parent / "shims" / "kubectl"
DECODE = "_ZN5Envoy4Http22hookpointDecodeHeadersEi"
ENCODE = "_ZN5Envoy4Http19hookpointEncodeDataEi"
DECODED = "Envoy::Http::hookpointDecodeHeaders(int)"
ENCODED = "Envoy::Http::hookpointEncodeData(int)"


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
    assert f"uprobe:/proc/@HOSTPID@/root/usr/local/bin/envoy:{ENCODE} /@traced[pid]/" in text
    assert 'BPFTRACE_FLAGS=""' in text  # probed by name: no --unsafe
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_usage_errors(script: Path, tmp_path: Path) -> None:
    ran = subprocess.run(["bash", str(script), "-m", "sideways"], capture_output=True, text=True, check=False)
    assert ran.returncode == 2 and "mode must be auto, node or exec" in ran.stderr
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
    """Fake pods: containers labelled the way the kubectl shim reads them; all removed at the end."""

    def __init__(self, client: Any, image: str) -> None:
        self.client, self.image, self.run = client, image, uuid.uuid4().hex[:6]
        self.containers: list[Any] = []

    def start(
        self,
        namespace: str,
        name: str,
        which: str,
        *,
        envoy: bool = True,
        container: str = "istio-proxy",
        native: bool = False,
        annotation: str = "",
        app: bool = False,
        **kwargs: Any,
    ) -> str:
        """A pod whose `container` runs pilot-agent and Envoy; `app` adds an application container."""
        pod = f"{name}-{self.run}"
        labels = {
            "io.kubernetes.pod.namespace": namespace,
            "io.kubernetes.pod.name": pod,
            "app": name,
            "hookbuild-test": self.run,
        }
        if annotation:
            labels["annotation.hookbuild.io/injected"] = annotation
        sidecar = {
            "io.kubernetes.container.name": container,
            **({"io.kubernetes.container.init": "native"} if native else {}),
        }
        self.containers.append(
            self.client.containers.run(
                self.image,
                [which],
                detach=True,
                name=f"hookbuild-test-{namespace}-{pod}-{container}",
                environment={} if envoy else {"PILOT_AGENT_NO_ENVOY": "1"},
                labels={**labels, **sidecar},
                **kwargs,
            )
        )
        if app:
            self.containers.append(
                self.client.containers.run(
                    self.image,
                    ["100000"],
                    entrypoint=["sleep"],
                    detach=True,
                    name=f"hookbuild-test-{namespace}-{pod}-app",
                    labels={**labels, "io.kubernetes.container.name": "app"},
                )
            )
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
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def read(path: Path) -> traces.PodTrace:
    """The pod's trace file as trace-report reads it; it must be complete (the tracer stopped cleanly)."""
    found, problems = traces.load_file(path)
    assert len(found) == 1 and not problems, (problems, path.read_text()[-2000:])
    return found[0]


def hits(path: Path) -> dict[str, int]:
    return dict(read(path).hits)


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
    assert "starting 1 tracer(s) (node: 1 binary(ies), exec: 0 pod(s))" in ran.stderr  # attached once
    # Each file holds only its own Envoy's hookpoints, though one tracer traced all three.
    assert set(hits(tmp_path / f"shop_{decode}.json")) == {DECODED}
    assert set(hits(tmp_path / f"shop_{encode}.json")) == {ENCODED}
    traced = read(tmp_path / f"web_{both}.json")
    assert (traced.namespace, traced.pod, traced.container) == ("web", both, "istio-proxy")
    assert set(traced.hits) == {DECODED, ENCODED}
    # Both Envoys loop at the same pace: about the same counts, not the sum an unfiltered tracer would see.
    alone = hits(tmp_path / f"shop_{decode}.json")[DECODED]
    assert traced.hits[DECODED] > 100 and 0.6 < traced.hits[DECODED] / alone < 1.6, (traced.hits, alone)
    # The stand-in calls both with the loop counter: the hop is timed once per loop (the first probe attaches
    # a moment before the second: the second's count is the number of loops seen whole).
    hop = traced.latency[(DECODED, ENCODED)]
    assert abs(sum(hop.values()) - traced.hits[ENCODED]) <= 1


@pytest.mark.docker
@pytest.mark.bpf
def test_namespace_and_selector_choose_pods(script: Path, pods: Pods, tmp_path: Path) -> None:
    first = pods.start("shop", "one", "decode")
    pods.start("web", "two", "decode")
    time.sleep(0.5)
    ran = trace(script, tmp_path, "-n", "shop", "-l", f"hookbuild-test={pods.run}", "-d", "1")
    assert ran.returncode == 0, ran.stderr
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [f"shop_{first}.json"]
    ran = trace(script, tmp_path / "none", "-l", "app=nothing-here", "-d", "1")
    assert ran.returncode == 1 and "no pods with an istio-proxy container" in ran.stderr


@pytest.mark.docker
@pytest.mark.bpf
def test_native_sidecars_annotated_containers_and_pods_without_envoy(
    script: Path, pods: Pods, tmp_path: Path
) -> None:
    native = pods.start("mesh", "native", "decode", native=True, app=True)
    named = pods.start(
        "mesh",
        "gateway",
        "encode",
        container="envoy",
        annotation='{"release":"envoy@1.0","container":"envoy"}',
    )
    plain = pods.start("mesh", "plain", "both", container="app")  # opted out: no Envoy container
    time.sleep(0.5)
    ran = trace(script, tmp_path, "-l", f"hookbuild-test={pods.run}", "-d", "2")
    assert ran.returncode == 0, ran.stderr
    assert "1 pod(s) without an Envoy container skipped" in ran.stderr
    assert "2 of 2 pod(s) traced, 0 failed" in ran.stderr
    assert set(hits(tmp_path / f"mesh_{native}.json")) == {DECODED}
    gateway = read(tmp_path / f"mesh_{named}.json")
    assert gateway.container == "envoy" and set(gateway.hits) == {ENCODED}
    assert not (tmp_path / f"mesh_{plain}.json").exists()


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
def test_sigint_stops_every_tracer_and_keeps_the_traces(script: Path, pods: Pods, tmp_path: Path) -> None:
    names = [pods.start("shop", f"p{i}", "both") for i in range(3)]
    time.sleep(0.5)
    proc = subprocess.Popen(
        ["bash", str(script), "-o", str(tmp_path), "-l", f"hookbuild-test={pods.run}"],
        env={**os.environ, "KUBECTL": str(SHIM)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    files = [tmp_path / f"shop_{n}.json" for n in names]
    deadline = time.monotonic() + 60
    while not all(f.exists() and "hookbuild: tracing" in f.read_text() for f in files):
        assert time.monotonic() < deadline and proc.poll() is None, "tracers did not start"
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)  # to the script only, as `kill -INT`; Ctrl-C also reaches the tracers
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopping 1 tracer(s)" in err
    assert _tracers(tmp_path) == []
    for path in files:
        assert set(hits(path)) == {DECODED, ENCODED}  # counts printed on the way out


_HOST_BPFTRACE = {
    # bpftrace cannot be built into busybox; the host's binary and libraries are mounted read-only instead.
    # CAP_SYS_ADMIN stands for `privileged` (this engine cannot grant every capability).
    "volumes": [
        "/usr/bin/bpftrace:/usr/bin/bpftrace:ro",
        "/usr/lib:/usr/lib:ro",
        "/usr/lib:/lib:ro",  # /lib64/ld-linux-x86-64.so.2 links to /lib/x86_64-linux-gnu/
        "/usr/lib64:/lib64:ro",
        "/sys/kernel/tracing:/sys/kernel/tracing",
    ],
    "cap_add": ["SYS_ADMIN", "SYS_PTRACE"],
    "security_opt": ["seccomp=unconfined"],
}


@pytest.mark.docker
@pytest.mark.bpf
def test_exec_mode_runs_bpftrace_inside_the_sidecar(script: Path, pods: Pods, tmp_path: Path) -> None:
    decode = pods.start("exec", "decode", "decode", **_HOST_BPFTRACE)
    encode = pods.start("exec", "encode", "encode", **_HOST_BPFTRACE)
    time.sleep(0.5)
    ran = trace(script, tmp_path, "-m", "exec", "-n", "exec", "-l", f"hookbuild-test={pods.run}", "-d", "4")
    assert ran.returncode == 0, ran.stderr + "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert set(hits(tmp_path / f"exec_{decode}.json")) == {DECODED}
    assert set(hits(tmp_path / f"exec_{encode}.json")) == {ENCODED}
    assert "in the sidecar is pid" in (tmp_path / f"exec_{decode}.log").read_text()


@pytest.mark.docker
@pytest.mark.bpf
def test_exec_mode_says_the_image_has_no_bpftrace(script: Path, pods: Pods, tmp_path: Path) -> None:
    pod = pods.start("exec", "bare", "decode")
    time.sleep(0.5)
    ran = trace(script, tmp_path, "-m", "exec", "-l", f"hookbuild-test={pods.run}", "-n", "exec", "-d", "2")
    assert ran.returncode == 1
    reason = (tmp_path / f"exec_{pod}.failed").read_text()
    assert "bpftrace: not found in the sidecar" in reason and "-m node" in reason, reason
    assert "BTF" not in reason


def test_trace_script_task_writes_the_script(envoy: Path, tmp_path: Path) -> None:
    from conftest import run_invoke

    ran = run_invoke("trace-script", "-r", "istio@12.0", "-b", str(envoy), "-o", str(tmp_path))
    assert ran.returncode == 0, ran.stderr
    assert os.access(tmp_path / "trace_all.sh", os.X_OK)
    ran = run_invoke("trace-script", "-r", "istio@12", "-b", str(envoy), "-o", str(tmp_path))
    assert ran.returncode == 2 and ran.stderr.startswith("error: invalid version '12'")


@pytest.mark.docker
@pytest.mark.bpf
def test_more_envoys_than_one_tracer_takes(script: Path, pods: Pods, tmp_path: Path) -> None:
    small = tmp_path / "trace_all.sh"  # the same script, with room for 2 PIDs per tracer instead of 64
    small.write_text(script.read_text().replace("\nMAX_PIDS=64\n", "\nMAX_PIDS=2\n"))
    names = [pods.start("many", f"p{i}", "both") for i in range(3)]
    time.sleep(0.5)
    ran = trace(small, tmp_path / "out", "-l", f"hookbuild-test={pods.run}", "-d", "2")
    assert ran.returncode == 0, ran.stderr
    assert "starting 2 tracer(s) (node: 1 binary(ies), exec: 0 pod(s))" in ran.stderr
    for name in names:
        assert set(hits(tmp_path / "out" / f"many_{name}.json")) == {DECODED, ENCODED}
