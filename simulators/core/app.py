"""Flask app factory shared by every simulator: control API, error handling, size limits."""

from __future__ import annotations

import json
from urllib.parse import unquote

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from .bounded_input import BoundedIntConverter
from .control import create_control_blueprint
from .faults import RUN_HEADER, run_id
from .problems import PROBLEM_CONTENT_TYPE, error_response, internal_error, problem_bytes
from .run_state import ACTIVE_RUN
from .service import ServiceContext

OUTCOME_HEADER = "X-Segur-Bench-Outcome"
"""Request header through which the front end tells the service which business outcome to produce.
Set by our ASGI front end only (a client-supplied one is removed before the service sees it)."""


TLS_HEADER = "X-Segur-Bench-Tls"
"""Request header through which the front end tells a Flask route what the TLS handshake established (JSON of
tls.tls_info); removed from incoming requests like the outcome header."""


RUN_HEADER_INTERNAL = "X-Segur-Bench-Run"
"""Request header through which the front end tells the Flask app which run an exchange belongs to, so the
service works on that run's own state when it has one (run_state.py); removed from incoming requests."""


def current_outcome() -> str | None:
    """The business outcome the fault engine chose for the request being handled, if any."""
    return request.headers.get(OUTCOME_HEADER) or None


def current_tls() -> dict | None:
    """The TLS facts of the request being handled (version, SNI, client certificate), None over plain HTTP."""
    raw = request.headers.get(TLS_HEADER)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def create_flask(ctx: ServiceContext) -> Flask:
    app = Flask(f"segur_bench.{ctx.name}")
    app.url_map.converters["int"] = BoundedIntConverter  # a 20-digit id is a 404, not an OverflowError
    app.config.update(
        MAX_CONTENT_LENGTH=ctx.config.max_request_bytes,
        JSON_SORT_KEYS=False,
        SEGUR_CONTEXT=ctx,
    )
    app.json.ensure_ascii = False
    app.extensions["segur_bench"] = ctx
    app.register_blueprint(create_control_blueprint(ctx), url_prefix="/_bench")

    def is_control() -> bool:
        return request.path.startswith("/_bench")

    # The business state a request works on: that of the run the front end attributed it to, or, for a control
    # request, of the run it names (?run= or X-Bench-Run) — when that run has its own (run_state.py).
    @app.before_request
    def enter_run_state() -> None:
        if not ctx.states.enabled:
            return
        named = (request.args.get("run") or request.headers.get(RUN_HEADER)) if is_control() \
            else unquote(request.headers.get(RUN_HEADER_INTERNAL) or "")
        g.segur_run_token = ACTIVE_RUN.set(run_id(named))

    @app.teardown_request
    def leave_run_state(_exc: BaseException | None) -> None:
        token = g.pop("segur_run_token", None)
        if token is not None:
            ACTIVE_RUN.reset(token)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        detail = exc.description or exc.name
        if exc.code == 405:
            detail = f"method {request.method} is not allowed on {request.path}"
        elif exc.code == 404:
            detail = f"no such resource: {request.path}"
        fmt = "problem" if is_control() else ctx.spec.error_format
        status, ctype, body = error_response(fmt, exc.code or 500, detail)
        resp = Response(body, status=status, content_type=ctype)
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        # The traceback goes to our log, never to the client.
        text = internal_error(ctx.logger, ctx.name, f"{request.method} {request.path}")
        fmt = "problem" if is_control() else ctx.spec.error_format
        status, ctype, body = error_response(fmt, 500, text)
        return Response(body, status=status, content_type=ctype)

    ctx.spec.register(app, ctx)
    return app


def problem_response(status: int, detail: str, **extra: object) -> Response:
    return Response(problem_bytes(status, detail, **extra), status=status, content_type=PROBLEM_CONTENT_TYPE)
