"""MSSanté's own control routes read their input with the core's bounds (issue 16: each was a 500)."""

from __future__ import annotations

import pytest

from .conftest import KIT_BAL, ROBERT_BAL


def _problem(resp, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    return resp.json()


@pytest.mark.parametrize("route", ["/_bench/mss/inject", "/_bench/mss/mdn"])
def test_deep_or_non_json_bodies_are_400(mss, route):
    url = f"{mss.server.url}{route}"
    deep = _problem(mss.http.post(url, content=b"[" * 50_000 + b"]" * 50_000), 400)
    assert "nested deeper" in deep["detail"]
    _problem(mss.http.post(url, content=b'{"from": NaN}'), 400)


@pytest.mark.parametrize("body", [
    b'{"from": "%s", "to": ["%s"], "attachments": [3]}' % (ROBERT_BAL.encode(), KIT_BAL.encode()),
    b'{"from": "%s", "to": ["%s"], "attachments": [{"filename": "a.txt"}]}' % (ROBERT_BAL.encode(),
                                                                             KIT_BAL.encode()),
])
def test_injection_of_the_wrong_shape_is_400_without_python_text(mss, body):
    detail = _problem(mss.http.post(f"{mss.server.url}/_bench/mss/inject", content=body), 400)["detail"]
    for python in ("TypeError", "KeyError", "object is not subscriptable", "Traceback"):
        assert python not in detail
    assert mss.inbox(KIT_BAL) == []  # nothing half-delivered


def test_a_20_digit_uid_is_404_and_a_bad_limit_is_400(mss):
    base = mss.server.url
    assert mss.http.get(f"{base}/_bench/mss/mailboxes/{KIT_BAL}/messages/99999999999999999999").status_code == 404
    _problem(mss.http.get(f"{base}/_bench/mss/findings", params={"limit": "abc"}), 400)
    _problem(mss.http.get(f"{base}/_bench/mss/findings", params={"limit": "99999999999999999999"}), 400)
