"""A fault rule's body_regex is matched by RE2 (linear time) on the event loop: no pattern can freeze a worker."""

from __future__ import annotations

from core_support import add_rule


def test_a_catastrophic_pattern_cannot_freeze_the_worker(client):
    """(a+)+$ against 40 'a' and a '!' takes Python's backtracking engine about 2^40 steps: the worker froze and
    its in-flight requests got no answer (issue 16). Matched by RE2, in linear time, the rule simply does not match
    and the request is answered (the client's 10-s timeout is the only clock here)."""
    rule = add_rule(client, effect={"type": "http_status", "status": 503}, match={"body_regex": "(a+)+$"})
    try:
        resp = client.post("/echo", content=b"a" * 40 + b"!", headers={"content-type": "text/plain"})
        assert resp.status_code == 200 and resp.content == b"a" * 40 + b"!"
        assert client.post("/echo", content=b"aaaa").status_code == 503  # and it still matches what it should
    finally:
        client.delete(f"/_bench/faults/{rule['id']}")
