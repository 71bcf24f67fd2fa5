"""ApCV simulator: POST /apcv, operations authentifierUtilisateurProximite / restituerContexteApCV /
detruireContexteApCV (ApCV_AUTH 1.0.0).

Flow: envelope + action + headers (wire.py) -> header rules and input rules (model.py) -> forced business
outcome if the fault engine chose one -> QR-code check / context store (SQLite) -> response or SOAP fault.
Control: ``POST /_bench/state {"present": "<patient id or INS>"}`` issues a QR code (payload + PNG);
``GET /_bench/apcv/<patient>/qr.png`` does the same as a plain image; ``GET /_bench/carte-vitale/<patient>`` gives
the image of the patient's test carte Vitale (wire.card_image_bytes), which an LGC reads in place of a card reader.
"""

from __future__ import annotations

import base64
from typing import Any

from flask import Flask, Response, request

from simulators.core.app import current_outcome, problem_response
from simulators.core.faults import RequestFacts
from simulators.core.service import ServiceContext, ServiceSpec
from simulators.core.soap import SoapError
from simulators.core.teleservice import envelope_fault_bytes, fault_bytes
from simulators.personas import load_personas

from . import wire
from .model import (
    OP_AUTH,
    OP_DETRUIRE,
    OUTCOMES,
    ApcvModel,
    AuthRequest,
    ContextRequest,
    TeleserviceError,
    check_headers,
    context_expired,
    context_unknown,
    unavailable,
)

ENDPOINT = "/apcv"
QR_ROUTE = "/_bench/apcv/<patient>/qr.png"
CARD_ROUTE = "/_bench/carte-vitale/<patient>"
def _model(ctx: ServiceContext) -> ApcvModel:
    model = ctx.models.get("apcv")
    if model is None:
        model = ApcvModel(load_personas(), ctx.store, ctx.config.settings)
        model.migrate()
        ctx.models["apcv"] = model
    return model


def handle(ctx: ServiceContext, data: bytes, content_type: str | None, outcome: str | None) -> Response:
    model = _model(ctx)
    message_id: str | None = None
    try:
        req = wire.parse_request(data, content_type, ctx.config.max_request_bytes)
        message_id = req.message_id
        assertion = check_headers(req.headers, ctx.config.settings, ctx.clock.recent_now)
        facturation = assertion.get("identifiantFacturation")
        if req.operation == OP_AUTH:
            auth = AuthRequest.validated(req.body, assertion)
            if outcome == "apcv.service-indisponible":
                raise unavailable()
            context = model.authenticate(auth, ctx.clock.now(), force_expired=outcome == "apcv.qr-expire")
            body = wire.auth_element(context)
        else:
            element = wire.BODY_OF[req.operation]
            context_id = ContextRequest.validated(req.body, element).context_id
            if outcome == "apcv.service-indisponible":
                raise unavailable()
            if outcome == "apcv.contexte-inconnu":
                raise context_unknown(context_id)
            if outcome == "apcv.contexte-expire":
                raise context_expired(context_id)
            if req.operation == OP_DETRUIRE:
                now = ctx.clock.now()
                body = wire.destroy_element(model.destroy(context_id, facturation, now), now)
            else:
                view = model.restore(context_id, facturation, ctx.clock.now())
                body = wire.context_element(view)
    except SoapError as exc:
        status, ctype, fault = envelope_fault_bytes(exc)
        return Response(fault, status=status, content_type=ctype)
    except TeleserviceError as exc:
        status, ctype, fault = fault_bytes(exc, message_id or exc.message_id)
        return Response(fault, status=status, content_type=ctype)
    payload, ctype = wire.response_bytes(body, req.operation, message_id)
    return Response(payload, status=200, content_type=ctype)


def _register(app: Flask, ctx: ServiceContext) -> None:
    _model(ctx)

    @app.post(ENDPOINT)
    def apcv() -> Response:
        return handle(ctx, request.get_data(), request.content_type, current_outcome())

    @app.get(CARD_ROUTE)
    def card_image(patient: str) -> Response:
        # Control route: the image of the test carte Vitale the patient is on, for an LGC to read in place of a
        # card reader (the guided driver asks a person with a real test card instead).
        try:
            _patient, beneficiaries = _model(ctx).card_of(patient)
        except ValueError as exc:
            return problem_response(404, str(exc))
        resp = Response(wire.card_image_bytes(beneficiaries), status=200, content_type="application/json")
        resp.headers["Content-Disposition"] = f'attachment; filename="carte-vitale-{_patient.id}.json"'
        return resp

    @app.get(QR_ROUTE)
    def qr_png(patient: str) -> Response:
        # Control route (under /_bench): never goes through the fault engine; a new QR code per call.
        try:
            presented = _model(ctx).present(patient, ctx.clock.now())
        except ValueError as exc:
            return problem_response(404, str(exc))
        resp = Response(base64.b64decode(presented["png_base64"]), status=200, content_type="image/png")
        resp.headers["X-ApCV-Donnees"] = presented["payload"]
        resp.headers["X-ApCV-Expiration"] = presented["expires_at"]
        resp.headers["Cache-Control"] = "no-store"
        return resp


def _attrs_of(facts: RequestFacts) -> dict[str, str]:
    if facts.path != ENDPOINT or not facts.body:
        return {}
    return wire.request_attrs(facts.body)


def _state_get(ctx: ServiceContext) -> dict:
    return _model(ctx).state(ctx.clock.now())


def _state_post(ctx: ServiceContext, body: Any) -> dict:
    return _model(ctx).apply(body, ctx.clock.now())


def _reset(ctx: ServiceContext) -> None:
    _model(ctx).reset()


SPEC = ServiceSpec(
    name="apcv",
    run_state=True,  # a run may have its own patients' state (core/run_state.py)
    client_cert="optional",
    title="Appli carte Vitale",
    default_port=8105,
    register=_register,
    outcomes=OUTCOMES,
    error_format="soap",
    attrs_of=_attrs_of,
    state_get=_state_get,
    state_post=_state_post,
    reset=_reset,
    description="Appli carte Vitale (SOAP 1.2, ApCV_AUTH) : authentification du patient par QR code, "
    "restitution et destruction du contexte ApCV.",
)
