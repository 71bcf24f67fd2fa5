"""DMP simulator: SOAP 1.2 services patients / habilitations / registry / repository under /si-dmp-server/v2/services.

Flow: MTOM split + envelope + action (wire.py) -> VIHF (vihf.py) [+ PSC token in "API Pro Santé Connectée" mode]
-> forced outcome -> DMP rules and state (model.py) -> HL7v3 / ebRIM response or SOAP fault.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from simulators.core.app import current_outcome
from simulators.core.faults import RequestFacts
from simulators.core.service import ServiceContext, ServiceSpec
from simulators.core.soap import SoapError, soap_content_type
from simulators.core.tokens import InvalidToken, validator_for
from simulators.personas import load_personas

from . import seed, wire
from .model import OUTCOMES, DmpModel, Refused, RegError
from .vihf import Vihf, VihfError, extract, security_block

BASE = "/si-dmp-server/v2/services"
SERVICES = ("patients", "habilitations", "registry", "repository")


def _model(ctx: ServiceContext) -> DmpModel:
    model = ctx.models.get("dmp")
    if model is None:
        model = DmpModel(load_personas(), ctx.store, ctx.config.settings, render=wire.document_element_bytes,
                         seeds=seed)
        model.migrate(ctx.clock.now())
        ctx.models["dmp"] = model
    return model


def _caller(ctx: ServiceContext, req: wire.Request) -> Vihf:
    vihf = extract(security_block(req.envelope.header))
    if ctx.config.settings.get("auth_mode") == "psc":
        try:
            caller = validator_for(ctx).validate(request.headers.get("Authorization"))
        except InvalidToken as exc:
            raise VihfError(f"Mode API Pro Sante Connectee : jeton refuse ({exc.reason})") from None
        if caller.national_id != vihf.national_id:
            raise VihfError(f"Mode API Pro Sante Connectee : le NameID du VIHF ({vihf.national_id}) differe de "
                            f"l'identifiant national du jeton ({caller.national_id})")
    return vihf


def _soap(body: Any, action: str, relates_to: str | None) -> Response:
    data = wire.envelope(body, action, relates_to)
    return Response(data, status=200, content_type=soap_content_type(wire.RESPONSE_ACTIONS[action]))


def handle(ctx: ServiceContext, service: str, data: bytes, content_type: str | None, outcome: str | None) -> Response:
    model = _model(ctx)
    now = ctx.clock.now()
    model.tick(now)
    relates: str | None = None
    try:
        req = wire.parse_request(data, content_type, service, ctx.config.max_request_bytes)
        relates = req.message_id
        try:
            vihf = _caller(ctx, req)
        except VihfError as exc:
            raise wire.sender_fault(exc.reason, "wsse:InvalidSecurity", relates) from None
        if outcome == "dmp.indisponible":
            raise wire.receiver_fault("Le DMP est temporairement indisponible, reessayer ulterieurement",
                                      relates_to=relates)
        if outcome and outcome.startswith("dmp.erreur.") and req.transaction in ("TD0.2", "TD0.3"):
            raise wire.receiver_fault(f"Erreur {outcome.removeprefix('dmp.erreur.')} forcee par le banc de test",
                                      (wire.BENCH_FAULT_NS, outcome.removeprefix("dmp.erreur.")), relates)
        return _dispatch(ctx, model, req, vihf, outcome)
    except SoapError as exc:
        if exc.relates_to is None and relates:
            exc.relates_to = relates
        return Response(exc.to_bytes(), status=exc.http_status, content_type=exc.content_type)


def _dispatch(ctx: ServiceContext, model: DmpModel, req: wire.Request, vihf: Vihf, outcome: str | None) -> Response:
    now = ctx.clock.now()
    tx, relates = req.transaction, req.message_id
    if tx == "TD0.2":
        info = wire.parse_td02(req)
        result = model.existence(vihf, info["ins"], info["oid"], now, outcome)
        return _soap(wire.td02_response(info, result, now), req.action, relates)
    if tx == "TD0.3":
        info = wire.parse_td03(req)
        ins = info["ins"] or vihf.patient_ins
        if ins != vihf.patient_ins:
            err = RegError("XDSPatientIdDoesNotMatch", "Le patient differe de la ressource du VIHF")
            return _soap(wire.td03_response(False, None, err), req.action, relates)
        try:
            auth = model.set_authorisation(vihf, ins, info["action"], info["medecin_traitant"], now, outcome)
        except Refused as exc:
            return _soap(wire.td03_response(False, model.authorisation(ins, vihf.national_id, now), exc.errors[0]),
                         req.action, relates)
        return _soap(wire.td03_response(True, auth, None), req.action, relates)
    if tx in ("ITI-41", "ITI-57"):
        try:
            if tx == "ITI-41":
                model.provide_and_register(vihf, wire.parse_pnr(req), now, outcome)
            else:
                model.update(vihf, wire.parse_update(req), now, outcome)
            errors: list[RegError] = []
        except Refused as exc:
            errors = exc.errors
        return _soap(wire.registry_response(errors), req.action, relates)
    if tx == "ITI-18":
        query = wire.parse_query(req)
        try:
            rows = model.stored_query(vihf, query, now, outcome)
            body, leaves = wire.adhoc_response(rows, query.return_type, model.repository_id)
        except Refused as exc:
            body, leaves = wire.adhoc_response([], query.return_type, model.repository_id, exc.errors)
        data = wire.splice_leaves(wire.envelope(body, req.action, relates), leaves)
        return Response(data, status=200, content_type=soap_content_type(wire.RESPONSE_ACTIONS[req.action]))
    # ITI-43
    requests = wire.parse_retrieve(req)
    try:
        found, errors = model.retrieve(vihf, requests, now, outcome)
    except Refused as exc:
        found, errors = [], exc.errors
    body, attachments = wire.retrieve_response(found, errors, model.repository_id)
    envelope = wire.envelope(body, req.action, relates)
    data, ctype = wire.mtom_response(envelope, wire.RESPONSE_ACTIONS[req.action], attachments)
    return Response(data, status=200, content_type=ctype)


def _register(app: Flask, ctx: ServiceContext) -> None:
    _model(ctx)

    @app.post(f"{BASE}/<service>")
    def dmp_service(service: str) -> Response:
        if service not in SERVICES:
            err = wire.sender_fault(f"Service DMP inconnu {service!r} (attendu {', '.join(SERVICES)})")
            return Response(err.to_bytes(), status=404, content_type=err.content_type)
        return handle(ctx, service, request.get_data(), request.content_type, current_outcome())


def _operation_of(facts: RequestFacts) -> str | None:
    if not facts.path.startswith(BASE):
        return None
    from simulators.core.soap import action_from_content_type

    action = action_from_content_type(facts.headers.get("content-type"))
    if action is None and facts.body:
        head = facts.body[:4096]
        for known in wire.ACTIONS:
            if known.encode() in head:
                action = known
                break
    return wire.ACTIONS[action][1] if action in wire.ACTIONS else None


def _attrs_of(facts: RequestFacts) -> dict[str, str]:
    if not facts.path.startswith(BASE) or not facts.body:
        return {}
    return wire.request_attrs(facts.body)


def _state_get(ctx: ServiceContext) -> dict:
    model = _model(ctx)
    model.tick(ctx.clock.now())
    ins = request.args.get("ins") if request else None
    try:
        limit = int(request.args.get("limit", "500"))
    except ValueError:
        limit = 500
    return model.state(ins, max(1, min(limit, 10_000)))


def _state_post(ctx: ServiceContext, body: Any) -> dict:
    return _model(ctx).apply(body, ctx.clock.now())


def _reset(ctx: ServiceContext) -> None:
    _model(ctx).reset(ctx.clock.now())


SPEC = ServiceSpec(
    name="dmp",
    run_state=True,  # a run may have its own patients' state (core/run_state.py)
    client_cert="required",  # the DMP is reached in mutual TLS with an ORG AUTH_CLI certificate
    title="DMP / Mon espace santé",
    default_port=8102,
    register=_register,
    outcomes=OUTCOMES,
    error_format="soap",
    operation_of=_operation_of,
    attrs_of=_attrs_of,
    state_get=_state_get,
    state_post=_state_post,
    reset=_reset,
    description="DMP intégré aux LPS (SOAP 1.2, MTOM, VIHF) : TD0.2, TD0.3, ITI-41, ITI-18, ITI-43, ITI-57.",
)
