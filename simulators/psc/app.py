"""Pro Santé Connect simulator: an OpenID Connect provider with CIBA and token exchange (issue 4).

Every endpoint lives under the issuer path `/auth/realms/esante-wallet` (protocols.md §3.1); the login page that
stands for the CPS card / e-CPS app is served by the authorization endpoint itself (the real PSC serves it from a
separate "wallet" host). Protocol work is authlib's (oidc.py); state is in SQLite (model.py).
"""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, OAuth2Error
from flask import Flask, Response, jsonify, redirect, request
from jinja2 import Environment, FileSystemLoader, select_autoescape

from simulators.core.app import current_outcome
from simulators.core.faults import RequestFacts
from simulators.core.journal import Exchange
from simulators.core.redact import redact_http
from simulators.core.service import ServiceContext, ServiceSpec

from .claims import profession_label, userinfo
from .model import (
    ACR,
    AUTH_METHODS,
    BASE_PATH,
    GRANT_CIBA,
    GRANT_TOKEN_EXCHANGE,
    MEANS,
    SCOPES,
    PscModel,
)
from .oidc import AUTH_METHODS_LIST, InvalidToken, PscServer, UnknownUserId, create_server

OIDC = BASE_PATH + "/protocol/openid-connect"
COOKIE = "PSC_SESSION"
TRAINER_PATH = "/_bench/psc/ciba"

OUTCOMES = {
    "psc.authentification-refusee": "le professionnel refuse la connexion (redirection error=access_denied)",
    "psc.ciba-refus": "CIBA : le professionnel refuse sur son téléphone (access_denied au polling)",
    "psc.ciba-expire": "CIBA : le téléphone ne répond jamais (expired_token à l'échéance)",
    "psc.jeton-expire": "le point de jeton délivre des jetons déjà expirés (exp dans le passé)",
    "psc.userinfo-401": "userinfo répond 401 invalid_token",
    "psc.token-erreur": "le point de jeton répond 400 invalid_grant",
}

_OPERATIONS = {
    "/.well-known/openid-configuration": "discovery",
    "/.well-known/wallet-openid-configuration": "discovery",
    "/protocol/openid-connect/certs": "jwks",
    "/protocol/openid-connect/auth": "authorize",
    "/protocol/openid-connect/token": "token",
    "/protocol/openid-connect/token/introspect": "introspect",
    "/protocol/openid-connect/revoke": "revoke",
    "/protocol/openid-connect/userinfo": "userinfo",
    "/protocol/openid-connect/logout": "logout",
    "/protocol/openid-connect/ext/ciba/auth": "ciba",
}

_templates = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=select_autoescape(["html"]),
)


def _render(name: str, status: int = 200, **values: Any) -> Response:
    return Response(_templates.get_template(name).render(**values), status=status,
                    content_type="text/html; charset=utf-8")


def _model(ctx: ServiceContext) -> PscModel:
    model = ctx.models.get("psc")
    if model is None:
        model = ctx.models["psc"] = PscModel(ctx)
    return model


def discovery(issuer: str) -> dict:
    oidc = issuer + "/protocol/openid-connect"
    return {
        "issuer": issuer,
        "authorization_endpoint": oidc + "/auth",
        "token_endpoint": oidc + "/token",
        "introspection_endpoint": oidc + "/token/introspect",
        "revocation_endpoint": oidc + "/revoke",
        "userinfo_endpoint": oidc + "/userinfo",
        "end_session_endpoint": oidc + "/logout",
        "jwks_uri": oidc + "/certs",
        "backchannel_authentication_endpoint": oidc + "/ext/ciba/auth",
        "grant_types_supported": ["authorization_code", "refresh_token", GRANT_CIBA, GRANT_TOKEN_EXCHANGE],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "code_challenge_methods_supported": ["S256", "plain"],
        "scopes_supported": list(SCOPES),
        "acr_values_supported": [ACR],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "idp", "sid",
                             "preferred_username", "given_name", "family_name", "SubjectNameID"],
        "backchannel_token_delivery_modes_supported": ["poll"],
        "backchannel_user_code_parameter_supported": False,
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "frontchannel_logout_supported": False,
        "tls_client_certificate_bound_access_tokens": False,
    }


def _max_age(value: str | None) -> int | str | None:
    """The max_age request parameter: seconds, None when absent, "invalid" when it is not a non-negative integer."""
    if value is None or value == "":
        return None
    return int(value) if value.isascii() and value.isdigit() else "invalid"


