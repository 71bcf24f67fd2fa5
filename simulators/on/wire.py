"""Ordonnance numérique wire format — THE BENCH'S OWN DESIGN (the CNAM format is not public).

SOAP 1.2 + WS-Addressing like INSi/ApCV, header blocks ``ctxlps:ContexteLPS`` and ``wsse:Security`` (PS
assertion), or an ``Authorization: Bearer`` token (API Pro Santé Connectée mode). Bodies in the namespace
``NS_EP``; our schema is ``xsd/eprescription.xsd``. Everything format-specific lives in this module so it
can be corrected when the real format is known. Lookups are namespace-aware; body children are accepted
qualified (XSD) or unqualified (leniency, as for INSi).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lxml import etree

from simulators.core.soap import (
    build_envelope,
    soap_content_type,
)
from simulators.core.teleservice import Operations, Request, TeleserviceError, children, read_request
from simulators.core.teleservice import fault_bytes as teleservice_fault_bytes
from simulators.core.xmlsafe import find, parse_xml, qname

from .model import (
    ACTION_PREFIX,
    CR_LIBELLES,
    ETATS,
    OP_CONSULTER,
    OP_CREER,
    OP_RECHERCHER,
    VERSION,
    Prescription,
    png_base64,
    xml_datetime,
)

NS_EP = "http://www.cnamts.fr/ePrescription/1/0"  # assumed

BODY_OF = {
    OP_CREER: "CreerEPrescriptionReq",
    OP_CONSULTER: "ConsulterEPrescriptionReq",
    OP_RECHERCHER: "RechercherEPrescriptionsReq",
}
RESPONSE_OF = {
    OP_CREER: "CreerEPrescriptionResp",
    OP_CONSULTER: "ConsulterEPrescriptionResp",
    OP_RECHERCHER: "RechercherEPrescriptionsResp",
}


OPS = Operations(ACTION_PREFIX, {op: (NS_EP, local) for op, local in BODY_OF.items()})




def parse_request(data: bytes, content_type: str | None, max_bytes: int) -> Request:
    """Raises SoapError (envelope level) or TeleserviceError (service level, carrying the request's MessageID)."""
    req = read_request(data, content_type, max_bytes, OPS)
    try:
        parse = {OP_CREER: parse_creer, OP_CONSULTER: parse_consulter, OP_RECHERCHER: parse_rechercher}
        body = parse[req.operation](req.body_element)
    except TeleserviceError as exc:
        exc.message_id = req.message_id
        raise
    return replace(req, body=body)


def _child(el: etree._Element | None, local: str) -> etree._Element | None:
    found = children(el, local)
    return found[0] if found else None


def _text(el: etree._Element | None, local: str, *, strip: bool = True) -> str | None:
    found = _child(el, local)
    if found is None:
        return None
    value = "".join(found.itertext())
    return value.strip() if strip else value


def _ins(el: etree._Element | None) -> dict[str, Any] | None:
    ins = _child(el, "INS")
    if ins is None:
        return None
    return {"num": _text(ins, "NumIdentifiant"), "cle": _text(ins, "Cle"), "oid": _text(ins, "OID")}


def parse_creer(el: etree._Element) -> dict[str, Any]:
    ps = _child(el, "Prescripteur")
    pat = _child(el, "Patient")
    lignes_el = _child(el, "Lignes")
    lignes = []
    for ligne in children(lignes_el, "Ligne"):
        produit = _child(ligne, "Produit")
        code = _child(produit, "Code")
        duree = _child(ligne, "Duree")
        quantite = _child(ligne, "Quantite")
        lignes.append({
            "libelle": _text(produit, "Libelle"),
            "code": "".join(code.itertext()).strip() if code is not None else None,
            "code_systeme": code.get("systeme") if code is not None else None,
            "posologie": _text(ligne, "Posologie"),
            "duree": "".join(duree.itertext()).strip() if duree is not None else None,
            "duree_unite": duree.get("unite") if duree is not None else None,
            "quantite": "".join(quantite.itertext()).strip() if quantite is not None else None,
            "quantite_unite": quantite.get("unite") if quantite is not None else None,
            "renouvellements": _text(ligne, "Renouvellements"),
            "non_substituable": _text(ligne, "NonSubstituable"),
        })
    return {
        "version": el.get("version"),
        "numero": _text(el, "NumeroPrescription"),
        "date_prescription": _text(el, "DatePrescription"),
        "type_prescription": _text(el, "TypePrescription"),
        "prescripteur": {
            "present": ps is not None, "id_national": _text(ps, "IdNational"),
            "identifiant_facturation": _text(ps, "IdentifiantFacturation"),
        } if ps is not None else None,
        "patient": {
            "present": True, "ins": _ins(pat), "nom": _text(pat, "NomNaissance", strip=False),
            "prenoms": ["".join(p.itertext()) for p in children(pat, "Prenom")], "sexe": _text(pat, "Sexe"),
            "date_naissance": _text(pat, "DateNaissance"), "lieu_naissance": _text(pat, "LieuNaissance"),
        } if pat is not None else None,
        "has_lignes": lignes_el is not None,
        "lignes": lignes,
    }


def parse_consulter(el: etree._Element) -> dict[str, Any]:
    return {"version": el.get("version"), "numero": _text(el, "NumeroPrescription")}


def parse_rechercher(el: etree._Element) -> dict[str, Any]:
    pat = _child(el, "Patient")
    return {"version": el.get("version"), "ins": _ins(pat) if pat is not None else _ins(el),
            "date_debut": _text(el, "DateDebut"), "date_fin": _text(el, "DateFin")}


def request_attrs(data: bytes) -> dict[str, str]:
    """Attributes fault rules may match on (``match.attrs``): ins, prescripteur, numero."""
    root = parse_xml(data)
    body = find(root, "soap12:Body")
    el = next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
    op = OPS.operation_of_body(el) if el is not None else None
    if op is None:
        return {}
    attrs: dict[str, str] = {}
    if op == OP_CREER:
        raw = parse_creer(el)
        ins = (raw["patient"] or {}).get("ins") or {}
        attrs["ins"] = (ins.get("num") or "") + (ins.get("cle") or "")
        attrs["prescripteur"] = (raw["prescripteur"] or {}).get("id_national") or ""
        attrs["nom"] = (raw["patient"] or {}).get("nom") or ""
    elif op == OP_CONSULTER:
        attrs["numero"] = parse_consulter(el)["numero"] or ""
    else:
        ins = parse_rechercher(el)["ins"] or {}
        attrs["ins"] = (ins.get("num") or "") + (ins.get("cle") or "")
    return {k: v for k, v in attrs.items() if v}


# ----------------------------------------------------------------------------------------------------
# Responses
# ----------------------------------------------------------------------------------------------------


def _sub(parent: etree._Element, local: str, value: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, qname(NS_EP, local), attrs)
    if value is not None:
        el.text = value
    return el


def _root(operation: str, cr: str) -> etree._Element:
    root = etree.Element(qname(NS_EP, RESPONSE_OF[operation]), {"version": VERSION}, nsmap={"ep": NS_EP})
    block = _sub(root, "CR")
    _sub(block, "CodeCR", cr)
    _sub(block, "LibelleCR", CR_LIBELLES[cr])
    return root


def _code2d(parent: etree._Element, p: Prescription, with_image: bool) -> None:
    block = _sub(parent, "Code2D")
    _sub(block, "Format", "QR_CODE")
    _sub(block, "Donnees", p.qr)
    if with_image:
        _sub(block, "Image", png_base64(p.qr), mimeType="image/png")


def _head(parent: etree._Element, p: Prescription) -> etree._Element:
    block = _sub(parent, "EPrescription")
    _sub(block, "NumeroPrescription", p.numero)
    _sub(block, "DateCreation", xml_datetime(p.created_at))
    _sub(block, "DatePrescription", p.date_prescription.isoformat())
    _sub(block, "TypePrescription", p.type_prescription)
    _sub(block, "EtatDelivrance", p.etat, libelle=ETATS[p.etat])
    return block


def creer_element(p: Prescription) -> etree._Element:
    root = _root(OP_CREER, "00")
    block = _head(root, p)
    _code2d(block, p, with_image=True)
    return root


def ko_element(operation: str, cr: str) -> etree._Element:
    return _root(operation, cr)


def consulter_element(p: Prescription, prescripteur: Any) -> etree._Element:
    root = _root(OP_CONSULTER, "00")
    block = _head(root, p)
    ps = _sub(block, "Prescripteur")
    _sub(ps, "IdNational", p.prescripteur_nid)
    if prescripteur is not None:
        _sub(ps, "Nom", prescripteur.nom)
        _sub(ps, "Prenom", prescripteur.prenom)
        _sub(ps, "Profession", prescripteur.profession)
    pat = _sub(block, "Patient")
    ins = _sub(pat, "INS")
    _sub(ins, "NumIdentifiant", p.patient.ins[:13])
    _sub(ins, "Cle", p.patient.ins[13:])
    _sub(ins, "OID", p.patient.oid)
    _sub(pat, "NomNaissance", p.patient.nom_naissance)
    for prenom in p.patient.prenoms:
        _sub(pat, "Prenom", prenom)
    _sub(pat, "Sexe", p.patient.sexe)
    _sub(pat, "DateNaissance", p.patient.date_naissance.isoformat())
    if p.patient.lieu_naissance:
        _sub(pat, "LieuNaissance", p.patient.lieu_naissance)
    lignes = _sub(block, "Lignes")
    for line in p.lignes:
        ligne = _sub(lignes, "Ligne")
        produit = _sub(ligne, "Produit")
        if line.code:
            _sub(produit, "Code", line.code, systeme=line.code_systeme or "")
        _sub(produit, "Libelle", line.libelle)
        _sub(ligne, "Posologie", line.posologie)
        if line.duree is not None:
            _sub(ligne, "Duree", str(line.duree), unite=line.duree_unite or "j")
        if line.quantite is not None:
            q = _sub(ligne, "Quantite", str(line.quantite))
            if line.quantite_unite:
                q.set("unite", line.quantite_unite)
        _sub(ligne, "Renouvellements", str(line.renouvellements))
        _sub(ligne, "NonSubstituable", "true" if line.non_substituable else "false")
        _sub(ligne, "QuantiteDelivree", str(line.quantite_delivree))
    _code2d(block, p, with_image=False)
    return root


def rechercher_element(found: list[Prescription]) -> etree._Element:
    root = _root(OP_RECHERCHER, "00" if found else "01")
    for p in found:
        r = _sub(root, "Resume")
        _sub(r, "NumeroPrescription", p.numero)
        _sub(r, "DatePrescription", p.date_prescription.isoformat())
        _sub(r, "TypePrescription", p.type_prescription)
        _sub(r, "PrescripteurIdNational", p.prescripteur_nid)
        _sub(r, "EtatDelivrance", p.etat, libelle=ETATS[p.etat])
    return root


def response_bytes(body: etree._Element, operation: str, relates_to: str | None) -> tuple[bytes, str]:
    action = f"{ACTION_PREFIX}{operation}Response"
    return build_envelope(body, action=action, relates_to=relates_to), soap_content_type(action)


def fault_bytes(err: TeleserviceError, relates_to: str | None) -> tuple[int, str, bytes]:
    """(HTTP status, content type, body): the shared siram fault (401 for a refused bearer token)."""
    return teleservice_fault_bytes(err, relates_to)
