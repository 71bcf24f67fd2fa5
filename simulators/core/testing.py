"""A minimal service used to test and benchmark the core (not a simulator of a real service).

It answers plain HTTP (`/echo`, `/items/<id>`, and `/fast-echo` as a fast route) and SOAP 1.2 (`/soap`),
declares one business
outcome, and keeps a small seedable state, so every core mechanism can be exercised without
depending on any national-service simulator.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, jsonify, request

from .app import current_outcome
from .service import FastRequest, FastResponse, ServiceContext, ServiceSpec
from .soap import SOAP_CONTENT_TYPE, SoapError, build_envelope, parse_envelope
from .store import Store
from .xmlsafe import parse_xml

ECHO_NS = "urn:segur-bench:echo"


def _items(ctx: ServiceContext) -> Store:
    """The store holding the items, its table created on first use: once for the shared state, once for each
    run's own state (as the real services build their models through ctx.models)."""
    if "echo" not in ctx.models:
        ctx.store.migrate("echo", ["CREATE TABLE items (id TEXT PRIMARY KEY, value TEXT NOT NULL)"])
        ctx.models["echo"] = True
    return ctx.store


def _register(app: Flask, ctx: ServiceContext) -> None:
    _items(ctx)

    @app.post("/echo")
    def echo() -> Response:
        if current_outcome() == "refus":
            return jsonify({"result": "refused"}), 409
        return Response(request.get_data(), content_type=request.content_type or "application/octet-stream")

    @app.get("/items/<item_id>")
    def item(item_id: str) -> Any:
        row = _items(ctx).execute("SELECT value FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            return jsonify({"error": "not found"}), 404
        return jsonify({"id": item_id, "value": json.loads(row["value"]), "now": ctx.clock.now().isoformat()})

    @app.get("/boom")
    def boom() -> Any:
        raise RuntimeError("deliberate failure with a secret in it: s3cr3t")

    @app.post("/soap")
    def soap() -> Response:
        try:
            env = parse_envelope(request.get_data())
        except SoapError as exc:
            return Response(exc.to_bytes(), status=exc.http_status, content_type=exc.content_type)
        answer = parse_xml(f'<e:Pong xmlns:e="{ECHO_NS}"><e:Outcome>{current_outcome() or "ok"}</e:Outcome></e:Pong>')
        body = build_envelope(answer, action=(env.action or "urn:echo:ping") + "Response", relates_to=env.message_id)
        return Response(body, content_type=SOAP_CONTENT_TYPE)


def _fast_echo(ctx: ServiceContext, req: FastRequest) -> FastResponse:
    """A fast route (served on the event loop, inline when no fault rule exists): echoes the body."""
    if req.body == b"boom":
        raise RuntimeError("deliberate failure of a fast route")
    if req.body == b"split":  # a header that would split the answer: must never reach the wire
        return FastResponse(200, "text/plain", b"x", headers=(("x-injected", "a\r\nset-cookie: x=1"),))
    if req.outcome == "refus":
        return FastResponse(409, "application/json", b'{"result": "refused"}')
    return FastResponse(200, req.content_type or "application/octet-stream", req.body,
                        headers=(("x-echo-length", str(len(req.body))),))


def _state_get(ctx: ServiceContext) -> dict:
    return {r["id"]: json.loads(r["value"]) for r in _items(ctx).query("SELECT id, value FROM items ORDER BY id")}


def _state_post(ctx: ServiceContext, body: Any) -> dict:
    if not isinstance(body, dict) or not isinstance(body.get("items"), dict):
        raise ValueError('expected {"items": {"<id>": <value>, …}}')
    with _items(ctx).transaction() as conn:
        for key, value in body["items"].items():
            conn.execute("INSERT OR REPLACE INTO items (id, value) VALUES (?, ?)", (key, json.dumps(value)))
    return _state_get(ctx)


def _reset(ctx: ServiceContext) -> None:
    _items(ctx).execute("DELETE FROM items")


def echo_spec(name: str = "echo", error_format: str = "problem", *, run_state: bool = False) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        title="Service d'écho (tests du cœur)",
        default_port=0,
        register=_register,
        outcomes={"refus": "la requête est refusée (HTTP 409)"},
        error_format=error_format,
        attrs_of=lambda facts: {"item": facts.path.rsplit("/", 1)[-1]} if facts.path.startswith("/items/") else {},
        state_get=_state_get,
        state_post=_state_post,
        fast_routes={("POST", "/fast-echo"): _fast_echo},
        reset=_reset,
        run_state=run_state,
    )
