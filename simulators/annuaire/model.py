"""Annuaire santé directory: FHIR R4 Practitioner / PractitionerRole / Organization resources built from the
personas (plus ``data/annuaire.toml``), and the search engine over them.

Resource shapes follow the ANS Annuaire IG (protocols.md §4.4; ``ansforge/IG-fhir-annuaire`` profiles and BAL
examples); what is assumed is listed in README.md.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulators.personas import Personas, Structure

from .wire import (
    BAL_TYPES,
    SYS_R256,
    SYS_R257,
    TYPE_SYSTEMS,
    URL_EMAIL_TYPE,
    URL_MSS_METADATA,
    organization_resource,
    practitioner_resource,
    role_resource,
)

DATA_FILE = Path(__file__).parent / "data" / "annuaire.toml"



class SearchError(ValueError):
    """A search the server refuses (HTTP 400 OperationOutcome with issue code ``code``)."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------------------------------
# Mailboxes
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mailbox:
    address: str
    type: str
    description: str | None = None
    responsible: str | None = None
    service: str | None = None
    phone: str | None = None
    liste_rouge: bool = False
    digitization: bool | None = None

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> Mailbox:
        if d.get("type") not in BAL_TYPES:
            raise ValueError(f"mailbox {d.get('address')!r}: type must be one of {BAL_TYPES}")
        return cls(d["address"].lower(), d["type"], d.get("description"), d.get("responsible"), d.get("service"),
                   d.get("phone"), bool(d.get("liste_rouge", False)), d.get("digitization"))

    def telecom(self) -> dict:
        meta: list[dict] = [{"url": "type", "valueCodeableConcept": {"coding": [
            {"system": SYS_R257, "code": self.type}]}}]
        for key in ("description", "responsible", "service", "phone"):
            value = getattr(self, key)
            if value:
                meta.append({"url": key, "valueString": value})
        meta.append({"url": "listeRouge", "valueBoolean": self.liste_rouge})
        if self.digitization is not None:
            meta.append({"url": "digitization", "valueBoolean": self.digitization})
        return {
            "extension": [
                {"url": URL_EMAIL_TYPE, "valueCoding": {"system": SYS_R256, "code": "MSSANTE"}},
                {"url": URL_MSS_METADATA, "extension": meta},
            ],
            "system": "email", "value": self.address,
        }


# ----------------------------------------------------------------------------------------------------
# Directory records (persona or directory-only)
# ----------------------------------------------------------------------------------------------------


@dataclass
class Org:
    id: str
    nom: str
    secteur: str
    numero: str
    voie: str
    code_postal: str
    commune: str
    ville: str
    finess: str | None = None
    siret: str | None = None
    idnst: str | None = None
    telephone: str | None = None
    mailboxes: list[Mailbox] = field(default_factory=list)

    @classmethod
    def of_structure(cls, s: Structure) -> Org:
        a = s.adresse
        return cls(s.id, s.nom, s.secteur_activite, a.numero, a.voie, a.code_postal, a.commune, a.ville,
                   s.finess, s.siret, s.identifiant_national, s.telephone)


@dataclass
class Role:
    structure: str
    mode_exercice: str
    mailboxes: list[Mailbox] = field(default_factory=list)


@dataclass
class Prat:
    rpps: str
    civilite: str
    nom: str
    prenom: str
    profession: str
    categorie: str = "C"
    civilite_exercice: str | None = None
    savoir_faire: str | None = None
    mailboxes: list[Mailbox] = field(default_factory=list)
    roles: list[Role] = field(default_factory=list)

    @property
    def national_id(self) -> str:
        return "8" + self.rpps


def _default_org_type(org: Org) -> str:
    return "CAB" if (org.idnst or "").startswith("4") or org.id.startswith("cabinet") else "ORG"


