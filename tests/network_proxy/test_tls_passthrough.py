"""TLS through the network layer: the session stays end to end (the simulator checks the client certificate and
journals it), the latency applies per request, and the HAR joins each delayed turn to the simulator's journal
entry by the upstream connection's port."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from network_proxy import NetworkLayer
from simulators.core.server import ThreadedServer, serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.core.testing import echo_spec

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def sim(test_pki) -> Iterator[ThreadedServer]:
    config = SimConfig(tls_port=0, pki_dir=test_pki.pki.directory, settings={"client_cert": "required"},
                       tls_names=["localhost", "127.0.0.1", "qualiflps-services-ps-tlsm.ameli.fr"])
    with serve_in_thread(build_simulator(echo_spec(), config)) as server:
        yield server


@pytest.fixture(scope="module")
def tls_layer(mitmdump: Path, sim: ThreadedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetworkLayer]:
    base = tmp_path_factory.mktemp("tls-layer")
    net = NetworkLayer({"echo": sim.url, "echo-tls": f"tls://127.0.0.1:{sim.tls_port}"},
                       har_path=base / "run.har", control_dir=base / "control", mitmdump=mitmdump, flush_s=0.3)
    net.start()
    yield net
    net.stop()


def _har(layer: NetworkLayer, predicate, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        har = json.loads(layer.har_path.read_text(encoding="utf-8")) if layer.har_path.exists() else None
        if har is not None and predicate(har):
            return har
        if time.monotonic() > deadline:
            raise AssertionError(f"HAR condition not met; last: {har!r:.2000}")
        time.sleep(0.1)


def _client(test_pki, name: str | None = "software") -> httpx.Client:
    return httpx.Client(verify=test_pki.context(name), timeout=15)


def test_urls_give_https_for_tls_targets(tls_layer: NetworkLayer) -> None:
    urls = tls_layer.urls()
    assert urls["echo"].startswith("http://") and urls["echo-tls"].startswith("https://")
    control = json.loads(tls_layer.control_path.read_text(encoding="utf-8"))
    assert {v["name"] for v in control["services"].values()} == {"echo"}  # INSi's TLS port has INSi's conditions
    assert {v["kind"] for v in control["services"].values()} == {"http", "tls"}


def test_the_client_certificate_reaches_the_simulator_end_to_end(tls_layer, sim, test_pki) -> None:
    sim.sim.ctx.journal.clear()
    with _client(test_pki) as client:
        resp = client.post(tls_layer.urls()["echo-tls"] + "/fast-echo", content=b"through")
    assert resp.status_code == 200 and resp.content == b"through"
    entry = sim.sim.ctx.journal.query()[-1]
    assert entry.tls["client_cert"]["serial"] == f"{test_pki.clients['software'].cert.serial_number:X}"
    # the layer never terminated TLS: the server certificate the client saw is the simulator's
    with socket.create_connection(("127.0.0.1", tls_layer.ports["echo-tls"]), timeout=5) as raw, \
            test_pki.context("software").wrap_socket(raw, server_hostname="localhost") as tls:
        peer = tls.getpeercert()
    assert dict(x[0] for x in peer["subject"])["commonName"] == "echo.segur-bench.test"


def test_a_refused_certificate_gets_the_simulators_alert_through_the_layer(tls_layer, test_pki) -> None:
    with pytest.raises(httpx.HTTPError, match=r"(?i)revoked"), _client(test_pki, "revoked") as client:
        client.post(tls_layer.urls()["echo-tls"] + "/fast-echo", content=b"x")


def test_latency_applies_once_per_request_not_per_handshake_flight(tls_layer, test_pki) -> None:
    url = tls_layer.urls()["echo-tls"] + "/fast-echo"
    tls_layer.set_condition(1000)
    try:
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = test_pki.context("software")
            ctx.maximum_version = version
            with httpx.Client(verify=ctx, timeout=15) as client:
                start = time.monotonic()
                assert client.post(url, content=b"1").status_code == 200  # new connection: handshake + request
                first = time.monotonic() - start
                start = time.monotonic()
                assert client.post(url, content=b"2").status_code == 200  # kept alive
                second = time.monotonic() - start
            assert 1.0 <= first < 1.7, (version, first)
            assert 1.0 <= second < 1.5, (version, second)
    finally:
        tls_layer.clear()


def test_latency_does_not_serialize_concurrent_tls_requests(tls_layer, test_pki) -> None:
    url = tls_layer.urls()["echo-tls"] + "/fast-echo"
    tls_layer.set_condition(1000)

    def one(i: int) -> float:
        with _client(test_pki) as client:
            start = time.monotonic()
            assert client.post(url, content=str(i).encode()).content == str(i).encode()
            return time.monotonic() - start

    try:
        with ThreadPoolExecutor(8) as pool:
            start = time.monotonic()
            times = list(pool.map(one, range(8)))
            wall = time.monotonic() - start
    finally:
        tls_layer.clear()
    assert all(t >= 1.0 for t in times) and wall < 2.5, (times, wall)


def test_a_large_body_crosses_in_order(tls_layer, test_pki) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB: many records, many chunks, held then released in order
    tls_layer.set_condition(300)
    try:
        with _client(test_pki) as client:
            resp = client.post(tls_layer.urls()["echo-tls"] + "/fast-echo", content=body)
    finally:
        tls_layer.clear()
    assert resp.status_code == 200 and resp.content == body


def test_the_har_joins_delayed_turns_to_the_journal_by_upstream_port(tls_layer, sim, test_pki) -> None:
    sim.sim.ctx.journal.clear()
    tls_layer.set_condition(800)
    try:
        ctx = test_pki.context("software")
        with socket.create_connection(("127.0.0.1", tls_layer.ports["echo-tls"]), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="qualiflps-services-ps-tlsm.ameli.fr") as tls:
            tls.sendall(b"POST /fast-echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhar")
            while tls.recv(65536):
                pass
    finally:
        tls_layer.clear()
    entry = sim.sim.ctx.journal.query()[-1]
    port = int(entry.client.rsplit(":", 1)[1])
    har = _har(tls_layer, lambda h: any(c.get("upstream_port") == port for c in h["log"]["_connections"]))
    conn = next(c for c in har["log"]["_connections"] if c.get("upstream_port") == port)
    assert conn["kind"] == "tls" and conn["_service"] == "echo"
    assert conn["sni"] == "qualiflps-services-ps-tlsm.ameli.fr"
    assert [t["_injected_ms"] for t in conn["turns"]] == [800.0]
    assert entry.tls["sni"] == "qualiflps-services-ps-tlsm.ameli.fr"  # what the simulator saw: the same session


def test_down_closes_tls_connections(tls_layer, test_pki) -> None:
    tls_layer.set_condition(0, down=["echo"])
    try:
        with pytest.raises(httpx.HTTPError), _client(test_pki) as client:
            client.post(tls_layer.urls()["echo-tls"] + "/fast-echo", content=b"x")
    finally:
        tls_layer.clear()
