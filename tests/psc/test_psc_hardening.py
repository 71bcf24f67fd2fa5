"""Pro Santé Connect hardening (issue 16), with requests built here by hand (httpx):

* the control API no longer overwrites a registered client silently: a client_id already registered with other
  metadata is a 409 problem unless the body says "replace": true, and a replacement is logged (never the secret);
* the journal (which goes into proof bundles) masks client secrets, tokens, codes, PKCE verifiers, client assertions,
  Authorization headers and cookies, unless the setting journal_secrets = "clair" asks to keep them.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.psc.app import SPEC

from .conftest import BASE, CLIENT_ID, CLIENT_SECRET, KIT, REDIRECT_URI, Psc

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


# ------------------------------------------------------------------------------------ journal: secrets masked


def _jwt_client(url: str) -> tuple[str, RSAKey]:
    key = RSAKey.generate_key(2048, private=True)
    key.ensure_kid()
    resp = seed(url, {"clients": [{"client_id": "rp-jwt", "redirect_uris": [REDIRECT_URI],
                                   "jwks": KeySet([key]).as_dict(private=False)}]})
    assert resp.status_code == 200, resp.text
    return "rp-jwt", key


def exercise(url: str) -> dict[str, str]:
    """Every kind of credential PSC sees, sent by hand: code flow with PKCE and Basic auth, userinfo with a Bearer
    header, refresh with client_secret_post, introspection, token exchange, private_key_jwt, logout with
    id_token_hint, a browser cookie of another app on the same host. Returns the values that must not leak."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
                       "scope": "openid scope_all", "state": "st", "nonce": "no", "acr_values": "eidas1",
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    lgc_cookie = "lgc-session-" + secrets.token_hex(8)
    browser = httpx.Client(timeout=10)
    assert browser.get(oidc(url, "auth") + "?" + query, headers={"Cookie": f"lgc_session={lgc_cookie}"}) \
        .status_code == 200
    login = browser.post(oidc(url, "auth") + "?" + query, data={"national_id": KIT, "moyen": "CPS",
                                                                 "decision": "approve"})
    assert login.status_code == 302, login.text
    code = parse_qs(urlsplit(login.headers["location"]).query)["code"][0]
    sso = login.cookies["PSC_SESSION"]
    first = httpx.post(oidc(url, "token"), auth=AUTH, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier})
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert httpx.get(oidc(url, "userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"}) \
        .status_code == 200
    second = httpx.post(oidc(url, "token"), data={"grant_type": "refresh_token", "client_id": CLIENT_ID,
                                                 "client_secret": CLIENT_SECRET,
                                                 "refresh_token": tokens["refresh_token"]}).json()
    assert httpx.post(oidc(url, "token/introspect"), auth=AUTH, data={"token": second["access_token"]}) \
        .json()["active"] is True
    api = httpx.post(oidc(url, "token"), auth=AUTH, data={
        "grant_type": EXCHANGE, "subject_token": second["access_token"], "subject_token_type": ACCESS,
        "subject_issuer": "psc"}).json()
    client_id, key = _jwt_client(url)
    now = int(time.time())
    assertion = jwt.encode({"alg": "RS256", "kid": key.kid}, {
        "iss": client_id, "sub": client_id, "aud": oidc(url, "token"), "jti": str(uuid.uuid4()), "iat": now,
        "exp": now + 60}, key)
    resp = httpx.post(oidc(url, "token/introspect"), data={"token": api["access_token"], "client_assertion_type":
                                                           JWT_BEARER, "client_assertion": assertion})
    assert resp.status_code == 200, resp.text
    browser.get(oidc(url, "logout"), params={"id_token_hint": second["id_token"],
                                             "post_logout_redirect_uri": "http://127.0.0.1:8000/"})
    return {
        "client secret": CLIENT_SECRET,
        "Basic credentials": base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode(),
        "code": code, "code_verifier": verifier, "PSC session cookie": sso, "LGC session cookie": lgc_cookie,
        "access token": tokens["access_token"], "id token": tokens["id_token"],
        "refresh token": tokens["refresh_token"], "refreshed access token": second["access_token"],
        "refreshed id token": second["id_token"], "rotated refresh token": second["refresh_token"],
        "API token": api["access_token"], "client assertion": assertion,
    }


def journal_texts(url: str) -> dict[str, str]:
    return {fmt: httpx.get(url + "/_bench/journal", params={"format": fmt}, timeout=10).text
            for fmt in ("json", "jsonl", "har")}


def test_the_journal_masks_secrets_and_tokens(psc: Psc):
    values = exercise(psc.url)
    for fmt, text in journal_texts(psc.url).items():
        leaked = sorted(name for name, value in values.items() if value in text)
        assert not leaked, f"{fmt} journal shows {leaked}"
    entries = httpx.get(psc.url + "/_bench/journal", timeout=10).json()["entries"]
    token_calls = [e for e in entries if e["url"].endswith("/token")]
    first = token_calls[0]
    # What is not secret stays, so the journal still proves the exchange.
    assert "grant_type=authorization_code" in first["request"]["body"]
    assert "code_verifier=***MASQUE:" in first["request"]["body"]
    assert ["Authorization", f"Basic ***MASQUE*** (client_id {CLIENT_ID})"] in \
        [[k.title(), v] for k, v in first["request"]["headers"]]
    assert "client_secret=***MASQUE***&" in token_calls[1]["request"]["body"]
    # A token keeps a fingerprint: the one issued is recognisable where it is used.
    mark = f"***MASQUE:{hashlib.sha256(values['access token'].encode()).hexdigest()[:8]}***"
    assert mark in first["response"]["body"]
    userinfo = next(e for e in entries if e["url"].endswith("/userinfo"))
    assert ["authorization", f"Bearer {mark}"] in [[k.lower(), v] for k, v in userinfo["request"]["headers"]]


@pytest.fixture(scope="module")
def psc_clear() -> Iterator[str]:
    sim = build_simulator(SPEC, SimConfig(settings={"journal_secrets": "clair"}))
    with serve_in_thread(sim) as server:
        yield server.url


def test_journal_secrets_clair_keeps_them_for_debugging(psc_clear: str):
    values = exercise(psc_clear)
    text = journal_texts(psc_clear)["json"]
    missing = sorted(name for name, value in values.items() if value not in text)
    assert not missing, f"journal_secrets = clair should keep {missing}"
    assert "MASQUE" not in text


def test_an_unknown_journal_secrets_value_is_refused():
    with pytest.raises(ValueError, match="journal_secrets"):
        build_simulator(SPEC, SimConfig(settings={"journal_secrets": "non"}))
