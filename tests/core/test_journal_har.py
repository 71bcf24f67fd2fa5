"""Exchange journal and HAR 1.2 export: what is recorded, how it is queried, and HAR conformance."""

from __future__ import annotations

import base64
import copy
import json
import re
import time

import httpx
import pytest
from core_support import (
    SOAP_HEADERS,
    add_rule,
    assert_valid_har,
    journal_entries,
    make_sim,
    soap_envelope,
    wait_for_entries,
)

from simulators.core import journal as journal_mod
from simulators.core.har import CREATOR, to_har
from simulators.core.journal import Exchange, Journal, JournalQueryError, Message, to_jsonl
from simulators.core.simulator import Simulator
from simulators.core.store import Store

MS_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MESSAGE_ID = "urn:uuid:6ad1e3b0-2a5b-4c61-a7b2-0f3b1c1d0e01"


def header(headers: list[list[str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def har_of(client: httpx.Client, **params: object) -> dict:
    resp = client.get("/_bench/journal", params={"format": "har", **params})
    assert resp.status_code == 200, resp.text
    return resp.json()


# --------------------------------------------------------------------------------------------- entries over HTTP


def test_entry_records_the_whole_exchange(server, client):
    rule = add_rule(client, effect={"type": "latency", "ms": 50})
    before = time.time()
    resp = client.post("/echo", params={"q": "1", "r": "deux"}, content="bonjour é".encode(),
                       headers={"content-type": "text/plain; charset=utf-8", "X-Custom": "v"})
    after = time.time()
    assert resp.status_code == 200
    (e,) = wait_for_entries(client, 1)
    assert re.fullmatch(r"[0-9a-f]{32}", e["id"])
    assert (e["service"], e["protocol"], e["operation"]) == ("echo", "http", "POST /echo")
    assert MS_ISO.match(e["received"]) and MS_ISO.match(e["responded"])
    assert before <= e["received_at"] <= e["responded_at"] <= after + 0.5
    assert e["duration_ms"] == pytest.approx((e["responded_at"] - e["received_at"]) * 1000, abs=0.01)
    assert e["duration_ms"] >= 50
    assert 45 <= e["waited_ms"] < 500
    assert e["method"] == "POST"
    assert e["url"] == f"{server.url}/echo?q=1&r=deux"
    assert e["http_version"] == "1.1"
    assert e["status"] == 200
    req = e["request"]
    assert header(req["headers"], "x-custom") == "v"
    assert header(req["headers"], "content-type") == "text/plain; charset=utf-8"
    assert (req["body"], req["encoding"], req["truncated"], req["size"]) == ("bonjour é", None, False, 10)
    res = e["response"]
    assert res["body"] == "bonjour é" and res["encoding"] is None and res["size"] == 10
    assert header(res["headers"], "content-type").startswith("text/plain")
    (fault,) = e["faults"]
    assert fault == {"rule": rule["id"], "effect": "latency", "call": 1, "description": "latence 50 ms",
                     "latency_ms": 50.0}
    assert e["client"].startswith("127.0.0.1:")
    assert e["error"] is None and e["outcome"] is None and e["run"] is None and e["correlation"] is None


@pytest.mark.parametrize(
    ("method", "path", "operation", "status"),
    [
        ("GET", "/items/abc", "GET /items/<item_id>", 404),
        ("GET", "/nowhere", "GET /nowhere", 404),
        ("DELETE", "/echo", "DELETE /echo", 405),
        ("GET", "/boom", "GET /boom", 500),
    ],
)
def test_operation_of_plain_http(client, method, path, operation, status):
    assert client.request(method, path).status_code == status
    (e,) = wait_for_entries(client, 1)
    assert (e["operation"], e["status"]) == (operation, status)


def test_soap_operation_and_correlation(client):
    resp = client.post("/soap", content=soap_envelope(message_id=MESSAGE_ID), headers=SOAP_HEADERS)
    assert resp.status_code == 200
    (e,) = wait_for_entries(client, 1)
    assert e["operation"] == "ping"
    assert e["correlation"] == MESSAGE_ID
    assert "<a:MessageID>" + MESSAGE_ID in e["request"]["body"]
    assert MESSAGE_ID in e["response"]["body"]  # wsa:RelatesTo of the answer


def test_soap_operation_sources(client):
    ct_action = 'application/soap+xml; charset=utf-8; action="urn:echo:1.0:autre"'
    client.post("/soap", content=soap_envelope(), headers={"content-type": ct_action})
    client.post("/soap", content=soap_envelope(), headers={"content-type": "text/xml; charset=utf-8",
                                                         "SOAPAction": '"urn:echo:1.0:legacy"'})
    client.post("/soap", content=b"<not-soap", headers=SOAP_HEADERS)
    client.post("/soap", content=soap_envelope(action="http://example.org/ws/Service/lire"), headers=SOAP_HEADERS)
    entries = wait_for_entries(client, 4)
    assert [e["operation"] for e in entries] == ["autre", "legacy", "POST /soap", "lire"]
    assert entries[2]["status"] == 400


def test_request_id_header_is_the_correlation(client):
    client.post("/echo", content=b"x", headers={"X-Request-Id": "req-1"})
    client.post("/soap", content=soap_envelope(message_id=MESSAGE_ID),
                headers={**SOAP_HEADERS, "X-Correlation-Id": "corr-2"})
    assert [e["correlation"] for e in wait_for_entries(client, 2)] == ["req-1", "corr-2"]


def test_rule_on_a_soap_operation(client):
    add_rule(client, operation="ping", effect={"type": "http_status", "status": 503})
    assert client.post("/soap", content=soap_envelope(), headers=SOAP_HEADERS).status_code == 503
    other = client.post("/soap", content=soap_envelope(action="urn:echo:1.0:pong"), headers=SOAP_HEADERS)
    assert other.status_code == 200
    entries = wait_for_entries(client, 2)
    assert [(e["operation"], e["status"], len(e["faults"])) for e in entries] == [("ping", 503, 1), ("pong", 200, 0)]


def test_run_id_stamps_entries(client):
    client.post("/echo", content=b"before")
    client.post("/_bench/run", json={"run": "campagne-1", "label": "x"})
    client.post("/echo", content=b"during")
    client.post("/_bench/run", json={"run": None})
    client.post("/echo", content=b"after")
    entries = wait_for_entries(client, 3)
    assert [(e["request"]["body"], e["run"]) for e in entries] == [
        ("before", None), ("during", "campagne-1"), ("after", None)]
    assert [e["request"]["body"] for e in journal_entries(client, run="campagne-1")] == ["during"]


def test_binary_bodies_are_base64(client):
    payload = bytes(range(256))
    resp = client.post("/echo", content=payload, headers={"content-type": "application/octet-stream"})
    assert resp.content == payload
    (e,) = wait_for_entries(client, 1)
    for message in (e["request"], e["response"]):
        assert message["encoding"] == "base64"
        assert message["size"] == 256
        assert base64.b64decode(message["body"]) == payload


def test_outcome_and_error_fields(client):
    add_rule(client, effect={"type": "outcome", "name": "refus"}, first=1)
    add_rule(client, effect={"type": "drop"}, operation="GET /items/*")
    client.post("/echo", content=b"x")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/items/a")
    refused, dropped = wait_for_entries(client, 2)
    assert refused["outcome"] == "refus" and refused["status"] == 409
    assert dropped["status"] is None and dropped["response"] is None and dropped["responded"] is None
    assert dropped["duration_ms"] is None
    assert "coupée" in dropped["error"]


# --------------------------------------------------------------------------------------------- HAR over HTTP


def test_har_export_validates(server, client, har_validator):
    client.post("/echo", params={"q": "1"}, content=b"texte", headers={"content-type": "text/plain",
                                                                       "cookie": "sid=abc; lang=fr"})
    client.post("/echo", content=bytes(range(256)), headers={"content-type": "application/octet-stream"})
    client.post("/echo", content=b"a=1&b=deux", headers={"content-type": "application/x-www-form-urlencoded"})
    client.get("/items/zzz")
    client.post("/soap", content=soap_envelope(), headers=SOAP_HEADERS)
    wait_for_entries(client, 5)
    har = har_of(client)
    assert_valid_har(har_validator, har)
    log = har["log"]
    assert log["version"] == "1.2"
    assert log["creator"] == CREATOR
    entries = log["entries"]
    assert len(entries) == 5
    assert [e["startedDateTime"] for e in entries] == sorted(e["startedDateTime"] for e in entries)
    text, binary, form, item, soap = entries

    assert text["request"]["url"] == f"{server.url}/echo?q=1"
    assert text["request"]["queryString"] == [{"name": "q", "value": "1"}]
    # Cookie values are masked in the journal by default (issue 16, redact.py); names stay.
    assert [c["name"] for c in text["request"]["cookies"]] == ["sid", "lang"]
    assert all(c["value"].startswith("***MASQUE:") for c in text["request"]["cookies"])
    assert text["request"]["postData"] == {"mimeType": "text/plain", "text": "texte"}
    assert text["request"]["bodySize"] == 5
    assert text["response"]["content"]["text"] == "texte"
    assert text["response"]["status"] == 200 and text["response"]["statusText"] == "OK"
    assert text["response"]["httpVersion"] == "HTTP/1.1"
    assert text["_operation"] == "POST /echo" and text["_service"] == "echo"

    assert binary["request"]["postData"]["text"] == base64.b64encode(bytes(range(256))).decode()
    assert binary["response"]["content"]["encoding"] == "base64"
    assert base64.b64decode(binary["response"]["content"]["text"]) == bytes(range(256))
    assert binary["response"]["content"]["size"] == 256

    assert form["request"]["postData"]["params"] == [{"name": "a", "value": "1"}, {"name": "b", "value": "deux"}]

    assert item["request"]["method"] == "GET"
    assert "postData" not in item["request"]
    assert item["response"]["status"] == 404 and item["response"]["statusText"] == "Not Found"
    assert item["response"]["content"]["mimeType"].startswith("application/json")

    assert soap["_operation"] == "ping"
    assert soap["response"]["content"]["mimeType"].startswith("application/soap+xml")

    for e in entries:
        t = e["timings"]
        assert e["time"] == pytest.approx(t["send"] + t["wait"] + t["receive"])
        assert e["cache"] == {}
        assert re.fullmatch(r"[0-9a-f]{32}", e["_journalId"])


def test_har_dropped_and_hung_requests_have_status_0(server, client, har_validator):
    add_rule(client, effect={"type": "drop"}, operation="GET /items/*")
    add_rule(client, effect={"type": "hang", "max_s": 10}, operation="POST /echo")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/items/x")
    with httpx.Client(base_url=server.url) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post("/echo", content=b"x", timeout=0.2)
    wait_for_entries(client, 2)
    har = har_of(client)
    assert_valid_har(har_validator, har)
    dropped, hung = har["log"]["entries"]
    for e in (dropped, hung):
        r = e["response"]
        assert r["status"] == 0 and r["statusText"] == "" and r["httpVersion"] == ""
        assert r["headers"] == [] and r["content"] == {"size": 0, "mimeType": "x-unknown"}
        assert r["bodySize"] == -1
        assert e["_faults"][0]["effect"] in ("drop", "hang")
    assert "connexion coupée" in dropped["comment"]
    assert "abandonné" in hung["comment"]
    assert hung["time"] >= 150


def test_har_response_cookies_and_faults(client, har_validator):
    add_rule(client, effect={"type": "http_status", "status": 302, "body": "", "headers": {
        "Set-Cookie": "sid=xyz; Path=/app; Domain=example.org; HttpOnly; Secure", "Location": "/ailleurs"}})
    client.post("/_bench/run", json={"run": "r-har"})
    assert client.get("/items/a").status_code == 302
    wait_for_entries(client, 1)
    har = har_of(client, run="r-har")
    assert_valid_har(har_validator, har)
    (e,) = har["log"]["entries"]
    (cookie,) = e["response"]["cookies"]
    assert cookie.pop("value").startswith("***MASQUE:")  # journal masking (issue 16): the attributes stay
    assert cookie == {"name": "sid", "path": "/app", "domain": "example.org", "httpOnly": True, "secure": True}
    assert e["response"]["redirectURL"] == "/ailleurs"
    assert e["_run"] == "r-har"
    assert e["comment"] == "réponse HTTP 302"


def test_har_schema_is_not_vacuous(client, har_validator):
    client.post("/echo", content=b"x")
    wait_for_entries(client, 1)
    good = har_of(client)
    assert_valid_har(har_validator, good)

    def broken(mutate) -> dict:
        har = copy.deepcopy(good)
        mutate(har)
        return har

    entry = lambda h: h["log"]["entries"][0]  # noqa: E731
    mutations = [
        lambda h: h["log"].pop("creator"),
        lambda h: h["log"]["creator"].pop("version"),
        lambda h: entry(h).__setitem__("startedDateTime", "hier à midi"),
        lambda h: entry(h).__setitem__("startedDateTime", "2026-02-30T10:00:00Z"),
        lambda h: entry(h).__setitem__("unknownField", 1),
        lambda h: entry(h)["response"].__setitem__("status", "200"),
        lambda h: entry(h)["response"]["content"].pop("mimeType"),
        lambda h: entry(h)["request"].pop("headersSize"),
        lambda h: entry(h)["request"].__setitem__("url", "/relative"),
        lambda h: entry(h)["timings"].pop("wait"),
        lambda h: entry(h)["timings"].__setitem__("send", -1),
        lambda h: entry(h).pop("cache"),
        lambda h: entry(h)["request"]["headers"].append({"name": "x"}),
        lambda h: entry(h)["request"].__setitem__("postData", {"text": "no mime type"}),
    ]
    for i, mutate in enumerate(mutations):
        assert not har_validator.is_valid(broken(mutate)), f"mutation {i} was accepted"


# --------------------------------------------------------------------------------------------- journal, unit level


def _exchange(i: int, received_at: float, **kw) -> Exchange:
    return Exchange(id=f"id{i}", service="svc", protocol=kw.pop("protocol", "http"),
                    operation=kw.pop("operation", "POST /echo"), received_at=received_at,
                    responded_at=received_at + 0.25, method="POST", url=f"/echo?i={i}", status=200,
                    request=Message.of([("content-type", "text/plain")], f"req{i}".encode()),
                    response=Message.of([("content-type", "text/plain")], f"res{i}".encode()), **kw)


@pytest.fixture
def journal() -> Journal:
    j = Journal(Store(), "svc")
    base = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    for i, offset in enumerate([30, 10, 20, 40]):  # recorded out of order
        j.record(_exchange(i, base + offset, run="r" if i % 2 else None,
                           operation="GET /a" if i == 3 else "POST /echo"))
    return j


def ids(exchanges) -> list[str]:
    return [e.id for e in exchanges]


def test_journal_query_order_and_filters(journal):
    base = 1_800_000_000.0
    assert ids(journal.query()) == ["id1", "id2", "id0", "id3"]  # by reception time
    assert ids(journal.query(since=base + 20)) == ["id2", "id0", "id3"]
    assert ids(journal.query(until=base + 20)) == ["id1", "id2"]
    assert ids(journal.query(since=str(base + 15), until=str(base + 35))) == ["id2", "id0"]
    assert ids(journal.query(since="2027-01-15T08:00:20Z")) == ["id2", "id0", "id3"]
    assert ids(journal.query(until="2027-01-15T09:00:20+01:00")) == ["id1", "id2"]
    assert ids(journal.query(since="2027-01-15T08:00:20")) == ["id2", "id0", "id3"]  # naive = UTC
    assert ids(journal.query(run="r")) == ["id1", "id3"]
    assert ids(journal.query(operation="GET /a")) == ["id3"]
    assert ids(journal.query(operation="POST /echo", limit=2)) == ["id1", "id2"]
    assert journal.query(operation="POST /*") == []  # exact match, no glob


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"limit": 0}, "limit must be a positive integer"), ({"since": "hier"}, "since must be an ISO-8601 instant"),
     ({"until": "2027-99-01"}, "until must be an ISO-8601 instant")],
)
def test_journal_query_errors(journal, kwargs, fragment):
    with pytest.raises(JournalQueryError, match=re.escape(fragment)):
        journal.query(**kwargs)


