"""Helpers and constants of the core tests, imported by name (conftest.py holds the fixtures)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx
import jsonschema

from simulators.core.service import SimConfig
from simulators.core.simulator import Simulator, build_simulator
from simulators.core.testing import echo_spec

REPO = Path(__file__).resolve().parents[2]


INCIDENTS_DIR = REPO / "scenarios" / "incidents"


HAR_SCHEMA_PATH = Path(__file__).with_name("har-1.2.schema.json")


PROBLEM_CT = "application/problem+json"


SOAP12 = "http://www.w3.org/2003/05/soap-envelope"


WSA = "http://www.w3.org/2005/08/addressing"


_SIM_BASE: list[Path] = []


def make_sim(error_format: str = "problem", *, memory: bool = False, **config: object) -> Simulator:
    """An echo simulator. File-backed (WAL) by default: the in-memory store loses journal entries when the
    journal is read while an exchange is being recorded (see test_journal_har.py), which would make these
    tests flaky."""
    config.setdefault("incidents_dir", INCIDENTS_DIR)
    if not memory:
        config.setdefault("data_dir", Path(tempfile.mkdtemp(dir=_SIM_BASE[0] if _SIM_BASE else None)))
    return build_simulator(echo_spec(error_format=error_format), SimConfig(**config))  # type: ignore[arg-type]


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
