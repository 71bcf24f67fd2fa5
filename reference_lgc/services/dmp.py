"""DMP client of the reference LGC (DMPi: SOAP 1.2 + WS-Addressing + VIHF, protocols.md §2).

TD0.2 existence test, TD0.3 authorisation, ITI-41 feed / replace, ITI-18 FindDocuments, ITI-43 retrieve and
ITI-57 visibility / status updates. ``ctx.endpoint.url`` is the services base (``…/si-dmp-server/v2/services``).
Failures raise :class:`ServiceUnavailable` (network, timeout, 5xx, Receiver fault, registry busy) or
:class:`ServiceRefused` (Sender fault, business RegistryError) with a French reason quoting the DMP's code and text.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from typing import Literal
from urllib.parse import unquote

import httpx
from lxml import etree

from . import xds
from .api_psc import authorized
from .context import CallContext, ServiceRefused, ServiceUnavailable
from .transport import http_client, network_reason
from .vihf import PROFESSION_SYSTEM, SPECIALITY_SYSTEM, Purpose, patient_cx, security_header, software_oid
from .xds import (
    ST_APPROVED,
    ST_ARCHIVED,
    ST_DELETED,
    Author,
    Code,
    DocumentEntry,
    DocumentMetadata,
)

__all__ = [
    "ST_APPROVED",
    "ST_ARCHIVED",
    "ST_DELETED",
    "ST_DEPRECATED",
    "Author",
    "Authorisation",
    "Code",
    "DmpStatus",
    "DocumentEntry",
    "DocumentMetadata",
    "PatientTraits",
    "RetrievedDocument",
    "Submission",
    "archive_document",
    "delete_document",
    "find_documents",
    "provide_document",
    "retrieve_document",
    "set_authorisation",
    "test_existence",
    "unarchive_document",
    "update_visibility",
]

ST_DEPRECATED = xds.ST_DEPRECATED
SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
HL7 = "urn:hl7-org:v3"
HAB = "urn:si-dmp-habilitations"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

A_TD02 = "urn:hl7-org:v3:PRPA_IN201307UV02"
A_TD03 = "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization"
A_ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
A_ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
A_ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
A_ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"

DMP_DEVICE_OID = "1.2.250.1.213.4.1.1.1"
DEFAULT_REPOSITORY = "1.2.250.1.213.4.1.1.2"
TD02_OBSERVATIONS = "1.2.250.1.213.4.1.2.1"  # the bench DMP's code system for the TD0.2 status facts
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_CONTENT_TYPE = Code("07", "1.2.250.1.213.2.2", "Consultation externe")

# Hardened parser: no entities, no DTD, no network (responses are untrusted input).
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)

DmpState = Literal["ouvert", "ferme", "absent"]
AuthorisationStatus = Literal["valide", "expiree", "refusee", "aucune"]

# RegistryError codes that mean "try again later" rather than "no".
_TRANSIENT = {"XDSRegistryBusy", "XDSRepositoryBusy", "XDSRegistryError", "XDSRepositoryError",
              "XDSRegistryOutOfResources", "XDSRepositoryOutOfResources"}
_LABELS = {
    "DMPClosed": "Le DMP du patient est fermé",
    "DMPBlockedProfessional": "Le patient a bloqué votre accès à son DMP",
    "DMPAuthorizationRequired": "Accès refusé : vous n'êtes pas autorisé (ou plus) à consulter ce DMP",
    "DMPAuthorizationDenied": "Le patient a refusé votre accès à son DMP",
    "DMPPatientOpposed": "Le patient s'oppose à cette opération sur son DMP",
    "DMPNotAuthor": "Seul l'auteur du document peut effectuer cette opération",
    "XDSUnknownPatientId": "Patient inconnu du DMP (aucun DMP pour cet INS)",
    "XDSPatientIdDoesNotMatch": "Le patient ne correspond pas à celui de la demande",
    "XDSRegistryMetadataError": "Métadonnées du document refusées par le DMP",
    "XDSRepositoryMetadataError": "Métadonnées du document refusées par l'entrepôt du DMP",
    "XDSDocumentUniqueIdError": "Identifiant de document déjà utilisé ou document introuvable",
    "XDSMissingDocument": "Contenu du document absent de l'envoi",
    "XDSMissingDocumentMetadata": "Métadonnées du document absentes de l'envoi",
    "UnresolvedReferenceException": "Document de référence introuvable dans le DMP",
    "XDSMetadataUpdateError": "Mise à jour refusée : le document a changé entre-temps",
    "XDSMetadataVersionError": "Mise à jour refusée : le document a changé entre-temps (version)",
    "XDSMetadataUpdateOperationError": "Mise à jour refusée par le DMP",
    "XDSUnknownRepositoryId": "Entrepôt de documents inconnu du DMP",
}


@dataclass(frozen=True)
class PatientTraits:
    """Identity traits returned by TD0.2: for matching checks only, the LGC must not display them."""

    birth_name: str = ""
    given_names: tuple[str, ...] = ()
    gender: str = ""
    birth_date: str = ""  # YYYYMMDD


@dataclass(frozen=True)
class DmpStatus:
    """TD0.2 answer: the DMP's state and the calling professional's rights on it."""

    ins: str
    state: DmpState
    closed_at: str | None = None
    authorisation: AuthorisationStatus = "aucune"
    authorisation_expires: str | None = None
    blocked: bool = False  # the patient blocked this professional: no access at all, even bris de glace
    medecin_traitant: bool = False
    patient: PatientTraits | None = None

    @property
    def exists(self) -> bool:
        return self.state != "absent"

    @property
    def can_consult(self) -> bool:
        """Normal-mode consultation (ITI-18/43) will be accepted."""
        return self.state == "ouvert" and not self.blocked and self.authorisation == "valide"

    @property
    def can_feed(self) -> bool:
        """Feeding needs no authorisation, only an open DMP and a professional not blocked."""
        return self.state == "ouvert" and not self.blocked


@dataclass(frozen=True)
class Authorisation:
    status: AuthorisationStatus
    start: str | None = None
    end: str | None = None
    medecin_traitant: bool = False


@dataclass(frozen=True)
class Submission:
    entry_uuid: str  # the registered DocumentEntry (our own urn:uuid, kept by the registry)
    unique_id: str
    submission_set_unique_id: str
    signature_unique_id: str


@dataclass(frozen=True)
class RetrievedDocument:
    unique_id: str
    repository_id: str
    mime_type: str
    content: bytes


# ----------------------------------------------------------------------------------------------------
# Transport
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    body: etree._Element  # first element of soap:Body
    attachments: Mapping[str, bytes]


def _url(ctx: CallContext, service: str) -> str:
    return f"{ctx.endpoint.url.rstrip('/')}/{service}"


def _envelope(action: str, to: str, security: etree._Element, body: etree._Element, message_id: str) -> bytes:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soap": SOAP, "wsa": WSA})
    header = etree.SubElement(env, f"{{{SOAP}}}Header")
    act = etree.SubElement(header, f"{{{WSA}}}Action")
    act.set(f"{{{SOAP}}}mustUnderstand", "true")
    act.text = action
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = message_id
    etree.SubElement(header, f"{{{WSA}}}To").text = to
    header.append(security)
    etree.SubElement(env, f"{{{SOAP}}}Body").append(body)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def _post(ctx: CallContext, url: str, data: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
    """POST within ``endpoint.timeout`` for the whole exchange (a slow trickle counts too)."""
    timeout = ctx.endpoint.timeout
    deadline = time.monotonic() + timeout
    late = ServiceUnavailable(f"Le DMP n'a pas répondu dans le délai imparti ({timeout:g} s) : réessayer plus tard",
                              code="TIMEOUT")
    try:
        with http_client(ctx.endpoint.tls, timeout=httpx.Timeout(timeout), headers=ctx.endpoint.headers) as http, \
                http.stream("POST", url, content=data, headers=headers) as resp:
            chunks, total = [], 0
            for chunk in resp.iter_bytes():
                total += len(chunk)
                if total > MAX_RESPONSE_BYTES:
                    raise ServiceUnavailable(f"Réponse du DMP trop volumineuse (plus de {MAX_RESPONSE_BYTES} "
                                             "octets)", code="REPONSE_INVALIDE")
                if time.monotonic() > deadline:
                    raise late
                chunks.append(chunk)
            return resp.status_code, resp.headers.get("content-type", ""), b"".join(chunks)
    except httpx.TimeoutException:
        raise late from None
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"DMP injoignable ({network_reason(exc)}) : {exc}", code="RESEAU") from None


def _split_mtom(data: bytes, content_type: str) -> tuple[bytes, dict[str, bytes]]:
    msg = BytesParser(policy=policy.compat32).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\nMIME-Version: 1.0\r\n\r\n" + data)
    parts = msg.get_payload()
    if not msg.is_multipart() or not isinstance(parts, list) or not parts:
        raise ServiceUnavailable("Réponse MTOM du DMP illisible", code="REPONSE_INVALIDE")
    start = (msg.get_param("start") or "").strip("<> ")
    root, attachments = None, {}
    for i, part in enumerate(parts):
        cid = (part.get("Content-ID") or "").strip("<> ")
        payload = part.get_payload(decode=True) or b""
        if root is None and ((start and cid == start) or (not start and i == 0)):
            root = payload
        elif cid:
            attachments[cid] = payload
    if root is None:
        raise ServiceUnavailable("Réponse MTOM du DMP sans partie SOAP", code="REPONSE_INVALIDE")
    return root, attachments


def _text(el: etree._Element | None, path: str, ns: Mapping[str, str]) -> str:
    found = el.find(path, dict(ns)) if el is not None else None
    return (found.text or "").strip() if found is not None else ""


def _fault_error(fault: etree._Element, status: int) -> ServiceRefused | ServiceUnavailable:
    ns = {"s": SOAP}
    code = _text(fault, "s:Code/s:Value", ns).rsplit(":", 1)[-1]
    sub = _text(fault, "s:Code/s:Subcode/s:Value", ns).rsplit(":", 1)[-1]
    reason = _text(fault, "s:Reason/s:Text", ns)
    label = sub or code or f"HTTP {status}"
    if code == "Sender":
        return ServiceRefused(f"Le DMP a rejeté la requête [{label} : {reason}]", code=label, detail=reason)
    return ServiceUnavailable(f"Le DMP est indisponible [{label} : {reason}] : réessayer plus tard", code=label,
                              detail=reason)


def _call(ctx: CallContext, service: str, action: str, body: etree._Element, ins: str, oid: str,
          purpose: Purpose) -> _Reply:
    url = _url(ctx, service)
    message_id = f"urn:uuid:{uuid.uuid4()}"
    data = _envelope(action, url, security_header(ctx, ins, oid, purpose), body, message_id)
    headers = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"',
               "Accept": "application/soap+xml, multipart/related"}
    if ctx.api is None and ctx.professional.access_token:  # the PSC token itself, which a DMP may check
        headers["Authorization"] = f"Bearer {ctx.professional.access_token}"
    # API Pro Santé Connectée (SC.DMP/PSC.40): the API token exchanged at PSC instead, renewed once on a 401
    status, ctype, content = authorized(ctx, lambda auth: _post(ctx, url, data, {**headers, **auth}),
                                        lambda sent: sent[0])
    attachments: dict[str, bytes] = {}
    if ctype.lower().startswith("multipart/"):
        content, attachments = _split_mtom(content, ctype)
    try:
        root = etree.fromstring(content, _PARSER) if content.strip() else None
    except etree.XMLSyntaxError:
        root = None
    if root is None or root.tag != f"{{{SOAP}}}Envelope":
        if status >= 500 or status in (408, 429):
            raise ServiceUnavailable(f"Le DMP est indisponible (HTTP {status}) : réessayer plus tard",
                                     code=f"HTTP {status}")
        if status >= 400:
            raise ServiceRefused(f"Le DMP a rejeté la requête (HTTP {status})", code=f"HTTP {status}")
        raise ServiceUnavailable("Réponse du DMP illisible (pas une enveloppe SOAP 1.2)", code="REPONSE_INVALIDE")
    soap_body = root.find(f"{{{SOAP}}}Body")
    first = next((c for c in soap_body if isinstance(c.tag, str)), None) if soap_body is not None else None
    if first is None:
        raise ServiceUnavailable("Réponse du DMP sans corps SOAP", code="REPONSE_INVALIDE")
    if first.tag == f"{{{SOAP}}}Fault":
        raise _fault_error(first, status)
    if status >= 400:
        raise ServiceUnavailable(f"Réponse du DMP incohérente (HTTP {status})", code=f"HTTP {status}")
    relates = _text(root, f"{{{SOAP}}}Header/{{{WSA}}}RelatesTo", {})
    if relates and relates != message_id:
        raise ServiceUnavailable("Réponse du DMP à un autre message (wsa:RelatesTo)", code="REPONSE_INVALIDE")
    return _Reply(first, attachments)


def _registry_failure(errors: list[xds.RegistryError], what: str) -> ServiceRefused | ServiceUnavailable:
    if not errors:
        return ServiceUnavailable(f"{what} : échec sans erreur détaillée du DMP", code="Failure")
    detail = " ; ".join(f"{e.code} : {e.context}" for e in errors)
    first = errors[0].code
    if all(e.code in _TRANSIENT for e in errors):
        return ServiceUnavailable(f"{what} : le DMP est indisponible [{detail}] : réessayer plus tard", code=first,
                                  detail=detail)
    label = _LABELS.get(first, "Refusé par le DMP")
    return ServiceRefused(f"{what} : {label} [{detail}]", code=first, detail=detail)


def _check_registry_response(body: etree._Element, what: str) -> None:
    if body.get("status") != xds.RS_SUCCESS:
        raise _registry_failure(xds.registry_errors(body), what)


# ----------------------------------------------------------------------------------------------------
# TD0.2 / TD0.3
# ----------------------------------------------------------------------------------------------------


def _hl7(parent: etree._Element, local: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{HL7}}}{local}", **attrs)


def _td02_body(ctx: CallContext, ins: str, oid: str, now: datetime) -> etree._Element:
    root = etree.Element(f"{{{HL7}}}PRPA_IN201307UV02", nsmap={None: HL7}, ITSVersion="XML_1.0")
    _hl7(root, "id", root=software_oid(ctx), extension=uuid.uuid4().hex)
    _hl7(root, "creationTime", value=now.astimezone(UTC).strftime("%Y%m%d%H%M%S"))
    _hl7(root, "interactionId", root="2.16.840.1.113883.1.6", extension="PRPA_IN201307UV02")
    _hl7(root, "processingCode", code="D")  # as sent by the CNAM kit and DRIM (protocols.md §2.3)
    _hl7(root, "processingModeCode", code="T")
    _hl7(root, "acceptAckCode", code="AL")
    for role, oid_, name in (("receiver", DMP_DEVICE_OID, "DMP"), ("sender", software_oid(ctx), ctx.software.name)):
        dev = _hl7(_hl7(root, role, typeCode="RCV" if role == "receiver" else "SND"), "device", classCode="DEV",
                   determinerCode="INSTANCE")
        _hl7(dev, "id", root=oid_)
        _hl7(dev, "softwareName").text = name
    cap = _hl7(root, "controlActProcess", classCode="CACT", moodCode="EVN")
    _hl7(cap, "code", code="PRPA_TE201307UV02", codeSystem="2.16.840.1.113883.1.6")
    _hl7(cap, "reasonCode", code="TEST_EXST", codeSystem="1.2.250.1.213.1.1.4.11",
         displayName="Test d'existence de dossier")
    q = _hl7(cap, "queryByParameter")
    _hl7(q, "queryId", root=software_oid(ctx), extension=uuid.uuid4().hex)
    _hl7(q, "statusCode", code="new")
    _hl7(q, "responsePriorityCode", code="I")
    pid = _hl7(_hl7(q, "parameterList"), "patientIdentifier")
    _hl7(pid, "value", root=oid, extension=ins)
    _hl7(pid, "semanticsText").text = "Patient.id"
    return root


def test_existence(ctx: CallContext, ins: str, ins_oid: str, *, purpose: Purpose = "normal") -> DmpStatus:
    """TD0.2: does the patient have a DMP, is it open, and what may this professional do with it."""
    now = datetime.now(UTC)
    body = _call(ctx, "patients", A_TD02, _td02_body(ctx, ins, ins_oid, now), ins, ins_oid, purpose).body
    ns = {"h": HL7}
    ack = body.find("h:acknowledgement/h:typeCode", ns)
    answer = body.find("h:controlActProcess/h:queryAck/h:queryResponseCode", ns)
    answer_code = answer.get("code", "") if answer is not None else ""
    if ack is not None and ack.get("code") in ("AE", "AR"):
        text = _text(body, "h:acknowledgement/h:acknowledgementDetail/h:text", ns)
        raise ServiceRefused(f"Test d'existence du DMP refusé [{answer_code or ack.get('code')} : {text}]",
                             code=answer_code or ack.get("code"), detail=text)
    if answer_code == "NF":
        return DmpStatus(ins=ins, state="absent")
    if answer_code != "OK":
        raise ServiceUnavailable(f"Réponse TD0.2 inattendue du DMP (queryResponseCode {answer_code!r})",
                                 code="REPONSE_INVALIDE")
    patient = body.find("h:controlActProcess/h:subject/h:registrationEvent/h:subject1/h:patient", ns)
    if patient is None:
        raise ServiceUnavailable("Réponse TD0.2 sans patient", code="REPONSE_INVALIDE")
    facts: dict[str, tuple[str, str | None]] = {}
    for obs in patient.iterfind("h:subjectOf/h:administrativeObservation", ns):
        code = obs.find("h:code", ns)
        if code is None or code.get("codeSystem") != TD02_OBSERVATIONS:
            continue
        value = obs.find("h:value", ns)
        when = obs.find("h:effectiveTime", ns)
        facts[code.get("code", "")] = (value.get("code", "") if value is not None else "",
                                       when.get("value") if when is not None else None)
    reg_status = body.find("h:controlActProcess/h:subject/h:registrationEvent/h:statusCode", ns)
    state_value, closed_at = facts.get("DMP_STATUT", ("", None))
    if state_value not in ("ouvert", "ferme"):  # fall back on the HL7v3 registration status
        state_value = "ferme" if reg_status is not None and reg_status.get("code") == "terminated" else "ouvert"
    auth, expires = facts.get("AUTORISATION_PS", ("aucune", None))
    person = patient.find("h:patientPerson", ns)
    traits = None
    if person is not None:
        gender = person.find("h:administrativeGenderCode", ns)
        birth = person.find("h:birthTime", ns)
        traits = PatientTraits(
            birth_name=_text(person, "h:name/h:family", ns),
            given_names=tuple((g.text or "").strip() for g in person.iterfind("h:name/h:given", ns)),
            gender=gender.get("code", "") if gender is not None else "",
            birth_date=birth.get("value", "") if birth is not None else "")
    return DmpStatus(
        ins=ins, state=state_value,  # type: ignore[arg-type]
        closed_at=closed_at if state_value == "ferme" else None,
        authorisation=auth if auth in ("valide", "expiree", "refusee", "aucune") else "aucune",  # type: ignore[arg-type]
        authorisation_expires=expires, blocked=facts.get("PS_BLOQUE", ("false", None))[0] == "true",
        medecin_traitant=facts.get("MEDECIN_TRAITANT_DMP", ("false", None))[0] == "true", patient=traits)


test_existence.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


def set_authorisation(ctx: CallContext, ins: str, ins_oid: str, *, grant: bool = True,
                      medecin_traitant: bool = False) -> Authorisation:
    """TD0.3: record (AJOUT, 6 months) or withdraw (RETRAIT) the patient's authorisation for this professional."""
    req = etree.Element(f"{{{HAB}}}setAuthorization", nsmap={"hab": HAB})
    etree.SubElement(req, f"{{{HAB}}}action").text = "AJOUT" if grant else "RETRAIT"
    etree.SubElement(req, f"{{{HAB}}}medecinTraitantDMP").text = "true" if medecin_traitant else "false"
    etree.SubElement(req, f"{{{HAB}}}patientINS", root=ins_oid).text = ins
    body = _call(ctx, "habilitations", A_TD03, req, ins, ins_oid, "normal").body
    ns = {"h": HAB}
    if _text(body, "h:status", ns) != "OK":
        code, message = _text(body, "h:code", ns) or "KO", _text(body, "h:message", ns)
        label = _LABELS.get(code, "Mise à jour de l'autorisation refusée par le DMP")
        raise ServiceRefused(f"{label} [{code} : {message}]", code=code, detail=message)
    status = _text(body, "h:authorization/h:statut", ns) or ("valide" if grant else "aucune")
    return Authorisation(status=status,  # type: ignore[arg-type]
                         start=_text(body, "h:authorization/h:dateDebut", ns) or None,
                         end=_text(body, "h:authorization/h:dateFin", ns) or None,
                         medecin_traitant=_text(body, "h:authorization/h:medecinTraitantDMP", ns) == "true")


