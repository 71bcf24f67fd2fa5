"""Issue 15, Pro Santé Connect wire points, judged by a third-party RP library (pyoidc `oic`) or by hand-written
requests whose JWTs are decoded independently (joserfc against the published JWKS).

* max_age / prompt=login force a new authentication, auth_time is the real one (OIDC Core §3.1.2.1, §2);
* an expired auth_req_id answers expired_token even after approval (CIBA Core §11);
* /revoke (RFC 7009) and the revocation of tokens issued from a replayed code (RFC 6749 §4.1.2, §10.5);
* token exchange error codes and configured audiences (RFC 8693 §2.2.2), token_type "Bearer";
* a nonce used again in a new authorization request is accepted.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from oic.oauth2.message import ErrorResponse
from oic.oic import Client as OicClient
from oic.oic.message import (
    AccessTokenResponse,
    AuthorizationResponse,
    ProviderConfigurationResponse,
    RegistrationResponse,
)
from oic.utils import time_util
from oic.utils.authn.client import CLIENT_AUTHN_METHOD

from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.psc.app import SPEC

from .conftest import CLIENT_ID, CLIENT_SECRET, KIT, REDIRECT_URI, ROBERT, Psc

AUTH = (CLIENT_ID, CLIENT_SECRET)
CIBA = "urn:openid:params:grant-type:ciba"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


def sim_epoch(psc: Psc) -> int:
    now = psc.control("GET", "/clock")["now"]
    return int(datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp())


def keys(psc: Psc) -> KeySet:
    return KeySet.import_key_set(httpx.get(psc.endpoint("certs")).json())


def claims_of(psc: Psc, token: str) -> dict:
    return jwt.decode(token, keys(psc), algorithms=["RS256"]).claims


def error_of(resp: httpx.Response, status: int = 400) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert "Traceback" not in resp.text
    return resp.json()["error"]


def auth_params(**extra: str) -> dict:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return {"client_id": CLIENT_ID, "response_type": "code", "scope": "openid scope_all", "redirect_uri": REDIRECT_URI,
            "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8), "acr_values": "eidas1",
            "code_challenge": challenge, "code_challenge_method": "S256", "_verifier": verifier, **extra}


def auth_url(psc: Psc, params: dict) -> str:
    return psc.endpoint("auth") + "?" + urlencode({k: v for k, v in params.items() if not k.startswith("_")})


def login_page(browser: httpx.Client, url: str, national_id: str = KIT) -> str:
    """The login page must be shown; post it and return the redirect Location."""
    page = browser.get(url)
    assert page.status_code == 200 and "Valider" in page.text, (page.status_code, page.headers.get("location"))
    resp = browser.post(url, data={"national_id": national_id, "moyen": "CPS", "decision": "approve"})
    assert resp.status_code == 302, resp.text
    return resp.headers["location"]


def code_of(location: str) -> str:
    query = parse_qs(urlsplit(location).query)
    assert "code" in query, location
    return query["code"][0]


def redeem(psc: Psc, code: str, params: dict) -> httpx.Response:
    return httpx.post(psc.endpoint("token"), auth=AUTH, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": params["_verifier"]})


def code_flow_tokens(psc: Psc, browser: httpx.Client | None = None, **extra: str) -> dict:
    params = auth_params(**extra)
    resp = redeem(psc, code_of(login_page(browser or httpx.Client(timeout=10), auth_url(psc, params))), params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def bearer(token: str) -> dict:
    return {"Authorization": "Bearer " + token}


# ------------------------------------------------------------------------------------------------ pyoidc client


@pytest.fixture
def rp(psc: Psc, monkeypatch: pytest.MonkeyPatch) -> OicClient:
    """pyoidc's RP, configured from our discovery document and JWKS; its clock is the simulator's clock so that its
    own max_age / exp / iat checks judge our tokens against simulated time."""
    monkeypatch.setattr(time_util, "utc_time_sans_frac", lambda: sim_epoch(psc))
    client = OicClient(client_authn_method=CLIENT_AUTHN_METHOD)
    # provider_config() refuses plain-http issuers (the test server is on loopback http): feed it the same document.
    conf = ProviderConfigurationResponse(**httpx.get(psc.issuer + "/.well-known/openid-configuration").json())
    client.handle_provider_config(conf, psc.issuer)
    client.store_registration_info(RegistrationResponse(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                                        redirect_uris=[REDIRECT_URI]))
    client.redirect_uris = [REDIRECT_URI]
    return client


def rp_authorize(rp: OicClient, **extra) -> tuple[str, dict]:
    state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
    args = {"client_id": CLIENT_ID, "response_type": "code", "scope": ["openid", "scope_all"], "state": state,
            "nonce": nonce, "redirect_uri": REDIRECT_URI, **extra}
    req = rp.construct_AuthorizationRequest(request_args=args)
    rp.authz_req[state] = req  # what oic's Consumer keeps to check the ID token against the request
    return req.request(rp.authorization_endpoint), args


def rp_token(rp: OicClient, location: str, state: str) -> AccessTokenResponse:
    aresp = rp.parse_response(AuthorizationResponse, info=urlsplit(location).query, sformat="urlencoded")
    assert not isinstance(aresp, ErrorResponse), aresp.to_dict()
    token = rp.do_access_token_request(state=state, request_args={"code": aresp["code"]},
                                       authn_method="client_secret_basic")
    assert isinstance(token, AccessTokenResponse), token.to_dict()
    # The RP's own ID token validation: iss, aud, exp, nonce, acr and auth_time against max_age (OIDC Core §3.1.3.7)
    rp.verify_id_token(token["id_token"], rp.authz_req[state])
    return token


# ------------------------------------------------------------------------------------------------ 1. max_age


def test_max_age_older_than_the_session_forces_a_new_login_and_a_fresh_auth_time(psc: Psc, rp: OicClient):
    browser = httpx.Client(timeout=10)
    url, args = rp_authorize(rp)
    first = rp_token(rp, login_page(browser, url), args["state"])
    first_auth = first["id_token"]["auth_time"]
    psc.advance("PT10M")
    url, args = rp_authorize(rp, max_age=300)
    # The SSO session is 10 minutes old: the OP must authenticate again instead of answering at once.
    token = rp_token(rp, login_page(browser, url), args["state"])
    assert token["id_token"]["auth_time"] >= first_auth + 600
    assert abs(token["id_token"]["auth_time"] - sim_epoch(psc)) <= 5


def test_max_age_within_the_session_age_is_answered_by_sso_with_the_original_auth_time(psc: Psc, rp: OicClient):
    browser = httpx.Client(timeout=10)
    url, args = rp_authorize(rp)
    first = rp_token(rp, login_page(browser, url), args["state"])
    psc.advance("PT2M")
    url, args = rp_authorize(rp, max_age=3600)
    sso = browser.get(url)
    assert sso.status_code == 302, sso.text
    token = rp_token(rp, sso.headers["location"], args["state"])
    assert token["id_token"]["auth_time"] == first["id_token"]["auth_time"]  # no new authentication happened


def test_prompt_login_authenticates_again_and_auth_time_follows(psc: Psc, rp: OicClient):
    browser = httpx.Client(timeout=10)
    url, args = rp_authorize(rp)
    first = rp_token(rp, login_page(browser, url), args["state"])
    psc.advance("PT1M")
    url, args = rp_authorize(rp, prompt="login")
    token = rp_token(rp, login_page(browser, url), args["state"])
    assert token["id_token"]["auth_time"] >= first["id_token"]["auth_time"] + 60


def test_max_age_zero_always_authenticates_again(psc: Psc):
    browser = httpx.Client(timeout=10)
    code_flow_tokens(psc, browser)
    params = auth_params(max_age="0")
    tokens = redeem(psc, code_of(login_page(browser, auth_url(psc, params))), params).json()
    assert "auth_time" in claims_of(psc, tokens["id_token"])


def test_max_age_with_prompt_none_and_an_old_session_gives_login_required(psc: Psc):
    browser = httpx.Client(timeout=10)
    code_flow_tokens(psc, browser)
    psc.advance("PT10M")
    resp = browser.get(auth_url(psc, auth_params(max_age="60", prompt="none")))
    assert resp.status_code == 302
    assert parse_qs(urlsplit(resp.headers["location"]).query)["error"] == ["login_required"]


@pytest.mark.parametrize("value", ["abc", "-5", "1.5"])
def test_bad_max_age_is_invalid_request(psc: Psc, value: str):
    resp = httpx.get(auth_url(psc, auth_params(max_age=value)))
    assert resp.status_code == 302
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    assert query["error"] == ["invalid_request"] and "max_age" in query["error_description"][0]


# ------------------------------------------------------------------------------------------------ 5. nonce reuse


def test_a_nonce_used_again_in_a_new_authorization_request_is_accepted(psc: Psc):
    browser = httpx.Client(timeout=10)
    first = auth_params(nonce="same-nonce")
    first_code = code_of(login_page(browser, auth_url(psc, first)))  # not redeemed yet
    again = auth_params(nonce="same-nonce")
    resp = browser.get(auth_url(psc, again))  # SSO: answered at once, with a code, not an error
    assert resp.status_code == 302
    again_code = code_of(resp.headers["location"])
    for code, params in ((first_code, first), (again_code, again)):
        tokens = redeem(psc, code, params)
        assert tokens.status_code == 200, tokens.text
        assert claims_of(psc, tokens.json()["id_token"])["nonce"] == "same-nonce"


# ------------------------------------------------------------------------------------------------ 2. CIBA expiry


def ciba_start(psc: Psc, national_id: str = KIT) -> str:
    resp = httpx.post(psc.endpoint("ext/ciba/auth"), auth=AUTH, data={
        "scope": "openid scope_all", "acr_values": "eidas1", "login_hint": national_id, "binding_message": "42"})
    assert resp.status_code == 200, resp.text
    return resp.json()["auth_req_id"]


def ciba_poll(psc: Psc, auth_req_id: str) -> httpx.Response:
    return httpx.post(psc.endpoint("token"), auth=AUTH, data={"grant_type": CIBA, "auth_req_id": auth_req_id})


def test_ciba_approved_but_polled_after_expiry_is_expired_token(psc: Psc):
    psc.control("POST", "/state", {"ciba_auto_approve_s": None})
    auth_req_id = ciba_start(psc)
    psc.control("POST", "/state", {"ciba": {"auth_req_id": auth_req_id, "decision": "approve"}})
    psc.advance("PT3M")  # expires_in is 120 s
    assert error_of(ciba_poll(psc, auth_req_id)) == "expired_token"


def test_ciba_auto_approved_but_polled_after_expiry_is_expired_token(psc: Psc):
    auth_req_id = ciba_start(psc)  # the simulated phone approves after 3 s
    psc.advance("PT3M")
    assert error_of(ciba_poll(psc, auth_req_id)) == "expired_token"


def test_ciba_refused_then_expired_is_expired_token_and_pending_errors_stay(psc: Psc):
    psc.control("POST", "/state", {"ciba_auto_approve_s": None})
    auth_req_id = ciba_start(psc, ROBERT)
    assert error_of(ciba_poll(psc, auth_req_id)) == "authorization_pending"
    assert error_of(ciba_poll(psc, auth_req_id)) == "slow_down"
    psc.control("POST", "/state", {"ciba": {"auth_req_id": auth_req_id, "decision": "refuse"}})
    psc.advance("PT10S")
    assert error_of(ciba_poll(psc, auth_req_id)) == "access_denied"
    psc.advance("PT3M")
    assert error_of(ciba_poll(psc, auth_req_id)) == "expired_token"


# ------------------------------------------------------------------------------------------------ 3. revocation


def revoke(psc: Psc, token: str, auth: tuple[str, str] | None = AUTH, **extra: str) -> httpx.Response:
    return httpx.post(psc.issuer + "/protocol/openid-connect/revoke", auth=auth, data={"token": token, **extra})


def refresh(psc: Psc, refresh_token: str) -> httpx.Response:
    return httpx.post(psc.endpoint("token"), auth=AUTH, data={"grant_type": "refresh_token",
                                                              "refresh_token": refresh_token})


def introspect(psc: Psc, token: str) -> dict:
    return httpx.post(psc.endpoint("token/introspect"), auth=AUTH, data={"token": token}).json()


def test_discovery_advertises_the_revocation_endpoint(psc: Psc):
    conf = httpx.get(psc.issuer + "/.well-known/wallet-openid-configuration").json()
    assert conf["revocation_endpoint"] == psc.issuer + "/protocol/openid-connect/revoke"
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt"} <= set(
        conf["revocation_endpoint_auth_methods_supported"])


def test_revoking_an_unknown_token_answers_200(psc: Psc):
    resp = revoke(psc, "no-such-token")
    assert resp.status_code == 200, resp.text
    resp = revoke(psc, "no-such-token", token_type_hint="refresh_token")
    assert resp.status_code == 200, resp.text


def test_revocation_needs_client_authentication_and_a_token(psc: Psc):
    assert error_of(revoke(psc, "x", auth=(CLIENT_ID, "wrong")), 401) == "invalid_client"
    assert error_of(revoke(psc, "x", auth=None), 401) == "invalid_client"
    missing = httpx.post(psc.issuer + "/protocol/openid-connect/revoke", auth=AUTH, data={})
    assert error_of(missing) == "invalid_request"


def test_revoking_the_refresh_token_makes_a_later_refresh_fail(psc: Psc):
    tokens = code_flow_tokens(psc)
    # client_secret_post, like on the token endpoint
    resp = httpx.post(psc.issuer + "/protocol/openid-connect/revoke", data={
        "token": tokens["refresh_token"], "token_type_hint": "refresh_token", "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET})
    assert resp.status_code == 200, resp.text
    assert error_of(refresh(psc, tokens["refresh_token"])) == "invalid_grant"
    # RFC 7009 §2.1: access tokens of the same grant are invalidated too
    assert introspect(psc, tokens["access_token"]) == {"active": False}


def test_revoking_the_access_token_makes_userinfo_and_introspection_reject_it(psc: Psc):
    tokens = code_flow_tokens(psc)
    assert httpx.get(psc.endpoint("userinfo"), headers=bearer(tokens["access_token"])).status_code == 200
    # a wrong hint must not stop the server from finding the token (RFC 7009 §2.1)
    assert revoke(psc, tokens["access_token"], token_type_hint="refresh_token").status_code == 200
    assert error_of(httpx.get(psc.endpoint("userinfo"), headers=bearer(tokens["access_token"])), 401) == \
        "invalid_token"
    assert introspect(psc, tokens["access_token"]) == {"active": False}
    # only the access token was revoked: the refresh token still works
    assert refresh(psc, tokens["refresh_token"]).status_code == 200


def test_a_client_cannot_revoke_another_clients_token(psc: Psc):
    psc.control("POST", "/state", {"clients": [{"client_id": "other", "client_secret": "other-secret",
                                                "redirect_uris": [REDIRECT_URI]}]})
    tokens = code_flow_tokens(psc)
    resp = revoke(psc, tokens["access_token"], auth=("other", "other-secret"))
    assert resp.status_code in (400, 401) and resp.json()["error"] in ("invalid_grant", "unauthorized_client")
    assert httpx.get(psc.endpoint("userinfo"), headers=bearer(tokens["access_token"])).status_code == 200


def test_tokens_issued_from_a_replayed_code_are_revoked(psc: Psc):
    params = auth_params()
    code = code_of(login_page(httpx.Client(timeout=10), auth_url(psc, params)))
    first = redeem(psc, code, params)
    assert first.status_code == 200, first.text
    tokens = first.json()
    refreshed = refresh(psc, tokens["refresh_token"]).json()  # tokens derived from the same code
    assert error_of(redeem(psc, code, params)) == "invalid_grant"
    for access in (tokens["access_token"], refreshed["access_token"]):
        assert error_of(httpx.get(psc.endpoint("userinfo"), headers=bearer(access)), 401) == "invalid_token"
        assert introspect(psc, access) == {"active": False}
    assert error_of(refresh(psc, refreshed["refresh_token"])) == "invalid_grant"


# ------------------------------------------------------------------------------------------------ 4. token exchange


def ciba_access_token(psc: Psc) -> dict:
    auth_req_id = ciba_start(psc)
    psc.control("POST", "/state", {"ciba": {"auth_req_id": auth_req_id, "decision": "approve"}})
    resp = ciba_poll(psc, auth_req_id)
    assert resp.status_code == 200, resp.text
    return resp.json()


def exchange(psc: Psc, data: dict | list) -> httpx.Response:
    return httpx.post(psc.endpoint("token"), auth=AUTH, data=data if isinstance(data, dict) else None,
                      content=urlencode(data) if isinstance(data, list) else None,
                      headers={"Content-Type": "application/x-www-form-urlencoded"} if isinstance(data, list) else None)


def exchange_form(subject_token: str, **extra: str) -> dict:
    return {"grant_type": EXCHANGE, "subject_token": subject_token, "subject_token_type": ACCESS,
            "subject_issuer": "psc", **extra}


def test_token_exchange_error_codes(psc: Psc):
    token = ciba_access_token(psc)["access_token"]
    form = exchange_form(token)
    # malformed or missing parameters: invalid_request
    assert error_of(exchange(psc, {k: v for k, v in form.items() if k != "subject_token"})) == "invalid_request"
    assert error_of(exchange(psc, {k: v for k, v in form.items() if k != "subject_token_type"})) == "invalid_request"
    assert error_of(exchange(psc, {**form, "subject_token_type": "urn:x:unknown"})) == "invalid_request"
    assert error_of(exchange(psc, [*form.items(), ("subject_token", token)])) == "invalid_request"  # repeated
    assert error_of(exchange(psc, {**form, "subject_token": ""})) == "invalid_request"  # empty = omitted
    # a subject token that is not valid is invalid_request too: RFC 8693 §2.2.2 says MUST (not invalid_grant)
    assert error_of(exchange(psc, exchange_form("not-a-token"))) == "invalid_request"
    assert error_of(exchange(psc, exchange_form(token[:-4] + "AAAA"))) == "invalid_request"
    psc.advance("PT6M")  # the PSC access token is now expired
    assert error_of(exchange(psc, exchange_form(token))) == "invalid_request"
    token = ciba_access_token(psc)["access_token"]
    form = exchange_form(token)
    # a target that is not allowed: invalid_target (RFC 8693 §2.2.2)
    assert error_of(exchange(psc, {**form, "audience": "api-inconnue"})) == "invalid_target"
    assert error_of(exchange(psc, {**form, "resource": "https://evil.example/api"})) == "invalid_target"
    assert error_of(exchange(psc, [*form.items(), ("audience", "api-dmp"), ("audience", "nope")])) == \
        "invalid_target"


def test_token_exchange_accepts_the_default_audiences(psc: Psc):
    token = ciba_access_token(psc)["access_token"]
    for audience in ("api-pro-sante-connectee", "api-dmp", "api-on"):
        resp = exchange(psc, exchange_form(token, audience=audience))
        assert resp.status_code == 200, resp.text
        assert claims_of(psc, resp.json()["access_token"])["aud"] == audience
    empty = exchange(psc, exchange_form(token, audience=""))  # empty = omitted (RFC 6749 §3.2): the default
    assert claims_of(psc, empty.json()["access_token"])["aud"] == "api-pro-sante-connectee"
    both = exchange(psc, [*exchange_form(token).items(), ("audience", "api-dmp"), ("audience", "api-on")])
    assert both.status_code == 200, both.text
    assert sorted(claims_of(psc, both.json()["access_token"])["aud"]) == ["api-dmp", "api-on"]


@pytest.fixture
def configured_psc() -> Iterator[Psc]:
    settings = {"token_exchange_audiences": ["api-editeur-x", "https://api.example/fhir"]}
    with serve_in_thread(build_simulator(SPEC, SimConfig(settings=settings))) as server, \
            httpx.Client(timeout=10) as http:
        yield Psc(server.url, http)


def test_token_exchange_audiences_come_from_the_configuration(configured_psc: Psc):
    psc = configured_psc
    token = ciba_access_token(psc)["access_token"]
    ok = exchange(psc, exchange_form(token, audience="api-editeur-x"))
    assert ok.status_code == 200, ok.text
    assert claims_of(psc, ok.json()["access_token"])["aud"] == "api-editeur-x"
    by_resource = exchange(psc, exchange_form(token, resource="https://api.example/fhir"))
    assert claims_of(psc, by_resource.json()["access_token"])["aud"] == "https://api.example/fhir"
    assert error_of(exchange(psc, exchange_form(token, audience="api-dmp"))) == "invalid_target"


def test_token_type_is_bearer_in_every_token_response(psc: Psc):
    code_tokens = code_flow_tokens(psc)
    ciba_tokens = ciba_access_token(psc)
    refreshed = refresh(psc, code_tokens["refresh_token"]).json()
    exchanged = exchange(psc, exchange_form(ciba_tokens["access_token"], audience="api-dmp")).json()
    for body in (code_tokens, ciba_tokens, refreshed, exchanged):
        assert body["token_type"] == "Bearer", body
    assert exchanged["issued_token_type"] == ACCESS
    assert introspect(psc, exchanged["access_token"])["token_type"] == "Bearer"


def test_the_lookup_across_token_types_does_not_let_one_type_stand_for_the_other(psc: Psc):
    tokens = code_flow_tokens(psc)
    # an access token is no refresh token, even though revocation/introspection search both kinds
    assert error_of(refresh(psc, tokens["access_token"])) == "invalid_grant"
    logout = httpx.post(psc.endpoint("logout"), auth=AUTH, data={"refresh_token": tokens["access_token"]})
    assert logout.status_code == 400 and logout.json()["error"] == "invalid_grant"
    assert httpx.get(psc.endpoint("userinfo"), headers=bearer(tokens["access_token"])).status_code == 200
    assert error_of(httpx.get(psc.endpoint("userinfo"), headers=bearer(tokens["refresh_token"])), 401) == \
        "invalid_token"