def load_records(personas: Personas, path: Path = DATA_FILE) -> tuple[list[Prat], dict[str, Org]]:
    orgs: dict[str, Org] = {s.id: Org.of_structure(s) for s in personas.structures}
    for org, s in zip(orgs.values(), personas.structures, strict=True):
        if s.mss_organisationnelle:
            org.mailboxes.append(Mailbox(s.mss_organisationnelle.lower(), _default_org_type(org),
                                         description=f"BAL de {s.nom}", digitization=True))
    prats: list[Prat] = []
    by_id: dict[str, Prat] = {}
    for p in personas.professionals:
        prat = Prat(p.rpps, p.civilite, p.nom, p.prenom, p.profession, p.categorie, p.civilite_exercice,
                    p.savoir_faire, [Mailbox(p.mss_personnelle.lower(), "PER", digitization=True)],
                    [Role(a.structure.id, a.mode_exercice) for a in p.activites])
        prats.append(prat)
        by_id[p.id] = prat
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for s in data.get("structure", []):
        a = s["adresse"]
        org = Org(s["id"], s["nom"], s["secteur_activite"], a["numero"], a["voie"], a["code_postal"], a["commune"],
                  a["ville"], s.get("finess"), s.get("siret"), None, s.get("telephone"),
                  [Mailbox.of(m) for m in s.get("mailbox", [])])
        org.idnst = ("1" + org.finess) if org.finess else ("3" + (org.siret or ""))
        orgs[org.id] = org
    for d in data.get("practitioner", []):
        prat = Prat(d["rpps"], d["civilite"], d["nom"], d["prenom"], d["profession"], d.get("categorie", "C"),
                    d.get("civilite_exercice"), d.get("savoir_faire"), [Mailbox.of(m) for m in d.get("mailbox", [])],
                    [Role(r["structure"], r["mode_exercice"], [Mailbox.of(m) for m in r.get("mailbox", [])])
                     for r in d.get("role", [])])
        prats.append(prat)
    for m in data.get("mailbox", []):
        kind, _, ref = m["owner"].partition(":")
        box = Mailbox.of(m)
        if kind == "professional":
            by_id[ref].mailboxes.append(box)
        elif kind == "structure":
            orgs[ref].mailboxes.append(box)
        elif kind == "role":
            pro_id, _, structure = ref.partition(":")
            next(r for r in by_id[pro_id].roles if r.structure == structure).mailboxes.append(box)
        else:
            raise ValueError(f"mailbox owner {m['owner']!r}: expected professional:, structure: or role:")
    for prat in prats:
        for role in prat.roles:
            if role.structure not in orgs:
                raise ValueError(f"practitioner {prat.rpps}: unknown structure {role.structure!r}")
    return prats, orgs


# ----------------------------------------------------------------------------------------------------
# FHIR resources
# ----------------------------------------------------------------------------------------------------


