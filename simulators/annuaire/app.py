"""Annuaire santé simulator: FHIR R4 JSON API at /fhir/v2 (Practitioner, PractitionerRole, Organization search and
read, CapabilityStatement), ``ESANTE-API-KEY`` header, MSSanté mailboxes as ``telecom`` with the
``as-ext-mailbox-mss-metadata`` extension, paging with ``_count`` / ``_offset``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, request

from simulators.core.app import current_outcome
from simulators.core.faults import RequestFacts
from simulators.core.service import ServiceContext, ServiceSpec
from simulators.personas import load_personas

from .model import PARAMS, Directory, Query, SearchError, parse_query
from .wire import search_outcome

BASE = "/fhir/v2"
FHIR_JSON = "application/fhir+json; charset=utf-8"
API_KEY_HEADER = "ESANTE-API-KEY"
DEFAULT_API_KEYS = ("segur-bench-annuaire",)
TYPES = tuple(PARAMS)

OUTCOMES = {
    "annuaire.indisponible": "HTTP 503 avec OperationOutcome : API Annuaire santé indisponible",
    "annuaire.quota": "HTTP 429 avec OperationOutcome : quota d'appels de la clé API dépassé",
    "annuaire.vide": "recherche sans résultat (Bundle searchset, total 0)",
}


def _directory(ctx: ServiceContext) -> Directory:
    d = ctx.models.get("annuaire")
    if d is None:
        d = Directory(load_personas())
        ctx.models["annuaire"] = d
    return d


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type=FHIR_JSON)


def operation_outcome(status: int, code: str, diagnostics: str, severity: str = "error") -> Response:
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]}
    resp = _json(body, status)
    if status == 401:
        resp.headers["WWW-Authenticate"] = f'ApiKey header="{API_KEY_HEADER}"'
    return resp


def _check_key(ctx: ServiceContext) -> Response | None:
    key = request.headers.get(API_KEY_HEADER)
    accepted = ctx.config.settings.get("api_keys") or DEFAULT_API_KEYS
    if not key:
        return operation_outcome(401, "login", f"En-tete {API_KEY_HEADER} absent : une cle d'API est requise")
    if key not in accepted:
        return operation_outcome(401, "login", f"Cle d'API {API_KEY_HEADER} invalide")
    return None


def _forced(outcome: str | None) -> Response | None:
    if outcome == "annuaire.indisponible":
        return operation_outcome(503, "transient", "Service Annuaire sante temporairement indisponible")
    if outcome == "annuaire.quota":
        resp = operation_outcome(429, "throttled", "Quota d'appels depasse pour cette cle d'API")
        resp.headers["Retry-After"] = "60"
        return resp
    return None


def _base_url(ctx: ServiceContext) -> str:
    return (ctx.config.public_url or request.host_url).rstrip("/") + BASE


def _link(base: str, rtype: str, args: list[tuple[str, str]], offset: int, count: int) -> str:
    kept = [(k, v) for k, v in args if k not in ("_offset", "_count")]
    return f"{base}/{rtype}?" + urlencode([*kept, ("_count", str(count)), ("_offset", str(offset))])


def handling_preference() -> str | None:
    """The `handling` preference of the request's `Prefer` header(s) (RFC 7240 syntax: comma-separated
    preferences, `;` parameters), "strict" or "lenient"; None when absent or unknown (then strict applies)."""
    for header in request.headers.getlist("Prefer"):
        for pref in header.split(","):
            name, _, value = pref.split(";", 1)[0].partition("=")
            value = value.strip().strip('"').lower()
            if name.strip().lower() == "handling" and value in ("strict", "lenient"):
                return value
    return None


def search_bundle(ctx: ServiceContext, rtype: str, args: list[tuple[str, str]], empty: bool = False) -> Response:
    directory = _directory(ctx)
    handling = handling_preference()
    try:
        q: Query = parse_query(rtype, args, lenient=handling == "lenient")
    except SearchError as exc:
        return operation_outcome(400, exc.code, str(exc))
    found = [] if empty else directory.search(q)
    page = found[q.offset:q.offset + q.count]
    base = _base_url(ctx)
    used = q.used  # the links repeat the search actually performed, without the parameters ignored
    links = [{"relation": "self", "url": _link(base, rtype, used, q.offset, q.count)}]
    if q.count and q.offset + q.count < len(found):
        links.append({"relation": "next", "url": _link(base, rtype, used, q.offset + q.count, q.count)})
    if q.count and q.offset > 0:
        links.append({"relation": "previous", "url": _link(base, rtype, used, max(0, q.offset - q.count), q.count)})
    entries = [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
               for r in page]
    entries += [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "include"}}
                for r in directory.includes(page, q)]
    if q.ignored:
        entries.append({"resource": search_outcome(q.ignored), "search": {"mode": "outcome"}})
    bundle = {
        "resourceType": "Bundle", "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": ctx.clock.now().isoformat(timespec="milliseconds")},
        "type": "searchset", "total": len(found), "link": links,
    }
    if entries:  # FHIR JSON has no empty arrays
        bundle["entry"] = entries
    resp = _json(bundle)
    if handling:
        resp.headers["Preference-Applied"] = f"handling={handling}"
    return resp


def capability_statement(ctx: ServiceContext) -> dict:
    return {
        "resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
        "date": "2026-01-05", "format": ["application/fhir+json"],
        "software": {"name": "segur-bench Annuaire sante simulator"},
        "implementation": {"description": "Simulateur de l'API FHIR Annuaire sante (banc segur-bench)",
                           "url": _base_url(ctx)},
        "rest": [{
            "mode": "server",
            "security": {"description": f"Cle d'API dans l'en-tete {API_KEY_HEADER}"},
            "resource": [{
                "type": t, "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": [{"name": n, "type": kind} for n, (kind, _) in PARAMS[t].items()]
                + [{"name": "_count", "type": "number"}, {"name": "_offset", "type": "number"}],
                **({"searchInclude": ["PractitionerRole:practitioner", "PractitionerRole:organization"]}
                   if t == "PractitionerRole" else {}),
            } for t in TYPES],
        }],
    }


def _register(app: Flask, ctx: ServiceContext) -> None:
    _directory(ctx)

    @app.get(f"{BASE}/metadata")
    def metadata() -> Response:
        return _json(capability_statement(ctx))

    @app.route(f"{BASE}/<rtype>", methods=["GET", "POST"])
    def search(rtype: str) -> Response:
        denied = _check_key(ctx)
        if denied is not None:
            return denied
        if rtype not in TYPES:
            return operation_outcome(404, "not-supported", f"Type de ressource {rtype!r} non supporte ; types : "
                                                           f"{', '.join(TYPES)}")
        outcome = current_outcome()
        forced = _forced(outcome)
        if forced is not None:
            return forced
        if request.method == "POST":  # POST [type]/_search is the only POST accepted
            return operation_outcome(405, "not-supported", "Seules la lecture et la recherche (GET) sont prises en "
                                                           "charge")
        return search_bundle(ctx, rtype, list(request.args.items(multi=True)), empty=outcome == "annuaire.vide")

    @app.route(f"{BASE}/<rtype>/_search", methods=["POST"])
    def search_post(rtype: str) -> Response:
        denied = _check_key(ctx)
        if denied is not None:
            return denied
        if rtype not in TYPES:
            return operation_outcome(404, "not-supported", f"Type de ressource {rtype!r} non supporte")
        outcome = current_outcome()
        forced = _forced(outcome)
        if forced is not None:
            return forced
        args = list(request.args.items(multi=True)) + list(request.form.items(multi=True))
        return search_bundle(ctx, rtype, args, empty=outcome == "annuaire.vide")

    @app.get(f"{BASE}/<rtype>/<rid>")
    def read(rtype: str, rid: str) -> Response:
        denied = _check_key(ctx)
        if denied is not None:
            return denied
        if rtype not in TYPES:
            return operation_outcome(404, "not-supported", f"Type de ressource {rtype!r} non supporte")
        forced = _forced(current_outcome())
        if forced is not None:
            return forced
        res = _directory(ctx).read(rtype, rid)
        if res is None:
            return operation_outcome(404, "not-found", f"Ressource {rtype}/{rid} inconnue")
        return _json(res)


def _operation_of(facts: RequestFacts) -> str | None:
    if not facts.path.startswith(BASE + "/"):
        return None
    parts = facts.path[len(BASE) + 1:].split("/")
    if parts == ["metadata"]:
        return "metadata"
    if len(parts) == 1 or (len(parts) == 2 and parts[1] == "_search"):
        return f"{parts[0]}.search"
    if len(parts) == 2:
        return f"{parts[0]}.read"
    return None


def _attrs_of(facts: RequestFacts) -> dict[str, str]:
    return {k: v for k, v in facts.query.items() if not k.startswith("_")}


def _state_get(ctx: ServiceContext) -> dict:
    return {"counts": _directory(ctx).counts(),
            "api_keys_configured": bool(ctx.config.settings.get("api_keys")),
            "default_api_key": None if ctx.config.settings.get("api_keys") else DEFAULT_API_KEYS[0]}


SPEC = ServiceSpec(
    name="annuaire",
    # The real API wants an API key, not a certificate. Asked for optionally (nothing changes for a client that has
    # none): an LGC that presents one has its exchanges told apart from other runs' on a shared bench
    # (core/run_attribution.py), as with MSSanté.
    client_cert="optional",
    title="Annuaire santé",
    default_port=8106,
    register=_register,
    outcomes=OUTCOMES,
    error_format="problem",
    operation_of=_operation_of,
    attrs_of=_attrs_of,
    state_get=_state_get,
    description="API FHIR R4 de l'Annuaire santé (/fhir/v2) : Practitioner, PractitionerRole, Organization, "
    "boîtes aux lettres MSSanté ; clé ESANTE-API-KEY.",
)
