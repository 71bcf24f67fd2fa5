"""Ordonnance numérique (CNAM e-prescription) client: create a prescription, consult it, search a patient's.

The CNAM wire format is not public: this follows the bench's assumed format (SOAP 1.2 + WS-Addressing,
``ctxlps:ContexteLPS``, PS assertion in Pro Santé Connect form or a PSC bearer token, bodies in
``http://www.cnamts.fr/ePrescription/1/0``). Everything format-specific is in this module.

Endpoint settings (``ctx.endpoint.extra``): ``auth`` = ``assertion`` (default: SAML assertion NameQualifier="PSC")
or ``bearer`` (``Authorization: Bearer <ctx.professional.access_token>`` in place of the assertion), or
``api_psc`` (API Pro Santé Connectée, SC.ON/PSC.60: the API token exchanged at PSC *and* the assertion, api_psc.py).
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

import httpx
from lxml import etree

from .api_psc import authorized
from .context import CallContext, ServiceRefused, ServiceUnavailable, http_failures
from .transport import http_client

SERVICE = "Ordonnance numérique"
NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_WSA = "http://www.w3.org/2005/08/addressing"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_LPS = "urn:siram:lps:ctxlps"
NS_EP = "http://www.cnamts.fr/ePrescription/1/0"
NS_SIRAM = "urn:siram"
ACTION_PREFIX = "urn:ServiceEPrescription:1.0.0:"
OP_CREATE = "creerEPrescription"
OP_CONSULT = "consulterEPrescription"
OP_SEARCH = "rechercherEPrescriptions"
_NS = {"s": NS_SOAP, "wsa": NS_WSA, "ep": NS_EP, "siram": NS_SIRAM}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


# ----------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnPatient:
    """Qualified INS identity, traits as returned by INSi (upper case, no accents)."""

    ins: str  # 15 chars: 13-char matricule + 2-digit key
    oid: str  # INS assigning authority (1.2.250.1.213.1.4.8 = INS-NIR, …)
    birth_name: str
    first_names: tuple[str, ...]  # birth first names (INSi list, one element per first name)
    sex: str  # M | F
    birth_date: date
    birth_place: str | None = None  # COG code


@dataclass(frozen=True)
class OnLine:
    label: str  # product label (≤ 200 chars)
    dosage: str  # posologie (≤ 1000 chars)
    duration: int | None = None  # Duree or quantity is required
    duration_unit: str = "j"  # j | s | m
    quantity: int | None = None  # 1–999
    quantity_unit: str | None = None
    renewals: int = 0  # 0–12
    non_substitutable: bool = False
    product_code: str | None = None
    product_code_system: str | None = None  # CIP13 | CIS | UCD
    delivered_quantity: int | None = None  # only in consultations


@dataclass(frozen=True)
class OnPrescriber:
    national_id: str
    family_name: str | None = None
    given_name: str | None = None
    profession: str | None = None


@dataclass(frozen=True)
class OnPrescription:
    number: str  # unique prescription number, printed in clear under the QR code
    code2d_payload: str  # text to encode in the QR code
    code2d_format: str  # QR_CODE
    png: bytes | None  # QR code image when the service returns one (creation)
    prescription_date: date
    prescription_type: str  # TRE_A05 (57833-6 …)
    created_at: datetime | None
    dispensation_state: str  # NON_DELIVREE | PARTIELLEMENT_DELIVREE | DELIVREE | ANNULEE
    dispensation_label: str  # French label of the state
    prescriber: OnPrescriber | None = None  # consultation only
    patient: OnPatient | None = None  # consultation only
    lines: tuple[OnLine, ...] = ()  # consultation only


@dataclass(frozen=True)
class OnSummary:
    number: str
    prescription_date: date
    prescription_type: str
    prescriber_national_id: str
    dispensation_state: str
    dispensation_label: str


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------


def create_prescription(ctx: CallContext, *, patient: OnPatient, lines: list[OnLine] | tuple[OnLine, ...],
                        prescription_date: date | None = None, prescription_type: str = "57833-6",
                        number: str | None = None) -> OnPrescription:
    """Register the prescription; the prescriber is the logged-in professional. ``number`` = locally generated id.

    Raises ServiceRefused (input refused, CR 10 KO, token refused) or ServiceUnavailable (no answer, 5xx).
    """
    pro = ctx.professional
    body = _el("CreerEPrescriptionReq", version="1.0")
    if number:
        _sub(body, "NumeroPrescription", number)
    _sub(body, "DatePrescription", (prescription_date or date.today()).isoformat())
    _sub(body, "TypePrescription", prescription_type)
    ps = _sub(body, "Prescripteur")
    _sub(ps, "IdNational", pro.national_id)
    if pro.billing_id:
        _sub(ps, "IdentifiantFacturation", pro.billing_id)
    _patient_xml(body, patient)
    lignes = _sub(body, "Lignes")
    for line in lines:
        _line_xml(lignes, line)
    resp = _call(ctx, OP_CREATE, body)
    _check_cr(resp, "creation")
    return _prescription(_one(resp, "ep:EPrescription"))


def consult_prescription(ctx: CallContext, number: str) -> OnPrescription | None:
    """The prescription with its patient, prescriber, lines and dispensation state; None if unknown (CR 01)."""
    body = _el("ConsulterEPrescriptionReq", version="1.0")
    _sub(body, "NumeroPrescription", number)
    resp = _call(ctx, OP_CONSULT, body)
    if _check_cr(resp, "consultation") == "01":
        return None
    return _prescription(_one(resp, "ep:EPrescription"))


def search_prescriptions(ctx: CallContext, *, ins: str, oid: str, start: date | None = None,
                         end: date | None = None) -> list[OnSummary]:
    """Prescriptions of a patient (by INS), optionally between two prescription dates."""
    body = _el("RechercherEPrescriptionsReq", version="1.0")
    _ins_xml(_sub(body, "Patient"), ins, oid)
    if start:
        _sub(body, "DateDebut", start.isoformat())
    if end:
        _sub(body, "DateFin", end.isoformat())
    resp = _call(ctx, OP_SEARCH, body)
    if _check_cr(resp, "recherche") == "01":
        return []
    return [OnSummary(number=_t(r, "ep:NumeroPrescription"), prescription_date=date.fromisoformat(
        _t(r, "ep:DatePrescription")), prescription_type=_t(r, "ep:TypePrescription"),
        prescriber_national_id=_t(r, "ep:PrescripteurIdNational"), dispensation_state=_t(r, "ep:EtatDelivrance"),
        dispensation_label=_attr(r, "ep:EtatDelivrance", "libelle")) for r in resp.findall("ep:Resume", _NS)]


# ----------------------------------------------------------------------------------------------------
# Request building
# ----------------------------------------------------------------------------------------------------


def _el(local: str, **attrs: str) -> etree._Element:
    return etree.Element(f"{{{NS_EP}}}{local}", attrs, nsmap={"ep": NS_EP})


def _sub(parent: etree._Element, local: str, text: str | None = None, **attrs: str) -> etree._Element:
    ns = etree.QName(parent).namespace
    el = etree.SubElement(parent, f"{{{ns}}}{local}" if ns else local, attrs)
    if text is not None:
        el.text = text
    return el


def _ins_xml(parent: etree._Element, ins: str, oid: str) -> None:
    block = _sub(parent, "INS")
    _sub(block, "NumIdentifiant", ins[:13])
    _sub(block, "Cle", ins[13:])
    _sub(block, "OID", oid)


def _patient_xml(parent: etree._Element, p: OnPatient) -> None:
    block = _sub(parent, "Patient")
    _ins_xml(block, p.ins, p.oid)
    _sub(block, "NomNaissance", p.birth_name)
    for name in p.first_names:
        _sub(block, "Prenom", name)
    _sub(block, "Sexe", p.sex)
    _sub(block, "DateNaissance", p.birth_date.isoformat())
    if p.birth_place:
        _sub(block, "LieuNaissance", p.birth_place)


def _line_xml(parent: etree._Element, line: OnLine) -> None:
    ligne = _sub(parent, "Ligne")
    produit = _sub(ligne, "Produit")
    if line.product_code:
        _sub(produit, "Code", line.product_code, systeme=line.product_code_system or "CIP13")
    _sub(produit, "Libelle", line.label)
    _sub(ligne, "Posologie", line.dosage)
    if line.duration is not None:
        _sub(ligne, "Duree", str(line.duration), unite=line.duration_unit)
    if line.quantity is not None:
        q = _sub(ligne, "Quantite", str(line.quantity))
        if line.quantity_unit:
            q.set("unite", line.quantity_unit)
    if line.renewals:
        _sub(ligne, "Renouvellements", str(line.renewals))
    if line.non_substitutable:
        _sub(ligne, "NonSubstituable", "true")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _lps(ctx: CallContext) -> etree._Element:
    sw = ctx.software
    q = lambda local: f"{{{NS_LPS}}}{local}"  # noqa: E731
    lps = etree.Element(q("ContexteLPS"), {"Nature": "CTXLPS", "Version": "01_00"}, nsmap={"ctxlps": NS_LPS})
    etree.SubElement(lps, q("Id")).text = str(uuid.uuid4())
    etree.SubElement(lps, q("Temps")).text = _now()
    etree.SubElement(lps, q("Emetteur")).text = ctx.professional.national_id
    block = etree.SubElement(lps, q("LPS"))
    etree.SubElement(block, q("IDAM"), R="4").text = sw.idam
    etree.SubElement(block, q("Version")).text = sw.version
    etree.SubElement(block, q("Instance")).text = sw.instance
    etree.SubElement(block, q("Nom")).text = sw.name
    return lps


def _security(ctx: CallContext) -> etree._Element:
    """PS assertion in Pro Santé Connect form: NameID = national id, billing id and AMO speciality attributes."""
    pro = ctx.professional
    q = lambda local: f"{{{NS_SAML}}}{local}"  # noqa: E731
    sec = etree.Element(f"{{{NS_WSSE}}}Security", nsmap={"wsse": NS_WSSE})
    assertion = etree.SubElement(sec, q("Assertion"), {"ID": f"_{uuid.uuid4().hex}", "Version": "2.0",
                                                       "IssueInstant": _now()}, nsmap={"saml2": NS_SAML})
    etree.SubElement(assertion, q("Issuer")).text = ctx.software.name
    subject = etree.SubElement(assertion, q("Subject"))
    etree.SubElement(subject, q("NameID"), NameQualifier="PSC").text = pro.national_id
    stmt = etree.SubElement(assertion, q("AttributeStatement"))
    for name, value in (("identifiantFacturation", pro.billing_id), ("codeSpecialiteAMO", pro.amo_speciality),
                        ("secteurActivite", pro.sector)):
        attr = etree.SubElement(stmt, q("Attribute"), Name=name)
        etree.SubElement(attr, q("AttributeValue")).text = value
    return sec


def _envelope(ctx: CallContext, action: str, message_id: str, body: etree._Element, bearer: bool) -> bytes:
    env = etree.Element(f"{{{NS_SOAP}}}Envelope", nsmap={"soap": NS_SOAP, "wsa": NS_WSA})
    header = etree.SubElement(env, f"{{{NS_SOAP}}}Header")
    etree.SubElement(header, f"{{{NS_WSA}}}Action").text = action
    etree.SubElement(header, f"{{{NS_WSA}}}MessageID").text = message_id
    etree.SubElement(header, f"{{{NS_WSA}}}To").text = ctx.endpoint.url
    if not bearer:
        header.append(_security(ctx))
    header.append(_lps(ctx))
    etree.SubElement(env, f"{{{NS_SOAP}}}Body").append(body)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


# ----------------------------------------------------------------------------------------------------
# Exchange and answers
# ----------------------------------------------------------------------------------------------------


def _call(ctx: CallContext, operation: str, body: etree._Element) -> etree._Element:
    """POST the request; returns the response body element or raises the right ServiceError."""
    ep = ctx.endpoint
    bearer = ep.extra.get("auth", "assertion") == "bearer"
    action = ACTION_PREFIX + operation
    headers = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"'}
    if bearer:
        if not ctx.professional.access_token:
            raise ServiceRefused(f"{SERVICE} : pas de jeton Pro Santé Connect, reconnectez-vous", code="no_token")
        headers["Authorization"] = f"Bearer {ctx.professional.access_token}"
    data = _envelope(ctx, action, f"urn:uuid:{uuid.uuid4()}", body, bearer)

    def send(auth: dict[str, str]) -> httpx.Response:
        with http_failures(SERVICE, ep.timeout), http_client(ep.tls, timeout=ep.timeout, headers=ep.headers) as http:
            return http.post(ep.url, content=data, headers={**headers, **auth})

    resp = authorized(ctx, send, lambda sent: sent.status_code)
    try:
        root = etree.fromstring(resp.content, _PARSER)
    except etree.XMLSyntaxError:
        root = None
    fault = root.find("s:Body/s:Fault", _NS) if root is not None else None
    if fault is not None:
        _raise_fault(fault, resp.status_code)
    if resp.status_code >= 500:
        raise ServiceUnavailable(f"service {SERVICE} en erreur (HTTP {resp.status_code})", code=str(resp.status_code))
    if resp.status_code != 200 or root is None:
        raise ServiceRefused(f"réponse inattendue du service {SERVICE} (HTTP {resp.status_code})",
                             code=str(resp.status_code), detail=resp.text[:500])
    found = root.find(f"s:Body/ep:{_response_name(operation)}", _NS)
    if found is None:
        raise ServiceUnavailable(f"réponse du service {SERVICE} illisible (corps attendu absent)", code="format",
                                 detail=resp.text[:500])
    return found


def _response_name(operation: str) -> str:
    return {OP_CREATE: "CreerEPrescriptionResp", OP_CONSULT: "ConsulterEPrescriptionResp",
            OP_SEARCH: "RechercherEPrescriptionsResp"}[operation]


def _raise_fault(fault: etree._Element, status: int) -> None:
    code = fault.findtext("s:Code/s:Value", "", _NS).strip()
    subcode = fault.findtext("s:Code/s:Subcode/s:Value", "", _NS).strip().rpartition(":")[2]
    reason = fault.findtext("s:Reason/s:Text", "", _NS).strip() or "erreur sans libellé"
    erreur = fault.find("s:Detail/siram:Erreur", _NS)
    detail = erreur.get("code") if erreur is not None else None
    precise = (erreur.text or "").strip() if erreur is not None else ""
    text = f"{SERVICE} : {reason}" + (f" (détail : {precise})" if precise else "")
    # Receiver fault = the service's own trouble, worth retrying later. The fault code decides, not the HTTP
    # status: the CNAM teleservices send every fault, Sender ones included, with HTTP 500.
    if code.endswith("Receiver") or (status >= 500 and not code):
        raise ServiceUnavailable(text, code=subcode or str(status), detail=detail)
    raise ServiceRefused(text, code=subcode or str(status), detail=detail)


def _check_cr(resp: etree._Element, what: str) -> str:
    cr = resp.findtext("ep:CR/ep:CodeCR", "", _NS).strip()
    label = resp.findtext("ep:CR/ep:LibelleCR", "", _NS).strip()
    if cr in ("00", "01"):
        return cr
    raise ServiceRefused(f"{SERVICE} : {what} refusée ({label or 'KO'})", code=f"CR{cr or '?'}")


def _one(el: etree._Element, path: str) -> etree._Element:
    found = el.find(path, _NS)
    if found is None:
        raise ServiceUnavailable(f"réponse du service {SERVICE} incomplète ({path} absent)", code="format")
    return found


def _t(el: etree._Element, path: str) -> str:
    return (el.findtext(path, "", _NS) or "").strip()


def _attr(el: etree._Element, path: str, name: str) -> str:
    found = el.find(path, _NS)
    return (found.get(name) or "") if found is not None else ""


def _int(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


def _prescription(block: etree._Element) -> OnPrescription:
    image = _t(block, "ep:Code2D/ep:Image")
    created = _t(block, "ep:DateCreation")
    prescriber = patient = None
    ps = block.find("ep:Prescripteur", _NS)
    if ps is not None:
        prescriber = OnPrescriber(_t(ps, "ep:IdNational"), _t(ps, "ep:Nom") or None, _t(ps, "ep:Prenom") or None,
                                  _t(ps, "ep:Profession") or None)
    pat = block.find("ep:Patient", _NS)
    if pat is not None:
        patient = OnPatient(
            ins=_t(pat, "ep:INS/ep:NumIdentifiant") + _t(pat, "ep:INS/ep:Cle"), oid=_t(pat, "ep:INS/ep:OID"),
            birth_name=_t(pat, "ep:NomNaissance"),
            first_names=tuple((p.text or "") for p in pat.findall("ep:Prenom", _NS)), sex=_t(pat, "ep:Sexe"),
            birth_date=date.fromisoformat(_t(pat, "ep:DateNaissance")), birth_place=_t(pat, "ep:LieuNaissance") or None)
    lines = []
    for ligne in block.findall("ep:Lignes/ep:Ligne", _NS):
        code = ligne.find("ep:Produit/ep:Code", _NS)
        lines.append(OnLine(
            label=_t(ligne, "ep:Produit/ep:Libelle"), dosage=_t(ligne, "ep:Posologie"),
            duration=_int(_t(ligne, "ep:Duree")), duration_unit=_attr(ligne, "ep:Duree", "unite") or "j",
            quantity=_int(_t(ligne, "ep:Quantite")), quantity_unit=_attr(ligne, "ep:Quantite", "unite") or None,
            renewals=_int(_t(ligne, "ep:Renouvellements")) or 0,
            non_substitutable=_t(ligne, "ep:NonSubstituable") in ("true", "1"),
            product_code=(code.text or "").strip() if code is not None else None,
            product_code_system=code.get("systeme") if code is not None else None,
            delivered_quantity=_int(_t(ligne, "ep:QuantiteDelivree"))))
    return OnPrescription(
        number=_t(block, "ep:NumeroPrescription"), code2d_payload=_t(block, "ep:Code2D/ep:Donnees"),
        code2d_format=_t(block, "ep:Code2D/ep:Format") or "QR_CODE",
        png=base64.b64decode(image) if image else None,
        prescription_date=date.fromisoformat(_t(block, "ep:DatePrescription")),
        prescription_type=_t(block, "ep:TypePrescription"),
        created_at=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
        dispensation_state=_t(block, "ep:EtatDelivrance"), dispensation_label=_attr(block, "ep:EtatDelivrance",
                                                                                     "libelle"),
        prescriber=prescriber, patient=patient, lines=tuple(lines))