def norm(value: str) -> str:
    """Case- and accent-insensitive form (FHIR string search)."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _strings_match(candidates: Iterable[str], wanted: str, modifier: str | None) -> bool:
    if modifier == "exact":
        return any(c == wanted for c in candidates)
    w = norm(wanted)
    if modifier == "contains":
        return any(w in norm(c) for c in candidates)
    return any(norm(c).startswith(w) for c in candidates)


def _tokens_match(codings: Iterable[tuple[str | None, str]], wanted: str, modifier: str | None,
                  systems_alias: Mapping[str, tuple[str, ...]] | None = None) -> bool:
    if "|" in wanted:
        system, _, code = wanted.partition("|")
    else:
        system, code = None, wanted
    accepted = (systems_alias or {}).get(system or "", (system,)) if system else None
    for sys_, c in codings:
        if code and c != code:
            continue
        if system is None:
            return True
        if system == "" and sys_ is None:
            return True
        if accepted and sys_ in accepted:
            return True
    return False


def _mailboxes(res: Mapping[str, Any]) -> list[dict]:
    return [t for t in res.get("telecom", []) if t.get("system") == "email"]


def _mailbox_types(res: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    out = []
    for t in _mailboxes(res):
        for ext in t.get("extension", []):
            if ext.get("url") == URL_MSS_METADATA:
                for sub in ext["extension"]:
                    if sub["url"] == "type":
                        coding = sub["valueCodeableConcept"]["coding"][0]
                        out.append((coding["system"], coding["code"]))
    return out


def _identifiers(res: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    return [(i.get("system"), i["value"]) for i in res.get("identifier", [])]


def _codings(items: Iterable[Mapping[str, Any]]) -> list[tuple[str | None, str]]:
    return [(c.get("system"), c["code"]) for cc in items for c in cc.get("coding", [])]


def _names(res: Mapping[str, Any], part: str) -> list[str]:
    out: list[str] = []
    for n in res.get("name", []) if isinstance(res.get("name"), list) else []:
        if part in ("family", "name") and n.get("family"):
            out.append(n["family"])
        if part in ("given", "name"):
            out.extend(n.get("given", []))
        if part == "name":
            out.append(" ".join([*n.get("given", []), n.get("family", "")]).strip())
            out.append(" ".join([n.get("family", ""), *n.get("given", [])]).strip())
    return out


TYPE_ALIASES = {s: TYPE_SYSTEMS for s in TYPE_SYSTEMS}
Matcher = Callable[[Mapping[str, Any], str, "str | None"], bool]


def _string_param(getter: Callable[[Mapping[str, Any]], list[str]]) -> tuple[str, Matcher]:
    return "string", lambda res, v, m: _strings_match(getter(res), v, m)


def _token_param(getter: Callable[[Mapping[str, Any]], list[tuple[str | None, str]]],
                 aliases: Mapping[str, tuple[str, ...]] | None = None) -> tuple[str, Matcher]:
    return "token", lambda res, v, m: _tokens_match(getter(res), v, m, aliases)


def _reference_param(field_name: str) -> tuple[str, Matcher]:
    """A FHIR `reference` parameter: `[type]/[id]` or the bare id (search.html §3.1.1.4.4 "Reference")."""
    def match(res: Mapping[str, Any], value: str, modifier: str | None) -> bool:
        ref = res.get(field_name, {}).get("reference", "")
        return value in (ref, ref.split("/", 1)[-1])
    return "reference", match


COMMON: dict[str, tuple[str, Matcher]] = {
    "_id": _token_param(lambda r: [(None, r["id"])]),
    "identifier": _token_param(_identifiers),
    "mailbox-mss": _string_param(lambda r: [t["value"] for t in _mailboxes(r)]),
    "mailbox-mss-type": _token_param(_mailbox_types, TYPE_ALIASES),
    "active": _token_param(lambda r: [(None, "true" if r.get("active", True) else "false")]),
}

PARAMS: dict[str, dict[str, tuple[str, Matcher]]] = {
    "Practitioner": {
        **COMMON,
        "name": _string_param(lambda r: _names(r, "name")),
        "family": _string_param(lambda r: _names(r, "family")),
        "given": _string_param(lambda r: _names(r, "given")),
        "qualification-code": _token_param(lambda r: _codings(q["code"] for q in r.get("qualification", []))),
    },
    "PractitionerRole": {
        **COMMON,
        "role": _token_param(lambda r: _codings(r.get("code", []))),
        "specialty": _token_param(lambda r: _codings(r.get("specialty", []))),
        "practitioner": _reference_param("practitioner"),
        "organization": _reference_param("organization"),
    },
    "Organization": {
        **COMMON,
        "name": _string_param(lambda r: [r.get("name", "")]),
        "address-city": _string_param(lambda r: [a.get("city", "") for a in r.get("address", [])]),
        "address-postalcode": _string_param(lambda r: [a.get("postalCode", "") for a in r.get("address", [])]),
        "type": _token_param(lambda r: _codings(r.get("type", []))),
    },
}
# Chained parameters of PractitionerRole (multi-criteria search: name + speciality + city in one query).
CHAINS = {"practitioner": "Practitioner", "organization": "Organization"}
CONTROL_PARAMS = {"_count", "_offset", "_include", "_format", "_total", "_pretty"}
INCLUDES = {"PractitionerRole:practitioner": "practitioner", "PractitionerRole:organization": "organization"}
DEFAULT_COUNT = 50
MAX_COUNT = 100


@dataclass
class Query:
    resource_type: str
    criteria: list[tuple[str, str | None, str | None, list[str]]]  # (param, modifier, chain, values OR)
    count: int = DEFAULT_COUNT  # 0: the total only (search.html "_count=0")
    offset: int = 0
    includes: tuple[str, ...] = ()
    used: list[tuple[str, str]] = field(default_factory=list)  # the parameters applied (for the self link)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # handling=lenient: (parameter, why ignored)


def parse_query(resource_type: str, args: Iterable[tuple[str, str]], lenient: bool = False) -> Query:
    """Parse the search parameters. Strict (the default): an unknown or unsupported parameter is a SearchError
    (`not-supported`). Lenient (`Prefer: handling=lenient`): it is ignored and explained in `q.ignored`. A known
    parameter with a bad value stays an error either way."""
    q = Query(resource_type, [])
    includes: list[str] = []
    for key, value in args:
        try:
            _parse_one(q, includes, key, value)
        except SearchError as exc:
            if not (lenient and exc.code == "not-supported"):
                raise
            q.ignored.append((key, str(exc)))
            continue
        q.used.append((key, value))
    q.includes = tuple(dict.fromkeys(includes))
    return q


def _parse_one(q: Query, includes: list[str], key: str, value: str) -> None:
    resource_type = q.resource_type
    params = PARAMS[resource_type]
    if key in CONTROL_PARAMS:
        if key in ("_count", "_offset"):
            if not re.fullmatch(r"\d{1,6}", value):
                raise SearchError(f"{key} must be a non-negative integer, got {value!r}")
            n = int(value)
            if key == "_count":
                q.count = min(n, MAX_COUNT)
            else:
                q.offset = n
        elif key == "_include":
            if resource_type != "PractitionerRole" or value not in INCLUDES:
                known = ", ".join(INCLUDES) if resource_type == "PractitionerRole" else "none"
                raise SearchError(f"_include={value!r} is not supported on {resource_type} (supported: {known})",
                                  "not-supported")
            includes.append(value)
        elif key == "_format" and value not in ("json", "application/fhir+json", "application/json"):
            raise SearchError(f"_format={value!r} is not supported: this server answers application/fhir+json")
        return
    name, _, modifier = key.partition(":")
    chain = None
    target = params
    if "." in name and resource_type == "PractitionerRole":
        chain, _, name = name.partition(".")
        if chain not in CHAINS:
            raise SearchError(f"unknown chained parameter {key!r} on PractitionerRole", "not-supported")
        target = PARAMS[CHAINS[chain]]
    if name not in target:
        where = CHAINS[chain] if chain else resource_type
        raise SearchError(f"unknown search parameter {key!r} for {resource_type}; supported: "
                          f"{', '.join(sorted(target)) if not chain else where + ' parameters'}"
                          + (f", {', '.join(sorted(CONTROL_PARAMS))}" if not chain else ""), "not-supported")
    kind = target[name][0]
    if modifier and not (kind == "string" and modifier in ("exact", "contains")):
        raise SearchError(f"modifier :{modifier} is not supported on parameter {name!r} ({kind})",
                          "not-supported")
    values = value.split(",")
    if not any(values):
        raise SearchError(f"parameter {key!r} has an empty value")
    q.criteria.append((name, modifier or None, chain, values))


class Directory:
    def __init__(self, personas: Personas, path: Path = DATA_FILE) -> None:
        prats, orgs = load_records(personas, path)
        self.resources: dict[str, dict[str, dict]] = {"Practitioner": {}, "PractitionerRole": {}, "Organization": {}}
        for o in orgs.values():
            res = organization_resource(o)
            self.resources["Organization"][res["id"]] = res
        for p in prats:
            res = practitioner_resource(p)
            self.resources["Practitioner"][res["id"]] = res
            for r in p.roles:
                role = role_resource(p, r)
                self.resources["PractitionerRole"][role["id"]] = role

    def read(self, resource_type: str, rid: str) -> dict | None:
        return self.resources[resource_type].get(rid)

    def _ref(self, reference: str) -> dict | None:
        rtype, _, rid = reference.partition("/")
        return self.resources.get(rtype, {}).get(rid)

    def _matches(self, res: Mapping[str, Any], q: Query) -> bool:
        for name, modifier, chain, values in q.criteria:
            target: Mapping[str, Any] | None = res
            params = PARAMS[q.resource_type]
            if chain:
                target = self._ref(res[chain]["reference"])
                params = PARAMS[CHAINS[chain]]
                if target is None:
                    return False
            matcher = params[name][1]
            if not any(matcher(target, v, modifier) for v in values):
                return False
        return True

    def search(self, q: Query) -> list[dict]:
        """All matches, in a stable order (by id)."""
        found = [r for r in self.resources[q.resource_type].values() if self._matches(r, q)]
        found.sort(key=lambda r: r["id"])
        return found

    def includes(self, page: list[dict], q: Query) -> list[dict]:
        out: dict[str, dict] = {}
        for inc in q.includes:
            field_name = INCLUDES[inc]
            for res in page:
                ref = res.get(field_name, {}).get("reference")
                target = self._ref(ref) if ref else None
                if target is not None:
                    out[f"{target['resourceType']}/{target['id']}"] = target
        return list(out.values())

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.resources.items()}
