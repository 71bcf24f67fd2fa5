"""ApCV wire format: read the SOAP request (headers + ApCV_AUTH bodies), write responses and faults.

Lookups are namespace-aware (never prefix-aware). Children of the body element are accepted qualified
in the body's namespace (as our XSD says) or unqualified (lenient, as for INSi). The response field
layout of the ApCV context is the bench's own design (see README.md), kept in this module only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

from simulators.core.soap import (
    Envelope,
    SoapError,
    action_from_content_type,
    build_envelope,
    must_understand_fault,
    parse_envelope,
    soap_content_type,
)
from simulators.core.teleservice import F_ACTION, NS_CTXLPS, TeleserviceError, parse_headers, sender
from simulators.core.xmlsafe import NS, find, parse_xml, qname
from simulators.personas import OID_INS_NIR, Patient

from .model import (
    ACTION_PREFIX,
    OP_AUTH,
    OP_DETRUIRE,
    OP_RESTITUER,
    OPERATIONS,
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
OP_OF_BODY = {qname(NS_AUTH, v): k for k, v in BODY_OF.items()}


@dataclass
class Request:
    envelope: Envelope
    operation: str
    headers: Any  # simulators.insi.model.Headers (ContexteBAM, if any, is ignored)
    body: dict[str, Any]

    @property
    def message_id(self) -> str | None:
        return self.envelope.message_id


def parse_request(data: bytes, content_type: str | None, max_bytes: int) -> Request:
    """Raises SoapError (envelope level) or TeleserviceError (ApCV level, carrying the request's MessageID)."""
    env = parse_envelope(data, max_bytes=max_bytes)
    try:
        return _parse_request(env, content_type)
    except TeleserviceError as exc:
        exc.message_id = env.message_id
        raise


def _parse_request(env: Envelope, content_type: str | None) -> Request:
    # ContexteBAM is not part of ApCV: a mustUnderstand ContexteBAM is "not understood".
    not_understood = env.must_understand_blocks([NS["wsse"], NS_CTXLPS])
    if not_understood:
        raise SoapError(must_understand_fault(not_understood), relates_to=env.message_id)
    action = env.action or action_from_content_type(content_type)
    body_op = OP_OF_BODY.get(env.body_element.tag)
    if body_op is None:
        q = etree.QName(env.body_element)
        expected = ", ".join(BODY_OF.values())
        raise sender(F_ACTION, f"Element de corps inattendu {{{q.namespace or ''}}}{q.localname} : attendu l'un de "
                               f"{expected} dans l'espace de noms {NS_AUTH}")
    if not action:
        raise sender(F_ACTION, "Action SOAP absente (ni wsa:Action ni parametre action du Content-Type)")
    if not action.startswith(ACTION_PREFIX) or action[len(ACTION_PREFIX):] not in OPERATIONS:
        known = ", ".join(ACTION_PREFIX + op for op in OPERATIONS)
        raise sender(F_ACTION, f"Action SOAP inconnue {action!r}; attendu l'une de {known}")
    operation = action[len(ACTION_PREFIX):]
    if operation != body_op:
        raise sender(F_ACTION, f"L'action {operation} ne correspond pas a l'element de corps "
                               f"{etree.QName(env.body_element).localname}")
    headers = parse_headers(env)
    body = parse_auth(env.body_element) if operation == OP_AUTH else parse_context_req(env.body_element)
    return Request(envelope=env, operation=operation, headers=headers, body=body)


def _children(el: etree._Element | None, local: str) -> list[etree._Element]:
    if el is None:
        return []
    ns = etree.QName(el).namespace
    return [c for c in el if isinstance(c.tag, str) and c.tag in (qname(ns, local), local)]


def _text(el: etree._Element | None, local: str) -> str | None:
    found = _children(el, local)
    return "".join(found[0].itertext()).strip() if found else None


def parse_auth(el: etree._Element) -> dict[str, Any]:
    ps = next(iter(_children(el, "ProfessionnelSante")), None)
    return {
        "version": el.get("version"),
        "has_ps": ps is not None,
        "identifiant_facturation": _text(ps, "IdentifiantFacturation"),
        "code_specialite": _text(ps, "CodeSpecialiteAMO"),
        "donnees": _text(el, "Donnees"),
    }


def parse_context_req(el: etree._Element) -> dict[str, Any]:
    ctx = next(iter(_children(el, "ContexteApCV")), None)
    return {"version": el.get("version"), "has_contexte": ctx is not None, "identifiant": _text(ctx, "Identifiant")}


def request_attrs(data: bytes) -> dict[str, str]:
    """Attributes fault rules may match on (``match.attrs``): nir_od, rang, date_naissance (from the QR code,
    unverified), identifiant_facturation, contexte."""
    root = parse_xml(data)
    body = find(root, "soap12:Body")
    el = next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
    if el is None or el.tag not in OP_OF_BODY:
        return {}
    attrs: dict[str, str] = {}
    if OP_OF_BODY[el.tag] == OP_AUTH:
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


