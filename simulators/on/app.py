"""Ordonnance numérique simulator: POST /eprescription, operations creerEPrescription / consulterEPrescription /
rechercherEPrescriptions (wire format: the bench's own assumption, see README.md).

Flow: envelope + action + headers (wire.py) -> ContexteLPS, then the PS assertion or the bearer token (API Pro
Santé Connectée) -> input rules (model.py) -> forced business outcome if the fault engine chose one ->
prescription store (SQLite) -> response or SOAP fault.
Control: ``POST /_bench/state {"delivrance": {"numero": …, "etat": "DELIVREE"}}`` sets the dispensation state;
``GET /_bench/on/<numero>/qr.png`` returns the printed 2D code.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from simulators.core.app import current_outcome, problem_response
from simulators.core.faults import RequestFacts
from simulators.core.service import ServiceContext, ServiceSpec
from simulators.core.soap import SoapError
from simulators.core.teleservice import (
    TeleserviceError,
    bearer_caller,
    check_lps,
    envelope_fault_bytes,
    www_authenticate,
)
from simulators.core.tokens import validator_for
from simulators.insi import model as insi_rules
from simulators.personas import load_personas

from . import wire
from .model import (
    OP_CONSULTER,
    OP_CREER,
    OUTCOME_EFFECTS,
    OUTCOMES,
    CreateRequest,
    OnError,
    OnModel,
    check_ins,
    check_numero,
    check_prescriber_assertion,
    check_version,
    qr_png,
    unavailable,
)

ENDPOINT = "/eprescription"
QR_ROUTE = "/_bench/on/<numero>/qr.png"


def _model(ctx: ServiceContext) -> OnModel:
    model = ctx.models.get("on")
    if model is None:
        model = OnModel(load_personas(), ctx.store, ctx.config.settings)
        model.migrate()
        ctx.models["on"] = model
    return model


def _caller(ctx: ServiceContext, req: wire.Request, authorization: str | None) -> str:
    """National id of the calling professional: from the bearer token if one is sent, else the PS assertion."""
    caller = bearer_caller(authorization, validator_for(ctx), required=False)
    if caller is not None:
        return caller.national_id  # type: ignore[return-value]
    return check_prescriber_assertion(req.headers, ctx.config.settings, ctx.clock.recent_now)


def handle(ctx: ServiceContext, data: bytes, content_type: str | None, outcome: str | None,
           authorization: str | None = None) -> Response:
    model = _model(ctx)
    settings = ctx.config.settings
    message_id: str | None = None
    try:
        req = wire.parse_request(data, content_type, ctx.config.max_request_bytes)
        message_id = req.message_id
        check_lps(req.headers, settings)
        caller_nid = _caller(ctx, req, authorization)
        now = ctx.clock.now()
        if req.operation == OP_CREER:
            query: Any = CreateRequest.validated(req.body, caller_nid, model.personas, settings, now.date())
        elif req.operation == OP_CONSULTER:
            check_version(req.body.get("version"), "ConsulterEPrescriptionReq")
            query = check_numero(req.body.get("numero"))
        else:
            check_version(req.body.get("version"), "RechercherEPrescriptionsReq")
            ins, _ = check_ins(req.body.get("ins"), model.personas, settings)
            debut = fin = None
            if req.body.get("date_debut"):
                debut = _date(req.body["date_debut"], "DateDebut")
            if req.body.get("date_fin"):
                fin = _date(req.body["date_fin"], "DateFin")
            query = (ins, debut, fin)
        if outcome == "on.indisponible":
            raise unavailable()
        if outcome == "on.ko":
            body = wire.ko_element(req.operation, "10")
        elif req.operation == OP_CREER:
            body = wire.creer_element(model.create(query, now))
        elif req.operation == OP_CONSULTER:
            found = model.get(query)
            if found is None:
                body = wire.ko_element(req.operation, "01")
            else:
                body = wire.consulter_element(found, model.personas.professional_by_national_id(found.prescripteur_nid))
        else:
            body = wire.rechercher_element(model.search(*query))
    except SoapError as exc:
        status, ctype, fault = envelope_fault_bytes(exc)
        return Response(fault, status=status, content_type=ctype)
    except TeleserviceError as exc:
        status, ctype, fault = wire.fault_bytes(exc, message_id or exc.message_id)
        return Response(fault, status=status, content_type=ctype, headers=www_authenticate(exc))
    payload, ctype = wire.response_bytes(body, req.operation, message_id)
    return Response(payload, status=200, content_type=ctype)


def _date(value: str, name: str) -> Any:
    try:
        return insi_rules.check_date(value, name)
    except TeleserviceError as exc:
        raise OnError("Sender", "siram_50", "epresc_001", exc.reason) from None


def _register(app: Flask, ctx: ServiceContext) -> None:
    _model(ctx)

    @app.post(ENDPOINT)
    def eprescription() -> Response:
        return handle(ctx, request.get_data(), request.content_type, current_outcome(),
                      request.headers.get("Authorization"))

    @app.get(QR_ROUTE)
    def qr(numero: str) -> Response:
        found = _model(ctx).get(numero)
        if found is None:
            return problem_response(404, f"unknown prescription number {numero!r}")
        resp = Response(qr_png(found.qr), status=200, content_type="image/png")
        resp.headers["X-ON-Donnees"] = found.qr
        return resp


def _attrs_of(facts: RequestFacts) -> dict[str, str]:
    if facts.path != ENDPOINT or not facts.body:
        return {}
    return wire.request_attrs(facts.body)


def _state_get(ctx: ServiceContext) -> dict:
    return _model(ctx).state()


def _state_post(ctx: ServiceContext, body: Any) -> dict:
    return _model(ctx).apply(body, ctx.clock.now())


def _reset(ctx: ServiceContext) -> None:
    _model(ctx).reset()


SPEC = ServiceSpec(
    name="on",
    run_state=True,  # a run may have its own patients' state (core/run_state.py)
    client_cert="optional",
    title="Ordonnance numérique",
    default_port=8103,
    register=_register,
    outcomes=OUTCOMES,
    error_format="soap",
    attrs_of=_attrs_of,
    state_get=_state_get,
    state_post=_state_post,
    reset=_reset,
    outcome_effects=OUTCOME_EFFECTS,
    description="Ordonnance numérique (e-prescription CNAM, SOAP 1.2, format supposé par le banc) : création et "
    "consultation de prescriptions, numéro unique et QR code à imprimer.",
)
