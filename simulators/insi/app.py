"""INSi simulator: POST /lps, operations rechercherInsAvecTraitsIdentite / rechercherInsAvecCarteVitale.

Flow: envelope + action + headers (wire.py) -> header rules and input rules (model.py) -> forced business
outcome if the fault engine chose one -> matching over the personas -> RESULTAT or SOAP fault.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from simulators.core.app import current_outcome
from simulators.core.faults import RequestFacts
from simulators.core.service import ServiceContext, ServiceSpec
from simulators.core.soap import SoapError
from simulators.personas import load_personas

from . import wire
from .model import (
    OP_TRAITS,
    OUTCOMES,
    InsiError,
    InsiModel,
    Result,
    TraitsQuery,
    VitaleQuery,
    check_headers,
    unavailable,
)

ENDPOINT = "/lps"


def _model(ctx: ServiceContext) -> InsiModel:
    model = ctx.extras.get("insi")
    if model is None:
        model = InsiModel(load_personas(), ctx.store, ctx.config.settings)
        model.migrate()
        ctx.extras["insi"] = model
    return model


def handle(ctx: ServiceContext, data: bytes, content_type: str | None, outcome: str | None) -> Response:
    model = _model(ctx)
    message_id: str | None = None
    try:
        req = wire.parse_request(data, content_type, ctx.config.max_request_bytes)
        message_id = req.message_id
        check_headers(req.headers, req.operation, ctx.config.settings)
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
        return Response(exc.to_bytes(), status=exc.http_status, content_type=exc.content_type)
    except InsiError as exc:
        status, ctype, body = wire.fault_bytes(exc, message_id or exc.message_id)
        return Response(body, status=status, content_type=ctype)
    body, ctype = wire.response_bytes(result, req.operation, message_id)
    return Response(body, status=200, content_type=ctype)


def _register(app: Flask, ctx: ServiceContext) -> None:
    _model(ctx)

    @app.post(ENDPOINT)
    def lps() -> Response:
        return handle(ctx, request.get_data(), request.content_type, current_outcome())


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
    title="INSi — identité nationale de santé",
    default_port=8101,
    register=_register,
    outcomes=OUTCOMES,
    error_format="soap",
    attrs_of=_attrs_of,
    state_get=_state_get,
    state_post=_state_post,
    reset=_reset,
    description="Téléservice INSi (SOAP 1.2) : recherche d'INS par traits d'identité et par carte Vitale.",
)
