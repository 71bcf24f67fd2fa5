"""simulators.core.tokens.TokenValidator: tokens made here with joserfc, not with the PSC simulator's code."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from simulators.core.tokens import InvalidToken, TokenValidator

ISSUER = "http://psc.test/auth/realms/esante-wallet"
NOW = 1_800_000_000


def new_key() -> RSAKey:
    key = RSAKey.generate_key(2048, private=True)
    key.ensure_kid()
    return key


KEY = new_key()


def jwks(*keys: RSAKey) -> dict:
    return KeySet(list(keys)).as_dict(private=False)


def make(key: RSAKey = KEY, **overrides: object) -> str:
    claims = {"iss": ISSUER, "sub": "f:550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd:899700366240", "aud": "api-pro",
              "exp": NOW + 300, "iat": NOW, "azp": "segur-bench-lgc", "scope": "openid scope_all",
              "SubjectNameID": "899700366240"}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


def validator(**kw: object) -> TokenValidator:
    kw.setdefault("audience", "api-pro")
    kw.setdefault("clock", lambda: NOW + 10)
    return TokenValidator(ISSUER, jwks(KEY), **kw)  # type: ignore[arg-type]


def test_accepts_a_good_token_and_names_the_professional():
    caller = validator().validate("Bearer " + make())
    assert caller.national_id == "899700366240"
    assert caller.client_id == "segur-bench-lgc"
    assert caller.scope == ("openid", "scope_all")
    assert caller.audience == ("api-pro",)
    assert caller.expires_at == datetime.fromtimestamp(NOW + 300, UTC)
    assert caller.professional().nom == "DOC0036624"


def test_rejects_a_tampered_token():
    header, payload, signature = make().split(".")
    other = make(sub="f:x:899700218896", SubjectNameID="899700218896").split(".")[1]
    with pytest.raises(InvalidToken, match="bad signature"):
        validator().validate(f"{header}.{other}.{signature}")
    assert payload != other


def test_rejects_a_token_signed_by_another_key_with_the_same_kid():
    intruder = new_key()
    forged = jwt.encode({"alg": "RS256", "kid": KEY.kid}, {"iss": ISSUER, "sub": "x", "exp": NOW + 60}, intruder)
    with pytest.raises(InvalidToken, match="bad signature"):
        validator().validate(forged)


def test_rejects_an_expired_token():
    with pytest.raises(InvalidToken, match="expired"):
        validator(clock=lambda: datetime.fromtimestamp(NOW + 400, UTC)).validate(make())


def test_rejects_a_wrong_audience():
    with pytest.raises(InvalidToken, match="wrong audience"):
        validator().validate(make(aud="another-api"))


def test_rejects_a_wrong_issuer():
    with pytest.raises(InvalidToken, match="wrong issuer"):
        validator().validate(make(iss="https://evil.example/auth/realms/esante-wallet"))


@pytest.mark.parametrize("bearer", [None, "", "Bearer ", "Bearer not.a-token", "abc"])
def test_rejects_garbage_with_a_reason(bearer):
    with pytest.raises(InvalidToken) as info:
        validator().validate(bearer)
    assert info.value.reason


def test_audience_is_optional_and_leeway_applies():
    v = TokenValidator(ISSUER, jwks(KEY), clock=lambda: NOW + 320, leeway=30)
    assert v.validate(make(aud=["a", "b"])).audience == ("a", "b")


def test_fetches_jwks_over_http_and_refreshes_on_unknown_kid():
    rotated = new_key()
    served = {"jwks": jwks(KEY), "calls": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        served["calls"] += 1
        return httpx.Response(200, json=served["jwks"])

    http = httpx.Client(transport=httpx.MockTransport(handler))
    v = TokenValidator(ISSUER, jwks_url=ISSUER + "/protocol/openid-connect/certs", clock=lambda: NOW,
                       http_client=http, min_refresh_s=0)
    assert v.validate(make()).sub
    assert v.validate(make()).sub
    assert served["calls"] == 1  # cached
    served["jwks"] = jwks(rotated)
    assert v.validate(make(rotated)).sub
    assert served["calls"] == 2
    with pytest.raises(InvalidToken, match="unknown signing key"):
        v.validate(make(new_key()))


def test_unreachable_jwks_is_a_clear_reason():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    v = TokenValidator(ISSUER, jwks_url="http://psc.test/certs", http_client=httpx.Client(
        transport=httpx.MockTransport(handler)), clock=time.time)
    with pytest.raises(InvalidToken, match="cannot fetch the issuer's JWKS"):
        v.validate(make())
