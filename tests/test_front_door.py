"""The HTTPS front door: one port for every service, routed by the TLS server name, TLS passed through (the client
certificate reaches the simulator), routes re-read live. Clients: the stdlib `ssl` module and `curl --resolve`
(which does what a hosts-file entry does)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from segur_bench.front_door import FrontDoor, server_name, write_routes
from simulators.core.server import ThreadedServer, serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.core.testing import echo_spec

REAL = "qualiflps-services-ps-tlsm.ameli.fr"
REQUEST = b"POST /fast-echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndoor"


@pytest.fixture(scope="module")
def sim(test_pki) -> Iterator[ThreadedServer]:
    config = SimConfig(tls_port=0, pki_dir=test_pki.pki.directory, settings={"client_cert": "required"},
                       tls_names=["localhost", REAL])
    with serve_in_thread(build_simulator(echo_spec(), config)) as server:
        yield server


@pytest.fixture
def door(sim: ThreadedServer, tmp_path: Path) -> Iterator[FrontDoor]:
    routes = tmp_path / "routes.json"
    write_routes(routes, {REAL: "insi"}, {"insi": ("127.0.0.1", sim.tls_port)})
    front = FrontDoor("127.0.0.1", 0, routes).start()
    yield front
    front.stop()


def _exchange(port: int, ctx, name: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        tls.sendall(REQUEST % name.encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        return data


def test_a_real_name_reaches_its_simulator_with_the_client_certificate(door, sim, test_pki) -> None:
    sim.sim.ctx.journal.clear()
    answer = _exchange(door.port, test_pki.context("software"), REAL)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"door")
    entry = sim.sim.ctx.journal.query()[-1]
    assert entry.tls["sni"] == REAL and entry.tls["client_cert"]["cn"] == "INSI-AUTO"


def test_unknown_names_and_plain_bytes_are_closed(door, test_pki) -> None:
    with pytest.raises((OSError, ConnectionError)):
        _exchange(door.port, test_pki.context("software"), "localhost")  # no service answers to it here
    with socket.create_connection(("127.0.0.1", door.port), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.recv(100) == b""


def test_routes_are_re_read_live(door, sim, test_pki, tmp_path) -> None:
    write_routes(door.routes.path, {REAL: "insi"}, {"insi": ("127.0.0.1", 1)})  # nowhere
    time.sleep(0.01)
    with pytest.raises((OSError, ConnectionError)):
        _exchange(door.port, test_pki.context("software"), REAL)
    write_routes(door.routes.path, {REAL: "insi"}, {"insi": ("127.0.0.1", sim.tls_port)})
    assert _exchange(door.port, test_pki.context("software"), REAL).startswith(b"HTTP/1.1 200")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_the_real_name_mapped_like_a_hosts_file(door, test_pki) -> None:
    crt, key = test_pki.cert("software")
    done = subprocess.run(["curl", "-sS", "--resolve", f"{REAL}:{door.port}:127.0.0.1", "--cacert", str(test_pki.ca),
                           "--cert", crt, "--key", key, "--data-binary", "curl",
                           f"https://{REAL}:{door.port}/fast-echo"], capture_output=True, timeout=20)
    assert done.returncode == 0 and done.stdout == b"curl", done.stderr


def test_server_name_is_read_from_a_client_hello_built_by_openssl(tmp_path) -> None:
    # a ClientHello captured from openssl itself, not built by us
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                                   "dev9.lps2.dmp.gouv.fr"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        conn, _ = listener.accept()
        conn.settimeout(5)
        head = conn.recv(5)
        record = head + conn.recv(int.from_bytes(head[3:5], "big"), socket.MSG_WAITALL)
        conn.close()
        client.kill()
    assert server_name(record) == "dev9.lps2.dmp.gouv.fr"
