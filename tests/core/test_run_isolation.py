"""Several runs on one simulator at once (CI pipelines sharing a bench): a client names its run with the header
X-Bench-Run; fault rules and incidents may be scoped to a run; a run's reset clears that run's rules and journal
only. Requests are plain httpx calls, as a pipeline's own client makes them."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from core_support import problem_of

RUN_A, RUN_B = "pipeline-a-42", "pipeline-b-7"


def post(client: httpx.Client, run: str | None, path: str = "/echo") -> httpx.Response:
    return client.post(path, content=b"x", headers={"X-Bench-Run": run} if run else {})


def test_two_runs_with_their_own_fault_rules_at_once_each_see_only_theirs(client: httpx.Client) -> None:
    assert client.post("/_bench/faults", json={"run": RUN_A, "effect": {"type": "latency", "ms": 600}}).status_code \
        == 201
    assert client.post("/_bench/faults", json={"run": RUN_B, "effect": {"type": "http_status", "status": 503}}) \
        .status_code == 201

    def timed(run: str | None) -> tuple[int, float]:
        started = time.perf_counter()
        resp = post(client, run)
        return resp.status_code, time.perf_counter() - started

    with ThreadPoolExecutor(3) as pool:  # at the same time
        a, b, none = pool.map(timed, [RUN_A, RUN_B, None])
    assert a[0] == 200 and a[1] >= 0.6  # A: delayed, answered
    assert b[0] == 503 and b[1] < 0.5  # B: refused at once, not delayed by A's rule
    assert none[0] == 200 and none[1] < 0.5  # a client naming no run is in neither

    journal = client.get("/_bench/journal").json()["entries"]
    by_run = {e["run"]: e for e in journal}
    assert set(by_run) == {RUN_A, RUN_B, None}
    assert [f["effect"] for f in by_run[RUN_A]["faults"]] == ["latency"]
    assert [f["effect"] for f in by_run[RUN_B]["faults"]] == ["http_status"]
    assert by_run[None]["faults"] == []
    rules = client.get("/_bench/faults").json()["rules"]
    assert sorted(r["run"] for r in rules) == [RUN_A, RUN_B]


def test_an_incident_applied_for_one_run_leaves_the_others_alone(client: httpx.Client) -> None:
    applied = client.post("/_bench/incidents/latence-3s", params={"run": RUN_A})
    assert applied.status_code == 201 and all(r["run"] == RUN_A for r in applied.json()["rules"])
    started = time.perf_counter()
    assert post(client, RUN_B).status_code == 200
    assert time.perf_counter() - started < 1  # B does not wait A's 3 s
    assert client.delete("/_bench/incidents/latence-3s", params={"run": RUN_B}).json()["deleted"] == 0
    assert client.delete("/_bench/incidents/latence-3s", params={"run": RUN_A}).json()["deleted"] >= 1


def test_a_runs_reset_keeps_the_other_runs_journal_and_rules(client: httpx.Client) -> None:
    client.post("/_bench/faults", json={"run": RUN_A, "effect": {"type": "latency", "ms": 1}})
    client.post("/_bench/faults", json={"run": RUN_B, "effect": {"type": "latency", "ms": 1}})
    for run in (RUN_A, RUN_A, RUN_B):
        assert post(client, run).status_code == 200

    resp = client.post("/_bench/reset", json={"run": RUN_A})
    assert resp.status_code == 200
    assert resp.json()["reset"] == {"faults": 1, "journal": 2}
    assert [e["run"] for e in client.get("/_bench/journal").json()["entries"]] == [RUN_B]
    assert [r["run"] for r in client.get("/_bench/faults").json()["rules"]] == [RUN_B]
    assert client.get("/_bench/journal", params={"run": RUN_B}).json()["entries"]


def test_bad_run_ids_are_refused_with_a_problem(client: httpx.Client) -> None:
    problem_of(client.post("/_bench/faults", json={"run": "", "effect": {"type": "latency", "ms": 1}}), 400)
    problem_of(client.post("/_bench/faults", json={"run": "x" * 201, "effect": {"type": "latency", "ms": 1}}), 400)
    problem_of(client.post("/_bench/reset", json={"run": RUN_A, "keep": ["clock"]}), 400)
    problem_of(client.delete("/_bench/faults", params={"run": "a\tb"}), 400)
    # a header that is not a run id is ignored: the exchange goes to the current run
    client.post("/_bench/run", json={"run": "courante"})
    assert post(client, "r" * 201).status_code == 200
    assert [e["run"] for e in client.get("/_bench/journal").json()["entries"]] == ["courante"]