def test_journal_clear_and_runs(journal):
    assert journal.current_run() == {"run": None, "label": None, "started_at": None}
    run = journal.set_run("r-9", "libellé")
    assert run["run"] == "r-9" and run["label"] == "libellé" and MS_ISO.match(run["started_at"])
    assert journal.current_run() == run
    assert journal.set_run(None)["run"] is None
    assert journal.clear() == 4
    assert journal.query() == []


def test_exchange_round_trip_and_jsonl(journal):
    original = _exchange(7, 1_800_000_000.123, faults=[{"rule": "r1", "effect": "latency"}], correlation="c",
                         error=None, waited_ms=12.5)
    journal.record(original)
    (stored,) = journal.query(operation="POST /echo", since=1_800_000_000.1, until=1_800_000_000.2)
    assert stored == original
    d = original.as_dict()
    assert d["received"] == "2027-01-15T08:00:00.123Z"
    assert d["responded"] == "2027-01-15T08:00:00.373Z"
    assert d["duration_ms"] == 250.0
    assert Exchange.from_dict(json.loads(json.dumps(d))) == original
    lines = to_jsonl([original, original]).splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == d
    assert to_jsonl([]) == ""


def test_message_helpers():
    m = Message.of([("Content-Type", "text/plain"), ("X-A", "1")], "é".encode())
    assert m.header("content-type") == "text/plain" and m.header("x-a") == "1" and m.header("nope") is None
    assert (m.body, m.encoding, m.size, m.raw()) == ("é", None, 2, "é".encode())
    b = Message.of([], b"\x00\xff")
    assert b.encoding == "base64" and b.raw() == b"\x00\xff"


