"""Slow and greedy clients (issue 16): read deadlines and the per-worker connection cap (read_limits.py).

Raw sockets, so the bytes and their timing are what the test says: half a request line, a body trickled
below the minimum rate, a connection that never speaks, more connections than the cap.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from core_support import make_sim

from simulators.core.read_limits import ReadLimits

FAST = ReadLimits(header_timeout_s=0.6, body_timeout_s=0.6, body_min_rate=1000, idle_timeout_s=0.8,
                  max_connections=1000)


def _connect(server) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    start = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"still open after {timeout} s; received {data!r}") from None
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - start


def _journal_operations(server) -> list[str]:
    return [e["operation"] for e in httpx.get(f"{server.url}/_bench/journal").json()["entries"]]


def test_unfinished_headers_get_408_and_the_connection_closes(serve):
    server = serve(make_sim(limits=FAST))
    sock = _connect(server)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: sim\r\nContent-Type: te")  # and nothing more
    data, waited = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert b"connection: close" in data.lower()
    assert 0.5 < waited < 3.0
    assert httpx.post(f"{server.url}/echo", content=b"ok").status_code == 200  # the worker still serves


@pytest.mark.parametrize("path", ["/echo", "/fast-echo"])  # a Flask route, and the inline fast path
def test_a_trickled_body_below_the_minimum_rate_gets_408_and_is_not_served(serve, path):
    server = serve(make_sim(limits=FAST))
    sock = _connect(server)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"
                 .encode())
    start = time.monotonic()
    sock.settimeout(0.2)
    data = b""
    for _ in range(40):  # one byte every 0.1 s: 10 bytes/s, far below 1000
        try:
            sock.sendall(b"x")
            data += sock.recv(65536)
            break  # the server answered (or closed)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    rest, _ = _read_until_closed(sock)
    data += rest
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert time.monotonic() - start < 3.0
    assert path not in " ".join(_journal_operations(server))  # the partial request was not served


def test_a_large_body_at_a_decent_rate_is_not_cut(serve):
    """The body deadline grows with what arrives: 8 KB in 1.6 s is above the rate and past the 0.6 s base."""
    server = serve(make_sim(limits=FAST))
    sock = _connect(server)
    body = b"y" * 8000
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: sim\r\nContent-Type: text/plain\r\nContent-Length: 8000\r\n\r\n")
    for i in range(0, len(body), 1000):
        sock.sendall(body[i:i + 1000])
        time.sleep(0.2)
    sock.settimeout(5)
    head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200 "), head
    sock.close()


def test_a_connection_that_never_speaks_is_closed(serve):
    server = serve(make_sim(limits=FAST))
    sock = _connect(server)
    data, waited = _read_until_closed(sock)
    assert data == b""
    assert 0.6 < waited < 3.0


def test_a_chunked_body_that_stops_gets_408(serve):
    server = serve(make_sim(limits=FAST))
    sock = _connect(server)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: sim\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                 b"\r\n5\r\nhello\r\n")  # no last chunk
    data, _ = _read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert "POST /echo" not in _journal_operations(server)


def test_connections_beyond_the_cap_get_503_and_the_worker_recovers(serve):
    server = serve(make_sim(limits=ReadLimits(max_connections=5)))
    held = [_connect(server) for _ in range(5)]
    try:
        time.sleep(0.2)
        extra = _connect(server)
        data, _ = _read_until_closed(extra)
        assert data.startswith(b"HTTP/1.1 503 "), data
        assert b"retry-after: 1" in data.lower()
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert httpx.post(f"{server.url}/echo", content=b"ok").status_code == 200


def test_limits_are_validated():
    with pytest.raises(ValueError, match="header_timeout_s"):
        ReadLimits(header_timeout_s=0)
    with pytest.raises(ValueError, match="max_connections"):
        ReadLimits(max_connections=0)
