"""The /_bench control API over real HTTP: every route, its filters, and its problem-JSON errors."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from core_support import (
    INCIDENTS_DIR,
    PROBLEM_CT,
    add_rule,
    assert_valid_har,
    make_sim,
    problem_of,
    wait_for_entries,
)
from dateutil.relativedelta import relativedelta

from simulators.core.clock import iso
from simulators.core.faults import EFFECTS
from simulators.core.server import serve_in_thread

INCIDENT_NAMES = sorted(p.stem for p in INCIDENTS_DIR.glob("*.toml"))


@pytest.fixture(scope="module")
def module_server():
    sim = make_sim()
    with serve_in_thread(sim) as server:
        yield server


@pytest.fixture
def client(module_server):
    """A client on the shared simulator, fully reset before each test."""
    with httpx.Client(base_url=module_server.url, timeout=10.0) as c:
        assert c.post("/_bench/reset").status_code == 200
        yield c


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --------------------------------------------------------------------------------------------- health


def test_health(client):
    client.post("/_bench/run", json={"run": "r-health"})
    add_rule(client, effect={"type": "drop"}, incident="x", operation="nothing")
    resp = client.get("/_bench/health")
    assert resp.status_code == 200
    h = resp.json()
    assert h["status"] == "ok"
    assert h["service"] == "echo"
    assert h["title"] == "Service d'écho (tests du cœur)"
    assert isinstance(h["version"], str) and h["version"]
    assert isinstance(h["pid"], int)
    assert h["uptime_s"] >= 0
    assert set(h["clock"]) == {"now", "real", "offset_seconds", "frozen"}
    assert h["faults"] == 1
    assert h["incidents"] == ["x"]
    assert h["run"] == "r-health"


# --------------------------------------------------------------------------------------------- faults


def test_faults_catalogue(client):
    body = client.get("/_bench/faults").json()
    assert body["service"] == "echo"
    assert body["rules"] == []
    assert set(body["effects"]) == set(EFFECTS)
    assert "ms" in body["effects"]["latency"]
    assert body["effects"]["drop"] == {}
    assert body["outcomes"] == {"refus": "la requête est refusée (HTTP 409)"}
    assert body["incidents"] == []


@pytest.mark.parametrize(
    "payload",
    [
        {"effect": {"type": "drop"}, "operation": "nothing"},
        [{"effect": {"type": "drop"}, "operation": "nothing"}],
        {"rules": [{"effect": {"type": "drop"}, "operation": "nothing"}]},
    ],
    ids=["object", "list", "rules"],
)
def test_post_faults_shapes(client, payload):
    resp = client.post("/_bench/faults", json=payload)
    assert resp.status_code == 201
    (rule,) = resp.json()["rules"]
    assert rule["effect"] == {"type": "drop"}
    assert rule["operation"] == "nothing"
    assert rule["description"] == "connexion coupée"
    assert rule["matched"] == 0 and rule["active"] is True
    assert [r["id"] for r in client.get("/_bench/faults").json()["rules"]] == [rule["id"]]


def test_post_several_faults_keeps_order(client):
    resp = client.post("/_bench/faults", json=[{"effect": {"type": "latency", "ms": i}, "id": f"r{i}"}
                                               for i in range(3)])
    assert resp.status_code == 201
    assert [r["id"] for r in resp.json()["rules"]] == ["r0", "r1", "r2"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"effect": ', "the body is not valid JSON"),
        (b"", "a JSON body is required"),
        (b"   ", "a JSON body is required"),
        (b"\xff\xfe", "the body is not valid JSON"),
        (b"[]", "no rule given"),
        (b'{"rules": []}', "no rule given"),
        (b"[1]", "a rule must be a JSON object"),
        (b'{"effect": {"type": "teleport"}}', "unknown effect type 'teleport'"),
        (b'{"effect": {"type": "drop"}, "colour": "red"}', "unknown rule field(s) ['colour']"),
        (b'{"effect": {"type": "drop"}, "probability": 2}', "probability must be a number between 0 and 1"),
        (b'{"effect": {"type": "outcome", "name": "nope"}}', "effect.name 'nope' is not an outcome of service echo"),
        (b'{"effect": {"type": "latency", "ms": -5}}', "effect.ms must be between"),
        (b'{"effect": {"type": "drop"}, "service": "insi"}', "this rule targets insi, but this simulator is echo"),
    ],
)
def test_post_faults_errors(client, content, fragment):
    resp = client.post("/_bench/faults", content=content, headers={"content-type": "application/json"})
    body = problem_of(resp, 400)
    assert fragment in body["detail"]
    assert client.get("/_bench/faults").json()["rules"] == []


def test_post_faults_is_all_or_nothing(client):
    resp = client.post("/_bench/faults", json=[{"effect": {"type": "drop"}}, {"effect": {"type": "hang", "max_s": -1}}])
    assert "effect.max_s" in problem_of(resp, 400)["detail"]
    assert client.get("/_bench/faults").json()["rules"] == []


def test_post_faults_with_non_string_id_is_a_400(client):
    problem_of(client.post("/_bench/faults", json={"id": ["x"], "effect": {"type": "drop"}}), 400)


def test_delete_faults(client):
    keep = add_rule(client, effect={"type": "drop"}, incident="b", operation="none")
    add_rule(client, effect={"type": "drop"}, incident="a", operation="none")
    add_rule(client, effect={"type": "drop"}, incident="a", operation="none")
    assert client.delete("/_bench/faults", params={"incident": "a"}).json() == {"deleted": 2}
    assert [r["id"] for r in client.get("/_bench/faults").json()["rules"]] == [keep["id"]]
    add_rule(client, effect={"type": "drop"}, operation="none")
    assert client.delete("/_bench/faults").json() == {"deleted": 2}
    assert client.get("/_bench/faults").json()["rules"] == []


def test_delete_one_fault(client):
    rule = add_rule(client, effect={"type": "drop"}, operation="none")
    other = add_rule(client, effect={"type": "drop"}, operation="none")
    resp = client.delete(f"/_bench/faults/{rule['id']}")
    assert resp.status_code == 204 and resp.content == b""
    assert [r["id"] for r in client.get("/_bench/faults").json()["rules"]] == [other["id"]]
    body = problem_of(client.delete(f"/_bench/faults/{rule['id']}"), 404)
    assert rule["id"] in body["detail"]


def test_counters_are_visible(client):
    rule = add_rule(client, effect={"type": "latency", "ms": 1}, first=2)
    for _ in range(3):
        client.post("/echo", content=b"x")
    (listed,) = client.get("/_bench/faults").json()["rules"]
    assert listed["id"] == rule["id"]
    assert (listed["matched"], listed["applied"], listed["active"]) == (2, 2, False)


# --------------------------------------------------------------------------------------------- incidents


def test_list_incidents(client):
    body = client.get("/_bench/incidents").json()
    assert [i["name"] for i in body["available"]] == INCIDENT_NAMES
    latence = next(i for i in body["available"] if i["name"] == "latence-3s")
    assert latence["title"].startswith("Latence réseau de 3 secondes")
    assert latence["services"] == ["*"]
    assert latence["rules"] == [{"service": "*", "effect": {"type": "latency", "ms": 3000}}]
    assert body["active"] == []


def test_apply_and_clear_incident(client):
    resp = client.post("/_bench/incidents/latence-3s")
    assert resp.status_code == 201
    body = resp.json()
    assert body["incident"] == "latence-3s"
    (rule,) = body["rules"]
    assert rule["incident"] == "latence-3s"
    assert rule["effect"] == {"type": "latency", "ms": 3000}
    assert client.post("/_bench/incidents/latence-3s").status_code == 201  # replaces, never stacks
    assert len(client.get("/_bench/faults").json()["rules"]) == 1
    assert client.get("/_bench/incidents").json()["active"] == ["latence-3s"]
    assert client.delete("/_bench/incidents/latence-3s").json() == {"incident": "latence-3s", "deleted": 1}
    assert client.delete("/_bench/incidents/latence-3s").json()["deleted"] == 0
    assert client.get("/_bench/faults").json()["rules"] == []


def test_apply_incident_with_several_rules(client):
    resp = client.post("/_bench/incidents/reseau-instable")
    assert resp.status_code == 201
    rules = resp.json()["rules"]
    assert [r["effect"]["type"] for r in rules] == ["latency", "drop"]
    assert all(r["seed"] == 2026 for r in rules)
    assert rules[1]["probability"] == 0.05


def test_incident_for_other_services_applies_nothing(client):
    resp = client.post("/_bench/incidents/dmp-indisponible")
    assert resp.status_code == 200
    assert resp.json()["rules"] == []
    assert client.get("/_bench/faults").json()["rules"] == []


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("nope", "unknown incident 'nope'"), ("Bad_Name", "invalid incident name 'Bad_Name'")],
)
def test_apply_unknown_incident(client, name, fragment):
    body = problem_of(client.post(f"/_bench/incidents/{name}"), 400)
    assert fragment in body["detail"]


def test_custom_incident_directory(serve, tmp_path):
    (tmp_path / "bon.toml").write_text('title = "Bon"\n[[rule]]\neffect = { type = "drop" }\n', encoding="utf-8")
    (tmp_path / "casse.toml").write_text("title = \n", encoding="utf-8")
    (tmp_path / "mauvais.toml").write_text(
        'title = "Mauvais"\n[[rule]]\neffect = { type = "latency", ms = 5 }\n'
        '[[rule]]\neffect = { type = "outcome", name = "inexistant" }\n', encoding="utf-8")
    server = serve(make_sim(incidents_dir=tmp_path))
    with httpx.Client(base_url=server.url) as c:
        available = {i["name"]: i for i in c.get("/_bench/incidents").json()["available"]}
        assert set(available) == {"bon", "casse", "mauvais"}
        assert "not valid TOML" in available["casse"]["error"]
        assert c.post("/_bench/incidents/bon").status_code == 201
        body = problem_of(c.post("/_bench/incidents/mauvais"), 400)
        assert "effect.name 'inexistant'" in body["detail"]
        assert [r["incident"] for r in c.get("/_bench/faults").json()["rules"]] == ["bon"]  # nothing half-applied


# --------------------------------------------------------------------------------------------- journal


@pytest.fixture
def traffic(client):
    """Three exchanges: two in run r1 (POST /echo), one outside any run (GET /items/<item_id>)."""
    client.post("/_bench/run", json={"run": "r1"})
    t0 = time.time()
    time.sleep(0.02)
    client.post("/echo", content=b"one")
    time.sleep(0.02)
    client.post("/echo", content=b"two")
    time.sleep(0.02)
    t1 = time.time()
    time.sleep(0.02)
    client.post("/_bench/run", json={"run": None})
    client.get("/items/zzz")
    time.sleep(0.02)
    entries = wait_for_entries(client, 3)
    assert len(entries) == 3
    return {"t0": t0, "t1": t1, "t2": time.time(), "entries": entries}


def test_journal_json(client, traffic):
    body = client.get("/_bench/journal").json()
    assert body["service"] == "echo"
    assert body["count"] == 3
    assert [e["operation"] for e in body["entries"]] == ["POST /echo", "POST /echo", "GET /items/<item_id>"]
    assert [e["run"] for e in body["entries"]] == ["r1", "r1", None]
    assert [e["request"]["body"] for e in body["entries"]] == ["one", "two", ""]


@pytest.mark.parametrize(
    ("params", "bodies"),
    [
        ({"run": "r1"}, ["one", "two"]),
        ({"run": "r2"}, []),
        ({"operation": "GET /items/<item_id>"}, [""]),
        ({"operation": "POST /echo", "limit": "1"}, ["one"]),
        ({"limit": "2"}, ["one", "two"]),
        ({"since": "t1"}, [""]),
        ({"until": "t1"}, ["one", "two"]),
        ({"since": "t0", "until": "t1"}, ["one", "two"]),
        ({"since": "t2"}, []),
        ({"until": "t0"}, []),
        ({"since": "iso:t1"}, [""]),
        ({"until": "iso:t1", "run": "r1"}, ["one", "two"]),
    ],
)
def test_journal_filters(client, traffic, params, bodies):
    def value(v: str) -> str:
        if v.startswith("iso:"):
            return iso(datetime.fromtimestamp(traffic[v[4:]], UTC))
        return repr(traffic[v]) if v in ("t0", "t1", "t2") else v

    resp = client.get("/_bench/journal", params={k: value(v) for k, v in params.items()})
    assert resp.status_code == 200, resp.text
    assert [e["request"]["body"] for e in resp.json()["entries"]] == bodies


def test_journal_jsonl(client, traffic):
    resp = client.get("/_bench/journal", params={"format": "jsonl", "run": "r1"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    lines = resp.text.splitlines()
    assert len(lines) == 2 and resp.text.endswith("\n")
    assert [json.loads(line)["request"]["body"] for line in lines] == ["one", "two"]


def test_journal_har(client, traffic, har_validator):
    resp = client.get("/_bench/journal", params={"format": "har"})
    assert resp.status_code == 200
    har = resp.json()
    assert_valid_har(har_validator, har)
    assert [e["request"]["method"] for e in har["log"]["entries"]] == ["POST", "POST", "GET"]
    assert har["log"]["entries"][0]["request"]["url"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"format": "xml"}, "format must be json, jsonl or har, got 'xml'"),
        ({"limit": "abc"}, "limit must be an integer"),
        ({"limit": "-1"}, "limit must be between 1 and"),
        ({"limit": "0"}, "limit must be between 1 and"),
        ({"since": "hier"}, "since must be an ISO-8601 instant"),
        ({"until": "2026-13-45"}, "until must be an ISO-8601 instant"),
    ],
)
def test_journal_errors(client, params, fragment):
    body = problem_of(client.get("/_bench/journal", params=params), 400)
    assert fragment in body["detail"]


def test_journal_limit_with_unicode_digit_is_a_400(client):
    problem_of(client.get("/_bench/journal", params={"limit": "²"}), 400)


def test_control_calls_are_not_journaled(client):
    client.get("/_bench/health")
    client.get("/_bench/faults")
    client.get("/_bench/nope")
    assert client.get("/_bench/journal").json()["count"] == 0


# --------------------------------------------------------------------------------------------- reset


def _dirty(client) -> None:
    add_rule(client, effect={"type": "latency", "ms": 1})
    client.post("/_bench/state", json={"items": {"a": 1}})
    client.post("/_bench/clock", json={"advance": "P1Y"})
    client.post("/_bench/run", json={"run": "dirty"})
    client.post("/echo", content=b"x")
    wait_for_entries(client, 1)


def test_reset_everything(client):
    _dirty(client)
    resp = client.post("/_bench/reset")
    assert resp.status_code == 200
    assert resp.json() == {"service": "echo",
                           "reset": {"faults": 1, "journal": 1, "clock": True, "run": True, "state": True}}
    assert client.get("/_bench/faults").json()["rules"] == []
    assert client.get("/_bench/journal").json()["count"] == 0
    assert abs(client.get("/_bench/clock").json()["offset_seconds"]) < 1
    assert client.get("/_bench/run").json()["run"] is None
    assert client.get("/_bench/state").json()["state"] == {}


def test_reset_keep(client):
    _dirty(client)
    resp = client.post("/_bench/reset", json={"keep": ["faults", "state", "clock"]})
    assert resp.json()["reset"] == {"journal": 1, "run": True}
    assert len(client.get("/_bench/faults").json()["rules"]) == 1
    assert client.get("/_bench/state").json()["state"] == {"a": 1}
    assert client.get("/_bench/clock").json()["offset_seconds"] > 300 * 86400
    assert client.get("/_bench/journal").json()["count"] == 0
    assert client.get("/_bench/run").json()["run"] is None


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"keep": "faults"}', "keep must be a list among"),
        (b'{"keep": ["faults", "bogus"]}', "keep must be a list among"),
        (b"[1]", "the body, when given, must be a JSON object"),
        (b'"faults"', "the body, when given, must be a JSON object"),
        (b"{oops", "the body is not valid JSON"),
    ],
)
def test_reset_errors(client, content, fragment):
    add_rule(client, effect={"type": "latency", "ms": 1})
    body = problem_of(client.post("/_bench/reset", content=content), 400)
    assert fragment in body["detail"]
    assert len(client.get("/_bench/faults").json()["rules"]) == 1  # nothing was reset


@pytest.mark.parametrize("content", [b"[]", b"false"])
def test_reset_with_a_falsy_non_object_body_is_a_400(client, content):
    add_rule(client, effect={"type": "latency", "ms": 1})
    problem_of(client.post("/_bench/reset", content=content), 400)


# --------------------------------------------------------------------------------------------- clock


def test_clock_get(client):
    c = client.get("/_bench/clock").json()
    assert c["frozen"] is False
    assert abs(c["offset_seconds"]) < 1
    assert abs(when(c["now"]) - datetime.now(UTC)) < timedelta(seconds=5)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", c["now"])


def test_clock_advance_three_months(client):
    resp = client.post("/_bench/clock", json={"advance": "P3M"})
    assert resp.status_code == 200
    c = resp.json()
    expected = datetime.now(UTC) + relativedelta(months=3)
    assert abs(when(c["now"]) - expected) < timedelta(seconds=5)
    assert 89 * 86400 <= c["offset_seconds"] <= 92 * 86400
    assert c["frozen"] is False
    again = client.post("/_bench/clock", json={"advance": "-P3M"}).json()
    assert abs(again["offset_seconds"]) < 5


def test_clock_set_absolute_and_seen_by_the_service(client):
    c = client.post("/_bench/clock", json={"set": "2027-01-15T09:30:00Z"}).json()
    assert c["frozen"] is False
    assert abs(when(c["now"]) - datetime(2027, 1, 15, 9, 30, tzinfo=UTC)) < timedelta(seconds=2)
    client.post("/_bench/state", json={"items": {"a": 1}})
    item = client.get("/items/a").json()
    assert item["now"].startswith("2027-01-15T09:3")


def test_clock_freeze(client):
    c = client.post("/_bench/clock", json={"set": "2027-02-28T23:59:59Z", "freeze": True}).json()
    assert c["frozen"] is True and c["now"] == "2027-02-28T23:59:59.000Z"
    time.sleep(0.05)
    assert client.get("/_bench/clock").json()["now"] == "2027-02-28T23:59:59.000Z"
    c = client.post("/_bench/clock", json={"advance": "PT1S"}).json()
    assert c["now"] == "2027-03-01T00:00:00.000Z" and c["frozen"] is True
    c = client.post("/_bench/clock", json={"freeze": False}).json()
    assert c["frozen"] is False
    time.sleep(0.05)
    assert when(client.get("/_bench/clock").json()["now"]) > when("2027-03-01T00:00:00.040Z")
    assert client.get("/_bench/health").json()["clock"]["frozen"] is False


def test_clock_reset(client):
    client.post("/_bench/clock", json={"advance": "P6M", "freeze": True})
    c = client.post("/_bench/clock", json={"reset": True}).json()
    assert c["frozen"] is False and abs(c["offset_seconds"]) < 1


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"advance": "3 months"}, "not an ISO-8601 duration: '3 months'"),
        ({"advance": "P1.5M"}, "fractional months are ambiguous"),
        ({"advance": 3}, "'advance' must be a string"),
        ({"set": "demain"}, "not an ISO-8601 instant: 'demain'"),
        ({"set": "2027-01-01T00:00:00Z", "advance": "P1D"}, "either 'advance' or 'set'"),
        ({"freeze": "yes"}, "'freeze' must be true or false"),
        ({"rewind": "P1D"}, "unknown clock field(s) ['rewind']"),
        ({}, "expected a JSON object"),
        ([], "expected a JSON object"),
    ],
)
def test_clock_errors(client, payload, fragment):
    body = problem_of(client.post("/_bench/clock", json=payload), 400)
    assert fragment in body["detail"]
    assert abs(client.get("/_bench/clock").json()["offset_seconds"]) < 1


def test_clock_without_body(client):
    assert "JSON body is required" in problem_of(client.post("/_bench/clock"), 400)["detail"]


def test_clock_advance_out_of_range_is_a_400(client):
    problem_of(client.post("/_bench/clock", json={"advance": "P10000Y"}), 400)


# --------------------------------------------------------------------------------------------- state / run


def test_state(client):
    assert client.get("/_bench/state").json() == {"service": "echo", "state": {}}
    resp = client.post("/_bench/state", json={"items": {"a": {"x": 1}, "b": [1, 2]}})
    assert resp.status_code == 200
    assert resp.json() == {"service": "echo", "state": {"a": {"x": 1}, "b": [1, 2]}}
    assert client.get("/items/a").json()["value"] == {"x": 1}
    client.post("/_bench/state", json={"items": {"a": 2}})
    assert client.get("/_bench/state").json()["state"] == {"a": 2, "b": [1, 2]}


@pytest.mark.parametrize("payload", [{"things": {}}, {"items": [1]}, [1]])
def test_state_errors(client, payload):
    body = problem_of(client.post("/_bench/state", json=payload), 400)
    assert 'expected {"items"' in body["detail"]


def test_run(client):
    assert client.get("/_bench/run").json() == {"run": None, "label": None, "started_at": None}
    resp = client.post("/_bench/run", json={"run": "r-42", "label": "essai INSi"})
    assert resp.status_code == 200
    run = resp.json()
    assert run["run"] == "r-42" and run["label"] == "essai INSi"
    assert abs(when(run["started_at"]) - datetime.now(UTC)) < timedelta(seconds=5)
    assert client.get("/_bench/run").json() == run
    client.post("/echo", content=b"x")
    (entry,) = wait_for_entries(client, 1)
    assert entry["run"] == "r-42"
    assert client.post("/_bench/run", json={"run": None}).json()["run"] is None


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({}, 'expected {"run"'),
        ({"label": "x"}, 'expected {"run"'),
        ({"run": ""}, "run must be a non-empty string"),
        ({"run": 5}, "run must be a non-empty string"),
        ({"run": "x" * 201}, "at most 200 characters"),
        ({"run": "a", "label": 3}, "label must be a string"),
    ],
)
def test_run_errors(client, payload, fragment):
    assert fragment in problem_of(client.post("/_bench/run", json=payload), 400)["detail"]


# --------------------------------------------------------------------------------------------- routing errors


@pytest.mark.parametrize("path", ["/_bench/nope", "/_bench/faults/a/b", "/_bench/"])
def test_unknown_control_route(client, path):
    body = problem_of(client.get(path), 404)
    assert path in body["detail"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/_bench/faults", {"GET", "POST", "DELETE"}),
        ("GET", "/_bench/reset", {"POST"}),
        ("PATCH", "/_bench/clock", {"GET", "POST"}),
        ("GET", "/_bench/incidents/latence-3s", {"POST", "DELETE"}),
    ],
)
def test_wrong_method(client, method, path, allowed):
    resp = client.request(method, path)
    body = problem_of(resp, 405)
    assert method in body["detail"] and path in body["detail"]
    assert resp.headers["content-type"] == PROBLEM_CT
    assert allowed <= {m.strip() for m in resp.headers["allow"].split(",")}


# --------------------------------------------------------------------------------------------- openapi


def _control_routes(sim) -> set[tuple[str, str]]:
    routes = set()
    for rule in sim.flask.url_map.iter_rules():
        if not rule.rule.startswith("/_bench"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def test_openapi_documents_every_control_route(client):
    resp = client.get("/_bench/openapi.json")
    assert resp.status_code == 200
    spec = resp.json()
    routes = _control_routes(make_sim())
    assert len(routes) >= 17
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops if m != "parameters"}
    missing = routes - documented
    assert not missing, f"undocumented control routes: {sorted(missing)}"
    extra = {p for p, _ in documented} - {p for p, _ in routes}
    assert not extra, f"documented paths that do not exist: {sorted(extra)}"


def test_openapi_is_a_valid_document(client):
    from openapi_spec_validator import validate

    spec = client.get("/_bench/openapi.json").json()
    validate(spec)
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"]
