"""Bearer-token validation for simulators that sit behind Pro Santé Connect (DMP, MSSanté, Annuaire, ApCV…).

    validator = TokenValidator(
        issuer="http://127.0.0.1:8104/auth/realms/esante-wallet",
        jwks_url="http://127.0.0.1:8104/auth/realms/esante-wallet/protocol/openid-connect/certs",
        audience="api-pro-sante-connectee",         # None: any audience
        clock=ctx.clock.now,                         # the simulated clock, so expiry follows POST /_bench/clock
    )
    caller = validator.validate(request.headers.get("Authorization"))   # raises InvalidToken(reason)
    caller.national_id  # "899700366240" — which professional is calling

Signatures are checked with joserfc against the issuer's JWKS, fetched over HTTP with httpx and cached; an
unknown `kid` triggers one refetch (key rotation), at most every `min_refresh_s` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

DEFAULT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")


class InvalidToken(Exception):
    """The bearer token is not acceptable; `reason` says why (suitable for a 401 error_description)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Caller:
    """Who is calling, according to a validated PSC (or exchanged API) token."""

    sub: str
    national_id: str | None
    client_id: str | None
    issuer: str
    audience: tuple[str, ...]
    scope: tuple[str, ...]
    expires_at: datetime
    claims: Mapping[str, Any] = field(repr=False)

    def professional(self) -> Any:
        """The persona (simulators.personas.Professional) of this national id, or None."""
        if not self.national_id:
            return None
        from simulators.personas import load_personas

        return load_personas().professional_by_national_id(self.national_id)


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


