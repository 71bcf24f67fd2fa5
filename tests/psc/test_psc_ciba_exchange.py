"""CIBA poll mode, token exchange (RFC 8693), business outcomes, control API and trainer page."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from simulators.core.tokens import InvalidToken, TokenValidator

from .conftest import CLIENT_ID, CLIENT_SECRET, KIT, ROBERT, Psc

AUTH = (CLIENT_ID, CLIENT_SECRET)
CIBA = "urn:openid:params:grant-type:ciba"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


def start(psc: Psc, national_id: str = KIT, **extra: str) -> dict:
    resp = httpx.post(psc.endpoint("ext/ciba/auth"), auth=AUTH, data={
        "scope": "openid scope_all", "acr_values": "eidas1", "login_hint": national_id,
        "binding_message": "42", "channel": "MOBILE", **extra})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"auth_req_id", "expires_in", "interval"}
    return body


def poll(psc: Psc, auth_req_id: str) -> httpx.Response:
    return httpx.post(psc.endpoint("token"), auth=AUTH, data={"grant_type": CIBA, "auth_req_id": auth_req_id})


def error_of(resp: httpx.Response) -> str:
    assert resp.status_code in (400, 401), resp.text
    assert "Traceback" not in resp.text
    return resp.json()["error"]


def ciba_token(psc: Psc, national_id: str = KIT) -> dict:
    req = start(psc, national_id)
    psc.control("POST", "/state", {"ciba": {"auth_req_id": req["auth_req_id"], "decision": "approve"}})
    resp = poll(psc, req["auth_req_id"])
    assert resp.status_code == 200, resp.text
    return resp.json()


def sim_now(psc: Psc) -> datetime:
    return datetime.fromisoformat(psc.control("GET", "/clock")["now"].replace("Z", "+00:00"))


# ------------------------------------------------------------------------------------------------ CIBA


def test_ciba_auto_approval_after_the_phone_delay(psc: Psc):
    req = start(psc)
    assert req["expires_in"] == 120 and req["interval"] == 5
    assert error_of(poll(psc, req["auth_req_id"])) == "authorization_pending"
    assert error_of(poll(psc, req["auth_req_id"])) == "slow_down"  # polled again at once
    psc.advance("PT6S")  # the simulated phone answered after 3 s
    resp = poll(psc, req["auth_req_id"])
    assert resp.status_code == 200, resp.text
    token = resp.json()
    keys = KeySet.import_key_set(httpx.get(psc.endpoint("certs")).json())
    claims = jwt.decode(token["id_token"], keys).claims
    assert claims["acr"] == "eidas1" and claims["sub"].endswith(KIT) and claims["aud"] == CLIENT_ID
    info = httpx.get(psc.endpoint("userinfo"), headers={"Authorization": "Bearer " + token["access_token"]})
    assert info.json()["SubjectNameID"] == KIT
    assert error_of(poll(psc, req["auth_req_id"])) == "invalid_grant"  # used once only


def test_ciba_refused_through_the_control_api(psc: Psc):
    psc.control("POST", "/state", {"ciba_auto_approve_s": None})
    req = start(psc, ROBERT)
    state = psc.control("POST", "/state", {"ciba": {"auth_req_id": req["auth_req_id"], "decision": "refuse"}})
    assert state["state"]["ciba"][0]["status"] == "refuse"
    assert error_of(poll(psc, req["auth_req_id"])) == "access_denied"


def test_ciba_expires_when_nobody_answers(psc: Psc):
    psc.control("POST", "/state", {"ciba_auto_approve_s": None})
    req = start(psc)
    psc.advance("PT1M")
    assert error_of(poll(psc, req["auth_req_id"])) == "authorization_pending"
    psc.advance("PT2M")
    assert error_of(poll(psc, req["auth_req_id"])) == "expired_token"
    late = httpx.post(psc.url + "/_bench/state", json={"ciba": {"auth_req_id": req["auth_req_id"],
                                                                  "decision": "approve"}})
    assert late.status_code == 400 and "no longer pending" in late.json()["detail"]


def test_ciba_outcomes_refusal_and_timeout(psc: Psc):
    psc.control("POST", "/faults", {"operation": "ciba", "first": 1,
                                    "effect": {"type": "outcome", "name": "psc.ciba-refus"}})
    refused = start(psc)
    psc.advance("PT10S")
    assert error_of(poll(psc, refused["auth_req_id"])) == "access_denied"
    psc.control("POST", "/faults", {"operation": "ciba", "match": {"attrs": {"national_id": ROBERT}},
                                    "effect": {"type": "outcome", "name": "psc.ciba-expire"}})
    silent = start(psc, ROBERT)
    psc.advance("PT3M")
    assert error_of(poll(psc, silent["auth_req_id"])) == "expired_token"


def test_ciba_trainer_page(psc: Psc):
    psc.control("POST", "/state", {"ciba_auto_approve_s": None})
    req = start(psc, binding_message="73")
    page = httpx.get(psc.url + "/_bench/psc/ciba")
    assert page.status_code == 200 and "73" in page.text and "en attente" in page.text
    resp = httpx.post(psc.url + "/_bench/psc/ciba", data={"auth_req_id": req["auth_req_id"], "decision": "approve"})
    assert resp.status_code == 303
    assert poll(psc, req["auth_req_id"]).status_code == 200


@pytest.mark.parametrize(("data", "auth", "error"), [
    ({"scope": "openid", "login_hint": "800000000000"}, AUTH, "unknown_user_id"),
    ({"scope": "openid"}, AUTH, "invalid_request"),
    ({"scope": "scope_all", "login_hint": KIT}, AUTH, "invalid_request"),
    ({"scope": "openid", "login_hint": KIT}, (CLIENT_ID, "bad"), "invalid_client"),
    ({"scope": "openid unknown", "login_hint": KIT}, AUTH, "invalid_scope"),
])
def test_ciba_request_errors(psc: Psc, data, auth, error):
    assert error_of(httpx.post(psc.endpoint("ext/ciba/auth"), auth=auth, data=data)) == error


def test_ciba_poll_with_unknown_id_or_other_client(psc: Psc):
    assert error_of(poll(psc, "nope")) == "invalid_grant"


# ------------------------------------------------------------------------------------------------ token exchange


def exchange(psc: Psc, subject_token: str, **extra: str) -> httpx.Response:
    return httpx.post(psc.endpoint("token"), auth=AUTH, data={
        "grant_type": EXCHANGE, "subject_token": subject_token, "subject_token_type": ACCESS,
        "subject_issuer": "psc", **extra})


def test_token_exchange_gives_a_long_lived_api_token(psc: Psc):
    psc_token = ciba_token(psc)
    resp = exchange(psc, psc_token["access_token"], audience="api-dmp")
    assert resp.status_code == 200, resp.text
    api = resp.json()
    assert api["issued_token_type"] == ACCESS and api["token_type"] == "Bearer"
    assert api["expires_in"] == 4 * 3600 and "refresh_token" not in api

    validator = TokenValidator(psc.issuer, jwks_url=psc.endpoint("certs"), audience="api-dmp",
                               clock=lambda: sim_now(psc))
    caller = validator.validate("Bearer " + api["access_token"])
    assert caller.national_id == KIT and caller.client_id == CLIENT_ID
    assert caller.professional().prenom == "KIT"
    with pytest.raises(InvalidToken, match="wrong audience"):
        validator.validate(psc_token["access_token"])

    psc.advance("PT1H")  # the PSC token is dead, the API token lives on
    assert error_of(exchange(psc, psc_token["access_token"])) == "invalid_request"  # RFC 8693 §2.2.2
    assert validator.validate(api["access_token"]).national_id == KIT
    intro = httpx.post(psc.endpoint("token/introspect"), auth=AUTH, data={"token": api["access_token"]}).json()
    assert intro["active"] is True and intro["aud"] == "api-dmp"
    psc.advance("PT4H")
    with pytest.raises(InvalidToken, match="expired"):
        validator.validate(api["access_token"])


def test_token_exchange_default_audience_and_errors(psc: Psc):
    token = ciba_token(psc)["access_token"]
    api = exchange(psc, token).json()
    assert jwt.decode(api["access_token"], KeySet.import_key_set(httpx.get(psc.endpoint("certs")).json())
                      ).claims["aud"] == "api-pro-sante-connectee"
    assert error_of(exchange(psc, token, subject_token_type="urn:ietf:params:oauth:token-type:id_token")) == \
        "invalid_request"
    assert error_of(exchange(psc, token, subject_issuer="other")) == "invalid_request"
    # RFC 8693 §2.2.2: an invalid subject token is invalid_request (MUST), not invalid_grant
    assert error_of(exchange(psc, "garbage")) == "invalid_request"
    assert error_of(exchange(psc, api["access_token"])) == "invalid_request"  # an API token is not a PSC token
    no_subject = httpx.post(psc.endpoint("token"), auth=AUTH, data={"grant_type": EXCHANGE})
    assert error_of(no_subject) == "invalid_request"


# ------------------------------------------------------------------------------------------------ outcomes


def test_outcome_expired_tokens(psc: Psc):
    psc.control("POST", "/faults", {"operation": "token", "effect": {"type": "outcome", "name": "psc.jeton-expire"}})
    token = ciba_token(psc)
    claims = jwt.decode(token["access_token"], KeySet.import_key_set(httpx.get(psc.endpoint("certs")).json())).claims
    assert claims["exp"] < claims["iat"]
    info = httpx.get(psc.endpoint("userinfo"), headers={"Authorization": "Bearer " + token["access_token"]})
    assert error_of(info) == "invalid_token"


def test_outcome_userinfo_401_and_token_error(psc: Psc):
    token = ciba_token(psc)
    psc.control("POST", "/faults", {"operation": "userinfo", "first": 1,
                                    "effect": {"type": "outcome", "name": "psc.userinfo-401"}})
    bearer = {"Authorization": "Bearer " + token["access_token"]}
    assert error_of(httpx.get(psc.endpoint("userinfo"), headers=bearer)) == "invalid_token"
    assert httpx.get(psc.endpoint("userinfo"), headers=bearer).status_code == 200
    psc.control("POST", "/faults", {"operation": "token", "match": {"attrs": {"grant_type": "refresh_token"}},
                                    "effect": {"type": "outcome", "name": "psc.token-erreur"}})
    refreshed = httpx.post(psc.endpoint("token"), auth=AUTH, data={"grant_type": "refresh_token",
                                                                   "refresh_token": token["refresh_token"]})
    assert error_of(refreshed) == "invalid_grant"


def test_state_lists_clients_and_rejects_bad_input(psc: Psc):
    state = psc.control("GET", "/state")["state"]
    assert [c["client_id"] for c in state["clients"]] == [CLIENT_ID]
    assert CLIENT_SECRET not in str(state)
    for body in ({"nope": 1}, {"ciba": {"auth_req_id": "x", "decision": "approve"}},
                 {"clients": [{"client_id": "x"}]}, {"ciba_auto_approve_s": -1}):
        resp = httpx.post(psc.url + "/_bench/state", json=body)
        assert resp.status_code == 400, body
