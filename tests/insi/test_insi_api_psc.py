"""INSi through the API Pro Santé Connectée (SC.INS/PSC.50): a bearer token obtained by token exchange at PSC, on
top of the PS assertion and the ContexteLPS. Tokens are minted here with joserfc and a key of the test's own, the
requests are the hand-written envelopes of messages.py, posted with httpx."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from siram_fault import read_fault

from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.insi.app import SPEC

from .conftest import NSMAP
from .messages import SECURITY_PSC, SOAP_CT, envelope, traits_body

ISSUER = "http://psc.test/auth/realms/esante-wallet"
KEY = RSAKey.generate_key(2048, private=True)
KEY.ensure_kid()
OTHER_KEY = RSAKey.generate_key(2048, private=True)
OTHER_KEY.ensure_kid()
NID = "899700366240"  # the NameID of SECURITY_PSC
CLERICO = traits_body("CLERICO", ["COME"], "M", "1943-11-07")


def token(nid: str = NID, *, exp_in: int = 3600, aud: str = "api-pro-sante-connectee", key: RSAKey = KEY) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": f"f:550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd:{nid}", "aud": aud, "exp": now + exp_in,
              "iat": now - 10, "SubjectNameID": nid, "azp": "lgc"}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


def _serve(mode: str) -> Iterator[httpx.Client]:
    settings = {"auth_mode": mode, "psc_issuer": ISSUER, "psc_jwks": KeySet([KEY]).as_dict(private=False),
                "psc_audience": "api-pro-sante-connectee"}
    with serve_in_thread(build_simulator(SPEC, SimConfig(settings=settings))) as server, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def api_psc() -> Iterator[httpx.Client]:
    yield from _serve("psc")


@pytest.fixture(scope="module")
def assertion_mode() -> Iterator[httpx.Client]:
    yield from _serve("assertion")


def post(http: httpx.Client, bearer: str | None, security: str | None = SECURITY_PSC) -> httpx.Response:
    headers = {"Content-Type": SOAP_CT}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    return http.post("/lps", content=envelope(CLERICO, security=security).encode(), headers=headers)


def assert_refused_token(resp: httpx.Response, *words: str) -> None:
    assert resp.status_code == 401, resp.text
    challenge = resp.headers.get("www-authenticate", "")
    assert challenge.startswith('Bearer error="invalid_token"'), challenge
    fault = read_fault(resp)
    assert fault.subcode.endswith("siram_30") and fault.detail_code == "desir_530", fault
    for word in words:
        assert word in fault.detail, (word, fault.detail)


def test_token_and_assertion_get_the_answer(api_psc):
    resp = post(api_psc, token())
    assert resp.status_code == 200, resp.text
    assert resp.content.count(b"CodeCR>00<") == 1  # CLERICO found


def test_no_bearer_is_401_in_api_psc_mode(api_psc):
    assert_refused_token(post(api_psc, None), "Authorization")


def test_expired_token(api_psc):
    assert_refused_token(post(api_psc, token(exp_in=-600)), "expired")


def test_token_of_an_unknown_key(api_psc):
    assert_refused_token(post(api_psc, token(key=OTHER_KEY)))


def test_token_for_another_api(api_psc):
    assert_refused_token(post(api_psc, token(aud="api-mss")), "audience")


def test_token_of_another_professional_than_the_assertion(api_psc):
    assert_refused_token(post(api_psc, token("899700218896")), "899700366240", "899700218896")


def test_the_assertion_is_still_required(api_psc):
    """The PS assertion is still required with the API PSC (DSR, Espace de confiance PSC): a token alone is a
    security fault of the assertion, with the platform's usual status."""
    resp = post(api_psc, token(), security="")
    fault = read_fault(resp)
    assert resp.status_code == 500 and fault.detail_code == "desir_530", fault
    assert "www-authenticate" not in resp.headers


def test_assertion_mode_judges_a_token_when_one_is_sent(assertion_mode):
    assert post(assertion_mode, None).status_code == 200
    assert post(assertion_mode, token()).status_code == 200
    assert_refused_token(post(assertion_mode, token(exp_in=-600)), "expired")


def test_a_garbled_bearer_is_401_without_a_traceback(api_psc):
    resp = post(api_psc, "not.a.jwt")
    assert_refused_token(resp)
    assert "Traceback" not in resp.text and NSMAP["soap"] in resp.text