class TokenValidator:
    def __init__(
        self,
        issuer: str,
        jwks: Mapping[str, Any] | KeySet | None = None,
        *,
        jwks_url: str | None = None,
        audience: str | None = None,
        leeway: float = 30.0,
        clock: Callable[[], Any] | None = None,
        algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
        http_client: httpx.Client | None = None,
        min_refresh_s: float = 5.0,
        timeout_s: float = 5.0,
    ) -> None:
        if jwks is None and jwks_url is None:
            raise ValueError("give the issuer's keys: jwks (a JWK set) or jwks_url")
        self.issuer = issuer.rstrip("/")
        self.jwks_url = jwks_url
        self.audience = audience
        self.leeway = leeway
        self.clock = clock or time.time
        self.algorithms = list(algorithms)
        self._http = http_client
        self._timeout = timeout_s
        self._min_refresh_s = min_refresh_s
        self._lock = threading.Lock()
        self._last_fetch = float("-inf")
        self._keys: KeySet | None = None
        if jwks is not None:
            self._keys = jwks if isinstance(jwks, KeySet) else KeySet.import_key_set(dict(jwks))

    # -------------------------------------------------------------------------------- keys
    def _fetch(self) -> None:
        if self.jwks_url is None:
            return
        with self._lock:
            if time.monotonic() - self._last_fetch < self._min_refresh_s and self._keys is not None:
                return
            self._last_fetch = time.monotonic()
            try:
                if self._http is not None:
                    resp = self._http.get(self.jwks_url, timeout=self._timeout)
                else:
                    resp = httpx.get(self.jwks_url, timeout=self._timeout)
                resp.raise_for_status()
                self._keys = KeySet.import_key_set(resp.json())
            except (httpx.HTTPError, ValueError, JoseError) as exc:
                if self._keys is None:
                    raise InvalidToken(f"cannot fetch the issuer's JWKS from {self.jwks_url}: {exc}") from None

    def _key_for(self, kid: str | None) -> KeySet:
        if self._keys is None:
            self._fetch()
        keys = self._keys
        known = keys is not None and (kid is None or any(k.kid == kid for k in keys.keys))
        if not known:
            self._fetch()  # key rotation: the issuer may have published a new key
            keys = self._keys
            if keys is None or (kid is not None and not any(k.kid == kid for k in keys.keys)):
                raise InvalidToken(f"unknown signing key (kid {kid!r}) for issuer {self.issuer}")
        return keys  # type: ignore[return-value]

    # -------------------------------------------------------------------------------- validation
    def validate(self, bearer: str | None) -> Caller:
        token = (bearer or "").strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        if not token:
            raise InvalidToken("no bearer token")
        try:
            header = jws.extract_compact(token.encode()).protected
        except (JoseError, ValueError, UnicodeDecodeError):
            raise InvalidToken("malformed token (not a compact JWS)") from None
        if header.get("alg") not in self.algorithms:
            raise InvalidToken(f"signature algorithm {header.get('alg')!r} not accepted")
        keys = self._key_for(header.get("kid"))
        try:
            claims = dict(jwt.decode(token, keys, algorithms=self.algorithms).claims)
        except JoseError as exc:
            raise InvalidToken(f"bad signature ({exc.error})") from None
        except (ValueError, UnicodeDecodeError):
            raise InvalidToken("malformed token payload") from None
        return self._check_claims(claims)

    def _check_claims(self, c: dict) -> Caller:
        now = _epoch(self.clock())
        iss = c.get("iss")
        if not isinstance(iss, str) or iss.rstrip("/") != self.issuer:
            raise InvalidToken(f"wrong issuer {iss!r} (expected {self.issuer})")
        exp = c.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise InvalidToken("missing or invalid 'exp' claim")
        if now > exp + self.leeway:
            raise InvalidToken(f"token expired {int(now - exp)} s ago")
        nbf = c.get("nbf")
        if isinstance(nbf, int | float) and now + self.leeway < nbf:
            raise InvalidToken("token not yet valid (nbf)")
        aud = c.get("aud")
        audiences = tuple([aud] if isinstance(aud, str) else (aud or []))
        if self.audience is not None and self.audience not in audiences:
            raise InvalidToken(f"wrong audience {list(audiences)} (expected {self.audience!r})")
        sub = c.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("missing 'sub' claim")
        national_id = c.get("SubjectNameID") or c.get("preferred_username")
        if not national_id and sub.count(":") >= 2:  # PSC sub "f:<uuid>:<national id>"
            national_id = sub.rsplit(":", 1)[-1]
        scope = c.get("scope") or ""
        return Caller(
            sub=sub, national_id=national_id, client_id=c.get("azp") or c.get("client_id"), issuer=iss,
            audience=audiences, scope=tuple(scope.split()) if isinstance(scope, str) else tuple(scope),
            expires_at=datetime.fromtimestamp(exp, UTC), claims=c,
        )


DEFAULT_PSC_ISSUER = "http://127.0.0.1:8104/auth/realms/esante-wallet"


def validator_from_settings(settings: Mapping[str, Any], clock: Callable[[], Any]) -> TokenValidator:
    """The validator a service behind Pro Santé Connect builds from its settings: `psc_issuer`, the issuer's keys
    inline (`psc_jwks`) or at `psc_jwks_url` (default: the issuer's certs endpoint), optional `psc_audience`."""
    issuer = settings.get("psc_issuer") or DEFAULT_PSC_ISSUER
    jwks = settings.get("psc_jwks")
    return TokenValidator(issuer, jwks,
                          jwks_url=None if jwks else (settings.get("psc_jwks_url") or
                                                      issuer.rstrip("/") + "/protocol/openid-connect/certs"),
                          audience=settings.get("psc_audience"), clock=clock)


def validator_for(ctx: Any) -> TokenValidator:
    """The service's validator (a ServiceContext's settings and simulated clock), built once and kept in its
    extras: the keys are fetched once, not at every request."""
    validator = ctx.extras.get("psc_validator")
    if validator is None:
        validator = validator_from_settings(ctx.config.settings, lambda: ctx.clock.now())
        ctx.extras["psc_validator"] = validator
    return validator