def test_large_bodies_are_truncated(monkeypatch):
    monkeypatch.setattr(journal_mod, "MAX_STORED_BODY", 10)
    long = Message.of([], b"0123456789abcdef")
    assert (long.body, long.encoding, long.truncated, long.size) == ("0123456789", None, True, 16)
    m = Message.of([], b"x" * 25)
    assert m.truncated is True and m.size == 25 and m.body == "x" * 10
    short = Message.of([], b"short")
    assert (short.body, short.encoding, short.truncated) == ("short", None, False)


def test_bodies_are_stored_as_bytes_and_round_trip_through_the_api_shape():
    journal = Journal(Store(), "svc")
    binary = bytes(range(256)) * 160  # binary, and large enough (40 kB) to be stored deflated
    ex = Exchange(id="b1", service="svc", protocol="http", operation="op", received_at=1_800_000_000.0,
                  responded_at=1_800_000_000.5, status=200, request=Message.of([("content-type", "x")], binary),
                  response=Message.of([], "réponse é".encode()))
    journal.record(ex)
    row = journal.store.query("SELECT entry, request_body FROM journal")[0]
    assert len(row["request_body"]) < len(binary) and "body" not in json.loads(row["entry"])["request"]
    back = journal.query()[0]
    assert back.request.raw() == binary and back.request.encoding == "base64"
    assert back.response.body == "réponse é" and back.response.encoding is None
    again = Exchange.from_dict(back.as_dict())  # the shape the control API and the CLI exchange
    assert again.request.raw() == binary and again.response.raw() == "réponse é".encode()


