"""A registry that answers 429 or 503 for a while (Docker Hub's limits, a registry behind a restarting load
balancer): reads are retried with backoff and then succeed; a limit that lasts is one line saying so; an
upload is never resent. Through a real HTTP proxy in front of the local registry."""

from __future__ import annotations

import http.client
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import registry_auth

from hookbuild.errors import RegistryError
from hookbuild.images.registry_api import Registry
from hookbuild.supply import attach
from hookbuild.supply.attach import Kind

pytestmark = pytest.mark.registry

UPSTREAM = ("127.0.0.1", 5000)
IMAGE = "sha256:" + "ef" * 32


@dataclass
class Flaky:
    """Answers `status` to the next `failures` requests whose method is in `methods`; forwards the rest."""

    status: int = 503
    failures: int = 0
    methods: frozenset[str] = frozenset({"GET", "HEAD"})
    seen: list[str] = field(default_factory=list)  # "METHOD status" of every request, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str) -> int | None:
        with self.lock:
            if method in self.methods and self.failures > 0:
                self.failures -= 1
                self.seen.append(f"{method} {self.status}")
                return self.status
            self.seen.append(f"{method} forwarded")
            return None


@pytest.fixture
def flaky() -> Iterator[tuple[str, Flaky]]:
    state = Flaky()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = state.answer(self.command)
            if status is not None:
                text = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"test proxy says wait"}]}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text if self.command != "HEAD" else b"")
                return
            upstream = http.client.HTTPConnection(*UPSTREAM, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            reply = upstream.getresponse()
            data = reply.read()
            self.send_response(reply.status)
            for key, value in reply.getheaders():
                if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data if self.command != "HEAD" else b"")
            upstream.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _any

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def pushed(repo: str) -> attach.Attached:
    with Registry(f"{UPSTREAM[0]}:{UPSTREAM[1]}", auth=registry_auth()) as registry:
        return attach.push(registry, repo, IMAGE, Kind.SBOM, b'{"bomFormat": "CycloneDX"}')


def test_reads_are_retried_through_a_passing_503_and_429(flaky: tuple[str, Flaky]) -> None:
    host, state = flaky
    repo = f"hookbuild-test-retry-{secrets.token_hex(4)}/istio"
    first = pushed(repo)
    for status in (503, 429):
        state.status, state.failures, state.seen[:] = status, 2, []
        with Registry(host, auth=registry_auth()) as registry:
            assert registry.manifest_digest(repo, first.tag) == first.digest
        assert state.seen[:2] == [f"HEAD {status}", f"HEAD {status}"] and state.seen[2] == "HEAD forwarded"


def test_a_limit_that_lasts_is_one_line_and_an_upload_is_never_resent(flaky: tuple[str, Flaky]) -> None:
    host, state = flaky
    repo = f"hookbuild-test-retry-{secrets.token_hex(4)}/istio"
    first = pushed(repo)
    state.status, state.failures = 429, 100
    with Registry(host, auth=registry_auth()) as registry, pytest.raises(RegistryError) as caught:
        registry.manifest(repo, first.tag)
    line = caught.value.line()
    assert "HTTP 429" in line and "limits requests" in line and "\n" not in line, line
    assert state.seen.count("GET 429") == 4  # the first answer and three retries

    state.status, state.failures, state.methods, state.seen[:] = 503, 1, frozenset({"POST"}), []
    with Registry(host, auth=registry_auth()) as registry, pytest.raises(RegistryError, match="HTTP 503"):
        attach.push(registry, repo, IMAGE, Kind.SBOM, b'{"bomFormat": "CycloneDX", "n": 2}')
    assert state.seen.count("POST 503") == 1 and "POST forwarded" not in state.seen
