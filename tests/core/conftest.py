"""Shared fixtures for the core tests: echo simulators served on real loopback ports, helpers."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from simulators.core.server import ThreadedServer, serve_in_thread
from simulators.core.service import SimConfig, Simulator, build_simulator
from simulators.core.testing import echo_spec

REPO = Path(__file__).resolve().parents[2]
INCIDENTS_DIR = REPO / "scenarios" / "incidents"
HAR_SCHEMA_PATH = Path(__file__).with_name("har-1.2.schema.json")
PROBLEM_CT = "application/problem+json"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"


_SIM_BASE: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def _sim_base(tmp_path_factory: pytest.TempPathFactory) -> None:
    _SIM_BASE.append(tmp_path_factory.mktemp("sims"))


def make_sim(error_format: str = "problem", *, memory: bool = False, **config: object) -> Simulator:
    """An echo simulator. File-backed (WAL) by default: the in-memory store loses journal entries when the
    journal is read while an exchange is being recorded (see test_journal_har.py), which would make these
    tests flaky."""
    config.setdefault("incidents_dir", INCIDENTS_DIR)
    if not memory:
        config.setdefault("data_dir", Path(tempfile.mkdtemp(dir=_SIM_BASE[0] if _SIM_BASE else None)))
    return build_simulator(echo_spec(error_format=error_format), SimConfig(**config))  # type: ignore[arg-type]


@pytest.fixture
def serve() -> Iterator[Callable[..., ThreadedServer]]:
    """Factory: serve(sim) starts the simulator on a free port; every server is stopped at teardown."""
    stack = []

    def _serve(sim: Simulator | None = None) -> ThreadedServer:
        cm = serve_in_thread(sim or make_sim())
        server = cm.__enter__()
        stack.append(cm)
        return server

    yield _serve
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


@pytest.fixture
def server(serve) -> ThreadedServer:
    return serve()


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10.0) as c:
        yield c


def problem_of(resp: httpx.Response, status: int) -> dict:
    """Assert `resp` is an RFC 9457 problem with this status and return its body."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].split(";")[0].strip() == PROBLEM_CT
    body = resp.json()
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["title"], str) and body["title"]
    return body


def add_rule(client: httpx.Client, **rule: object) -> dict:
    resp = client.post("/_bench/faults", json=rule)
    assert resp.status_code == 201, resp.text
    (created,) = resp.json()["rules"]
    return created


def journal_entries(client: httpx.Client, **params: object) -> list[dict]:
    resp = client.get("/_bench/journal", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()["entries"]


def wait_for_entries(client: httpx.Client, count: int, timeout: float = 3.0, **params: object) -> list[dict]:
    """Poll the journal until it holds `count` entries (entries of aborted exchanges land a bit later)."""
    deadline = time.monotonic() + timeout
    while True:
        entries = journal_entries(client, **params)
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.02)


@pytest.fixture(scope="session")
def har_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(HAR_SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    assert cls is jsonschema.Draft202012Validator
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def assert_valid_har(validator: jsonschema.protocols.Validator, har: dict) -> None:
    errors = sorted(validator.iter_errors(har), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def soap_envelope(action: str = "urn:echo:1.0:ping", message_id: str = "urn:uuid:0b7c1d4e-2f3a-4b5c-8d9e-0a1b2c3d4e5f",
                  body: str = '<e:Ping xmlns:e="urn:segur-bench:echo">bonjour</e:Ping>') -> bytes:
    """A hand-written SOAP 1.2 request with WS-Addressing headers."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soap:Envelope xmlns:soap="{SOAP12}" xmlns:a="{WSA}">'
        f"<soap:Header><a:Action>{action}</a:Action><a:MessageID>{message_id}</a:MessageID>"
        "<a:To>http://localhost/soap</a:To></soap:Header>"
        f"<soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


SOAP_HEADERS = {"content-type": "application/soap+xml; charset=utf-8"}