# ----------------------------------------------------------------------------------------------------
# ITI-41
# ----------------------------------------------------------------------------------------------------


def _author_info(ctx: CallContext) -> xds.AuthorInfo:
    p = ctx.professional
    institution = (f"{p.structure_name}^^^^^&{xds.STRUCTURE_ID_OID}&ISO^IDNST^^^{p.structure_id}"
                   if p.structure_id else "")
    return xds.AuthorInfo(
        person=f"{p.national_id}^{p.family_name}^{p.given_name}^^^^^^&{xds.PS_ID_OID}&ISO^D^^^IDNPS",
        role=f"{p.profession}^^{PROFESSION_SYSTEM}" if p.profession else "",
        speciality=f"{p.speciality}^^{SPECIALITY_SYSTEM}" if p.speciality else "", institution=institution)


def _facility(ctx: CallContext, meta: DocumentMetadata | None = None) -> Code:
    if meta is not None and meta.healthcare_facility_type is not None:
        return meta.healthcare_facility_type
    return Code(ctx.professional.sector, "1.2.250.1.71.4.2.4")


def provide_document(ctx: CallContext, ins: str, ins_oid: str, document: bytes, metadata: DocumentMetadata, *,
                     replaces: str | None = None) -> Submission:
    """ITI-41 (TD2.1): send one document (inline base64) with its XAdES signature document.

    ``replaces``: entryUUID of the Approved document this one replaces (RPLC; the CDA must keep the setId and
    carry a higher versionNumber).
    """
    now = datetime.now(UTC)
    patient = patient_cx(ins, ins_oid)
    author = _author_info(ctx)
    hcf = _facility(ctx, metadata)
    ss_id, doc_id, sig_id = (f"urn:uuid:{uuid.uuid4()}" for _ in range(3))
    ss_uid, sig_uid = xds.new_oid(), xds.new_oid()
    doc_uid = metadata.unique_id or xds.new_oid()
    signature = xds.signature_document(ss_uid, [(doc_uid, document)], now)
    sor, rol = xds.submit_objects_request()
    xds.submission_set(rol, ss_id, ss_uid, software_oid(ctx), patient, metadata.content_type, author, now)
    xds.document_entry(rol, doc_id, doc_uid, patient, document, metadata, author, hcf)
    xds.signature_entry(rol, sig_id, sig_uid, patient, author, hcf, metadata.practice_setting, now)
    xds.association(rol, xds.AT_HAS_MEMBER, ss_id, doc_id, SubmissionSetStatus="Original")
    xds.association(rol, xds.AT_HAS_MEMBER, ss_id, sig_id, SubmissionSetStatus="Original")
    xds.association(rol, xds.AT_SIGNS, sig_id, ss_id)
    if replaces:
        xds.association(rol, xds.AT_RPLC, doc_id, replaces)
    req = etree.Element(f"{{{xds.XDS}}}ProvideAndRegisterDocumentSetRequest", nsmap={"xds": xds.XDS})
    req.append(sor)
    for ident, data in ((doc_id, document), (sig_id, signature)):
        etree.SubElement(req, f"{{{xds.XDS}}}Document", id=ident).text = _b64(data)
    body = _call(ctx, "repository", A_ITI41, req, ins, ins_oid, "normal").body
    what = "Remplacement du document dans le DMP" if replaces else "Envoi du document au DMP"
    _check_registry_response(body, what)
    return Submission(entry_uuid=doc_id, unique_id=doc_uid, submission_set_unique_id=ss_uid,
                      signature_unique_id=sig_uid)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ----------------------------------------------------------------------------------------------------
