"""Authorization code flow driven by a third-party client (authlib's httpx OAuth2Client), not our server code."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from .conftest import CLIENT_ID, CLIENT_SECRET, KIT, REDIRECT_URI, ROBERT, Psc


def oauth_client(**kw) -> OAuth2Client:
    kw.setdefault("client_id", CLIENT_ID)
    kw.setdefault("client_secret", CLIENT_SECRET)
    return OAuth2Client(scope="openid scope_all", redirect_uri=REDIRECT_URI, code_challenge_method="S256", **kw)


def authorize_url(psc: Psc, client: OAuth2Client) -> tuple[str, str, str]:
    verifier, nonce = generate_token(48), generate_token(16)
    url, _state = client.create_authorization_url(psc.endpoint("auth"), code_verifier=verifier, nonce=nonce,
                                                  acr_values="eidas1")
    return url, verifier, nonce


def login(url: str, browser: httpx.Client | None = None, **form: str) -> tuple[str, httpx.Client]:
    """Play the professional on the login page: GET it, then post the form; return the redirect Location."""
    browser = browser or httpx.Client(timeout=10)
    page = browser.get(url)
    assert page.status_code == 200, page.text
    assert "Valider" in page.text and "Refuser" in page.text and "e-CPS" in page.text
    data = {"national_id": KIT, "moyen": "CPS", "decision": "approve", **form}
    resp = browser.post(url, data=data)  # no redirect following: the LGC's redirect URI needs no server
    assert resp.status_code == 302, resp.text
    return resp.headers["location"], browser


def test_discovery_documents(psc: Psc):
    for name in ("openid-configuration", "wallet-openid-configuration"):
        conf = httpx.get(f"{psc.issuer}/.well-known/{name}").json()
        assert conf["issuer"] == psc.issuer
        assert conf["token_endpoint"] == psc.endpoint("token")
        assert conf["backchannel_authentication_endpoint"] == psc.endpoint("ext/ciba/auth")
        assert "urn:openid:params:grant-type:ciba" in conf["grant_types_supported"]
        assert {"client_secret_basic", "client_secret_post", "private_key_jwt"} <= set(
            conf["token_endpoint_auth_methods_supported"])
        assert conf["backchannel_token_delivery_modes_supported"] == ["poll"]
    jwks = httpx.get(conf["jwks_uri"]).json()
    assert jwks["keys"][0]["kty"] == "RSA" and "d" not in jwks["keys"][0]


def test_full_code_flow_with_pkce(psc: Psc):
    client = oauth_client()
    url, verifier, nonce = authorize_url(psc, client)
    location, browser = login(url)
    assert location.startswith(REDIRECT_URI + "?")
    assert "code" in parse_qs(urlsplit(location).query)

    token = client.fetch_token(psc.endpoint("token"), authorization_response=location, code_verifier=verifier)
    assert token["token_type"] == "Bearer"
    assert 0 < token["expires_in"] <= 300
    assert token["refresh_token"] and token["refresh_expires_in"] == 1800 and token["session_state"]

    # ID token verified against the published JWKS
    conf = httpx.get(psc.issuer + "/.well-known/wallet-openid-configuration").json()
    keys = KeySet.import_key_set(httpx.get(conf["jwks_uri"]).json())
    id_token = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": psc.issuer}, aud={"essential": True, "value": CLIENT_ID},
        nonce={"essential": True, "value": nonce}, acr={"essential": True, "value": "eidas1"},
        idp={"essential": True, "value": "PSC"}, auth_time={"essential": True}, exp={"essential": True},
    ).validate(id_token.claims)
    assert id_token.claims["sub"].endswith(":" + KIT)

    # userinfo, GET then POST
    info = client.get(psc.endpoint("userinfo"))
    assert info.status_code == 200, info.text
    body = info.json()
    assert body["sub"] == id_token.claims["sub"]
    assert body["SubjectNameID"] == KIT
    assert client.post(psc.endpoint("userinfo")).json() == body

    # refresh: a new access token (and a rotated refresh token), old refresh token is spent
    old_refresh = token["refresh_token"]
    new = client.refresh_token(psc.endpoint("token"))
    assert new["access_token"] != token["access_token"] and new["refresh_token"] != old_refresh
    assert jwt.decode(new["id_token"], keys).claims["acr"] == "eidas1"
    assert client.get(psc.endpoint("userinfo")).status_code == 200
    reused = httpx.post(psc.endpoint("token"), data={"grant_type": "refresh_token", "refresh_token": old_refresh},
                        auth=(CLIENT_ID, CLIENT_SECRET))
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

    # introspection
    intro = client.introspect_token(psc.endpoint("token/introspect"), token=new["access_token"]).json()
    assert intro["active"] is True and intro["username"] == KIT and intro["client_id"] == CLIENT_ID

    # logout with redirect, then every token of the session is dead
    resp = browser.get(psc.endpoint("logout"), params={
        "id_token_hint": new["id_token"], "post_logout_redirect_uri": "http://127.0.0.1:8000/", "state": "bye"})
    assert resp.status_code == 302 and resp.headers["location"] == "http://127.0.0.1:8000/?state=bye"
    assert client.get(psc.endpoint("userinfo")).status_code == 401
    intro = client.introspect_token(psc.endpoint("token/introspect"), token=new["access_token"]).json()
    assert intro == {"active": False}
    again = httpx.post(psc.endpoint("token"), data={"grant_type": "refresh_token",
                                                    "refresh_token": new["refresh_token"]},
                       auth=(CLIENT_ID, CLIENT_SECRET))
    assert again.json()["error"] == "invalid_grant"


def test_userinfo_has_the_psc_shape(psc: Psc):
    client = oauth_client()
    url, verifier, _ = authorize_url(psc, client)
    location, _ = login(url, national_id_saisi=KIT, moyen="e-CPS")
    client.fetch_token(psc.endpoint("token"), authorization_response=location, code_verifier=verifier)
    info = client.get(psc.endpoint("userinfo")).json()
    assert info["given_name"] == "KIT" and info["family_name"] == "DOC0036624"
    assert info["preferred_username"] == KIT
    assert info["SubjectRole"] == ["10^1.2.250.1.213.1.1.5.5"]
    assert info["Secteur_Activite"] == "SA07^1.2.250.1.71.4.2.4"
    assert info["PSI_Locale"] == "1.2.250.1.213.1.3.1.1"
    assert info["Palier_Authentification"] == "APPPRIP3^1.2.250.1.213.1.5.1.1.1"
    assert info["otherIds"][0] == {"identifiant": KIT, "origine": "RPPS", "qualite": 1}
    exercice = info["SubjectRefPro"]["exercices"][0]
    assert info["SubjectRefPro"]["codeCivilite"] == "M"
    assert exercice["codeProfession"] == "10" and exercice["codeSavoirFaire"] == "SM26"
    assert exercice["codeCiviliteDexercice"] == "DR"
    hospital = exercice["activities"][1]
    assert hospital["numeroFinessSite"] == "0B0172805"
    assert hospital["raisonSocialeSite"] == "HOPITAL GENERIQUE FIN VARI"
    assert hospital["codeSecteurDactivite"] == "SA01" and hospital["codeModeExercice"] == "S"


def test_sso_second_login_needs_no_form_and_prompt_login_forces_it(psc: Psc):
    client = oauth_client()
    url, _, _ = authorize_url(psc, client)
    _, browser = login(url, national_id=ROBERT)
    url2, _, _ = authorize_url(psc, client)
    again = browser.get(url2)
    assert again.status_code == 302 and again.headers["location"].startswith(REDIRECT_URI + "?code=")
    reused_nonce = browser.get(url2)  # same nonce in a new request: accepted (nonces protect ID tokens, not requests)
    assert reused_nonce.status_code == 302 and "code=" in reused_nonce.headers["location"]
    url3, _, _ = authorize_url(psc, client)
    forced = browser.get(url3 + "&prompt=login")
    assert forced.status_code == 200 and "Valider" in forced.text


def test_refusal_redirects_with_access_denied(psc: Psc):
    client = oauth_client()
    url, _, _ = authorize_url(psc, client)
    location, _ = login(url, decision="refuse")
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == ["access_denied"] and "state" in query


def test_unknown_national_id_stays_on_the_page(psc: Psc):
    client = oauth_client()
    url, _, _ = authorize_url(psc, client)
    browser = httpx.Client(timeout=10)
    resp = browser.post(url, data={"national_id_saisi": "800000000000", "decision": "approve"})
    assert resp.status_code == 200 and "Identifiant national inconnu" in resp.text


def test_prompt_none_without_session_gives_login_required(psc: Psc):
    client = oauth_client()
    url, _, _ = authorize_url(psc, client)
    resp = httpx.get(url + "&prompt=none")
    assert resp.status_code == 302 and "error=login_required" in resp.headers["location"]


def test_client_secret_post_and_private_key_jwt(psc: Psc):
    key = RSAKey.generate_key(2048, private=True)
    key.ensure_kid()
    psc.control("POST", "/state", {"clients": [{
        "client_id": "lgc-jwt", "redirect_uris": [REDIRECT_URI],
        "jwks": KeySet([key]).as_dict(private=False)}]})
    token_url = psc.endpoint("token")
    client = OAuth2Client("lgc-jwt", key.as_dict(private=True), scope="openid scope_all", redirect_uri=REDIRECT_URI,
                          code_challenge_method="S256", token_endpoint_auth_method=PrivateKeyJWT(token_url))
    url, verifier, _ = authorize_url(psc, client)
    location, _ = login(url)
    token = client.fetch_token(token_url, authorization_response=location, code_verifier=verifier)
    assert token["id_token"]

    post_client = oauth_client(token_endpoint_auth_method="client_secret_post")
    url, verifier, _ = authorize_url(psc, post_client)
    location, _ = login(url)
    assert post_client.fetch_token(token_url, authorization_response=location, code_verifier=verifier)["id_token"]


# ------------------------------------------------------------------------------------------------ errors


def _code(psc: Psc) -> tuple[str, str]:
    client = oauth_client()
    url, verifier, _ = authorize_url(psc, client)
    location, _ = login(url)
    return parse_qs(urlsplit(location).query)["code"][0], verifier


def _assert_oauth_error(resp: httpx.Response, status: int, error: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json()["error"] == error
    assert "Traceback" not in resp.text


@pytest.mark.parametrize(("data", "auth", "status", "error"), [
    ({"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT_URI}, (CLIENT_ID, "wrong"), 401,
     "invalid_client"),
    ({"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT_URI}, ("nobody", "x"), 401,
     "invalid_client"),
    ({"grant_type": "authorization_code", "code": "nope", "redirect_uri": REDIRECT_URI}, None, 400, "invalid_grant"),
    ({"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI}, None, 400, "invalid_request"),
    ({"grant_type": "password", "username": "a", "password": "b"}, None, 400, "unsupported_grant_type"),
    ({"grant_type": "refresh_token", "refresh_token": "nope"}, None, 400, "invalid_grant"),
    ({"grant_type": "urn:openid:params:grant-type:ciba"}, None, 400, "invalid_request"),
])
def test_token_endpoint_errors_are_oauth_json(psc: Psc, data, auth, status, error):
    resp = httpx.post(psc.endpoint("token"), data=data, auth=auth or (CLIENT_ID, CLIENT_SECRET))
    _assert_oauth_error(resp, status, error)


def test_pkce_verifier_mismatch_and_code_reuse(psc: Psc):
    code, verifier = _code(psc)
    base = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    bad = httpx.post(psc.endpoint("token"), data={**base, "code_verifier": generate_token(48)},
                     auth=(CLIENT_ID, CLIENT_SECRET))
    _assert_oauth_error(bad, 400, "invalid_grant")
    ok = httpx.post(psc.endpoint("token"), data={**base, "code_verifier": verifier}, auth=(CLIENT_ID, CLIENT_SECRET))
    assert ok.status_code == 200, ok.text
    reuse = httpx.post(psc.endpoint("token"), data={**base, "code_verifier": verifier},
                       auth=(CLIENT_ID, CLIENT_SECRET))
    _assert_oauth_error(reuse, 400, "invalid_grant")


def test_code_expires_with_the_simulated_clock(psc: Psc):
    code, verifier = _code(psc)
    psc.advance("PT2M")
    resp = httpx.post(psc.endpoint("token"), data={"grant_type": "authorization_code", "code": code,
                                                   "redirect_uri": REDIRECT_URI, "code_verifier": verifier},
                      auth=(CLIENT_ID, CLIENT_SECRET))
    _assert_oauth_error(resp, 400, "invalid_grant")


def test_authorize_with_unregistered_redirect_uri_does_not_redirect(psc: Psc):
    resp = httpx.get(psc.endpoint("auth"), params={
        "client_id": CLIENT_ID, "response_type": "code", "scope": "openid scope_all",
        "redirect_uri": "https://evil.example/cb", "state": "s"})
    assert resp.status_code == 400 and "location" not in resp.headers
    assert resp.json()["error"] == "invalid_request"
    unknown = httpx.get(psc.endpoint("auth"), params={"client_id": "nobody", "response_type": "code"})
    assert unknown.status_code in (400, 401) and unknown.json()["error"] == "invalid_client"


def test_userinfo_and_introspection_errors(psc: Psc):
    _assert_oauth_error(httpx.get(psc.endpoint("userinfo")), 401, "invalid_token")
    _assert_oauth_error(httpx.get(psc.endpoint("userinfo"), headers={"Authorization": "Bearer abc.def.ghi"}), 401,
                        "invalid_token")
    _assert_oauth_error(httpx.post(psc.endpoint("token/introspect"), data={"token": "x"}), 401, "invalid_client")
    _assert_oauth_error(httpx.post(psc.endpoint("token/introspect"), data={}, auth=(CLIENT_ID, CLIENT_SECRET)), 400,
                        "invalid_request")
    inactive = httpx.post(psc.endpoint("token/introspect"), data={"token": "x"}, auth=(CLIENT_ID, CLIENT_SECRET))
    assert inactive.json() == {"active": False}


def test_access_token_expires_with_the_simulated_clock(psc: Psc):
    client = oauth_client()
    url, verifier, _ = authorize_url(psc, client)
    location, _ = login(url)
    client.fetch_token(psc.endpoint("token"), authorization_response=location, code_verifier=verifier)
    assert client.get(psc.endpoint("userinfo")).status_code == 200
    psc.advance("PT6M")
    _assert_oauth_error(httpx.get(psc.endpoint("userinfo"),
                                  headers={"Authorization": "Bearer " + client.token["access_token"]}),
                        401, "invalid_token")
    assert client.refresh_token(psc.endpoint("token"))["access_token"]  # refresh still valid (30 min)
    psc.advance("PT31M")
    with pytest.raises(Exception, match="invalid_grant"):
        client.refresh_token(psc.endpoint("token"))
