"""`GET /_bench/journal/feed`: follow a simulator's journal with a cursor, with a plain HTTP client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from simulators.core.server import serve_in_thread
from simulators.core.simulator import build_simulator
from simulators.core.testing import echo_spec


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    with serve_in_thread(build_simulator(echo_spec())) as server:
        yield server.url


def feed(url: str, **params: str) -> dict:
    resp = httpx.get(url + "/_bench/journal/feed", params=params, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_the_feed_returns_what_was_journaled_after_the_cursor_even_when_received_earlier(echo: str) -> None:
    httpx.post(echo + "/_bench/reset", timeout=10)
    start = feed(echo)
    assert start["entries"] == [] and start["cursor"] == "0-"
    httpx.post(echo + "/_bench/faults", json={"service": "echo", "operation": "POST /echo", "first": 1,
                                              "effect": {"type": "latency", "ms": 1500}}, timeout=10)
    slow = threading.Thread(target=lambda: httpx.post(echo + "/echo", content=b"slow", timeout=10))
    slow.start()  # received first, journaled last
    time.sleep(0.4)
    httpx.get(echo + "/items/quick", timeout=10)
    first = feed(echo, after=start["cursor"])
    assert [e["operation"] for e in first["entries"]] == ["GET /items/<item_id>"]
    slow.join()
    # `since` the last entry read would miss it: it was received before that entry
    missed = httpx.get(echo + "/_bench/journal", params={"since": first["entries"][0]["received_at"]}).json()
    assert "POST /echo" not in [e["operation"] for e in missed["entries"]]
    second = feed(echo, after=first["cursor"])
    assert [e["operation"] for e in second["entries"]] == ["POST /echo"]
    assert second["entries"][0]["waited_ms"] >= 1400
    assert second["entries"][0]["request"]["body"] == "slow"
    assert feed(echo, after=second["cursor"])["entries"] == []


def test_filters_limit_and_a_cleared_journal(echo: str) -> None:
    httpx.post(echo + "/_bench/reset", timeout=10)
    for n in range(5):
        httpx.get(f"{echo}/items/{n}", headers={"X-Bench-Run": "a" if n % 2 else "b"}, timeout=10)
    page = feed(echo, after="0-", limit="2")
    assert page["count"] == 2 and page["more"] is True
    assert len(feed(echo, after=page["cursor"])["entries"]) == 3
    assert [e["run"] for e in feed(echo, after="0-", run="a")["entries"]] == ["a", "a"]
    assert feed(echo, after="0-", operation="POST /echo")["entries"] == []
    last = feed(echo, limit="1")
    assert last["entries"][0]["url"].endswith("/items/4")
    httpx.post(echo + "/_bench/reset", timeout=10)
    httpx.get(echo + "/items/again", timeout=10)
    after_clear = feed(echo, after=last["cursor"])
    assert after_clear["restarted"] is True
    assert [e["url"].rsplit("/", 1)[1] for e in after_clear["entries"]] == ["again"]


def test_a_bad_cursor_is_a_problem(echo: str) -> None:
    resp = httpx.get(echo + "/_bench/journal/feed", params={"after": "x; drop"}, timeout=10)
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/problem+json")