# ITI-18 / ITI-43
# ----------------------------------------------------------------------------------------------------


def find_documents(ctx: CallContext, ins: str, ins_oid: str, *, statuses: Iterable[str] = (ST_APPROVED,),
                   since: datetime | None = None, until: datetime | None = None, class_codes: Iterable[Code] = (),
                   type_codes: Iterable[Code] = (), purpose: Purpose = "normal",
                   include_signatures: bool = False) -> list[DocumentEntry]:
    """ITI-18 FindDocuments (LeafClass), newest first as the DMP answers. Signature documents are left out
    unless asked for. ``since``/``until`` bound the creationTime (from inclusive, to exclusive)."""
    query = xds.find_documents_query(patient_cx(ins, ins_oid), list(statuses), since=since, until=until,
                                     class_codes=list(class_codes), type_codes=list(type_codes))
    body = _call(ctx, "registry", A_ITI18, query, ins, ins_oid, purpose).body
    _check_registry_response(body, "Recherche de documents dans le DMP")
    entries = xds.document_entries(body)
    return entries if include_signatures else [e for e in entries if not e.is_signature]


def retrieve_document(ctx: CallContext, ins: str, ins_oid: str, unique_id: str, *,
                      repository_id: str = DEFAULT_REPOSITORY, purpose: Purpose = "normal") -> RetrievedDocument:
    """ITI-43: the document's bytes exactly as stored (the VIHF names the patient, hence ``ins``)."""
    req = etree.Element(f"{{{xds.XDS}}}RetrieveDocumentSetRequest", nsmap={"xds": xds.XDS})
    dr = etree.SubElement(req, f"{{{xds.XDS}}}DocumentRequest")
    etree.SubElement(dr, f"{{{xds.XDS}}}RepositoryUniqueId").text = repository_id
    etree.SubElement(dr, f"{{{xds.XDS}}}DocumentUniqueId").text = unique_id
    reply = _call(ctx, "repository", A_ITI43, req, ins, ins_oid, purpose)
    ns = {"x": xds.XDS, "rs": xds.RS, "xop": xds.XOP}
    for resp in reply.body.iterfind("x:DocumentResponse", ns):
        if _text(resp, "x:DocumentUniqueId", ns) != unique_id:
            continue
        doc = resp.find("x:Document", ns)
        include = doc.find("xop:Include", ns) if doc is not None else None
        if include is not None:
            cid = unquote(include.get("href", "").removeprefix("cid:"))
            if cid not in reply.attachments:
                raise ServiceUnavailable(f"Réponse du DMP incomplète : partie MIME {cid} absente",
                                         code="REPONSE_INVALIDE")
            content = reply.attachments[cid]
        else:
            try:
                content = base64.b64decode("".join((doc.text or "").split()) if doc is not None else "",
                                           validate=True)
            except (binascii.Error, ValueError):
                raise ServiceUnavailable("Réponse du DMP : contenu base64 invalide",
                                         code="REPONSE_INVALIDE") from None
        return RetrievedDocument(unique_id, _text(resp, "x:RepositoryUniqueId", ns) or repository_id,
                                 _text(resp, "x:mimeType", ns), content)
    rr = reply.body.find("rs:RegistryResponse", ns)
    errors = xds.registry_errors(rr) if rr is not None else []
    raise _registry_failure(errors, "Consultation du document dans le DMP")


