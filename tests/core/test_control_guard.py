"""The control plane cannot be steered by a web page of another origin, nor by another machine without the token.
(The same in a real browser: tests/security/test_drive_by.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from simulators.core.server import ThreadedServer, serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.core.testing import echo_spec


@pytest.fixture
def echo(echo_with_rule):
    return echo_with_rule


@pytest.fixture
def guarded() -> Iterator[ThreadedServer]:
    with serve_in_thread(build_simulator(echo_spec(), SimConfig(control_token="s3cret-token"))) as server:
        yield server


def _rules(server: ThreadedServer) -> int:
    return len(server.sim.ctx.faults.list())


def test_a_request_with_a_browser_origin_is_refused_with_problem_json(echo):
    resp = httpx.post(echo.url + "/_bench/reset", json={}, headers={"Origin": "http://evil.example"})
    assert resp.status_code == 403
    assert resp.headers["content-type"] == "application/problem+json"
    assert "web page" in resp.json()["detail"]
    assert _rules(echo) == 1
    same = httpx.post(echo.url + "/_bench/reset", json={}, headers={"Origin": echo.url})  # even "its own" origin
    assert same.status_code == 403 and _rules(echo) == 1


def test_service_routes_stay_open_to_browsers(echo):
    # PSC's login pages and the like are for browsers: only /_bench/* is guarded.
    resp = httpx.post(echo.url + "/echo", content=b"x", headers={"Origin": "http://lgc.example"})
    assert resp.status_code == 200


def test_a_dns_rebinding_host_is_refused_on_loopback(echo):
    resp = httpx.post(echo.url + "/_bench/reset", json={}, headers={"Host": "attacker.example:8101"})
    assert resp.status_code == 403 and "loopback" in resp.json()["detail"]
    for host in ("localhost:1", "127.0.0.1", "[::1]:8101"):
        assert httpx.get(echo.url + "/_bench/faults", headers={"Host": host}).status_code == 200
    assert _rules(echo) == 1


def test_beyond_loopback_control_calls_need_the_token(guarded):
    resp = httpx.post(guarded.url + "/_bench/reset", json={})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert "control-token" in resp.json()["detail"]
    wrong = httpx.get(guarded.url + "/_bench/faults", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "not this bench's" in wrong.json()["detail"]
    ok = httpx.post(guarded.url + "/_bench/reset", json={}, headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200
    # what a vendor reads before having the token stays open
    assert httpx.get(guarded.url + "/_bench/health").status_code == 200
    assert httpx.get(guarded.url + "/_bench/openapi.json").status_code == 200
    # the service itself is not behind the token
    assert httpx.post(guarded.url + "/echo", content=b"x").status_code == 200
