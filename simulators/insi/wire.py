"""INSi wire format: read the SOAP request (headers + RECSANSVITALE/RECVITALE), write RESULTAT and faults.

Lookups are namespace-aware (never prefix-aware). Children of the body element are accepted qualified
in the body's namespace (as the XSDs say) or unqualified (lenient, seen in hand-made clients).
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from simulators.core.siram_wire import result_envelope
from simulators.core.soap import (
    Envelope,
    envelope_bytes,
    soap_content_type,
)
from simulators.core.teleservice import (
    NS_CTXBAM,
    NS_CTXLPS,
    Operations,
    Request,
    TeleserviceError,
    children_by_name,
    read_request,
)
from simulators.core.xmlsafe import NS, find, parse_xml, qname

from .model import ACTION_PREFIX, OP_TRAITS, OP_VITALE, Result

NS_RECSANS = "http://www.cnamts.fr/INSiRecSans"
NS_RECVIT = "http://www.cnamts.fr/INSiRecVit"
NS_RESULTAT = "http://www.cnamts.fr/INSiResultat"
NSX = {"lps": NS_CTXLPS, "bam": NS_CTXBAM, "rs": NS_RECSANS, "rv": NS_RECVIT, "res": NS_RESULTAT}

BODY_OF = {OP_TRAITS: (NS_RECSANS, "RECSANSVITALE"), OP_VITALE: (NS_RECVIT, "RECVITALE")}
OPS = Operations(ACTION_PREFIX, BODY_OF, understood=(NS["wsse"], NS_CTXLPS, NS_CTXBAM))




def parse_request(data: bytes, content_type: str | None, max_bytes: int, envelope: Envelope | None = None,
                  envelope_error: Exception | None = None) -> Request:
    """Raises SoapError (envelope level) or TeleserviceError (INSi level, carrying the request's MessageID).

    `envelope` is the envelope the core's front end already parsed, if any (saves a second parse), and
    `envelope_error` why it could not be parsed.
    """
    req = read_request(data, content_type, max_bytes, OPS, envelope, envelope_error)
    try:
        body = parse_traits(req.body_element) if req.operation == OP_TRAITS else parse_vitale(req.body_element)
    except TeleserviceError as exc:
        exc.message_id = req.message_id
        raise
    return Request(envelope=req.envelope, operation=req.operation, headers=req.headers, body=body)


def _text(found: dict[str, list[etree._Element]], local: str, *, strip: bool = True) -> str | None:
    """Text of the first child ``local``; names are not stripped, so the lexical rules see every space."""
    elements = found.get(local)
    if not elements:
        return None
    value = _all_text(elements[0])
    return value.strip() if strip else value


def _all_text(el: etree._Element) -> str:
    return "".join(el.itertext()) if len(el) else el.text or ""


def parse_traits(el: etree._Element) -> dict[str, Any]:
    found = children_by_name(el)
    return {
        "nom": _text(found, "NomNaissance", strip=False),
        "prenoms": [_all_text(p) for p in found.get("Prenom", ())],
        "sexe": _text(found, "Sexe"),
        "date_naissance": _text(found, "DateNaissance"),
        "lieu_naissance": _text(found, "LieuNaissance"),
    }


def _matricule(found: dict[str, list[etree._Element]], local: str) -> tuple[str, str] | None:
    elements = found.get(local)
    if not elements:
        return None
    inner = children_by_name(elements[0])
    return _text(inner, "NumIdentifiant") or "", _text(inner, "Cle") or ""


def parse_vitale(el: etree._Element) -> dict[str, Any]:
    found = children_by_name(el)
    return {
        "individu": _matricule(found, "MatriculeIndividu"),
        "od": _matricule(found, "MatriculeOD"),
        "nom": _text(found, "NomNaissance", strip=False),
        "date_naissance": _text(found, "DateNaissance"),
        "rang": _text(found, "RangNaissance"),
    }


def request_attrs(data: bytes) -> dict[str, str]:
    """Attributes fault rules may match on (``match.attrs``): nom, prenom, date_naissance, ins."""
    root = parse_xml(data)
    body = find(root, "soap12:Body")
    el = next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
    if el is None:
        return {}
    attrs: dict[str, str] = {}
    if el.tag == qname(NS_RECSANS, "RECSANSVITALE"):
        raw = parse_traits(el)
        attrs.update(nom=raw["nom"] or "", prenom=" ".join(raw["prenoms"]), date_naissance=raw["date_naissance"] or "")
        if raw["lieu_naissance"]:
            attrs["lieu_naissance"] = raw["lieu_naissance"]
    elif el.tag == qname(NS_RECVIT, "RECVITALE"):
        raw = parse_vitale(el)
        attrs["date_naissance"] = raw["date_naissance"] or ""
        if raw["nom"]:
            attrs["nom"] = raw["nom"]
        mat = raw["individu"] or raw["od"]
        if mat:
            attrs["ins"] = mat[0] + mat[1]
        if raw["od"]:
            attrs["ins_od"] = raw["od"][0] + raw["od"][1]
    return {k: v for k, v in attrs.items() if v}


# ----------------------------------------------------------------------------------------------------
# Responses
# ----------------------------------------------------------------------------------------------------


def _sub(parent: etree._Element, local: str, value: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, qname(NS_RESULTAT, local))
    if value is not None:
        el.text = value
    return el


def _ins_block(parent: etree._Element, local: str, matricule: str, cle: str, oid: str,
               type_matricule: str | None = None, date_deb: Any = None, date_fin: Any = None) -> None:
    block = _sub(parent, local)
    ident = _sub(block, "IdIndividu")
    _sub(ident, "NumIdentifiant", matricule)
    _sub(ident, "Cle", cle)
    if type_matricule:
        _sub(ident, "TypeMatricule", type_matricule)
    _sub(block, "OID", oid)
    if date_deb:
        _sub(block, "DateDeb", date_deb.isoformat())
    if date_fin:
        _sub(block, "DateFin", date_fin.isoformat())


def resultat_element(result: Result) -> etree._Element:
    # Default namespace plus the two request namespaces, as the real service declares them (siram_wire docstring)
    root = etree.Element(qname(NS_RESULTAT, "RESULTAT"), nsmap={None: NS_RESULTAT, "ns0": NS_RECVIT,
                                                                "ns1": NS_RECSANS})
    cr = _sub(root, "CR")
    _sub(cr, "CodeCR", result.code)
    _sub(cr, "LibelleCR", result.libelle)
    ident = result.identity
    if result.code == "00" and ident is not None:
        p = ident.patient
        individu = _sub(root, "INDIVIDU")
        _ins_block(individu, "INSACTIF", ident.matricule or "", ident.cle or "", ident.oid or "")
        for h in ident.inshisto:
            _ins_block(individu, "INSHISTO", h.matricule, h.cle, h.oid, h.type_matricule, h.date_deb, h.date_fin)
        tiq = _sub(individu, "TIQ")
        _sub(tiq, "NomNaissance", p.nom_naissance)
        # No TIQ/Prenom: the real answers of every case of protocols.md §1.7 carry ListePrenom only.
        _sub(tiq, "ListePrenom", p.liste_prenoms)
        _sub(tiq, "Sexe", p.sexe)
        _sub(tiq, "DateNaissance", p.date_naissance.isoformat())
        if p.lieu_naissance:
            _sub(tiq, "LieuNaissance", p.lieu_naissance)
    return root


# RESULTAT bytes per (code, identity): identities are immutable and rebuilt only when the control API changes
# them, so each answer's body element is serialised once; the entry holds the identity, so its id() stays valid.
_RESULTAT_CACHE: dict[tuple[str, int], tuple[Any, bytes]] = {}
_CONTENT_TYPES = {op: soap_content_type(f"{ACTION_PREFIX}{op}Response") for op in (OP_TRAITS, OP_VITALE)}


def resultat_bytes(result: Result) -> bytes:
    key = (result.code, id(result.identity))
    cached = _RESULTAT_CACHE.get(key)
    if cached is not None and cached[0] is result.identity:
        return cached[1]
    data = etree.tostring(resultat_element(result), encoding="UTF-8")
    if len(_RESULTAT_CACHE) >= 4096:
        _RESULTAT_CACHE.clear()
    _RESULTAT_CACHE[key] = (result.identity, data)
    return data


def response_bytes(result: Result, operation: str, relates_to: str | None,
                   addressing: bool = False) -> tuple[bytes, str]:
    """The answer's envelope: as the real service writes it (no SOAP Header), or with WS-Addressing
    Action/MessageID/RelatesTo headers when `addressing` (setting ``wsa_response_headers``) asks for them."""
    action = f"{ACTION_PREFIX}{operation}Response"
    ctype = _CONTENT_TYPES.get(operation) or soap_content_type(action)
    if addressing:
        return envelope_bytes(resultat_bytes(result), action=action, relates_to=relates_to), ctype
    return result_envelope(resultat_bytes(result)), ctype


