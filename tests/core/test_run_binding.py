"""An unmodified LGC is told apart by its TLS client certificate: a run binds its workstation's certificate
(PUT /_bench/runs/{run}) and every exchange made with it belongs to that run — its fault rules apply, the journal
stamps it — without any header. Clients are httpx and the stdlib `ssl` module, certificates come from the bench
PKI (tests/conftest.py TestPki), fingerprints are computed here from the PEM files."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from core_support import problem_of
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from simulators.core.server import ThreadedServer, serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.core.testing import echo_spec

RUN_A, RUN_B = "poste-a", "poste-b"


@pytest.fixture(scope="module")
def server(test_pki) -> Iterator[ThreadedServer]:
    config = SimConfig(tls_port=0, pki_dir=test_pki.pki.directory, settings={"client_cert": "optional"},
                       tls_names=["localhost", "127.0.0.1"])
    with serve_in_thread(build_simulator(echo_spec(), config), tls=True) as srv:
        yield srv


@pytest.fixture
def control(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.post("/_bench/reset", json={})
        for run in (RUN_A, RUN_B):
            client.delete(f"/_bench/runs/{run}")
        yield client


def sha256_of(test_pki, name: str) -> str:
    cert = x509.load_pem_x509_certificate(Path(test_pki.cert(name)[0]).read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def tls_client(server: ThreadedServer, test_pki, name: str | None) -> httpx.Client:
    return httpx.Client(base_url=server.tls_url, verify=test_pki.context(name), timeout=10)


def test_exchanges_with_a_bound_certificate_belong_to_its_run(server, control, test_pki) -> None:
    # Bound by bare lower-case hex for one, by the PEM itself for the other: both name the same fingerprints.
    bound = control.put(f"/_bench/runs/{RUN_A}", json={"client_certs": [sha256_of(test_pki, "software")],
                                                       "label": "poste A"})
    assert bound.status_code == 200, bound.text
    pem = Path(test_pki.cert("structure")[0]).read_text(encoding="ascii")
    assert control.put(f"/_bench/runs/{RUN_B}", json={"client_certs": [pem]}).status_code == 200
    listed = {b["run"]: b for b in control.get("/_bench/runs").json()["bindings"]}
    assert listed[RUN_A]["client_certs"][0].replace(":", "").lower() == sha256_of(test_pki, "software")
    assert listed[RUN_B]["client_certs"][0].replace(":", "").lower() == sha256_of(test_pki, "structure")

    assert control.post("/_bench/faults", json={"run": RUN_A, "effect": {"type": "latency", "ms": 600}}) \
        .status_code == 201
    assert control.post("/_bench/faults", json={"run": RUN_B, "effect": {"type": "http_status", "status": 503}}) \
        .status_code == 201

    def timed(name: str | None) -> tuple[int, float]:
        with tls_client(server, test_pki, name) as client:
            started = time.perf_counter()
            status = client.post("/echo", content=b"x").status_code
            return status, time.perf_counter() - started

    with ThreadPoolExecutor(3) as pool:  # at the same time, no header anywhere
        a, b, anonymous = pool.map(timed, ["software", "structure", None])
    assert a[0] == 200 and a[1] >= 0.6
    assert b[0] == 503 and b[1] < 0.5
    assert anonymous[0] == 200 and anonymous[1] < 0.5  # no certificate: the current run (none), no rule

    runs = {e["run"] for e in control.get("/_bench/journal", params={"run": RUN_A}).json()["entries"]}
    assert runs == {RUN_A}
    entries = control.get("/_bench/journal").json()["entries"]
    by_run = {e["run"]: e for e in entries if e["operation"] != "TLS poignée de main"}
    assert set(by_run) == {RUN_A, RUN_B, None}
    assert by_run[RUN_A]["tls"]["client_cert"]["sha256"].replace(":", "").lower() == sha256_of(test_pki, "software")


def test_a_header_still_names_the_run_and_a_released_certificate_falls_back(server, control, test_pki) -> None:
    control.put(f"/_bench/runs/{RUN_A}", json={"client_certs": [sha256_of(test_pki, "software")]})
    control.post("/_bench/run", json={"run": "courant"})
    try:
        with tls_client(server, test_pki, "software") as client:
            client.post("/echo", content=b"1", headers={"X-Bench-Run": "explicite"})
            client.post("/echo", content=b"2")
            assert control.delete(f"/_bench/runs/{RUN_A}").json()["released"] == 1
            client.post("/echo", content=b"3")
    finally:
        control.post("/_bench/run", json={"run": None})
    bodies = {e["request"]["body"]: e["run"] for e in control.get("/_bench/journal").json()["entries"]
              if e["operation"] != "TLS poignée de main"}
    assert bodies == {"1": "explicite", "2": RUN_A, "3": "courant"}


def test_binding_errors_are_problem_json(server, control, test_pki) -> None:
    fp = sha256_of(test_pki, "software")
    assert control.put(f"/_bench/runs/{RUN_A}", json={"client_certs": [fp]}).status_code == 200
    taken = control.put(f"/_bench/runs/{RUN_B}", json={"client_certs": [fp.upper()]})
    assert RUN_A in problem_of(taken, 409)["detail"]
    for body in ({"client_certs": ["pas-une-empreinte"]}, {"client_certs": []}, {"certs": [fp]}, [fp],
                 {"client_certs": ["-----BEGIN CERTIFICATE-----\n***\n-----END CERTIFICATE-----"]}):
        problem_of(control.put(f"/_bench/runs/{RUN_B}", json=body), 400)
    assert control.get(f"/_bench/runs/{RUN_B}").json()["client_certs"] == []  # nothing half-bound
    assert control.get(f"/_bench/runs/{RUN_A}").json()["client_certs"][0].replace(":", "").lower() == fp
