"""Fixtures of the network layer's tests: mitmproxy's venv, tiny upstream servers, a running layer."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from network_proxy import NetworkLayer, ensure_venv
from network_proxy.layer import DEFAULT_VENV

REPO = Path(__file__).resolve().parents[2]


class EchoHandler(BaseHTTPRequestHandler):
    """Answers JSON describing the request; /binary answers non-UTF-8 bytes. One write per answer (no Nagle)."""

    protocol_version = "HTTP/1.1"

    def _answer(self, body: bytes, content_type: str = "application/json") -> None:
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "X-Upstream: echo\r\n\r\n")
        self.wfile.write(head.encode() + body)

    def do_GET(self) -> None:
        if self.path == "/binary":
            self._answer(bytes(range(256)), "application/octet-stream")
            return
        self._answer(json.dumps({"method": "GET", "path": self.path, "host": self.headers["Host"]}).encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(json.dumps({"method": "POST", "path": self.path, "body": body.decode()}).encode())

    def log_message(self, *args: object) -> None:
        pass


class GreetingHandler(socketserver.StreamRequestHandler):
    """A server-speaks-first line protocol, like SMTP: greeting, then `250 <line>` per line until QUIT."""

    def handle(self) -> None:
        self.wfile.write(b"220 upstream ready\r\n")
        for line in self.rfile:
            self.wfile.write(b"250 " + line)
            if line.startswith(b"QUIT"):
                return


@pytest.fixture(scope="session")
def mitmdump() -> Path:
    """mitmproxy's own venv at the repo root (scripts/setup.sh makes it; the first run here may install it)."""
    return ensure_venv(REPO / DEFAULT_VENV)


@pytest.fixture(scope="session")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def greeting_upstream() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), GreetingHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def layer(mitmdump: Path, upstream: str, greeting_upstream: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetworkLayer]:
    base = tmp_path_factory.mktemp("netlayer")
    net = NetworkLayer({"echo": upstream, "other": upstream, "smtp": greeting_upstream}, har_path=base / "run.har",
                       control_dir=base / "control", mitmdump=mitmdump, flush_s=0.3)
    net.start()
    yield net
    net.stop()


@pytest.fixture(autouse=True)
def _clear_conditions(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "layer" in request.fixturenames:
        request.getfixturevalue("layer").clear()
