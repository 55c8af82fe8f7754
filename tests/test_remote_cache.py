"""Bazel's own remote cache, proved for real: nginx WebDAV on 127.0.0.1:8090 (scripts/setup.sh).

The envoy variant's sample is released twice through `invoke release` (Envoy's ci/run_envoy_docker.sh +
do_ci.sh in the build container, on the host network to reach the loopback cache), with
`--remote_cache=http://127.0.0.1:8090/<unique prefix>` from HOOKBUILD_BAZEL_REMOTE_CACHE and a secret
header from HOOKBUILD_BAZEL_REMOTE_HEADER. The second build starts from a clean output base (the whole
ENVOY_DOCKER_BUILD_DIR is removed) and must report remote cache hits and produce the same bytes.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import stat
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import ROOT, run_process, signing_env

from hookbuild import command, config
from hookbuild.build.bazel import REMOTE_HEADER_ENV, remote_headers, secret_bazelrc
from hookbuild.release.plan import plan
from hookbuild.release.request import Request
from hookbuild.variants import get
from hookbuild.version import Version

CACHE = "http://127.0.0.1:8090"
CACHE_ROOT = Path("/var/lib/hookbuild/bazel-cache")  # nginx's root (scripts/setup.sh)
PROCESSES = re.compile(r"^INFO: \d+ process(?:es)?: (.*)\.$", re.MULTILINE)

pytestmark = [pytest.mark.bazel, pytest.mark.docker]


@pytest.fixture
def cache_prefix() -> Iterator[str]:
    try:
        urllib.request.urlopen(f"{CACHE}/", timeout=3).close()
    except urllib.error.HTTPError:
        pass  # nginx answers (403/404 on the bare root): it is up
    except OSError as exc:
        pytest.fail(f"Bazel HTTP cache {CACHE} not reachable ({exc}); run scripts/setup.sh")
    prefix = f"hookbuild-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    shutil.rmtree(CACHE_ROOT / prefix, ignore_errors=True)


def _processes(log: str) -> dict[str, int]:
    """Bazel's summary, e.g. `INFO: 4 processes: 3 remote cache hit, 1 internal.` -> {kind: count}."""
    found = PROCESSES.findall(log)
    assert found, f"no Bazel process summary in the build log: {log[-2000:]}"
    return {kind.strip(): int(n) for n, kind in re.findall(r"(\d+) ([^,]+)", found[-1])}


def envoy_build_dir(dist: Path) -> Path:
    """Where the envoy variant's sample build keeps ENVOY_DOCKER_BUILD_DIR (Bazel's output base inside)."""
    settings = config.load(ROOT, env={"HOOKBUILD_DIST": str(dist), **signing_env()})
    planned = plan(Request(variant=get("envoy"), version=Version(1, 0), sample=True), settings)
    assert planned.build is not None
    return Path(planned.build.command.env["ENVOY_DOCKER_BUILD_DIR"])


def test_second_release_from_a_clean_output_base_hits_the_remote_cache(
    tmp_path: Path, cache_prefix: str
) -> None:
    token = f"s3cret-{uuid.uuid4().hex}"
    env = {
        "HOOKBUILD_DIST": str(tmp_path),
        "HOOKBUILD_BAZEL_REMOTE_CACHE": f"{CACHE}/{cache_prefix}",
        REMOTE_HEADER_ENV: f"X-Hookbuild-Token={token}",
    }
    digests = []
    build_dir = envoy_build_dir(tmp_path)
    for version in ("90.1", "90.2"):
        shutil.rmtree(build_dir, ignore_errors=True)  # a clean output base: it lives in the build dir
        ran = run_process(
            "release", "--sample", "--variant", "envoy", "--version", version, "--verbose", env=env
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        assert token not in ran.stdout + ran.stderr
        binary = tmp_path / "sample" / "envoy" / version / "envoy"
        digests.append(json.loads(run_process("symbols", str(binary), "--json").stdout)["sha256"])
    logs = [(tmp_path / "sample" / "envoy" / v / "build.log").read_text() for v in ("90.1", "90.2")]
    assert f"--remote_cache={CACHE}/{cache_prefix}" in logs[0]  # passed through, into the build container
    first, second = _processes(logs[0]), _processes(logs[1])
    executed = sum(n for kind, n in first.items() if kind not in ("internal", "remote cache hit"))
    assert executed >= 1 and first.get("remote cache hit", 0) == 0, logs[0][-2000:]
    assert second.get("remote cache hit", 0) == executed, logs[1][-2000:]  # every action came from the cache
    assert digests[0] == digests[1]  # the cached outputs are the built ones, byte for byte
    assert any((CACHE_ROOT / cache_prefix / "ac").iterdir())
    assert any((CACHE_ROOT / cache_prefix / "cas").iterdir())
    for path in tmp_path.rglob("*"):  # the header's secret is in no file hookbuild or the build wrote
        if path.is_file() and not path.is_symlink():
            assert token.encode() not in path.read_bytes(), path


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A Bazel HTTP cache that stores nothing and records every request's headers."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self) -> None:
        self.seen.append(dict(self.headers))
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_remote_header_secret_reaches_the_cache_only_through_a_private_rc(tmp_path: Path) -> None:
    token = f"s3cret-{uuid.uuid4().hex}"
    headers = remote_headers({REMOTE_HEADER_ENV: f"X-Hookbuild-Token={token}"})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "WORKSPACE").write_text('workspace(name = "rc_test")\n')
    (workspace / "BUILD").write_text('genrule(name = "g", outs = ["g.txt"], cmd = "echo hi > $@")\n')
    try:
        with secret_bazelrc(headers) as rc:
            assert rc is not None and ROOT not in rc.parents
            assert (
                stat.S_IMODE(rc.stat().st_mode) == 0o600 and stat.S_IMODE(rc.parent.stat().st_mode) == 0o700
            )
            argv = (
                "bazel", f"--bazelrc={rc}", "--batch", f"--output_user_root={tmp_path / 'bazel'}",
                "build", f"--remote_cache=http://127.0.0.1:{server.server_address[1]}", "//:g",
            )  # fmt: skip
            assert not any(token in arg for arg in argv)
            ran = command.run(command.Command(argv=argv, cwd=workspace), on_line=lambda _line: None)
        assert not rc.exists() and not rc.parent.exists()  # gone after the build
    finally:
        server.shutdown()
        server.server_close()
    assert _Recorder.seen, ran.output[-2000:]
    assert all(seen.get("X-Hookbuild-Token") == token for seen in _Recorder.seen)
    assert token not in ran.output
