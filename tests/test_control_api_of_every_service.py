"""Every simulator's control API is described by a valid OpenAPI document that lists all its /_bench routes."""

from __future__ import annotations

import re

import httpx
import pytest
from openapi_spec_validator import validate

from simulators import registry
from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator


@pytest.mark.parametrize("name", [s.name for s in registry.available()])
def test_openapi_documents_every_control_route(name: str) -> None:
    settings = {"smtp_port": 0, "imap_port": 0} if name == "mss" else {}
    sim = build_simulator(registry.load_spec(name), SimConfig(settings=settings))
    with serve_in_thread(sim) as server:
        doc = httpx.get(server.url + "/_bench/openapi.json").json()
        health = httpx.get(server.url + "/_bench/health").json()
    validate(doc)
    assert health["service"] == name
    documented = set(doc["paths"])
    for rule in sim.flask.url_map.iter_rules():
        if rule.rule.startswith("/_bench/"):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
            assert path in documented, f"{name}: {path} is not in openapi.json"