def test_to_har_unit(har_validator):
    exchanges = [
        _exchange(1, 1_800_000_010.0),
        _exchange(2, 1_800_000_000.0, protocol="smtp", operation="DATA"),
        _exchange(3, 1_800_000_005.0, run="r", faults=[{"rule": "x", "effect": "drop", "description": "coupé"}]),
    ]
    exchanges[2].status, exchanges[2].response, exchanges[2].responded_at = None, None, None
    exchanges[2].error = "connexion coupée"
    har = to_har(exchanges, base_urls={"svc": "http://sim.example:8101/"}, comment="export")
    assert_valid_har(har_validator, har)
    entries = har["log"]["entries"]
    assert [e["_journalId"] for e in entries] == ["id3", "id1"]  # smtp left out, time order
    assert entries[1]["request"]["url"] == "http://sim.example:8101/echo?i=1"
    assert entries[1]["time"] == 250.0
    assert entries[0]["response"]["status"] == 0
    assert entries[0]["comment"] == "coupé; connexion coupée"
    assert entries[0]["time"] == 0
    assert har["log"]["comment"] == "export"


# --------------------------------------------------------------------------------------------- known bugs


def _sim_with_slow_journal(seconds: float = 0.3) -> Simulator:
    """A simulator whose journal commits take `seconds` (a slow disk, a busy database)."""
    sim = make_sim()
    record_many = sim.ctx.journal.record_many

    def slow_record(exchanges):
        time.sleep(seconds)
        record_many(exchanges)

    sim.ctx.journal.record_many = slow_record
    return sim


