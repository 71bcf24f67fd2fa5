"""ApCV wire format: read the SOAP request (headers + ApCV_AUTH bodies), write responses and faults.

Lookups are namespace-aware (never prefix-aware). Children of the body element are accepted qualified
in the body's namespace (as our XSD says) or unqualified (lenient, as for INSi). The response field
layout of the ApCV context is the bench's own design (see README.md), kept in this module only.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from lxml import etree

from simulators.core.soap import (
    Envelope,
    build_envelope,
    soap_content_type,
)
from simulators.core.teleservice import NS_CTXLPS, Operations, Request, TeleserviceError, children, read_request
from simulators.core.xmlsafe import find, parse_xml, qname
from simulators.personas import OID_INS_NIR, Patient

from .model import (
    ACTION_PREFIX,
    OP_AUTH,
    OP_DETRUIRE,
    OP_RESTITUER,
    VERSION,
    Context,
    ContextView,
    unverified_claims,
    xml_datetime,
)

NS_AUTH = "http://www.sesam-vitale.fr/apcv/auth/1/0"
NSX = {"apcv": NS_AUTH, "lps": NS_CTXLPS}

BODY_OF = {
    OP_AUTH: "AuthentifierUtilisateurProximiteReq",
    OP_RESTITUER: "RestituerContexteApCVReq",
    OP_DETRUIRE: "DetruireContexteApCVReq",
}
RESPONSE_OF = {
    OP_AUTH: "AuthentifierUtilisateurProximiteResp",
    OP_RESTITUER: "RestituerContexteApCVResp",
    OP_DETRUIRE: "DetruireContexteApCVResp",
}


OPS = Operations(ACTION_PREFIX, {op: (NS_AUTH, local) for op, local in BODY_OF.items()})




def parse_request(data: bytes, content_type: str | None, max_bytes: int, envelope: Envelope | None = None) -> Request:
    """Raises SoapError (envelope level) or TeleserviceError (ApCV level, carrying the request's MessageID).

    A mustUnderstand ContexteBAM is "not understood": it is not part of ApCV.
    """
    req = read_request(data, content_type, max_bytes, OPS, envelope)
    try:
        el = req.body_element
        body = parse_auth(el) if req.operation == OP_AUTH else parse_context_req(el)
    except TeleserviceError as exc:
        exc.message_id = req.message_id
        raise
    return replace(req, body=body)


def _text(el: etree._Element | None, local: str) -> str | None:
    found = children(el, local)
    return "".join(found[0].itertext()).strip() if found else None


def parse_auth(el: etree._Element) -> dict[str, Any]:
    ps = next(iter(children(el, "ProfessionnelSante")), None)
    return {
        "version": el.get("version"),
        "has_ps": ps is not None,
        "identifiant_facturation": _text(ps, "IdentifiantFacturation"),
        "code_specialite": _text(ps, "CodeSpecialiteAMO"),
        "donnees": _text(el, "Donnees"),
    }


def parse_context_req(el: etree._Element) -> dict[str, Any]:
    ctx = next(iter(children(el, "ContexteApCV")), None)
    return {"version": el.get("version"), "has_contexte": ctx is not None, "identifiant": _text(ctx, "Identifiant")}


def request_attrs(data: bytes) -> dict[str, str]:
    """Attributes fault rules may match on (``match.attrs``): nir_od, rang, date_naissance (from the QR code,
    unverified), identifiant_facturation, contexte."""
    root = parse_xml(data)
    body = find(root, "soap12:Body")
    el = next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
    operation = OPS.operation_of_body(el) if el is not None else None
    if operation is None:
        return {}
    attrs: dict[str, str] = {}
    if operation == OP_AUTH:
        raw = parse_auth(el)
        attrs["identifiant_facturation"] = raw["identifiant_facturation"] or ""
        claims = unverified_claims(raw["donnees"] or "")
        for key, name in (("nod", "nir_od"), ("rang", "rang"), ("ddn", "date_naissance")):
            if key in claims:
                attrs[name] = str(claims[key])
    else:
        attrs["contexte"] = parse_context_req(el)["identifiant"] or ""
    return {k: v for k, v in attrs.items() if v}


# ----------------------------------------------------------------------------------------------------
# Responses
# ----------------------------------------------------------------------------------------------------


def _sub(parent: etree._Element, local: str, value: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, qname(NS_AUTH, local), attrs)
    if value is not None:
        el.text = value
    return el


def _root(operation: str) -> etree._Element:
    return etree.Element(qname(NS_AUTH, RESPONSE_OF[operation]), {"version": VERSION}, nsmap={"apcv": NS_AUTH})


def _matricule(parent: etree._Element, local: str, nir15: str, oid: str | None = None) -> None:
    block = _sub(parent, local)
    _sub(block, "NumIdentifiant", nir15[:13])
    _sub(block, "Cle", nir15[13:])
    if oid:
        _sub(block, "OID", oid)


def _beneficiaire(parent: etree._Element, p: Patient, user: bool) -> None:
    card = p.carte_vitale
    ben = _sub(parent, "Beneficiaire", utilisateur="true" if user else "false")
    _sub(ben, "Rang", str(card.rang_naissance if card else 1))
    _sub(ben, "DateNaissance", p.date_naissance.isoformat())
    if p.ins and p.oid == OID_INS_NIR:
        _matricule(ben, "NIRIndividu", p.ins)  # the beneficiary's own NIR (= matricule INS when NIR-based)
    if p.ins and p.oid:
        _matricule(ben, "INS", p.ins, p.oid)
    traits = _sub(ben, "Traits")
    _sub(traits, "NomNaissance", p.nom_naissance)
    if p.nom_utilise:
        _sub(traits, "NomUtilise", p.nom_utilise)
    _sub(traits, "Prenom", p.premier_prenom)
    _sub(traits, "ListePrenom", p.liste_prenoms)
    if p.prenom_utilise:
        _sub(traits, "PrenomUtilise", p.prenom_utilise)
    _sub(traits, "Sexe", p.sexe)
    _sub(traits, "DateNaissance", p.date_naissance.isoformat())
    if p.lieu_naissance:
        _sub(traits, "LieuNaissance", p.lieu_naissance)


def _context_head(parent: etree._Element, c: Context) -> etree._Element:
    block = _sub(parent, "ContexteApCV")
    _sub(block, "Identifiant", c.id)
    _sub(block, "DateCreation", xml_datetime(c.created_at))
    _sub(block, "DateExpiration", xml_datetime(c.expires_at))
    return block


def auth_element(c: Context) -> etree._Element:
    root = _root(OP_AUTH)
    _context_head(root, c)
    return root


def context_element(view: ContextView) -> etree._Element:
    c = view.context
    root = _root(OP_RESTITUER)
    block = _context_head(root, c)
    _sub(block, "ModeAuthentification", c.mode)
    ps = _sub(block, "ProfessionnelSante")
    _sub(ps, "IdentifiantFacturation", c.identifiant_facturation)
    _sub(ps, "CodeSpecialiteAMO", c.code_specialite)
    card = view.user.carte_vitale
    assure = _sub(block, "Assure")
    _matricule(assure, "NIROuvrantDroit", c.nir_od)
    if card:
        _sub(assure, "GrandRegime", card.regime)
        _sub(assure, "CaisseGestionnaire", card.caisse)
        _sub(assure, "CentreGestionnaire", card.centre)
    bens = _sub(block, "Beneficiaires")
    for p in view.beneficiaries:
        _beneficiaire(bens, p, p.id == view.user.id)
    return root


def destroy_element(c: Context, destroyed_at: Any) -> etree._Element:
    root = _root(OP_DETRUIRE)
    block = _sub(root, "ContexteApCV")
    _sub(block, "Identifiant", c.id)
    _sub(root, "DateDestruction", xml_datetime(destroyed_at))
    return root


def response_bytes(body: etree._Element, operation: str, relates_to: str | None) -> tuple[bytes, str]:
    action = f"{ACTION_PREFIX}{operation}Response"
    return build_envelope(body, action=action, relates_to=relates_to), soap_content_type(action)


# ----------------------------------------------------------------------------------- carte Vitale image

CARD_FORMAT = "segur-bench/image-carte-vitale/1"  # invented: the bench has no SESAM-Vitale reader


def card_image_bytes(beneficiaries: tuple[Patient, ...]) -> bytes:
    """The image of a test carte Vitale, as the bench hands it to an LGC in place of a reader's (format invented,
    README "Carte Vitale image"): the insured person's NIR and AMO attachment, and per beneficiary the names, the
    birth date (AAAAMMJJ, as a card writes it) and the birth rank; the beneficiary's own NIR only for the insured
    person (a card does not always carry its dependants')."""
    card = beneficiaries[0].carte_vitale
    assert card is not None
    image = {
        "format": CARD_FORMAT,
        "avertissement": "Image de carte Vitale de test fournie par le banc (format propre au banc, pas une lecture "
                         "SESAM-Vitale)",
        "ouvrant_droit": {"nir": card.nir_ouvrant_droit, "regime": card.regime, "caisse": card.caisse,
                          "centre": card.centre},
        "beneficiaires": [{
            "nom": p.nom_utilise or p.nom_naissance, "nom_naissance": p.nom_naissance, "prenom": p.prenoms[0],
            "date_naissance": p.date_naissance.strftime("%Y%m%d"),
            "rang": p.carte_vitale.rang_naissance if p.carte_vitale else 1,
            "qualite": "assure" if p.ins == card.nir_ouvrant_droit else "ayant_droit",
            **({"nir": p.ins} if p.ins == card.nir_ouvrant_droit else {}),
        } for p in beneficiaries],
    }
    return json.dumps(image, ensure_ascii=False, indent=2).encode("utf-8")
