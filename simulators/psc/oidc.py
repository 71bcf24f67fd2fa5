"""The OpenID Connect provider, assembled from authlib's grants and endpoints.

authlib does the protocol work (request validation, client authentication, PKCE, error bodies, redirects,
end-session checks); this module plugs in our storage (model.py), our signing key and the simulated clock,
and adds the two grants authlib has no server class for: CIBA poll mode and RFC 8693 token exchange.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, ClassVar

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode, OpenIDToken
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import Flask, g
from joserfc import jws, jwt

from simulators.core.app import current_outcome

from .model import (
    ACR,
    AUTH_METHODS,
    BASE_PATH,
    GRANT_CIBA,
    GRANT_TOKEN_EXCHANGE,
    IDP,
    SCOPES,
    TOKEN_TYPE_ACCESS,
    Client,
    PscModel,
    User,
    code_grant_id,
)

AUTH_METHODS_LIST = list(AUTH_METHODS)


# ---------------------------------------------------------------------------------------------- errors


class _Error(OAuth2Error):
    status_code = 400

    def __init__(self, description: str | None = None, **kw: Any) -> None:
        super().__init__(description=description, **kw)


class AuthorizationPending(_Error):
    error = "authorization_pending"


class SlowDown(_Error):
    error = "slow_down"


class ExpiredToken(_Error):
    error = "expired_token"


class UnknownUserId(_Error):
    error = "unknown_user_id"


class ServerError(_Error):
    error = "server_error"
    status_code = 500


class InvalidToken(_Error):
    error = "invalid_token"
    status_code = 401


class InvalidTarget(_Error):
    """RFC 8693 §2.2.2 / RFC 8707 §2: the requested audience or resource is not one this server issues for."""

    error = "invalid_target"


# ---------------------------------------------------------------------------------------------- server


class PscServer(AuthorizationServer):
    def __init__(self, app: Flask, model: PscModel) -> None:
        super().__init__()
        self.model = model
        self._query_client = model.client
        self._save_token = self._save
        self.load_config(app.config)
        self.scopes_supported = list(SCOPES)
        self.register_token_generator("default", self.generate_tokens)
        # authlib's ClientAuthentication only knows none / basic / post: add private_key_jwt (RFC 7523).
        self.register_client_auth_method(PrivateKeyJWT.CLIENT_AUTH_METHOD, PrivateKeyJWT(self))

    @property
    def issuer(self) -> str:
        config = self.model.ctx.config
        base = config.base_url
        if not config.public_url and config.host in ("0.0.0.0", "::", ""):
            base = f"http://127.0.0.1:{config.port}"  # bound to every interface: clients come through loopback
        return base + BASE_PATH

    @property
    def token_url(self) -> str:
        return self.issuer + "/protocol/openid-connect/token"

    @property
    def revocation_url(self) -> str:
        return self.issuer + "/protocol/openid-connect/revoke"

    # -- tokens
    def sign(self, claims: dict) -> str:
        return jwt.encode({"alg": "RS256", "kid": self.model.key.kid, "typ": "JWT"}, claims, self.model.key)

    def generate_tokens(self, grant_type: str, client: Client, user: User | None = None, scope: str | None = None,
                        expires_in: int | None = None, include_refresh_token: bool = True) -> dict:
        m = self.model
        now = int(m.now())
        exchange = grant_type == GRANT_TOKEN_EXCHANGE
        lifetime = int(expires_in or m.setting("api_token_lifetime_s" if exchange else "access_token_lifetime_s"))
        exp = now + lifetime
        if current_outcome() == "psc.jeton-expire":
            exp = now - 60  # already expired; expires_in still announces the nominal lifetime
        p = user.professional  # type: ignore[union-attr]
        claims = {
            "exp": exp, "iat": now, "jti": secrets.token_hex(16), "iss": self.issuer,
            "aud": client.client_id, "sub": p.psc_sub, "typ": "Bearer", "azp": client.client_id,
            "sid": user.session_id, "session_state": user.session_id,  # type: ignore[union-attr]
            "acr": ACR, "auth_time": user.auth_time, "scope": scope or "",  # type: ignore[union-attr]
            "preferred_username": p.national_id, "SubjectNameID": p.national_id,
        }
        if exchange:
            claims["aud"] = g.get("psc_exchange_audience") or m.setting("api_audience")
            claims["subject_issuer"] = "psc"
        token = {"access_token": self.sign(claims), "token_type": "Bearer", "expires_in": lifetime,
                 "scope": scope or ""}
        if include_refresh_token and not exchange:
            token["refresh_token"] = secrets.token_urlsafe(32)
            token["refresh_expires_in"] = int(m.setting("refresh_token_lifetime_s"))
        if exchange:
            token["issued_token_type"] = TOKEN_TYPE_ACCESS
        else:
            token["not-before-policy"] = 0
            token["session_state"] = user.session_id  # type: ignore[union-attr]
        return token

    def _save(self, token: dict, request: Any) -> None:
        c = json.loads(jws.extract_compact(token["access_token"].encode()).payload)
        refresh_in = token.get("refresh_expires_in")
        aud = c["aud"]
        self.model.save_token(
            access_token=token["access_token"], refresh_token=token.get("refresh_token"),
            kind="api" if "issued_token_type" in token else "psc", client_id=request.client.client_id,
            user=request.user, scope=token.get("scope", ""), audience=aud if isinstance(aud, str) else " ".join(aud),
            issued_at=c["iat"], expires_at=c["exp"],
            refresh_expires_at=c["iat"] + refresh_in if refresh_in else None,
            grant_id=getattr(request, "psc_grant_id", None),
        )

    def bearer_user(self, header: str | None, form_token: str | None = None) -> tuple[User, dict]:
        """Check a PSC access token sent to userinfo; raise InvalidToken otherwise."""
        user, claims, _ = self.bearer_token(header, form_token)
        return user, claims

    def bearer_token(self, header: str | None, form_token: str | None = None) -> tuple[User, dict, Any]:
        """Like bearer_user, with the token row too (its grant, for token exchange)."""
        value = None
        if header and header.lower().startswith("bearer "):
            value = header[7:].strip()
        value = value or form_token
        if not value:
            raise InvalidToken("Missing bearer token")
        try:
            claims = jwt.decode(value, self.model.key, algorithms=["RS256"]).claims
        except Exception:
            raise InvalidToken("Token signature or format invalid") from None
        token = self.model.token(value, "access_token")
        if token is None or token.as_refresh or token.row["kind"] != "psc":
            raise InvalidToken("Token unknown to this server")
        if token.is_revoked():
            raise InvalidToken("Session not active")
        if token.is_expired() or claims.get("exp", 0) <= self.model.now():
            raise InvalidToken("Token is not active")
        user = self.model.token_user(token)
        if user is None:
            raise InvalidToken("Unknown user")
        return user, claims, token


class PrivateKeyJWT(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: PscServer) -> None:
        super().__init__()
        self.server = server

    def get_audiences(self) -> list[str]:
        return [self.server.token_url, self.server.issuer,
                self.server.issuer + "/protocol/openid-connect/ext/ciba/auth",
                self.server.issuer + "/protocol/openid-connect/token/introspect", self.server.revocation_url]

    def validate_jti(self, claims: Any, jti: str) -> bool:
        return self.server.model.remember_jti(f"{claims['sub']}:{jti}")

    def resolve_client_public_key(self, client: Client, headers: Any = None) -> Any:
        # authlib passes the JWT headers too in its joserfc path; a client registered without keys cannot use
        # private_key_jwt: the OAuth error, not a 500 (issue 16)
        from joserfc.jwk import KeySet

        if not client.jwks:
            raise InvalidClientError(description="The client has no registered public keys (jwks) for private_key_jwt")
        return KeySet.import_key_set(client.jwks)

    def authenticate_client(self, client: Client) -> Client:
        if client.check_endpoint_auth_method(self.CLIENT_AUTH_METHOD, "token"):
            return client
        raise InvalidClientError(description="The client cannot authenticate with method: private_key_jwt")


# ---------------------------------------------------------------------------------------------- OIDC parts


class _IdToken:
    server: PscServer

    def resolve_client_private_key(self, client: Client) -> Any:
        return self.server.model.key

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict:
        return {"alg": "RS256", "kid": self.server.model.key.kid, "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict:
        now = int(self.server.model.now())
        exp = now + int(self.server.model.setting("id_token_lifetime_s"))
        if current_outcome() == "psc.jeton-expire":
            exp = now - 60
        return {"iss": self.server.issuer, "aud": client.client_id, "azp": client.client_id, "iat": now, "exp": exp,
                "typ": "ID"}

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        p = user.professional
        info = UserInfo(sub=p.psc_sub, acr=ACR, idp=IDP, auth_time=user.auth_time, sid=user.session_id,
                        session_state=user.session_id)
        scopes = set((scope or "").split())
        if scopes & {"scope_all", "profile", "rpps"}:
            info.update(preferred_username=p.national_id, given_name=p.prenom, family_name=p.nom,
                        SubjectNameID=p.national_id)
        return info


class PscOpenIDCode(_IdToken, OpenIDCode):
    def __init__(self, server: PscServer) -> None:
        super().__init__(require_nonce=False)
        self.server = server

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        # The nonce protects the RP against a replayed *ID token* (OIDC Core §3.1.2.1, §15.5.2); nothing forbids an
        # RP to send a nonce again in a new authorization request, and Keycloak accepts it.
        return False


class PscOpenIDToken(_IdToken, OpenIDToken):
    """ID token for the refresh and CIBA grants (no nonce, no authorization code)."""

    def __init__(self, server: PscServer) -> None:
        self.server = server


class PscCodeChallenge(CodeChallenge):
    def get_authorization_code_challenge(self, authorization_code: Any) -> str | None:
        return authorization_code.get_code_challenge()

    def get_authorization_code_challenge_method(self, authorization_code: Any) -> str | None:
        return authorization_code.get_code_challenge_method()


# ---------------------------------------------------------------------------------------------- grants


def _forced_token_error() -> None:
    if current_outcome() == "psc.token-erreur":
        raise InvalidGrantError("Code not valid (simulated error)")


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [*AUTH_METHODS_LIST, "none"]

    def save_authorization_code(self, code: str, request: Any) -> None:
        self.server.model.save_code(code, request.client.client_id, request.user, {
            **request.payload.data, "redirect_uri": request.payload.redirect_uri, "scope": request.payload.scope,
        })

    def query_authorization_code(self, code: str, client: Client) -> Any:
        _forced_token_error()
        return self.server.model.code(code, client.client_id)

    def delete_authorization_code(self, authorization_code: Any) -> None:
        pass  # already marked used in authenticate_user (kept to recognise a replay)

    def authenticate_user(self, authorization_code: Any) -> User | None:
        code = authorization_code.row["code"]
        if not self.server.model.claim_code(code):  # redeemed meanwhile by a concurrent request: a replay too
            self.server.model.revoke_grant(code_grant_id(code))
            return None  # invalid_grant
        self.request.psc_grant_id = code_grant_id(code)
        return self.server.model.code_user(authorization_code)


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS_LIST
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Any:
        _forced_token_error()
        token = self.server.model.token(refresh_token, "refresh_token")
        if token and token.as_refresh and not token.is_revoked() and not token.is_refresh_expired():
            return token
        return None

    def authenticate_user(self, refresh_token: Any) -> User | None:
        self.request.psc_grant_id = refresh_token.row["grant_id"]  # refreshed tokens belong to the same grant
        user = self.server.model.token_user(refresh_token)
        return user if user and self.server.model.session_user(user.session_id) else None

    def revoke_old_credential(self, refresh_token: Any) -> None:
        self.server.model.revoke_refresh(refresh_token.row["refresh_token"])


class CibaGrant(grants.BaseGrant, grants.TokenEndpointMixin):
    """OpenID Connect CIBA, poll mode: the token endpoint side (`grant_type=urn:openid:params:grant-type:ciba`)."""

    GRANT_TYPE = GRANT_CIBA
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS_LIST

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'")
        _forced_token_error()
        auth_req_id = self.request.form.get("auth_req_id")
        if not auth_req_id:
            raise InvalidRequestError("Missing 'auth_req_id' in request.")
        m: PscModel = self.server.model
        row = m.ciba(auth_req_id)
        if row is None or row["client_id"] != client.client_id:
            raise InvalidGrantError("Invalid 'auth_req_id'")
        now = m.now()
        status, _ = m.ciba_status(row, now)
        if status == "consumed":
            raise InvalidGrantError("The 'auth_req_id' was already used")
        if status == "expired":
            raise ExpiredToken("The authentication request has expired")
        if status == "refuse":
            raise AccessDeniedError("The user refused the authentication request")
        if status == "pending":
            last = row["last_poll"]
            m.poll_ciba(auth_req_id, now)
            if last is not None and now - last < row["interval_s"]:
                raise SlowDown(f"Polling faster than every {int(row['interval_s'])} s")
            raise AuthorizationPending("The user has not yet answered")
        pro = m.professional(row["national_id"])
        if pro is None or not m.consume_ciba(auth_req_id):
            raise InvalidGrantError("The 'auth_req_id' was already used")
        self.request.client = client
        self.request.user = m.open_session(row["national_id"], "e-CPS" if row["channel"] != "CARD" else "CPS")
        self.request.ciba_scope = row["scope"]
        self.request.psc_grant_id = "ciba:" + auth_req_id

    @hooked
    def create_token_response(self) -> tuple[int, dict, list]:
        token = self.generate_token(user=self.request.user, scope=self.request.ciba_scope,
                                    include_refresh_token=True)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class TokenExchangeGrant(grants.BaseGrant, grants.TokenEndpointMixin):
    """RFC 8693: a PSC access token (subject_issuer=psc) becomes an "API Pro Santé Connectée" token.

    Error codes (RFC 8693 §2.2.2 on top of RFC 6749 §5.2): a missing, repeated or unsupported parameter is
    `invalid_request`, and so is a subject token that is not a live PSC access token of this client ("if either the
    subject_token or actor_token are invalid for any reason, or are unacceptable based on policy [...] The value of
    the error parameter MUST be the invalid_request error code"); an `audience` or `resource` outside
    `settings["token_exchange_audiences"]` is `invalid_target`.
    """

    GRANT_TYPE = GRANT_TOKEN_EXCHANGE
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS_LIST
    SINGLE = ("subject_token", "subject_token_type", "subject_issuer", "requested_token_type", "actor_token",
              "actor_token_type", "scope")

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        _forced_token_error()
        form = self.request.form
        for name in self.SINGLE:  # RFC 6749 §3.2: parameters MUST NOT be included more than once
            if len(form.getlist(name)) > 1:
                raise InvalidRequestError(f"Parameter '{name}' is repeated")
        subject_token = form.get("subject_token")
        if not subject_token:
            raise InvalidRequestError("Missing 'subject_token' in request.")
        subject_token_type = form.get("subject_token_type")
        if not subject_token_type:
            raise InvalidRequestError("Missing 'subject_token_type' in request.")
        if subject_token_type != TOKEN_TYPE_ACCESS:
            raise InvalidRequestError(f"Unsupported 'subject_token_type': only '{TOKEN_TYPE_ACCESS}'")
        if form.get("subject_issuer", "psc") != "psc":
            raise InvalidRequestError("'subject_issuer' must be 'psc'")
        requested = form.get("requested_token_type")
        if requested and requested != TOKEN_TYPE_ACCESS:
            raise InvalidRequestError(f"Unsupported 'requested_token_type': only '{TOKEN_TYPE_ACCESS}'")
        if form.get("actor_token") or form.get("actor_token_type"):
            raise InvalidRequestError("'actor_token' (delegation) is not supported")
        audience = self._targets(form.getlist("audience"), form.getlist("resource"))
        try:
            user, claims, subject = self.server.bearer_token("Bearer " + subject_token)
        except OAuth2Error as exc:
            raise InvalidRequestError(f"Invalid subject_token: {exc.description}") from None
        if claims.get("azp") != client.client_id:
            raise InvalidRequestError("The subject_token was issued to another client")
        self.request.client = client
        self.request.user = user
        self.request.psc_grant_id = subject.row["grant_id"]  # revoking the subject's grant revokes this token too
        g.psc_exchange_audience = audience
        self.request.exchange_scope = claims.get("scope", "")

    def _targets(self, audiences: list[str], resources: list[str]) -> str | list[str]:
        model: PscModel = self.server.model
        allowed = set(model.setting("token_exchange_audiences") or []) | {model.setting("api_audience")}
        # RFC 6749 §3.2: a parameter sent without a value is treated as omitted
        wanted = list(dict.fromkeys(t for t in [*audiences, *resources] if t))
        refused = [t for t in wanted if t not in allowed]
        if refused:
            raise InvalidTarget(f"Target(s) not served by this server: {', '.join(refused)}")
        if not wanted:
            return model.setting("api_audience")
        return wanted[0] if len(wanted) == 1 else wanted

    def create_token_response(self) -> tuple[int, dict, list]:
        token = self.generate_token(user=self.request.user, scope=self.request.exchange_scope,
                                    include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


# ---------------------------------------------------------------------------------------------- endpoints


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS_LIST

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return self.server.model.token(token_string, token_type_hint)

    def check_permission(self, token: Any, client: Client, request: Any) -> bool:
        return True

    def introspect_token(self, token: Any) -> dict:
        r = token.row
        pro = self.server.model.professional(r["national_id"])
        return {
            "active": True, "iss": self.server.issuer, "sub": pro.psc_sub if pro else None,
            "client_id": r["client_id"], "azp": r["client_id"], "username": r["national_id"],
            "preferred_username": r["national_id"], "scope": r["scope"], "token_type": "Bearer",
            "exp": int(r["refresh_expires_at"] if token.as_refresh else r["expires_at"]),
            "iat": int(r["issued_at"]), "auth_time": int(r["auth_time"]),
            "aud": _audience(r["audience"]) or r["client_id"], "acr": ACR, "sid": r["session_id"],
            "session_state": r["session_id"],
        }


def _audience(stored: str | None) -> str | list[str] | None:
    parts = (stored or "").split()
    return parts[0] if len(parts) == 1 else (parts or None)


class Revocation(RevocationEndpoint):
    """RFC 7009 at `…/protocol/openid-connect/revoke` (Keycloak's path); clients authenticate as on the token
    endpoint. An unknown token answers 200 (§2.2); another client's token is refused (§2.1)."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = [*AUTH_METHODS_LIST, "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return self.server.model.token(token_string, token_type_hint)

    def revoke_token(self, token: Any, request: Any) -> None:
        self.server.model.revoke(token)


class EndSession(EndSessionEndpoint):
    def get_server_jwks(self) -> dict:
        return self.server.model.public_jwks()

    def end_session(self, end_session_request: Any) -> None:
        sid = None
        if end_session_request.id_token_claims:
            sid = end_session_request.id_token_claims.get("sid")
        sid = sid or getattr(end_session_request.request, "psc_cookie_session", None)
        if sid:
            self.server.model.end_session(sid)


def create_server(app: Flask, model: PscModel) -> PscServer:
    server = PscServer(app, model)
    server.register_grant(CodeGrant, [PscCodeChallenge(required=True), PscOpenIDCode(server)])
    server.register_grant(RefreshGrant, [PscOpenIDToken(server)])
    server.register_grant(CibaGrant, [PscOpenIDToken(server)])
    server.register_grant(TokenExchangeGrant)
    server.register_endpoint(Introspection)
    server.register_endpoint(Revocation)
    server.register_endpoint(EndSession)
    return server