def test_a_journal_query_made_after_the_answer_finds_the_exchange(serve):
    # Entries are committed just after the answer leaves; a query must still see every exchange answered
    # before it, however slow the commit.
    server = serve(_sim_with_slow_journal())
    with httpx.Client(base_url=server.url) as c:
        for i in range(3):
            assert c.post(f"/echo?i={i}", content=b"x").status_code == 200
        entries = c.get("/_bench/journal").json()["entries"]
    assert [e["url"].rsplit("?", 1)[1] for e in entries] == ["i=0", "i=1", "i=2"]


def test_reset_does_not_let_an_entry_in_flight_land_after_it(serve):
    server = serve(_sim_with_slow_journal())
    with httpx.Client(base_url=server.url) as c:
        assert c.post("/echo", content=b"x").status_code == 200
        assert c.post("/_bench/reset", json={}).status_code == 200
        time.sleep(0.5)
        assert c.get("/_bench/journal").json()["entries"] == []


def test_entries_written_before_the_body_columns_existed_still_read_back():
    store = Store()
    store.migrate("journal", [journal_mod._MIGRATIONS[0]])  # the first schema: bodies inside the JSON entry
    old = {"id": "old1", "service": "svc", "protocol": "http", "operation": "op", "received_at": 1.0,
           "responded_at": 2.0, "method": "GET", "url": "http://h/x", "http_version": "1.1", "status": 200,
           "request": {"headers": [], "body": "", "encoding": None, "truncated": False, "size": 0},
           "response": {"headers": [["content-type", "text/plain"]], "body": "aGk=", "encoding": "base64",
                        "truncated": False, "size": 2},
           "faults": [], "outcome": None, "run": None, "correlation": None, "client": None, "error": None,
           "waited_ms": None}
    store.execute("INSERT INTO journal (id, service, protocol, operation, received_at, responded_at, entry)"
                  " VALUES ('old1', 'svc', 'http', 'op', 1.0, 2.0, ?)", (json.dumps(old),))
    entry = Journal(store, "svc").query()[0]  # migrates to the current schema first
    assert entry.response.raw() == b"hi" and entry.status == 200
