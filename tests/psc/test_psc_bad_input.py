"""Bad input gets the OAuth error, never a 500 (issue 16). Requests are written by hand."""

from __future__ import annotations

import base64
import json

import pytest

from .conftest import CLIENT_ID, REDIRECT_URI


@pytest.mark.parametrize("param", ["redirect_uri", "state", "scope"])
def test_control_characters_in_an_authorization_request_are_invalid_request(psc, param):
    params = {"client_id": CLIENT_ID, "response_type": "code", "scope": "openid", "redirect_uri": REDIRECT_URI,
              "state": "s1"}
    params[param] += "\r\nX-Injecte: 1"
    resp = psc.http.get(psc.endpoint("auth"), params=params, follow_redirects=False)
    # Not redirected: the redirect_uri itself may be the bad one (RFC 6749 §4.1.2.1)
    assert resp.status_code == 400 and "location" not in resp.headers, resp.text
    assert resp.json()["error"] == "invalid_request" and param in resp.json()["error_description"]
    assert "X-Injecte" not in resp.text


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_client_assertion_for_a_client_without_keys_is_invalid_client(psc):
    assertion = ".".join((_b64({"alg": "RS256", "typ": "JWT"}), _b64({"iss": CLIENT_ID, "sub": CLIENT_ID}),
                          "c2lnbmF0dXJl"))
    resp = psc.http.post(psc.endpoint("token"), data={
        "grant_type": "authorization_code", "code": "inconnu", "redirect_uri": REDIRECT_URI, "client_id": CLIENT_ID,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})
    assert resp.status_code in (400, 401), resp.text
    assert resp.json()["error"] == "invalid_client"
