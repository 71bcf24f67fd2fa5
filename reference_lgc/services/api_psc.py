"""API Pro Santé Connectée (SC.INS/PSC.50, SC.DMP/PSC.40, SC.ON/PSC.60): the LGC exchanges the professional's Pro
Santé Connect access token for an API token (RFC 8693 token exchange at PSC's token endpoint, the client
authenticated as at login) and sends it as ``Authorization: Bearer`` to INSi, the DMP and ON — on top of the PS
assertion or VIHF and the ContexteLPS, which the API PSC still requires (DSR, "Espace de confiance PSC").

The API token is kept, per professional and audience, until shortly before it expires. When an API answers 401
(its token expired or was revoked meanwhile), the LGC drops it and makes one new exchange — not a new login: the
professional sees nothing unless PSC refuses the exchange too (then "reconnectez-vous").

A service uses this mode when its endpoint says ``auth = "api_psc"`` (``[services.<name>.extra]``), with the
audience in ``api_audience`` (default ``api-pro-sante-connectee``, the PSC simulator's default API audience).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from .context import CallContext, Endpoint, ServiceRefused, ServiceUnavailable
from .transport import TlsSettings, http_client, network_reason

MODE = "api_psc"
DEFAULT_AUDIENCE = "api-pro-sante-connectee"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

R = TypeVar("R")


@dataclass
class ApiPsc:
    """The LGC's API tokens and the PSC client that obtains them (one per LGC process)."""

    token_endpoint: str
    client_id: str
    client_secret: str
    tls: TlsSettings = field(default_factory=TlsSettings)
    timeout: float = 10.0
    margin_s: float = 30.0  # an API token this close to its expiry is exchanged anew before use
    _cache: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def token(self, subject_token: str | None, national_id: str, audience: str) -> str:
        with self._lock:
            cached = self._cache.get((national_id, audience))
        if cached is not None and cached[1] > time.time() + self.margin_s:
            return cached[0]
        token, expires_at = self._exchange(subject_token, audience)
        with self._lock:
            self._cache[(national_id, audience)] = (token, expires_at)
        return token

    def forget(self, national_id: str, audience: str, token: str) -> None:
        """Drop an API token the API refused (only that one: another thread may already hold a newer one)."""
        with self._lock:
            if self._cache.get((national_id, audience), ("", 0.0))[0] == token:
                del self._cache[(national_id, audience)]

    def _exchange(self, subject_token: str | None, audience: str) -> tuple[str, float]:
        if not subject_token:
            raise ServiceRefused("API Pro Santé Connectée : pas de session Pro Santé Connect, connectez-vous",
                                 code="psc_expire")
        form = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject_token,
                "subject_token_type": ACCESS_TOKEN_TYPE, "requested_token_type": ACCESS_TOKEN_TYPE,
                "audience": audience}
        try:
            with http_client(self.tls, timeout=self.timeout) as http:
                resp = http.post(self.token_endpoint, data=form, auth=(self.client_id, self.client_secret))
        except httpx.TimeoutException:
            raise ServiceUnavailable(f"Pro Santé Connect n'a pas répondu à l'échange de jeton en {self.timeout:g} s",
                                     code="timeout") from None
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"Pro Santé Connect injoignable pour l'échange de jeton "
                                     f"({network_reason(exc)})", code="reseau") from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code >= 500 or resp.status_code == 429:
            raise ServiceUnavailable(f"Pro Santé Connect indisponible pour l'échange de jeton (HTTP "
                                     f"{resp.status_code}) : réessayer plus tard", code=f"HTTP {resp.status_code}")
        if resp.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            error = body.get("error", "") if isinstance(body, dict) else ""
            # The subject token refused (RFC 8693 §2.2.2 says invalid_request, Keycloak answers invalid_token,
            # others invalid_grant): the PSC session itself ended, only a new login helps.
            if error in ("invalid_request", "invalid_token", "invalid_grant"):
                raise ServiceRefused("Session Pro Santé Connect expirée ou invalide : reconnectez-vous",
                                     code="psc_expire", detail=str(body.get("error_description", "")))
            raise ServiceRefused(f"Pro Santé Connect a refusé l'échange de jeton ({error or resp.status_code}) : "
                                 f"{body.get('error_description', '') if isinstance(body, dict) else ''}".rstrip(" :"),
                                 code=error or f"HTTP {resp.status_code}")
        try:
            expires_in = float(body.get("expires_in", 300))
        except (TypeError, ValueError):
            expires_in = 300.0
        return body["access_token"], time.time() + expires_in


@dataclass(frozen=True)
class ApiAccess:
    """What one service call needs to present its API token: the LGC's tokens, and the professional's session."""

    api: ApiPsc
    subject_token: Callable[[], str | None]  # the professional's PSC access token, refreshed if need be
    national_id: str
    audience: str = DEFAULT_AUDIENCE

    def bearer(self) -> str:
        return self.api.token(self.subject_token(), self.national_id, self.audience)


def authorized(ctx: CallContext, send: Callable[[dict[str, str]], R], status: Callable[[R], int | None]) -> R:
    """Make one exchange with the headers API Pro Santé Connectée asks for (none outside this mode); on a 401, once
    more with a newly exchanged API token."""
    access = ctx.api
    if access is None:
        return send({})
    token = access.bearer()
    result = send({"Authorization": f"Bearer {token}"})
    if status(result) != 401:
        return result
    access.api.forget(access.national_id, access.audience, token)
    return send({"Authorization": f"Bearer {access.bearer()}"})


def access_for(api: ApiPsc | None, endpoint: Endpoint, national_id: str,
               subject_token: Callable[[], str | None]) -> ApiAccess | None:
    """The API access of a call to `endpoint`: None unless the endpoint says ``auth = "api_psc"``."""
    if endpoint.extra.get("auth") != MODE:
        return None
    if api is None:  # a configuration error, not the user's: say so rather than call without the token
        raise ServiceRefused("API Pro Santé Connectée demandée mais le client Pro Santé Connect n'est pas configuré",
                             code="configuration")
    return ApiAccess(api, subject_token, national_id, endpoint.extra.get("api_audience") or DEFAULT_AUDIENCE)
