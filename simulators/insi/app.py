"""INSi simulator: POST /lps, operations rechercherInsAvecTraitsIdentite / rechercherInsAvecCarteVitale.

Flow: envelope + action + headers (wire.py) -> header rules and input rules (model.py) -> forced business
outcome if the fault engine chose one -> matching over the personas -> RESULTAT or SOAP fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request

from simulators.core.app import current_outcome, current_tls
from simulators.core.faults import RequestFacts
from simulators.core.service import FastRequest, FastResponse, ServiceContext, ServiceSpec
from simulators.core.soap import Envelope, SoapError
from simulators.core.teleservice import bearer_caller, envelope_fault_bytes, fault_bytes, www_authenticate
from simulators.core.tokens import validator_for
from simulators.personas import load_personas

from . import wire
from .model import (
    OP_TRAITS,
    OUTCOMES,
    InsiModel,
    Result,
    TeleserviceError,
    TraitsQuery,
    VitaleQuery,
    check_headers,
    unavailable,
)

ENDPOINT = "/lps"


def _model(ctx: ServiceContext) -> InsiModel:
    model = ctx.models.get("insi")
    if model is None:
        model = InsiModel(load_personas(), ctx.store, ctx.config.settings)
        model.migrate()
        ctx.models["insi"] = model
    return model


def _check_bearer(ctx: ServiceContext, req: wire.Request, authorization: str | None) -> None:
    """API Pro Santé Connectée: a bearer token is required in `auth_mode = "psc"`, and checked whenever one is
    sent (a client calling through the API PSC gets its token judged in every mode)."""
    required = ctx.config.settings.get("auth_mode") == "psc"
    if required or authorization:
        assertion = req.headers.assertion or {}
        bearer_caller(authorization, validator_for(ctx), required=required,
                      assertion_national_id=assertion.get("name_id"))


def answer(ctx: ServiceContext, data: bytes, content_type: str | None, outcome: str | None,
           envelope: Envelope | None = None, envelope_error: Exception | None = None,
           tls: Mapping[str, Any] | None = None, authorization: str | None = None
           ) -> tuple[int, str, bytes, tuple[tuple[str, str], ...]]:
    """One INSi exchange: (HTTP status, content type, body, extra headers)."""
    model = _model(ctx)
    message_id: str | None = None
    try:
        req = wire.parse_request(data, content_type, ctx.config.max_request_bytes, envelope, envelope_error)
        message_id = req.message_id
        check_headers(req.headers, req.operation, ctx.config.settings, tls, ctx.clock.recent_now)
        _check_bearer(ctx, req, authorization)
        if req.operation == OP_TRAITS:
            query: Any = TraitsQuery.validated(req.body)
        else:
            query = VitaleQuery.validated(req.body)
        if outcome == "insi.service-indisponible":
            raise unavailable()
        if outcome == "insi.cr01":
            result = Result("01")
        elif outcome == "insi.cr02":
            result = Result("02")
        elif req.operation == OP_TRAITS:
            result = model.search_traits(query)
        else:
            result = model.search_vitale(query)
    except SoapError as exc:
        return (*envelope_fault_bytes(exc), ())
    except TeleserviceError as exc:
        return (*fault_bytes(exc, message_id or exc.message_id), www_authenticate(exc))
    body, ctype = wire.response_bytes(result, req.operation, message_id,
                                      bool(ctx.config.settings.get("wsa_response_headers", False)))
    return 200, ctype, body, ()


def _fast_lps(ctx: ServiceContext, req: FastRequest) -> FastResponse:
    status, ctype, body, headers = answer(ctx, req.body, req.content_type, req.outcome, req.envelope,
                                          req.envelope_error, req.tls, req.headers.get("authorization"))
    return FastResponse(status, ctype, body, headers)


def _register(app: Flask, ctx: ServiceContext) -> None:
    _model(ctx)

    # POST /lps is served by the fast route below; this Flask route answers when the app is used as
    # plain WSGI (and gives other methods their 405 SOAP fault).
    @app.post(ENDPOINT)
    def lps() -> Response:
        status, ctype, body, headers = answer(ctx, request.get_data(), request.content_type, current_outcome(),
                                              tls=current_tls(), authorization=request.headers.get("Authorization"))
        return Response(body, status=status, content_type=ctype, headers=headers)


def _attrs_of(facts: RequestFacts) -> dict[str, str]:
    if facts.path != ENDPOINT or not facts.body:
        return {}
    return wire.request_attrs(facts.body)


def _state_get(ctx: ServiceContext) -> dict:
    return _model(ctx).state()


def _state_post(ctx: ServiceContext, body: Any) -> dict:
    return _model(ctx).apply(body, ctx.clock.now().date())


def _reset(ctx: ServiceContext) -> None:
    _model(ctx).reset()


SPEC = ServiceSpec(
    name="insi",
    run_state=True,  # a run may have its own patients' state (core/run_state.py)
    client_cert=lambda settings: "required" if settings.get("auth_mode") == "mtls" else "optional",
    title="INSi — identité nationale de santé",
    default_port=8101,
    register=_register,
    outcomes=OUTCOMES,
    error_format="soap",
    attrs_of=_attrs_of,
    state_get=_state_get,
    state_post=_state_post,
    reset=_reset,
    fast_routes={("POST", ENDPOINT): _fast_lps},
    description="Téléservice INSi (SOAP 1.2) : recherche d'INS par traits d'identité et par carte Vitale.",
)
