"""Annuaire santé wire format: FHIR R4 JSON representations of practitioners, roles and organizations.

Shapes follow the ANS Annuaire IG (protocols.md §4.4; `ansforge/IG-fhir-annuaire` profiles and BAL examples):
identifier systems, the MSSanté mailbox metadata extension, NOS code systems. What is assumed is listed in
README.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulators.personas import OID_RPPS

if TYPE_CHECKING:
    from .model import Org, Prat, Role

SYS_IDNPS = f"urn:oid:{OID_RPPS}"  # "8" + RPPS
SYS_RPPS = "https://rpps.esante.gouv.fr"  # 11-digit RPPS
SYS_IDNST = "urn:oid:1.2.250.1.71.4.2.2"  # structure national id
SYS_FINESS = "https://finess.esante.gouv.fr"
SYS_SIRET = "https://sirene.fr"
SYS_ID_TYPE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
SYS_G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
SYS_R09 = "https://mos.esante.gouv.fr/NOS/TRE_R09-CategorieProfessionnelle/FHIR/TRE-R09-CategorieProfessionnelle"
SYS_R38 = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
SYS_R23 = "https://mos.esante.gouv.fr/NOS/TRE_R23-ModeExercice/FHIR/TRE-R23-ModeExercice"
SYS_R02 = "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite"
SYS_R256 = "https://mos.esante.gouv.fr/NOS/TRE_R256-TypeMessagerie/FHIR/TRE-R256-TypeMessagerie"
SYS_R257 = "https://mos.esante.gouv.fr/NOS/TRE_R257-TypeBAL/FHIR/TRE-R257-TypeBAL"
URL_MSS_METADATA = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata"
URL_EMAIL_TYPE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
PROFILE = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/"
BAL_TYPES = ("PER", "ORG", "APP", "CAB")
TYPE_SYSTEMS = (SYS_R257, SYS_R256, "TRE-R256-TypeMessagerie", "TRE-R257-TypeBAL")
LAST_UPDATED = "2026-01-05T08:00:00.000+01:00"


def _ident(system: str, value: str, type_code: str) -> dict:
    return {"use": "official", "type": {"coding": [{"system": SYS_ID_TYPE, "code": type_code}]}, "system": system,
            "value": value}


def _meta(profile: str) -> dict:
    return {"lastUpdated": LAST_UPDATED, "profile": [PROFILE + profile]}


def practitioner_resource(p: Prat) -> dict:
    name: dict[str, Any] = {"use": "official", "family": p.nom, "given": [p.prenom]}
    if p.civilite:
        name["prefix"] = [p.civilite]
    if p.civilite_exercice == "DR":
        name["suffix"] = ["DR"]
    quals = [{"code": {"coding": [{"system": SYS_G15, "code": p.profession},
                                  {"system": SYS_R09, "code": p.categorie}]}}]
    if p.savoir_faire:
        quals.append({"code": {"coding": [{"system": SYS_R38, "code": p.savoir_faire}]}})
    return {
        "resourceType": "Practitioner", "id": f"pra-{p.national_id}", "meta": _meta("as-dp-practitioner"),
        "identifier": [_ident(SYS_IDNPS, p.national_id, "IDNPS"), _ident(SYS_RPPS, p.rpps, "RPPS")],
        "active": True, "name": [name], "telecom": [m.telecom() for m in p.mailboxes], "qualification": quals,
    }


def role_id(p: Prat, r: Role) -> str:
    return f"rol-{p.national_id}-{r.structure}"


def role_resource(p: Prat, r: Role) -> dict:
    res: dict[str, Any] = {
        "resourceType": "PractitionerRole", "id": role_id(p, r), "meta": _meta("as-dp-practitionerrole"),
        "active": True,
        "practitioner": {"reference": f"Practitioner/pra-{p.national_id}", "display": f"{p.prenom} {p.nom}"},
        "organization": {"reference": f"Organization/org-{r.structure}"},
        "code": [{"coding": [{"system": SYS_G15, "code": p.profession}]},
                 {"coding": [{"system": SYS_R23, "code": r.mode_exercice}]}],
    }
    if p.savoir_faire:
        res["specialty"] = [{"coding": [{"system": SYS_R38, "code": p.savoir_faire}]}]
    if r.mailboxes:
        res["telecom"] = [m.telecom() for m in r.mailboxes]
    return res


def organization_resource(o: Org) -> dict:
    idents = []
    if o.idnst:
        idents.append(_ident(SYS_IDNST, o.idnst, "IDNST"))
    if o.finess:
        idents.append(_ident(SYS_FINESS, o.finess, "FINEG"))
    if o.siret:
        idents.append(_ident(SYS_SIRET, o.siret, "SIRET"))
    telecom = [m.telecom() for m in o.mailboxes]
    if o.telephone:
        telecom.insert(0, {"system": "phone", "value": o.telephone})
    return {
        "resourceType": "Organization", "id": f"org-{o.id}", "meta": _meta("as-dp-organization"),
        "identifier": idents, "active": True,
        "type": [{"coding": [{"system": SYS_R02, "code": o.secteur}]}],
        "name": o.nom, "telecom": telecom,
        "address": [{"use": "work", "line": [f"{o.numero} {o.voie}"], "city": o.ville, "postalCode": o.code_postal,
                     "country": "FR", "extension": [{"url": "https://hl7.fr/ig/fhir/core/StructureDefinition/"
                                                            "fr-core-address-insee-code",
                                                     "valueCoding": {"code": o.commune}}]}],
    }


# ----------------------------------------------------------------------------------------------------
# Search
# ----------------------------------------------------------------------------------------------------




def search_outcome(ignored: list[tuple[str, str]]) -> dict:
    """The OperationOutcome of a lenient search (`Prefer: handling=lenient`), sent as a Bundle entry with
    `search.mode = outcome` (FHIR R4 search.html "Handling Errors", Bundle.entry.search.mode): one warning per
    parameter the server ignored."""
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "not-supported",
                       "diagnostics": f"Parameter {name!r} ignored (Prefer: handling=lenient): {why}"}
                      for name, why in ignored]}
