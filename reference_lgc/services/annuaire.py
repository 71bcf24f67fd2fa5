"""Annuaire santé (ANS FHIR R4 API) client: professionals, their places of practice and MSSanté mailboxes.

``ctx.endpoint.url`` = FHIR base (e.g. ``https://gateway.api.esante.gouv.fr/fhir/v2``); the API key is
``ctx.endpoint.extra["api_key"]`` (header ``ESANTE-API-KEY``). Search strings follow FHIR: case/accent-insensitive
"starts with". Liste rouge mailboxes are returned flagged (``liste_rouge``): the LGC must not show them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .context import CallContext, ServiceRefused, ServiceUnavailable, http_failures
from .transport import http_client

SERVICE = "Annuaire santé"
SYS_IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
SYS_RPPS = "https://rpps.esante.gouv.fr"
SYS_IDNST = "urn:oid:1.2.250.1.71.4.2.2"
SYS_FINESS = "https://finess.esante.gouv.fr"
SYS_SIRET = "https://sirene.fr"
URL_MSS_METADATA = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata"
COUCHE = {  # NOS code systems, recognised by their table name (the URL prefix varies between versions)
    "G15": "TRE_G15", "R09": "TRE_R09", "R38": "TRE_R38", "R23": "TRE_R23", "R02": "TRE_R02",
}
MAX_RESULTS = 200
PAGE_SIZE = 50  # _count per request (the server caps it at 100)


@dataclass(frozen=True)
class MssMailbox:
    address: str
    type: str | None  # PER | ORG | APP | CAB
    description: str | None = None
    responsible: str | None = None
    service: str | None = None
    phone: str | None = None
    liste_rouge: bool = False  # must not be displayed
    digitization: bool | None = None


@dataclass(frozen=True)
class Organization:
    id: str
    name: str
    national_id: str | None  # IDNST
    finess: str | None
    siret: str | None
    sector: str | None  # secteur d'activité TRE_R02 (SA07 …)
    address_lines: tuple[str, ...]
    postal_code: str | None
    city: str | None
    cog: str | None
    phones: tuple[str, ...]
    mailboxes: tuple[MssMailbox, ...]


@dataclass(frozen=True)
class PracticeSite:
    """A PractitionerRole: one place of practice (structure) of the professional."""

    id: str
    organization: Organization | None
    organization_ref: str | None
    profession: str | None
    practice_mode: str | None  # mode d'exercice TRE_R23: L libéral, S salarié, B bénévole
    speciality: str | None
    mailboxes: tuple[MssMailbox, ...]


@dataclass(frozen=True)
class Practitioner:
    id: str
    national_id: str | None  # IDNPS = "8" + RPPS
    rpps: str | None
    family_name: str
    given_names: tuple[str, ...]
    prefix: str | None  # civilité (M, MME)
    suffix: str | None  # DR
    profession: str | None  # TRE_G15 (10 médecin …)
    category: str | None  # TRE_R09
    speciality: str | None  # savoir-faire TRE_R38 (SM26 …)
    mailboxes: tuple[MssMailbox, ...]  # personal (PER) mailboxes
    sites: tuple[PracticeSite, ...] = ()

    @property
    def all_mailboxes(self) -> tuple[MssMailbox, ...]:
        """Personal mailboxes then those of each place of practice (without duplicates)."""
        seen: dict[str, MssMailbox] = {m.address: m for m in self.mailboxes}
        for site in self.sites:
            for m in site.mailboxes:
                seen.setdefault(m.address, m)
        return tuple(seen.values())


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------


def search_practitioners(ctx: CallContext, *, name: str | None = None, family: str | None = None,
                         given: str | None = None, rpps: str | None = None, mailbox: str | None = None,
                         profession: str | None = None, speciality: str | None = None, city: str | None = None,
                         with_sites: bool = True, limit: int = 50) -> list[Practitioner]:
    """Multi-criteria search (AND). ``name`` matches family or given name; ``rpps`` = 11-digit RPPS or 12-digit
    national id; ``mailbox`` = an MSSanté address (exact); ``profession`` / ``speciality`` = G15 / R38 codes;
    ``city`` = the town of a place of practice, asked of PractitionerRole with chained parameters
    (``organization.address-city`` with ``practitioner.family``…), whose practitioners bound the search.
    ``with_sites`` also fetches the places of practice (PractitionerRole + Organization) in one more request."""
    params: list[tuple[str, str]] = []
    if city:
        chained = [(f"practitioner.{k}", v) for k, v in (("name", name), ("family", family), ("given", given),
                                                          ("qualification-code", profession)) if v]
        roles = _search(ctx, "PractitionerRole", [*chained, ("organization.address-city", city)], MAX_RESULTS)
        ids = sorted({(r.get("practitioner") or {}).get("reference", "").partition("/")[2] for r in roles} - {""})
        if not ids:
            return []
        params.append(("_id", ",".join(ids)))
    for key, value in (("name", name), ("family", family), ("given", given), ("mailbox-mss", mailbox),
                       ("qualification-code", profession), ("qualification-code", speciality)):
        if value:
            params.append((key, value))
    if rpps:
        value = rpps.strip()
        params.append(("identifier", f"{SYS_RPPS}|{value}" if len(value) == 11 else f"{SYS_IDNPS}|{value}"))
    if not params:
        raise ValueError("au moins un critère de recherche est requis")
    resources = _search(ctx, "Practitioner", params, limit)
    sites: dict[str, list[PracticeSite]] = {}
    if with_sites and resources:
        refs = ",".join(f"Practitioner/{r['id']}" for r in resources)
        for res, included in _search_with_includes(ctx, "PractitionerRole", [
                ("practitioner", refs), ("_include", "PractitionerRole:organization")]):
            org_ref = (res.get("organization") or {}).get("reference")
            org = included.get(org_ref) if org_ref else None
            site = PracticeSite(
                id=res["id"], organization=_organization(org) if org else None, organization_ref=org_ref,
                profession=_code(res.get("code", []), "G15"), practice_mode=_code(res.get("code", []), "R23"),
                speciality=_code(res.get("specialty", []), "R38"), mailboxes=_mailboxes(res))
            prat = (res.get("practitioner") or {}).get("reference", "").partition("/")[2]
            sites.setdefault(prat, []).append(site)
    return [_practitioner(r, tuple(sites.get(r["id"], ()))) for r in resources]


def search_organizations(ctx: CallContext, *, name: str | None = None, city: str | None = None,
                         postal_code: str | None = None, finess: str | None = None, mailbox: str | None = None,
                         mailbox_type: str | None = None, sector: str | None = None,
                         limit: int = 50) -> list[Organization]:
    """Structures (AND of the given criteria); ``mailbox_type`` = PER | ORG | APP | CAB."""
    params: list[tuple[str, str]] = []
    for key, value in (("name", name), ("address-city", city), ("address-postalcode", postal_code),
                       ("mailbox-mss", mailbox), ("mailbox-mss-type", mailbox_type), ("type", sector)):
        if value:
            params.append((key, value))
    if finess:
        params.append(("identifier", f"{SYS_FINESS}|{finess}"))
    if not params:
        raise ValueError("au moins un critère de recherche est requis")
    return [_organization(r) for r in _search(ctx, "Organization", params, limit)]


# ----------------------------------------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------------------------------------


def _get(ctx: CallContext, url: str, params: list[tuple[str, str]] | None) -> dict:
    ep = ctx.endpoint
    headers = {"Accept": "application/fhir+json", "ESANTE-API-KEY": ep.extra.get("api_key", "")}
    with http_failures(SERVICE, ep.timeout), http_client(ep.tls, timeout=ep.timeout, headers=ep.headers) as http:
        resp = http.get(url, params=params, headers=headers)
    if resp.status_code == 200:
        try:
            return resp.json()
        except ValueError:
            raise ServiceUnavailable(f"réponse du service {SERVICE} illisible", code="format") from None
    diag = _diagnostics(resp)
    code = str(resp.status_code)
    if resp.status_code in (401, 403):
        raise ServiceRefused(f"{SERVICE} : clé d'API refusée ({diag})", code=code, detail=diag)
    if resp.status_code == 429:  # quota: later, not never
        raise ServiceUnavailable(f"{SERVICE} : quota de requêtes atteint, réessayez dans "
                                 f"{resp.headers.get('Retry-After', '?')} s", code=code, detail=diag)
    if resp.status_code >= 500:
        raise ServiceUnavailable(f"{SERVICE} : service indisponible (HTTP {code})", code=code, detail=diag)
    raise ServiceRefused(f"{SERVICE} : recherche refusée ({diag})", code=code, detail=diag)


def _diagnostics(resp: httpx.Response) -> str:
    try:
        oo = resp.json()
        return "; ".join(i.get("diagnostics") or i.get("code", "") for i in oo.get("issue", [])) or resp.reason_phrase
    except ValueError:
        return resp.text[:200] or resp.reason_phrase


def _pages(ctx: CallContext, rtype: str, params: list[tuple[str, str]], limit: int) -> Iterable[dict]:
    """Bundles of the search, following ``next`` links until ``limit`` matches."""
    url: str | None = f"{ctx.endpoint.url.rstrip('/')}/{rtype}"
    query: list[tuple[str, str]] | None = [*params, ("_count", str(max(1, min(limit, PAGE_SIZE))))]
    seen = 0
    while url and seen < min(limit, MAX_RESULTS):
        bundle = _get(ctx, url, query)
        yield bundle
        seen += sum(1 for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match")
        url = next((link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"), None)
        query = None  # the next link carries the whole query


def _search(ctx: CallContext, rtype: str, params: list[tuple[str, str]], limit: int) -> list[dict]:
    out: list[dict] = []
    for bundle in _pages(ctx, rtype, params, limit):
        out += [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]
    return out[:limit]


def _search_with_includes(ctx: CallContext, rtype: str, params: list[tuple[str, str]]
                          ) -> list[tuple[dict, dict[str, dict]]]:
    matches: list[dict] = []
    included: dict[str, dict] = {}
    for bundle in _pages(ctx, rtype, params, MAX_RESULTS):
        for e in bundle.get("entry", []):
            res = e["resource"]
            if e.get("search", {}).get("mode") == "include":
                included[f"{res['resourceType']}/{res['id']}"] = res
            else:
                matches.append(res)
    return [(m, included) for m in matches]


# ----------------------------------------------------------------------------------------------------
# Resources to dataclasses
# ----------------------------------------------------------------------------------------------------


def _code(concepts: Iterable[Mapping[str, Any]], table: str) -> str | None:
    """First code of a NOS table (G15, R38 …) among CodeableConcepts."""
    marker = COUCHE.get(table, table)
    for cc in concepts:
        for coding in cc.get("coding", []):
            system = coding.get("system", "")
            if marker in system or marker.replace("_", "-") in system:
                return coding.get("code")
    return None


def _mailboxes(res: Mapping[str, Any]) -> tuple[MssMailbox, ...]:
    out = []
    for t in res.get("telecom", []):
        if t.get("system") != "email" or not t.get("value"):
            continue
        meta: dict[str, Any] = {}
        for ext in t.get("extension", []):
            if ext.get("url") == URL_MSS_METADATA:
                for sub in ext.get("extension", []):
                    value = next((v for k, v in sub.items() if k.startswith("value")), None)
                    if sub.get("url") == "type" and isinstance(value, dict):
                        value = (value.get("coding") or [{}])[0].get("code")
                    meta[sub.get("url", "")] = value
        out.append(MssMailbox(address=t["value"], type=meta.get("type"), description=meta.get("description"),
                              responsible=meta.get("responsible"), service=meta.get("service"),
                              phone=meta.get("phone"), liste_rouge=bool(meta.get("listeRouge", False)),
                              digitization=meta.get("digitization")))
    return tuple(out)


def _ident(res: Mapping[str, Any], system: str) -> str | None:
    return next((i.get("value") for i in res.get("identifier", []) if i.get("system") == system), None)


def _practitioner(res: Mapping[str, Any], sites: tuple[PracticeSite, ...]) -> Practitioner:
    names = res.get("name") or [{}]
    name = next((n for n in names if n.get("use") == "official"), names[0])
    quals = [q.get("code", {}) for q in res.get("qualification", [])]
    return Practitioner(
        id=res["id"], national_id=_ident(res, SYS_IDNPS), rpps=_ident(res, SYS_RPPS),
        family_name=name.get("family", ""), given_names=tuple(name.get("given", [])),
        prefix=(name.get("prefix") or [None])[0], suffix=(name.get("suffix") or [None])[0],
        profession=_code(quals, "G15"), category=_code(quals, "R09"), speciality=_code(quals, "R38"),
        mailboxes=_mailboxes(res), sites=sites)


def _organization(res: Mapping[str, Any]) -> Organization:
    addr = (res.get("address") or [{}])[0]
    cog = next((e.get("valueCoding", {}).get("code") for e in addr.get("extension", [])
                if e.get("url", "").endswith("insee-code")), None)
    return Organization(
        id=res["id"], name=res.get("name", ""), national_id=_ident(res, SYS_IDNST), finess=_ident(res, SYS_FINESS),
        siret=_ident(res, SYS_SIRET), sector=_code(res.get("type", []), "R02"),
        address_lines=tuple(addr.get("line", [])), postal_code=addr.get("postalCode"), city=addr.get("city"),
        cog=cog, phones=tuple(t["value"] for t in res.get("telecom", []) if t.get("system") == "phone"),
        mailboxes=_mailboxes(res))
