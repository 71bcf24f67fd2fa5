"""OpenAPI 3.1 description of the control API (/_bench/), served at /_bench/openapi.json."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .faults import EFFECTS

if TYPE_CHECKING:
    from .service import ServiceContext

_PROBLEM = {"$ref": "#/components/responses/Problem"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _q(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def control_openapi(ctx: ServiceContext) -> dict[str, Any]:
    obj = {"type": "object"}
    rule_ref = {"$ref": "#/components/schemas/Rule"}
    paths: dict[str, Any] = {
        "/_bench/health": {"get": {
            "summary": "Liveness, version, simulated clock, active incidents and run",
            "responses": {"200": _json(obj)}}},
        "/_bench/pki/ca.pem": {"get": {
            "summary": "The bench CA chain (intermediate then root, PEM) to trust; no token needed",
            "responses": {"200": {"description": "PEM", "content": {"application/x-pem-file": {}}},
                          "404": _PROBLEM}}},
        "/_bench/pki/crl.pem": {"get": {
            "summary": "The bench's certificate revocation lists (PEM); no token needed",
            "responses": {"200": {"description": "PEM", "content": {"application/x-pem-file": {}}},
                          "404": _PROBLEM}}},
        "/_bench/faults": {
            "get": {"summary": "Fault rules with their counters, the effect catalogue and the service's outcomes",
                    "responses": {"200": _json(obj)}},
            "post": {"summary": "Add one rule, a list of rules, or {\"rules\": [...]} (all or nothing)",
                     "requestBody": _body({"oneOf": [rule_ref, {"type": "array", "items": rule_ref},
                                                     {"type": "object", "properties": {
                                                         "rules": {"type": "array", "items": rule_ref}}}]}),
                     "responses": {"201": _json(obj, "Created"), "400": _PROBLEM}},
            "delete": {"summary": "Remove every rule, or those of one incident, or of one run's scope",
                       "parameters": [_q("incident", "only the rules of this incident"),
                                      _q("run", "only the rules scoped to this run")],
                       "responses": {"200": _json(obj)}},
        },
        "/_bench/faults/{rule_id}": {"delete": {
            "summary": "Remove one rule",
            "parameters": [{"name": "rule_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"204": {"description": "Removed"}, "404": _PROBLEM}}},
        "/_bench/incidents": {"get": {"summary": "Incident profiles available and active",
                                      "responses": {"200": _json(obj)}}},
        "/_bench/incidents/{name}": {
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "post": {"summary": "Apply this service's part of an incident profile (replaces an earlier application)",
                     "parameters": [_q("run", "only the exchanges of this run see the incident")],
                     "responses": {"200": _json(obj, "The incident has no rule for this service"),
                                   "201": _json(obj, "Applied"), "400": _PROBLEM}},
            "delete": {"summary": "Remove the rules of an incident",
                       "parameters": [_q("run", "only this run's application of it")],
                       "responses": {"200": _json(obj)}},
        },
        "/_bench/journal": {"get": {
            "summary": "Recorded exchanges, oldest first",
            "parameters": [
                _q("since", "ISO-8601 instant or epoch seconds (received at or after)"),
                _q("until", "ISO-8601 instant or epoch seconds (received at or before)"),
                _q("run", "run id"),
                _q("operation", "operation name, e.g. rechercherInsAvecTraitsIdentite or 'GET /fhir/v2/Practitioner'"),
                _q("limit", "maximum number of entries", {"type": "integer", "minimum": 1}),
                _q("format", "json (default), jsonl or har", {"type": "string", "enum": ["json", "jsonl", "har"]}),
            ],
            "responses": {"200": {"description": "OK", "content": {
                "application/json": {"schema": obj},
                "application/x-ndjson": {"schema": {"type": "string"}}}}, "400": _PROBLEM}}},
        "/_bench/journal/feed": {"get": {
            "summary": "Entries journaled after a cursor, in journaling order (to follow the journal live)",
            "description": "Without `after`: the last `limit` entries. Each answer's `cursor` is the `after` of the "
                           "next call; `more` says whether entries remain beyond `limit`; `restarted` says the "
                           "journal was cleared since the cursor was given (the entries then start again).",
            "parameters": [
                _q("after", "a cursor from a previous answer"),
                _q("run", "run id"),
                _q("operation", "operation name"),
                _q("limit", "maximum number of entries (default 200)", {"type": "integer", "minimum": 1,
                                                                       "maximum": 1000}),
            ],
            "responses": {"200": _json({"type": "object", "properties": {
                "service": {"type": "string"}, "cursor": {"type": "string"}, "more": {"type": "boolean"},
                "restarted": {"type": "boolean"}, "count": {"type": "integer"},
                "entries": {"type": "array", "items": obj}}}), "400": _PROBLEM}}},
        "/_bench/reset": {"post": {
            "summary": "Clear faults, journal, clock, run and service state (except those listed in keep); with "
                       "{\"run\": id}, only that run's fault rules and journal entries (clock and state are shared)",
            "requestBody": _body({"oneOf": [
                {"type": "object", "properties": {"keep": {"type": "array", "items": {
                    "type": "string", "enum": ["faults", "journal", "clock", "state", "run"]}}}},
                {"type": "object", "required": ["run"], "properties": {"run": {"type": "string"}},
                 "additionalProperties": False}]}, required=False),
            "responses": {"200": _json(obj), "400": _PROBLEM}}},
        "/_bench/clock": {
            "get": {"summary": "Simulated time", "responses": {"200": _json({"$ref": "#/components/schemas/Clock"})}},
            "post": {"summary": "Move the simulated clock",
                     "requestBody": _body({"type": "object", "properties": {
                         "advance": {"type": "string", "description": "ISO-8601 duration, e.g. P3M, P6M, PT2H"},
                         "set": {"type": "string", "format": "date-time"},
                         "freeze": {"type": "boolean"}, "reset": {"type": "boolean"}}}),
                     "responses": {"200": _json({"$ref": "#/components/schemas/Clock"}), "400": _PROBLEM}},
        },
        "/_bench/state": {
            "get": {"summary": "Inspect the service's state", "responses": {"200": _json(obj)}},
            "post": {"summary": "Seed the service's state (shape defined by the service)",
                     "description": "A seed that would overwrite state the service protects is refused with 409 "
                                    "(problem JSON, nothing changed) unless the body explicitly asks to replace it; "
                                    "e.g. Pro Santé Connect refuses `{\"clients\": [...]}` naming a client_id "
                                    "already registered with other metadata, unless `\"replace\": true` is given "
                                    "(see the service's README).",
                     "requestBody": _body(obj),
                     "responses": {"200": _json(obj), "400": _PROBLEM, "409": _PROBLEM, "501": _PROBLEM}},
        },
        "/_bench/run": {
            "get": {"summary": "Current run id (stamped on every journal entry)", "responses": {"200": _json(obj)}},
            "post": {"summary": "Start (or end, with null) a run",
                     "requestBody": _body({"type": "object", "required": ["run"], "properties": {
                         "run": {"type": ["string", "null"]}, "label": {"type": "string"}}}),
                     "responses": {"200": _json(obj), "400": _PROBLEM}},
        },
        "/_bench/runs": {
            "get": {"summary": "The current run and every run's bound client certificates",
                    "responses": {"200": _json(obj)}},
        },
        "/_bench/runs/{run}": {
            "parameters": [{"name": "run", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "The client certificates bound to this run", "responses": {"200": _json(obj)}},
            "put": {"summary": "Bind TLS client certificates to a run (replaces the run's previous ones)",
                    "description": "Exchanges made with one of these certificates (HTTPS, SMTP after STARTTLS, "
                                   "IMAPS) belong to this run when they carry no X-Bench-Run header: an unmodified "
                                   "LGC is told apart by its workstation certificate. A certificate bound to "
                                   "another run is refused with 409.",
                    "requestBody": _body({"type": "object", "required": ["client_certs"], "properties": {
                        "client_certs": {"type": "array", "minItems": 1, "items": {
                            "type": "string", "description": "SHA-256 fingerprint (hex, colons allowed) or PEM"}},
                        "label": {"type": "string"}}}),
                    "responses": {"200": _json(obj), "400": _PROBLEM, "409": _PROBLEM}},
            "delete": {"summary": "Release the run's certificates", "responses": {"200": _json(obj)}},
        },
        "/_bench/openapi.json": {"get": {"summary": "This document", "responses": {"200": _json(obj)}}},
    }
    _add_service_routes(paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"segur-bench control API — {ctx.spec.title}",
            "version": "1",
            "description": "Steer the simulator: fault rules, incidents, journal, simulated clock, state. "
                           "JSON bodies are RFC 8259 JSON nested at most 32 levels, with 64-bit integers and finite "
                           "numbers (NaN and Infinity are refused); anything else is a 400 problem. "
                           f"Business outcomes of this service: {', '.join(sorted(ctx.spec.outcomes)) or 'none'}.",
        },
        "servers": [{"url": ctx.config.base_url}],
        "paths": paths,
        "components": {
            "schemas": {
                "Rule": {
                    "type": "object",
                    "required": ["effect"],
                    "properties": {
                        "service": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                        "operation": {"type": "string", "description": "glob on the operation name"},
                        "match": {"type": "object", "properties": {
                            "method": {"type": "string"}, "path": {"type": "string"},
                            "header": {"type": "object", "additionalProperties": {"type": "string"}},
                            "query": {"type": "object", "additionalProperties": {"type": "string"}},
                            "body_contains": {"type": "string"},
                            "body_regex": {"type": "string", "maxLength": 500, "description":
                                           "RE2 syntax (Python's without backreferences or lookaround), searched "
                                           "in the body in linear time"},
                            "attrs": {"type": "object", "additionalProperties": {"type": "string"}}}},
                        "effect": {"type": "object", "required": ["type"], "properties": {
                            "type": {"type": "string", "enum": sorted(EFFECTS)}}},
                        "probability": {"type": "number", "minimum": 0, "maximum": 1},
                        "seed": {"type": "integer"},
                        "first": {"type": "integer", "minimum": 1},
                        "ttl_s": {"type": "number", "exclusiveMinimum": 0},
                        "incident": {"type": "string"},
                        "label": {"type": "string"},
                        "id": {"type": "string"},
                        "run": {"type": "string", "maxLength": 200, "description":
                                "only the exchanges of this run: the X-Bench-Run header of the request, else the "
                                "run its TLS client certificate is bound to (PUT /_bench/runs/{run}), else the "
                                "service's current run (POST /_bench/run)"},
                    },
                },
                "Clock": {"type": "object", "properties": {
                    "now": {"type": "string", "format": "date-time"},
                    "real": {"type": "string", "format": "date-time"},
                    "offset_seconds": {"type": "number"}, "frozen": {"type": "boolean"}}},
                "Problem": {"type": "object", "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"},
                    "status": {"type": "integer"}, "detail": {"type": "string"}}},
            },
            "responses": {"Problem": {"description": "RFC 9457 problem", "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}},
        },
    }


def _add_service_routes(paths: dict[str, Any]) -> None:
    """Service-specific control routes (e.g. /_bench/mss/inject), described from their view's docstring."""
    import re

    from flask import current_app, has_app_context

    if not has_app_context():
        return
    for rule in current_app.url_map.iter_rules():
        if not rule.rule.startswith("/_bench/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        if path in paths:
            continue
        doc = (current_app.view_functions[rule.endpoint].__doc__ or "").strip().splitlines()
        item: dict[str, Any] = {}
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in re.findall(r"{([^}]+)}", path)]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op: dict[str, Any] = {"summary": doc[0] if doc else f"{method} {path}",
                                  "responses": {"200": {"description": "OK"}, "400": _PROBLEM}}
            if params:
                op["parameters"] = params
            item[method.lower()] = op
        paths[path] = item
