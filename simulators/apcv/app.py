"""ApCV simulator: POST /apcv, operations authentifierUtilisateurProximite / restituerContexteApCV /
detruireContexteApCV (ApCV_AUTH 1.0.0).

Flow: envelope + action + headers (wire.py) -> header rules and input rules (model.py) -> forced business
outcome if the fault engine chose one -> QR-code check / context store (SQLite) -> response or SOAP fault.
Control: ``POST /_bench/state {"present": "<patient id or INS>"}`` issues a QR code (payload + PNG);
``GET /_bench/apcv/<patient>/qr.png`` does the same as a plain image.
"""

from __future__ import annotations

import base64
import random
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, request

from simulators.core.app import current_outcome, problem_response
from simulators.core.faults import RequestFacts
from simulators.core.service import ServiceContext, ServiceSpec
from simulators.core.soap import SoapError
from simulators.personas import load_personas

from . import wire
from .model import (
    OP_AUTH,
    OP_DETRUIRE,
    OUTCOMES,
    ApcvError,
    ApcvModel,
    AuthRequest,
    ContextRequest,
    check_headers,
    context_expired,
    context_unknown,
    unavailable,
)

ENDPOINT = "/apcv"
QR_ROUTE = "/_bench/apcv/<patient>/qr.png"
LOCK_RETRIES = 50

T = TypeVar("T")


def with_lock_retry(fn: Callable[[], T]) -> T:
    """Run ``fn`` again when SQLite says "locked".

    The in-memory store (tests, single process) is a shared-cache database whose table locks are not covered by
    busy_timeout (see tests/core/test_clock_store.py): concurrent requests would fail at once. Every ApCV write is
    one transaction that rolls back on error, so running the step again is safe. File stores rarely get here.
    """
    for attempt in range(LOCK_RETRIES):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == LOCK_RETRIES - 1:
                raise
            time.sleep(0.002 + random.random() * 0.01 * (1 + attempt // 5))
    raise AssertionError("unreachable")


def _model(ctx: ServiceContext) -> ApcvModel:
    model = ctx.extras.get("apcv")
    if model is None:
        model = ApcvModel(load_personas(), ctx.store, ctx.config.settings)
        model.migrate()
        ctx.extras["apcv"] = model
    return model


def handle(ctx: ServiceContext, data: bytes, content_type: str | None, outcome: str | None) -> Response:
    model = _model(ctx)
    message_id: str | None = None
    try:
        req = wire.parse_request(data, content_type, ctx.config.max_request_bytes)
        message_id = req.message_id
        assertion = check_headers(req.headers, ctx.config.settings)
        facturation = assertion.get("identifiantFacturation")
        if req.operation == OP_AUTH:
            auth = AuthRequest.validated(req.body, assertion)
            if outcome == "apcv.service-indisponible":
                raise unavailable()
            context = with_lock_retry(lambda: model.authenticate(auth, ctx.clock.now(),
                                                                  force_expired=outcome == "apcv.qr-expire"))
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
                now = with_lock_retry(ctx.clock.now)
                body = wire.destroy_element(with_lock_retry(lambda: model.destroy(context_id, facturation, now)), now)
            else:
                view = with_lock_retry(lambda: model.restore(context_id, facturation, ctx.clock.now()))
                body = wire.context_element(view)
    except SoapError as exc:
        return Response(exc.to_bytes(), status=exc.http_status, content_type=exc.content_type)
    except ApcvError as exc:
        status, ctype, fault = wire.fault_bytes(exc, message_id or exc.message_id)
        return Response(fault, status=status, content_type=ctype)
    payload, ctype = wire.response_bytes(body, req.operation, message_id)
    return Response(payload, status=200, content_type=ctype)


def _register(app: Flask, ctx: ServiceContext) -> None:
    _model(ctx)

    @app.post(ENDPOINT)
    def apcv() -> Response:
        return handle(ctx, request.get_data(), request.content_type, current_outcome())

    @app.get(QR_ROUTE)
    def qr_png(patient: str) -> Response:
        # Control route (under /_bench): never goes through the fault engine; a new QR code per call.
        try:
            presented = with_lock_retry(lambda: _model(ctx).present(patient, ctx.clock.now()))
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
    return with_lock_retry(lambda: _model(ctx).state(ctx.clock.now()))


def _state_post(ctx: ServiceContext, body: Any) -> dict:
    return with_lock_retry(lambda: _model(ctx).apply(body, ctx.clock.now()))


def _reset(ctx: ServiceContext) -> None:
    with_lock_retry(_model(ctx).reset)


SPEC = ServiceSpec(
    name="apcv",
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
