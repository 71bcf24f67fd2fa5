"""Runs with their own business state on one simulator (core/run_state.py), judged over HTTP with httpx: what one
run writes, the other runs and the shared state do not see; its clock moves alone; its reset puts only its state
back to the seed and leaves the other run's state and journal intact. The core's echo service keeps items as its
state; here it opts in to per-run state as the DMP, INSi, ON and ApCV simulators do."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from core_support import problem_of

from simulators.core.server import serve_in_thread
from simulators.core.simulator import build_simulator
from simulators.core.testing import echo_spec

RUN_A, RUN_B = "pipeline-a/1", "pipeline b:2"  # a slash, a space, a colon: run ids are not file names


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with serve_in_thread(build_simulator(echo_spec(run_state=True))) as server, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


def own(client: httpx.Client, run: str) -> None:
    resp = client.put(f"/_bench/runs/{run}", json={"state": "own"})
    assert resp.status_code == 200 and resp.json()["state"] == "own", resp.text


def seed(client: httpx.Client, run: str | None, items: dict) -> None:
    headers = {"X-Bench-Run": run} if run else {}
    assert client.post("/_bench/state", json={"items": items}, headers=headers).status_code == 200


def state(client: httpx.Client, run: str | None) -> dict:
    return client.get("/_bench/state", params={"run": run} if run else None).json()["state"]


def test_each_run_sees_only_its_own_state_and_the_shared_one_stays(client) -> None:
    seed(client, None, {"partage": 1})
    own(client, RUN_A)
    own(client, RUN_B)
    seed(client, RUN_A, {"a": "A"})
    seed(client, RUN_B, {"b": "B"})
    assert state(client, RUN_A) == {"a": "A"}  # a fresh run starts from the seed (no item), not from the shared
    assert state(client, RUN_B) == {"b": "B"}
    assert state(client, None) == {"partage": 1}
    # A service request of run A (named by its header, as a bound certificate would) reads A's state.
    assert client.get("/items/a", headers={"X-Bench-Run": RUN_A}).json()["value"] == "A"
    assert client.get("/items/a", headers={"X-Bench-Run": RUN_B}).status_code == 404
    assert client.get("/items/partage").json()["value"] == 1
    # A run without its own state uses the shared one.
    assert client.get("/items/partage", headers={"X-Bench-Run": "sans-etat-propre"}).json()["value"] == 1


def test_a_runs_clock_moves_alone(client) -> None:
    own(client, RUN_A)
    before = client.get("/_bench/clock").json()["offset_seconds"]
    moved = client.post("/_bench/clock", params={"run": RUN_A}, json={"advance": "P180D"})
    assert moved.status_code == 200 and moved.json()["offset_seconds"] == pytest.approx(before + 180 * 86400, abs=1)
    assert client.get("/_bench/clock").json()["offset_seconds"] == pytest.approx(before, abs=1)
    seed(client, RUN_A, {"x": 1})
    seed(client, None, {"x": 1})
    later = client.get("/items/x", headers={"X-Bench-Run": RUN_A}).json()["now"]
    now = client.get("/items/x").json()["now"]
    assert later[:4] > now[:4] or later[5:7] != now[5:7]  # six months on, for A only


def test_a_runs_reset_restores_its_state_and_keeps_the_others(client) -> None:
    own(client, RUN_A)
    own(client, RUN_B)
    seed(client, RUN_A, {"a": 1})
    seed(client, RUN_B, {"b": 2})
    for run in (RUN_A, RUN_B):
        assert client.post("/echo", content=b"x", headers={"X-Bench-Run": run}).status_code == 200
    client.post("/_bench/clock", params={"run": RUN_A}, json={"advance": "P1D"})
    done = client.post("/_bench/reset", json={"run": RUN_A}).json()
    assert done["reset"]["state"] is True and done["reset"]["clock"] is True and done["reset"]["journal"] == 1
    assert state(client, RUN_A) == {} and state(client, RUN_B) == {"b": 2}
    assert abs(client.get("/_bench/clock", params={"run": RUN_A}).json()["offset_seconds"]) < 1
    assert [e["run"] for e in client.get("/_bench/journal").json()["entries"]] == [RUN_B]
    # Released, the run falls back to the shared state.
    released = client.delete(f"/_bench/runs/{RUN_B}").json()
    assert released["state_dropped"] is True and state(client, RUN_B) == state(client, None)


def test_a_service_that_keeps_no_per_run_state_says_so() -> None:
    with serve_in_thread(build_simulator(echo_spec())) as server:
        resp = httpx.put(f"{server.url}/_bench/runs/{RUN_A}", json={"state": "own"})
        assert "shared by every run" in problem_of(resp, 400)["detail"]
        for body in ({"state": "mien"}, {"label": "seul"}, {}):
            problem_of(httpx.put(f"{server.url}/_bench/runs/{RUN_A}", json=body), 400)
