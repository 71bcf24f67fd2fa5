"""The PSC login page, driven in a real browser as a professional would use it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet

from .conftest import CLIENT_ID, CLIENT_SECRET, KIT, REDIRECT_URI, Psc


def _authorize(browser, psc: Psc, decision: str) -> dict[str, list[str]]:
    """Open the authorization URL, pick KIT DOC0036624 with e-CPS, click the decision; return the callback query."""
    client = OAuth2Client(CLIENT_ID, CLIENT_SECRET, scope="openid scope_all", redirect_uri=REDIRECT_URI,
                          code_challenge_method="S256")
    verifier = "v" * 64
    url, _state = client.create_authorization_url(
        psc.endpoint("auth"), nonce="n-0S6_WzA2Mj", acr_values="eidas1",
        code_verifier=verifier, code_challenge=create_s256_code_challenge(verifier))
    captured: dict[str, str] = {}
    page = browser.new_page()
    # Nothing listens on the LGC's callback here: the browser hands the redirect to the test instead.
    page.route("http://127.0.0.1:8000/**", lambda route: (captured.setdefault("url", route.request.url),
                                                          route.fulfill(status=200, body="ok")))
    page.goto(url)
    assert "Pro Santé Connect" in page.content()
    page.check(f"input[name=national_id][value='{KIT}']")
    page.get_by_label("e-CPS", exact=False).first.check()
    page.click(f"button[value={decision}]")
    page.wait_for_url("http://127.0.0.1:8000/**")
    page.close()
    return parse_qs(urlsplit(captured["url"]).query) | {"_verifier": [verifier]}


def test_login_in_a_browser_then_code_exchange_by_a_third_party_client(browser, psc: Psc) -> None:
    query = _authorize(browser, psc, "approve")
    assert "code" in query, query
    client = OAuth2Client(CLIENT_ID, CLIENT_SECRET, redirect_uri=REDIRECT_URI)
    token = client.fetch_token(psc.endpoint("token"), grant_type="authorization_code", code=query["code"][0],
                               code_verifier=query["_verifier"][0])
    keys = KeySet.import_key_set(psc.http.get(psc.endpoint("certs")).json())
    claims = jwt.decode(token["id_token"], keys).claims
    assert claims["acr"] == "eidas1"
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    userinfo = psc.http.get(psc.endpoint("userinfo"), headers={"Authorization": f"Bearer {token['access_token']}"})
    assert userinfo.json()["SubjectNameID"] == KIT


def test_refusing_in_the_browser_returns_access_denied(browser, psc: Psc) -> None:
    query = _authorize(browser, psc, "refuse")
    assert query.get("error") == ["access_denied"]
    assert "code" not in query
