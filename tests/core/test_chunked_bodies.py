"""Chunked request bodies reach every route, Flask-routed ones and the control API included (issue 16: they arrived
empty). Raw sockets send the bytes, so chunk sizes, chunk extensions and trailers are what the test says."""

from __future__ import annotations

import json
import socket

import pytest
from core_support import make_sim
from test_inline_path import _read_responses


def _chunked(path: str, chunks: list[bytes], *, content_type: str = "text/plain", extension: bytes = b"",
             trailer: bytes = b"") -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(c), extension, c) for c in chunks)
    return head + body + b"0\r\n" + trailer + b"\r\n"


BODY = "données découpées en morceaux".encode()


@pytest.mark.parametrize(("chunks", "extension", "trailer"), [
    ([BODY[:7], BODY[7:]], b"", b""),
    ([BODY[i:i + 1] for i in range(len(BODY))], b"", b""),  # one-byte chunks
    ([BODY[:10], BODY[10:]], b";name=value;other", b""),  # chunk extensions (RFC 9112 §7.1.1)
    ([BODY], b"", b"X-Trailer: fin\r\n"),  # a trailer section
], ids=["two-chunks", "one-byte-chunks", "chunk-extensions", "trailer"])
def test_a_flask_route_gets_the_whole_chunked_body(serve, chunks, extension, trailer):
    server = serve(make_sim())
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(_chunked("/echo", chunks, extension=extension, trailer=trailer))
        ((status, _, body),) = _read_responses(sock, 1)
    assert (status, body) == (200, BODY)


def test_the_control_api_gets_a_chunked_json_body(serve):
    server = serve(make_sim())
    rule = json.dumps({"effect": {"type": "http_status", "status": 503}, "match": {"path": "/echo"}}).encode()
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(_chunked("/_bench/faults", [rule[:5], rule[5:20], rule[20:]], content_type="application/json"))
        ((status, _, body),) = _read_responses(sock, 1)
    assert status == 201, body
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(_chunked("/echo", [b"x"]))
        ((status, _, _),) = _read_responses(sock, 1)
    assert status == 503  # the rule sent in chunks was stored whole


def test_a_pipelined_request_after_a_chunked_one_is_answered(serve):
    server = serve(make_sim())
    plain = b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nsuite"
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(_chunked("/echo", [b"pre", b"mier"]) + plain)
        (s1, _, b1), (s2, _, b2) = _read_responses(sock, 2)
    assert (s1, b1, s2, b2) == (200, b"premier", 200, b"suite")