def _oauth_error(status: int, error: str, description: str) -> Response:
    resp = jsonify({"error": error, "error_description": description})
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = f'Bearer realm="esante-wallet", error="{error}"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _register(app: Flask, ctx: ServiceContext) -> None:
    model = _model(ctx)
    server: PscServer = create_server(app, model)
    ctx.extras["psc_server"] = server

    @app.get(BASE_PATH + "/.well-known/openid-configuration")
    @app.get(BASE_PATH + "/.well-known/wallet-openid-configuration")
    def well_known() -> Response:
        return jsonify(discovery(server.issuer))

    @app.get(OIDC + "/certs")
    def certs() -> Response:
        return jsonify(model.public_jwks())

    # ------------------------------------------------------------------------------ authorization + login page
    @app.route(OIDC + "/auth", methods=["GET", "POST"])
    def authorize() -> Response:
        # A parameter with control characters (a CR/LF in redirect_uri) is refused here, without redirecting
        # (RFC 6749 §4.1.2.1): authlib would raise a ValueError quoting it in its own error (issue 16: a 500).
        tainted = sorted(k for k, v in request.values.items(multi=True) if any(c < " " or c == "\x7f" for c in v))
        if tainted:
            return server.handle_error_response(None, InvalidRequestError(
                f"Parameter(s) {', '.join(tainted)} contain control characters"))
        prompt = (request.values.get("prompt") or "").split()
        max_age = _max_age(request.values.get("max_age"))
        session = model.session_user(request.cookies.get(COOKIE))
        sso = session if session is not None and not _needs_login(session, prompt, max_age) else None
        try:
            grant = server.get_consent_grant(end_user=sso)
            if max_age == "invalid":
                raise InvalidRequestError("Invalid 'max_age': a number of seconds (non-negative integer) is expected",
                                          state=grant.request.payload.state, redirect_uri=grant.redirect_uri)
        except OAuth2Error as error:
            return server.handle_error_response(None, error)
        refused = current_outcome() == "psc.authentification-refusee"
        if request.method == "GET":
            if sso is not None and not refused:
                return server.create_authorization_response(grant_user=sso, grant=grant)  # SSO: no new login
            return _login_page(grant)
        if request.form.get("decision") == "refuse" or refused:
            return server.create_authorization_response(grant_user=None, grant=grant)
        national_id = (request.form.get("national_id_saisi") or request.form.get("national_id") or "").strip()
        if not national_id:
            return _login_page(grant, "Choisissez un professionnel ou saisissez un identifiant national.")
        if model.professional(national_id) is None:
            return _login_page(grant, f"Identifiant national inconnu : {national_id}.")
        means = request.form.get("moyen") if request.form.get("moyen") in MEANS else "CPS"
        user = None
        if session is not None and session.professional.national_id == national_id:
            user = model.reauthenticate(session.session_id, means)  # same session, new auth_time
        user = user or model.open_session(national_id, means)
        resp = server.create_authorization_response(grant_user=user, grant=grant)
        resp.set_cookie(COOKIE, user.session_id, path=BASE_PATH, httponly=True, samesite="Lax")
        return resp

    def _needs_login(session: Any, prompt: list[str], max_age: int | str | None) -> bool:
        """prompt=login, or a session older than max_age (OIDC Core §3.1.2.1; max_age=0 is prompt=login)."""
        if "login" in prompt:
            return True
        if isinstance(max_age, int):
            return max_age == 0 or model.now() - session.auth_time > max_age
        return False

    def _login_page(grant: Any, error: str | None = None) -> Response:
        client = grant.client
        pros = [{"national_id": p.national_id, "name": p.display_name, "profession": profession_label(p),
                 "structure": p.structure.nom} for p in model.personas.professionals]
        return _render("login.html", client_id=client.client_id, client_name=client.name or client.client_id,
                       scope=grant.request.payload.scope or "", acr=request.values.get("acr_values") or "",
                       professionals=pros, means=MEANS, error=error, action=request.full_path)

    # ------------------------------------------------------------------------------ token, userinfo, introspection
    @app.post(OIDC + "/token")
    def token() -> Response:
        return server.create_token_response()

    @app.route(OIDC + "/userinfo", methods=["GET", "POST"])
    def user_info() -> Response:
        try:
            if current_outcome() == "psc.userinfo-401":
                raise InvalidToken("Token verification failed (simulated)")
            form_token = request.form.get("access_token") if request.method == "POST" else None
            user, _ = server.bearer_user(request.headers.get("Authorization"), form_token)
        except InvalidToken as exc:
            return _oauth_error(401, "invalid_token", exc.description)
        return jsonify(userinfo(user.professional))

    @app.post(OIDC + "/token/introspect")
    def introspect() -> Response:
        return server.create_endpoint_response("introspection")

    @app.post(OIDC + "/revoke")
    def revoke() -> Response:
        return server.create_endpoint_response("revocation")

    # ------------------------------------------------------------------------------ logout
    @app.route(OIDC + "/logout", methods=["GET", "POST"])
    def logout() -> Response:
        if request.method == "POST" and request.form.get("refresh_token"):
            # Keycloak's back-channel logout: client authentication + refresh_token, answer 204.
            req = server.create_oauth2_request(None)
            try:
                client = server.authenticate_client(req, AUTH_METHODS_LIST, "end_session")
                tok = model.token(request.form["refresh_token"], "refresh_token")
                if tok is None or not tok.as_refresh or not tok.check_client(client):
                    raise InvalidGrantError("Invalid refresh token")
            except OAuth2Error as error:
                return server.handle_error_response(req, error)
            model.end_session(tok.row["session_id"])
            return Response(status=204)
        try:
            end = server.validate_endpoint_request("end_session")
        except OAuth2Error as error:
            return server.handle_error_response(None, error)
        cookie_sid = request.cookies.get(COOKIE)
        if cookie_sid:
            model.end_session(cookie_sid)
        resp = server.create_endpoint_response("end_session", end)
        if resp is None:
            resp = _render("logged_out.html")
        resp.delete_cookie(COOKIE, path=BASE_PATH)
        return resp

    # ------------------------------------------------------------------------------ CIBA
    @app.post(OIDC + "/ext/ciba/auth")
    def ciba_auth() -> Response:
        req = server.create_oauth2_request(None)
        try:
            client = server.authenticate_client(req, AUTH_METHODS_LIST, "backchannel_authentication")
            form = request.form
            scope = form.get("scope") or ""
            if "openid" not in scope.split():
                raise InvalidRequestError("The 'openid' scope is required")
            server.validate_requested_scope(scope)
            if form.get("login_hint_token") or form.get("id_token_hint"):
                raise InvalidRequestError("Only 'login_hint' (national id) is supported")
            login_hint = (form.get("login_hint") or "").strip()
            if not login_hint:
                raise InvalidRequestError("Missing 'login_hint' (national id of the professional)")
            if model.professional(login_hint) is None:
                raise UnknownUserId("Unknown national id in 'login_hint'")
            answer = model.create_ciba(client.client_id, login_hint, scope, form.get("binding_message"),
                                       form.get("channel"), current_outcome())
        except OAuth2Error as error:
            return server.handle_error_response(req, error)
        return jsonify(answer)

    # ------------------------------------------------------------------------------ trainer page
    @app.route(TRAINER_PATH, methods=["GET", "POST"])
    def trainer_ciba() -> Response:
        message = None
        if request.method == "POST":
            try:
                model.decide_ciba(request.form.get("auth_req_id", ""), request.form.get("decision", ""))
                return redirect(TRAINER_PATH, code=303)
            except ValueError as exc:
                message = str(exc)
        return _render("ciba.html", requests=model.ciba_requests(), message=message,
                       auto=model.setting("ciba_auto_approve_s"))


