"""Pro Santé Connect hardening (issue 16), with requests built here by hand (httpx):

* the control API no longer overwrites a registered client silently: a client_id already registered with other
  metadata is a 409 problem unless the body says "replace": true, and a replacement is logged (never the secret).
"""

from __future__ import annotations

import logging

import httpx
import pytest

from .conftest import BASE, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, Psc

AUTH = (CLIENT_ID, CLIENT_SECRET)
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def oidc(url: str, name: str) -> str:
    return f"{url}{BASE}/protocol/openid-connect/{name}"


def seed(url: str, body: object) -> httpx.Response:
    return httpx.post(url + "/_bench/state", json=body, timeout=10)


def secret_works(url: str, client_id: str, secret: str) -> bool:
    """Client authentication at the introspection endpoint: 200 with the right secret, 401 otherwise."""
    resp = httpx.post(oidc(url, "token/introspect"), auth=(client_id, secret), data={"token": "x"}, timeout=10)
    assert resp.status_code in (200, 401), resp.text
    return resp.status_code == 200


# ------------------------------------------------------------------------------------ clients: no silent overwrite

HOSTILE = {"client_id": CLIENT_ID, "client_secret": "attacker-secret",
           "redirect_uris": ["http://127.0.0.1:9999/auth/callback"]}


def test_an_existing_client_is_not_overwritten_without_replace(psc: Psc):
    before = psc.control("GET", "/state")["state"]["clients"]
    resp = seed(psc.url, {"clients": [HOSTILE]})
    assert resp.status_code == 409
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["status"] == 409 and CLIENT_ID in problem["detail"] and '"replace": true' in problem["detail"]
    assert "attacker-secret" not in resp.text
    assert psc.control("GET", "/state")["state"]["clients"] == before
    assert secret_works(psc.url, CLIENT_ID, CLIENT_SECRET)
    assert not secret_works(psc.url, CLIENT_ID, "attacker-secret")


def test_a_conflict_changes_nothing_else_in_the_same_body(psc: Psc):
    newcomer = {"client_id": "new-rp", "client_secret": "new-secret", "redirect_uris": [REDIRECT_URI]}
    resp = seed(psc.url, {"clients": [newcomer, HOSTILE], "ciba_auto_approve_s": 99})
    assert resp.status_code == 409
    state = psc.control("GET", "/state")["state"]
    assert "new-rp" not in [c["client_id"] for c in state["clients"]]
    assert state["ciba_auto_approve_s"] != 99


def test_replace_true_replaces_and_logs_the_client_id_but_not_the_secret(psc: Psc, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="segur_bench.psc"):
        resp = seed(psc.url, {"clients": [HOSTILE], "replace": True})
    assert resp.status_code == 200, resp.text
    assert secret_works(psc.url, CLIENT_ID, "attacker-secret")
    assert not secret_works(psc.url, CLIENT_ID, CLIENT_SECRET)
    logged = [r.getMessage() for r in caplog.records if r.name == "segur_bench.psc"]
    assert any(CLIENT_ID in m and "replaced" in m for m in logged), logged
    assert not any("attacker-secret" in m or CLIENT_SECRET in m for m in caplog.text.splitlines())
    # reset brings the configured client back
    psc.control("POST", "/reset")
    assert secret_works(psc.url, CLIENT_ID, CLIENT_SECRET)


def test_new_clients_and_identical_registrations_are_accepted(psc: Psc):
    client = {"client_id": "rp-2", "client_secret": "s2", "redirect_uris": [REDIRECT_URI]}
    assert seed(psc.url, {"clients": [client]}).status_code == 200
    assert seed(psc.url, {"clients": [client]}).status_code == 200  # the same metadata again: nothing overwritten
    changed = {**client, "client_secret": "s3"}
    assert seed(psc.url, {"clients": [changed]}).status_code == 409
    assert secret_works(psc.url, "rp-2", "s2")


@pytest.mark.parametrize("body", [
    {"clients": [HOSTILE], "replace": "yes"},
    {"replace": True},
    {"clients": [{"client_id": "twice", "public": True}, {"client_id": "twice", "public": True}]},
])
def test_bad_replace_requests_are_400(psc: Psc, body):
    assert seed(psc.url, body).status_code == 400
    assert secret_works(psc.url, CLIENT_ID, CLIENT_SECRET)


def test_the_openapi_document_says_409(psc: Psc):
    doc = httpx.get(psc.url + "/_bench/openapi.json", timeout=10).json()
    post = doc["paths"]["/_bench/state"]["post"]
    assert "409" in post["responses"] and '"replace": true' in post["description"]
