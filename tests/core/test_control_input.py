"""Control-plane input read once, with bounds (issue 16: each case below was a 500 before bounded_input.py).

Bodies are hand-written bytes: what a curl command or a CI script could send, not what a JSON library would
produce."""

from __future__ import annotations

import httpx
import pytest
from core_support import problem_of

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("route", ["/_bench/faults", "/_bench/state", "/_bench/clock", "/_bench/run"])
@pytest.mark.parametrize(("raw", "says"), [
    (DEEP, "nested deeper than 32"),
    (b'{"a":' * 40 + b"1" + b"}" * 40, "nested deeper than 32"),
    (b'{"items": {"x": NaN}}', "RFC 8259"),
    (b'{"items": {"x": -Infinity}}', "RFC 8259"),
    (b'{"items": {"x": 1e999}}', "too large"),
    (b'{"items": {"x": 123456789012345678901234567890}}', "beyond 64 bits"),
    (b'{"items": {"x": "\xff\xfe"}}', "UTF-8"),
])
def test_unusable_json_is_a_400_that_says_why(client, route, raw, says):
    resp = client.post(route, content=raw, headers={"content-type": "application/json"})
    body = problem_of(resp, 400)
    assert says in body["detail"]
    assert client.get("/_bench/health").status_code == 200


def test_bounded_values_still_pass(client):
    resp = client.post("/_bench/state", content=b'{"items": {"x": [-9223372036854775808, 1.5e300, {"y": null}]}}')
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"]["x"] == [-9223372036854775808, 1.5e300, {"y": None}]


@pytest.mark.parametrize("limit", ["99999999999999999999999", "-1", "0", "1e3", "٣"])
def test_journal_limit_out_of_range_is_a_400(client, limit):
    problem_of(client.get("/_bench/journal", params={"limit": limit}), 400)


def test_state_of_the_wrong_shape_is_a_400_without_python_text(serve):
    """The echo simulator's seed expects {"items": {…}}; a service whose reader trips on a type gets the same."""
    from core_support import make_sim

    sim = make_sim()

    def picky(ctx, body):
        return {"n": len(body["items"]["x"])}  # TypeError on an int, KeyError on a missing field

    sim.ctx.spec.state_post = picky
    server = serve(sim)
    with httpx.Client(base_url=server.url) as c:
        for raw, hint in ((b'{"items": {"x": 3}}', None), (b'{"items": {}}', "'x'")):
            body = problem_of(c.post("/_bench/state", content=raw), 400)
            assert "TypeError" not in body["detail"] and "KeyError" not in body["detail"]
            assert "len()" not in body["detail"]
            if hint:
                assert hint in body["detail"]


@pytest.mark.parametrize("headers", [
    {"X-Note": "café ☕"},  # not Latin-1
    {"X-Note": "a\x00b"},
    {"X-Note": "a\x7fb"},
    {"Bad Name": "x"},
    {"Content-Length": "0"},
])
def test_http_status_rule_with_an_unsendable_header_is_refused_at_creation(client, headers):
    rule = {"match": {"path": "/echo"}, "effect": {"type": "http_status", "status": 503,
                                                             "headers": headers}}
    problem_of(client.post("/_bench/faults", json=rule), 400)
    assert client.get("/_bench/faults").json()["rules"] == []
    assert client.post("/echo", content=b"ok").status_code == 200


def test_http_status_rule_with_latin1_header_is_sent(client):
    rule = {"match": {"path": "/echo"}, "effect": {"type": "http_status", "status": 503,
                                                             "headers": {"Retry-After": "5", "X-Note": "réessayez"}}}
    assert client.post("/_bench/faults", json=rule).status_code == 201
    resp = client.post("/echo", content=b"ok")
    assert resp.status_code == 503
    assert resp.headers["x-note"].encode("latin-1") == "réessayez".encode("latin-1")