# ---------------------------------------------------------------------------------------------- fault hooks


def _operation_of(facts: RequestFacts) -> str | None:
    if facts.path.startswith(BASE_PATH):
        return _OPERATIONS.get(facts.path[len(BASE_PATH):])
    return None


def _attrs_of(facts: RequestFacts) -> dict[str, str]:
    values = dict(facts.query)
    if facts.body and "x-www-form-urlencoded" in facts.headers.get("content-type", ""):
        values.update(parse_qsl(facts.body.decode("utf-8", "replace"), keep_blank_values=True))
    attrs = {k: values[k] for k in ("grant_type", "client_id", "scope") if values.get(k)}
    national_id = values.get("login_hint") or values.get("national_id_saisi") or values.get("national_id")
    if national_id:
        attrs["national_id"] = national_id
    auth = facts.headers.get("authorization", "")
    if "client_id" not in attrs and auth.lower().startswith("basic "):
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            attrs["client_id"] = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
    return attrs


# What the journal masks (issue 16: entries go into proof bundles). Client secrets lose everything; tokens, codes,
# PKCE verifiers and client assertions keep a fingerprint, so one can follow a token from the answer that issued it
# to the requests that use it. The Authorization header (Basic or Bearer) and cookies are masked by redact_http.
JOURNAL_SECRETS = ("client_secret",)
JOURNAL_TOKENS = ("access_token", "id_token", "refresh_token", "code", "code_verifier", "client_assertion", "token",
                  "subject_token", "actor_token", "id_token_hint", "login_hint_token", "logout_token",
                  # the SSO session id: its cookie (PSC_SESSION) logs one in without the login page
                  "session_state", "sid")


def _redact(ex: Exchange) -> Exchange:
    return redact_http(ex, secrets=JOURNAL_SECRETS, tokens=JOURNAL_TOKENS)


def _state_get(ctx: ServiceContext) -> dict:
    return _model(ctx).state()


def _state_post(ctx: ServiceContext, body: Any) -> dict:
    return _model(ctx).apply(body)


def _reset(ctx: ServiceContext) -> None:
    _model(ctx).reset()


SPEC = ServiceSpec(
    name="psc",
    title="Pro Santé Connect",
    default_port=8104,
    register=_register,
    outcomes=OUTCOMES,
    error_format="problem",
    operation_of=_operation_of,
    attrs_of=_attrs_of,
    state_get=_state_get,
    state_post=_state_post,
    reset=_reset,
    redact=_redact,
    description="Fournisseur OpenID Connect Pro Santé Connect : code + PKCE, CIBA (poll), échange de jetons.",
)
