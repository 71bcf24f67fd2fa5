"""Fast routes answered inline by the HTTP protocol (no fault rule stored) and their fallbacks.

Raw sockets speak HTTP/1.1 here so pipelining, HTTP/1.0 and chunked bodies are what the bytes say,
not what a client library chooses.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
from core_support import add_rule, make_sim


def _read_responses(sock: socket.socket, count: int, timeout: float = 5.0) -> list[tuple[int, dict, bytes]]:
    """Read `count` HTTP/1.1 responses with Content-Length bodies from `sock`."""
    sock.settimeout(timeout)
    buf, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed after {len(out)} response(s): {buf!r}")
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers["content-length"])
        while len(buf) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed in the middle of a body")
            buf += chunk
        out.append((status, headers, buf[:length]))
        buf = buf[length:]
    return out


def _post(path: str, body: bytes, *, version: str = "1.1", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/{version}\r\nHost: sim\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def _entries(server) -> list[dict]:
    return httpx.get(f"{server.url}/_bench/journal").json()["entries"]


def test_inline_answer_is_journaled_with_its_bodies(serve):
    sim = make_sim()
    inline_calls = []
    serve_inline = sim.asgi.serve_inline
    sim.asgi.serve_inline = lambda *a: inline_calls.append(a) or serve_inline(*a)
    server = serve(sim)
    resp = httpx.post(f"{server.url}/fast-echo", content=b"bonjour", headers={"content-type": "text/plain"})
    assert resp.status_code == 200
    assert resp.content == b"bonjour"
    assert resp.headers["x-echo-length"] == "7"
    (entry,) = _entries(server)
    assert entry["operation"] == "POST /fast-echo"
    assert entry["status"] == 200
    assert entry["request"]["body"] == "bonjour"
    assert entry["response"]["body"] == "bonjour"
    assert ["content-length", "7"] in entry["response"]["headers"]
    assert entry["faults"] == [] and entry["outcome"] is None
    assert len(inline_calls) == 1  # answered by the protocol, not through the ASGI app


def test_pipelined_requests_are_answered_in_order(serve):
    server = serve(make_sim())
    with socket.create_connection((server.host, server.port)) as sock:
        # Fast, plain Flask route, fast again: all in one write, answers must come back in that order.
        sock.sendall(_post("/fast-echo", b"un") + _post("/echo", b"deux") + _post("/fast-echo", b"trois"))
        answers = _read_responses(sock, 3)
    assert [(status, body) for status, _, body in answers] == [(200, b"un"), (200, b"deux"), (200, b"trois")]
    assert [json.loads(json.dumps(e["request"]["body"])) for e in _entries(server)] == ["un", "deux", "trois"]


def test_keep_alive_connection_serves_many_inline_requests(serve):
    server = serve(make_sim())
    with socket.create_connection((server.host, server.port)) as sock:
        for i in range(20):
            sock.sendall(_post("/fast-echo", f"n{i}".encode()))
            ((status, _, body),) = _read_responses(sock, 1)
            assert (status, body) == (200, f"n{i}".encode())
    assert len(_entries(server)) == 20


def test_http_1_0_gets_its_answer_then_the_connection_closes(serve):
    server = serve(make_sim())
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(_post("/fast-echo", b"vieux", version="1.0"))
        ((status, headers, body),) = _read_responses(sock, 1)
        assert (status, body) == (200, b"vieux")
        assert headers.get("connection") == "close"
        sock.settimeout(5)
        assert sock.recv(10) == b""


def test_chunked_body_takes_the_full_path_and_is_answered(serve):
    server = serve(make_sim())
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"POST /fast-echo HTTP/1.1\r\nHost: sim\r\nContent-Type: text/plain\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n4\r\nmorc\r\n4\r\neaux\r\n0\r\n\r\n")
        ((status, _, body),) = _read_responses(sock, 1)
    assert (status, body) == (200, b"morceaux")
    assert _entries(server)[0]["request"]["body"] == "morceaux"


def test_handler_failure_is_a_clean_500_and_the_connection_lives_on(serve):
    server = serve(make_sim())
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(_post("/fast-echo", b"boom") + _post("/fast-echo", b"encore"))
        (status, headers, body), (status2, _, body2) = _read_responses(sock, 2)
    assert status == 500 and headers["content-type"].startswith("application/problem+json")
    assert "référence" in json.loads(body)["detail"] and b"Traceback" not in body and b"RuntimeError" not in body
    assert (status2, body2) == (200, b"encore")


def test_a_header_that_would_split_the_answer_never_reaches_the_wire(serve):
    server = serve(make_sim())
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(_post("/fast-echo", b"split") + _post("/fast-echo", b"ok"))
        (status, headers, body), (status2, _, body2) = _read_responses(sock, 2)
    assert status == 500 and "set-cookie" not in headers and b"set-cookie" not in body
    assert (status2, body2) == (200, b"ok")


def test_a_stored_fault_rule_sends_fast_routes_through_the_fault_engine(serve):
    server = serve(make_sim())
    with httpx.Client(base_url=server.url) as c:
        add_rule(c, service="echo", operation="POST /fast-echo", effect={"type": "latency", "ms": 300})
        add_rule(c, service="echo", operation="POST /fast-echo", effect={"type": "outcome", "name": "refus"})
        started = time.monotonic()
        resp = c.post("/fast-echo", content=b"x")
        elapsed = time.monotonic() - started
        assert resp.status_code == 409 and resp.json() == {"result": "refused"}
        assert elapsed >= 0.29
        assert c.delete("/_bench/faults").status_code == 200
        assert c.post("/fast-echo", content=b"y").status_code == 200  # inline again
        entries = c.get("/_bench/journal").json()["entries"]
    assert [e["outcome"] for e in entries] == ["refus", None]
    assert len(entries[0]["faults"]) == 2 and entries[1]["faults"] == []


def test_a_client_cannot_choose_the_business_outcome(serve):
    server = serve(make_sim())
    resp = httpx.post(f"{server.url}/fast-echo", content=b"x", headers={"x-segur-bench-outcome": "refus"})
    assert resp.status_code == 200


def test_oversized_body_is_refused_with_413(serve):
    server = serve(make_sim(max_request_bytes=1000))
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(_post("/fast-echo", b"x" * 2000))
        ((status, headers, _),) = _read_responses(sock, 1)
    assert status == 413 and headers["content-type"].startswith("application/problem+json")