# ----------------------------------------------------------------------------------------------------
# ITI-57
# ----------------------------------------------------------------------------------------------------


def _update(ctx: CallContext, ins: str, ins_oid: str, fill: Callable[[etree._Element, str], None],
            what: str) -> None:
    now = datetime.now(UTC)
    sor, rol = xds.submit_objects_request()
    ss_id = f"urn:uuid:{uuid.uuid4()}"
    xds.submission_set(rol, ss_id, xds.new_oid(), software_oid(ctx), patient_cx(ins, ins_oid),
                       DEFAULT_CONTENT_TYPE, _author_info(ctx), now)
    fill(rol, ss_id)
    body = _call(ctx, "registry", A_ITI57, sor, ins, ins_oid, "normal").body
    _check_registry_response(body, what)


def update_visibility(ctx: CallContext, ins: str, ins_oid: str, entry: DocumentEntry, *,
                      invisible_to_patient: bool | None = None, invisible_to_legal_reps: bool | None = None,
                      masked_to_professionals: bool | None = None) -> None:
    """ITI-57 metadata update (TD3.3a/b): change the DMP confidentiality codes of ``entry`` (from find_documents,
    for its lid, version and current codes); None keeps a flag as it is."""
    level = next((c.code for c in entry.confidentiality if c.scheme == xds.SCHEME_CONF_HL7), "N")
    codes = xds.conf_codes(
        level,
        invisible_patient=entry.invisible_to_patient if invisible_to_patient is None else invisible_to_patient,
        invisible_legal_reps=(entry.invisible_to_legal_reps if invisible_to_legal_reps is None
                              else invisible_to_legal_reps),
        masked=entry.masked_to_professionals if masked_to_professionals is None else masked_to_professionals)

    def fill(rol: etree._Element, ss_id: str) -> None:
        new_id = f"urn:uuid:{uuid.uuid4()}"
        eo = etree.SubElement(rol, f"{{{xds.RIM}}}ExtrinsicObject", id=new_id, lid=entry.lid,
                              mimeType=entry.mime_type or "text/xml", objectType=xds.U_DE)
        for c in codes:
            xds.classification(eo, xds.U_CONF, new_id, c)
        xds.external(eo, xds.U_DE_UNIQUE, new_id, entry.unique_id, "XDSDocumentEntry.uniqueId")
        xds.association(rol, xds.AT_HAS_MEMBER, ss_id, new_id, SubmissionSetStatus="Original",
                        PreviousVersion=str(entry.version))

    _update(ctx, ins, ins_oid, fill, "Modification de la visibilité du document dans le DMP")


