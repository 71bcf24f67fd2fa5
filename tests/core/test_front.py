"""The ASGI front end over real HTTP: injected effects, size limit, error hiding, concurrency."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest
from core_support import (
    PROBLEM_CT,
    SOAP12,
    SOAP_HEADERS,
    WSA,
    add_rule,
    make_sim,
    problem_of,
    soap_envelope,
    wait_for_entries,
)
from lxml import etree

SIRAM = "urn:siram"


def run_async(coro):
    """asyncio.run on a thread of its own: the main thread may already hold Playwright's session event loop."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def parse_soap(data: bytes) -> etree._Element:
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    assert root.tag == f"{{{SOAP12}}}Envelope"
    return root


def fault_of(data: bytes) -> etree._Element:
    faults = parse_soap(data).findall(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault")
    assert len(faults) == 1
    return faults[0]


def resolve(el: etree._Element) -> tuple[str | None, str]:
    """Resolve the QName in an element's text against its in-scope namespaces."""
    prefix, _, local = (el.text or "").strip().rpartition(":")
    return el.nsmap.get(prefix or None), local


def s(local: str) -> str:
    return f"{{{SOAP12}}}{local}"


# --------------------------------------------------------------------------------------------- plain service


def test_echo_without_faults(client):
    resp, elapsed = timed(client.post, "/echo", content=b"bonjour", headers={"content-type": "text/plain"})
    assert resp.status_code == 200
    assert resp.content == b"bonjour"
    assert elapsed < 0.5
    (entry,) = wait_for_entries(client, 1)
    assert entry["faults"] == [] and entry["waited_ms"] is None


# --------------------------------------------------------------------------------------------- latency


def test_latency_delays_the_response(client):
    add_rule(client, effect={"type": "latency", "ms": 300})
    resp, elapsed = timed(client.post, "/echo", content=b"x")
    assert resp.status_code == 200 and resp.content == b"x"
    assert 0.28 <= elapsed < 1.0
    (entry,) = wait_for_entries(client, 1)
    assert 290 <= entry["waited_ms"] < 800
    assert entry["duration_ms"] >= 290
    assert entry["faults"][0]["latency_ms"] == 300.0


def test_latency_only_on_the_selected_operation(client):
    add_rule(client, effect={"type": "latency", "ms": 400}, operation="GET /items/*")
    _, fast = timed(client.post, "/echo", content=b"x")
    resp, slow = timed(client.get, "/items/abc")
    assert resp.status_code == 404
    assert fast < 0.3
    assert slow >= 0.38


def test_latencies_add_up_before_a_terminal_effect(client):
    add_rule(client, effect={"type": "latency", "ms": 150})
    add_rule(client, effect={"type": "http_status", "status": 502})
    add_rule(client, effect={"type": "latency", "ms": 100})
    resp, elapsed = timed(client.post, "/echo", content=b"x")
    assert resp.status_code == 502
    assert 0.24 <= elapsed < 1.0


# --------------------------------------------------------------------------------------------- http_status


def test_http_status_answers_problem_json(client):
    rule = add_rule(client, effect={"type": "http_status", "status": 503})
    resp = client.post("/echo", content=b"x")
    body = problem_of(resp, 503)
    assert body["service"] == "echo"
    assert "503" in body["detail"]
    (entry,) = wait_for_entries(client, 1)
    assert entry["status"] == 503
    assert entry["faults"][0]["rule"] == rule["id"]
    assert json.loads(entry["response"]["body"]) == body


def test_http_status_with_custom_body_and_headers(client):
    add_rule(client, effect={"type": "http_status", "status": 429, "body": "ralentissez",
                             "content_type": "text/plain; charset=utf-8", "headers": {"Retry-After": "7"}})
    resp = client.get("/items/x")
    assert resp.status_code == 429
    assert resp.text == "ralentissez"
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert resp.headers["retry-after"] == "7"


def test_http_status_selected_by_service_attribute(client):
    client.post("/_bench/state", json={"items": {"abc": 1, "zzz": 2}})
    add_rule(client, effect={"type": "http_status", "status": 503}, match={"attrs": {"item": "a*"}})
    assert client.get("/items/abc").status_code == 503
    assert client.get("/items/zzz").json()["value"] == 2


# --------------------------------------------------------------------------------------------- soap_fault


def test_soap_fault_receiver_with_siram_subcode(client):
    add_rule(client, effect={
        "type": "soap_fault", "code": "Receiver", "subcode": "siram_40", "reason": "Service indisponible",
        "detail_xml": '<siram:Erreur xmlns:siram="urn:siram" code="insi_102">Réessayez</siram:Erreur>'})
    message_id = "urn:uuid:11111111-2222-4333-8444-555555555555"
    resp = client.post("/soap", content=soap_envelope(message_id=message_id), headers=SOAP_HEADERS)
    assert resp.status_code == 500
    assert resp.headers["content-type"].startswith("application/soap+xml")
    fault = fault_of(resp.content)
    assert resolve(fault.find(f"{s('Code')}/{s('Value')}")) == (SOAP12, "Receiver")
    assert resolve(fault.find(f"{s('Code')}/{s('Subcode')}/{s('Value')}")) == (SIRAM, "siram_40")
    text = fault.find(f"{s('Reason')}/{s('Text')}")
    assert text.text == "Service indisponible"
    assert text.get("{http://www.w3.org/XML/1998/namespace}lang") == "fr"
    (erreur,) = fault.find(s("Detail"))
    assert erreur.tag == f"{{{SIRAM}}}Erreur" and erreur.get("code") == "insi_102" and erreur.text == "Réessayez"
    header = parse_soap(resp.content).find(s("Header"))
    assert header.findtext(f"{{{WSA}}}RelatesTo") == message_id
    assert header.findtext(f"{{{WSA}}}Action") == "http://www.w3.org/2005/08/addressing/soap/fault"


def test_soap_fault_sender_is_http_400(client):
    add_rule(client, effect={"type": "soap_fault", "code": "Sender"})
    resp = client.post("/soap", content=soap_envelope(), headers=SOAP_HEADERS)
    assert resp.status_code == 400
    fault = fault_of(resp.content)
    assert resolve(fault.find(f"{s('Code')}/{s('Value')}")) == (SOAP12, "Sender")
    assert fault.find(f"{s('Code')}/{s('Subcode')}") is None
    assert fault.findtext(f"{s('Reason')}/{s('Text')}") == "Erreur simulée par le banc de test"


def test_soap_fault_status_override_and_custom_namespace(client):
    add_rule(client, effect={"type": "soap_fault", "subcode": "busy", "subcode_ns": "urn:other", "status": 503})
    resp = client.post("/soap", content=soap_envelope(), headers=SOAP_HEADERS)
    assert resp.status_code == 503
    assert resolve(fault_of(resp.content).find(f"{s('Code')}/{s('Subcode')}/{s('Value')}")) == ("urn:other", "busy")


# --------------------------------------------------------------------------------------------- outcome


def test_outcome_reaches_the_service(client):
    add_rule(client, effect={"type": "outcome", "name": "refus"}, operation="POST /echo")
    resp = client.post("/echo", content=b"x")
    assert resp.status_code == 409
    assert resp.json() == {"result": "refused"}
    (entry,) = wait_for_entries(client, 1)
    assert entry["outcome"] == "refus"
    assert entry["status"] == 409


def test_outcome_reaches_a_soap_handler(client):
    add_rule(client, effect={"type": "outcome", "name": "refus"}, operation="ping")
    resp = client.post("/soap", content=soap_envelope(), headers=SOAP_HEADERS)
    assert resp.status_code == 200
    assert parse_soap(resp.content).findtext(".//{urn:segur-bench:echo}Outcome") == "refus"
    other = client.post("/soap", content=soap_envelope(action="urn:echo:1.0:pong"), headers=SOAP_HEADERS)
    assert parse_soap(other.content).findtext(".//{urn:segur-bench:echo}Outcome") == "ok"


@pytest.mark.parametrize("name", ["X-Segur-Bench-Outcome", "x-segur-bench-outcome"])
def test_client_supplied_outcome_header_is_ignored(client, name):
    resp = client.post("/echo", content=b"mine", headers={name: "refus"})
    assert resp.status_code == 200
    assert resp.content == b"mine"
    soap = client.post("/soap", content=soap_envelope(), headers={**SOAP_HEADERS, name: "refus"})
    assert parse_soap(soap.content).findtext(".//{urn:segur-bench:echo}Outcome") == "ok"


# --------------------------------------------------------------------------------------------- drop / hang


def test_drop_closes_without_response(client):
    add_rule(client, effect={"type": "drop"}, first=1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/echo", content=b"x")
    assert client.post("/echo", content=b"y").content == b"y"  # the simulator keeps working
    entries = wait_for_entries(client, 2)
    dropped = entries[0]
    assert dropped["status"] is None and dropped["response"] is None
    assert "coupée" in dropped["error"]
    assert dropped["faults"][0]["effect"] == "drop"
    assert entries[1]["status"] == 200


def test_hang_until_the_client_gives_up(server, client):
    add_rule(client, effect={"type": "hang", "max_s": 30}, operation="POST /echo")
    with httpx.Client(base_url=server.url) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post("/echo", content=b"x", timeout=0.3)
    # the abandoned exchange is journalled once the server sees the client gone: on a loaded machine (CI, 2 cores)
    # that took more than the default 3 s
    (entry,) = wait_for_entries(client, 1, timeout=15)
    assert entry["status"] is None
    assert entry["response"] is None
    assert isinstance(entry["error"], str) and "abandonné" in entry["error"]
    assert entry["faults"][0]["effect"] == "hang"
    assert 250 <= entry["duration_ms"] < 5000


def test_hang_gives_up_after_max_s(client):
    add_rule(client, effect={"type": "hang", "max_s": 0.2})
    with pytest.raises(httpx.RemoteProtocolError):
        timed(client.post, "/echo", content=b"x")
    (entry,) = wait_for_entries(client, 1)
    assert entry["status"] is None
    assert "0.2 s" in entry["error"]
    assert 150 <= entry["duration_ms"] < 2000


def test_hung_requests_do_not_block_others(server, client):
    add_rule(client, effect={"type": "hang", "max_s": 1.5}, operation="GET /items/*")

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as ac:
            hung = [asyncio.create_task(ac.get(f"/items/{i}")) for i in range(20)]
            await asyncio.sleep(0.2)
            start = time.perf_counter()
            resp = await ac.post("/echo", content=b"still here")
            elapsed = time.perf_counter() - start
            results = await asyncio.gather(*hung, return_exceptions=True)
            return resp, elapsed, results

    resp, elapsed, results = run_async(scenario())
    assert resp.content == b"still here"
    assert elapsed < 0.5
    assert all(isinstance(r, httpx.RemoteProtocolError) for r in results)


# --------------------------------------------------------------------------------------------- dribble


def test_dribble_sends_the_body_slowly_and_intact(client):
    add_rule(client, effect={"type": "dribble", "chunk_bytes": 10, "interval_ms": 50})
    payload = bytes(range(48, 148))  # 100 bytes → 10 chunks, 9 pauses of 50 ms
    start = time.perf_counter()
    first_byte = None
    received = b""
    with client.stream("POST", "/echo", content=payload, headers={"content-type": "application/octet-stream"}) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == "100"
        for chunk in r.iter_raw():
            if first_byte is None:
                first_byte = time.perf_counter() - start
            received += chunk
    total = time.perf_counter() - start
    assert received == payload
    assert first_byte < 0.25
    assert 0.42 <= total < 1.5
    (entry,) = wait_for_entries(client, 1)
    assert entry["faults"][0]["effect"] == "dribble"
    assert entry["status"] == 200


def test_dribble_of_an_empty_body(client):
    add_rule(client, effect={"type": "dribble", "chunk_bytes": 1, "interval_ms": 50})
    resp = client.post("/echo", content=b"")
    assert resp.status_code == 200 and resp.content == b""


# --------------------------------------------------------------------------------------------- size limit


def test_oversized_body_is_refused_with_problem_json(serve):
    server = serve(make_sim(max_request_bytes=1024))
    with httpx.Client(base_url=server.url) as c:
        body = problem_of(c.post("/echo", content=b"x" * 2000), 413)
        assert "1024" in body["detail"]
        # without Content-Length (chunked): the limit is enforced while reading
        chunked = c.post("/echo", content=iter([b"y" * 600] * 3))
        problem_of(chunked, 413)
        assert c.post("/echo", content=b"z" * 1024).content == b"z" * 1024
        entries = wait_for_entries(c, 3)
        assert [e["status"] for e in entries] == [413, 413, 200]
        assert entries[0]["operation"] == "(trop volumineux)"
        assert "1024" in entries[0]["error"]
        problem_of(c.post("/_bench/faults", content=b"[" * 2000), 413)  # control API too


def test_oversized_body_on_a_soap_service_is_a_soap_fault(serve):
    server = serve(make_sim(error_format="soap", max_request_bytes=1024))
    with httpx.Client(base_url=server.url) as c:
        resp = c.post("/soap", content=soap_envelope(body="<x>" + "a" * 2000 + "</x>"), headers=SOAP_HEADERS)
        assert resp.status_code == 413
        assert resp.headers["content-type"].startswith("application/soap+xml")
        fault = fault_of(resp.content)
        assert resolve(fault.find(f"{s('Code')}/{s('Value')}")) == (SOAP12, "Sender")
        assert "1024" in fault.findtext(f"{s('Reason')}/{s('Text')}")
        # the control API keeps answering problem JSON even on a SOAP service
        problem_of(c.post("/_bench/faults", content=b"x" * 2000), 413)
        ok = c.post("/soap", content=soap_envelope(), headers=SOAP_HEADERS)
        assert ok.status_code == 200


# --------------------------------------------------------------------------------------------- errors


def test_unhandled_exception_hides_the_traceback_and_the_exception(client, caplog):
    resp = client.get("/boom")
    body = problem_of(resp, 500)
    assert "s3cr3t" not in resp.text
    assert "Traceback" not in resp.text and "testing.py" not in resp.text
    assert "RuntimeError" not in resp.text  # issue 16: the class name is ours to read, not the client's
    ref = re.search(r"référence ([0-9a-f]{8})", body["detail"])
    assert ref, body["detail"]
    logged = [r for r in caplog.records if ref.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info and "s3cr3t" in str(logged[0].exc_info[1])  # the log has it all
    assert client.post("/echo", content=b"ok").content == b"ok"


def test_unhandled_exception_on_a_soap_service_is_a_receiver_fault(serve):
    server = serve(make_sim(error_format="soap"))
    with httpx.Client(base_url=server.url) as c:
        resp = c.get("/boom")
        assert resp.status_code == 500
        assert "s3cr3t" not in resp.text and "Traceback" not in resp.text
        fault = fault_of(resp.content)
        assert resolve(fault.find(f"{s('Code')}/{s('Value')}")) == (SOAP12, "Receiver")
        missing = c.get("/nowhere")
        assert missing.status_code == 404
        assert resolve(fault_of(missing.content).find(f"{s('Code')}/{s('Value')}")) == (SOAP12, "Sender")


def test_unknown_service_route_is_problem_json(client):
    body = problem_of(client.get("/nowhere"), 404)
    assert "/nowhere" in body["detail"]
    resp = client.get("/echo")
    problem_of(resp, 405)
    assert "POST" in resp.headers["allow"]
    assert resp.headers["content-type"] == PROBLEM_CT


# --------------------------------------------------------------------------------------------- concurrency


def test_latency_does_not_serialize_requests(server, client):
    add_rule(client, effect={"type": "latency", "ms": 1000})

    async def fire():
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=limits) as ac:
            return await asyncio.gather(*(ac.post("/echo", content=str(i).encode()) for i in range(50)))

    start = time.perf_counter()
    responses = run_async(fire())
    elapsed = time.perf_counter() - start
    assert [r.content for r in responses] == [str(i).encode() for i in range(50)]
    assert elapsed >= 0.95
    assert elapsed < 2.5, f"50 requests delayed 1 s took {elapsed:.2f} s: latency is serialized"
    entries = wait_for_entries(client, 50)
    assert len(entries) == 50
    assert sorted(e["faults"][0]["call"] for e in entries) == list(range(1, 51))