def _set_status(ctx: CallContext, ins: str, ins_oid: str, entry_uuid: str, original: str, new: str,
                what: str) -> None:
    def fill(rol: etree._Element, ss_id: str) -> None:
        xds.association(rol, xds.AT_UPDATE_STATUS, ss_id, entry_uuid, OriginalStatus=original, NewStatus=new)

    _update(ctx, ins, ins_oid, fill, what)


def delete_document(ctx: CallContext, ins: str, ins_oid: str, entry_uuid: str, *,
                    current_status: str = ST_APPROVED) -> None:
    """ITI-57 (TD3.3c): logical deletion, author only."""
    _set_status(ctx, ins, ins_oid, entry_uuid, current_status, ST_DELETED, "Suppression du document dans le DMP")


def archive_document(ctx: CallContext, ins: str, ins_oid: str, entry_uuid: str) -> None:
    """ITI-57 (TD3.3d)."""
    _set_status(ctx, ins, ins_oid, entry_uuid, ST_APPROVED, ST_ARCHIVED, "Archivage du document dans le DMP")


def unarchive_document(ctx: CallContext, ins: str, ins_oid: str, entry_uuid: str) -> None:
    """ITI-57 (TD3.3d)."""
    _set_status(ctx, ins, ins_oid, entry_uuid, ST_ARCHIVED, ST_APPROVED, "Désarchivage du document dans le DMP")
