"""DMP wire format: MTOM/XOP, ebRIM 3.0 (ITI-41/18/43/57), HL7v3 TD0.2 and the TD0.3 habilitations message.

Lookups are namespace-aware (never prefix-aware). Responses are built with lxml; the bench's own formats
(TD0.2 status observations, TD0.3 response) are described in README.md and ``xsd/``.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.parser import BytesParser
from typing import Any

from lxml import etree

from simulators.core.soap import (
    Envelope,
    SoapError,
    SoapFaultSpec,
    action_from_content_type,
    build_envelope,
    check_content_type,
    must_understand_fault,
    parse_envelope,
)
from simulators.core.xmlsafe import NS, XmlRejected, find, findall, parse_xml, qname, text

from .model import (
    Association,
    Code,
    DocEntry,
    RegError,
    StoredQuery,
    Submission,
    SubmissionSet,
    dtm_now,
)

RIM, RS, QUERY, XDS, HL7, XOP = NS["rim"], NS["rs"], NS["query"], NS["xds"], NS["hl7"], NS["xop"]
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
HAB = "urn:si-dmp-habilitations"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NSX = {"lcm": LCM, "hab": HAB}
BENCH_FAULT_NS = "urn:segur-bench:dmp"

A_TD02 = "urn:hl7-org:v3:PRPA_IN201307UV02"
A_TD03 = "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization"
A_ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
A_ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
A_ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
A_ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"
# action -> (service, transaction, expected body element)
ACTIONS = {
    A_TD02: ("patients", "TD0.2", qname(HL7, "PRPA_IN201307UV02")),
    A_TD03: ("habilitations", "TD0.3", qname(HAB, "setAuthorization")),
    A_ITI41: ("repository", "ITI-41", qname(XDS, "ProvideAndRegisterDocumentSetRequest")),
    A_ITI43: ("repository", "ITI-43", qname(XDS, "RetrieveDocumentSetRequest")),
    A_ITI18: ("registry", "ITI-18", qname(QUERY, "AdhocQueryRequest")),
    A_ITI57: ("registry", "ITI-57", qname(LCM, "SubmitObjectsRequest")),
}
RESPONSE_ACTIONS = {
    A_TD02: "urn:hl7-org:v3:PRPA_IN201308UV02",
    A_TD03: A_TD03 + "Response",
    A_ITI41: A_ITI41 + "Response",
    A_ITI43: A_ITI43 + "Response",
    A_ITI18: A_ITI18 + "Response",
    A_ITI57: A_ITI57 + "Response",
}


U_SS = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
U_DE_OBJECT_TYPE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
U_CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
U_TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
U_CONF = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
U_FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
U_HCF = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
U_PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
U_DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
U_DE_PATIENT = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
U_DE_UNIQUE = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
U_SS_UNIQUE = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
U_SS_SOURCE = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
U_SS_PATIENT = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
U_SS_CONTENT = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
U_SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"

RS_SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
RS_FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
RS_PARTIAL = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
ERR_SEVERITY = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"

MAX_PARTS = 64
_REF_ATTRS = ("id", "classifiedObject", "registryObject", "sourceObject", "targetObject", "lid")


def sender_fault(reason: str, subcode: str | tuple[str, str] = (BENCH_FAULT_NS, "REQUETE_INVALIDE"),
                 relates_to: str | None = None) -> SoapError:
    return SoapError(SoapFaultSpec("Sender", reason, subcode=subcode), relates_to=relates_to)


def receiver_fault(reason: str, subcode: str | tuple[str, str] = (BENCH_FAULT_NS, "DMP_INDISPONIBLE"),
                   relates_to: str | None = None) -> SoapError:
    return SoapError(SoapFaultSpec("Receiver", reason, subcode=subcode), relates_to=relates_to)


# ----------------------------------------------------------------------------------------------------
# MTOM / XOP
# ----------------------------------------------------------------------------------------------------


@dataclass
class Message:
    soap: bytes
    attachments: dict[str, bytes]
    mtom: bool


def _cid(value: str) -> str:
    return value.strip().removeprefix("<").removesuffix(">").strip()


_TRANSFER_ENCODINGS = frozenset({"", "binary", "8bit", "7bit", "base64"})


def _part_payload(part: Any, index: int, cid: str) -> bytes:
    """A part's bytes. base64 is decoded strictly: the email package decodes invalid base64 leniently, and the
    repository would then store (and ITI-43 return) what the LGC never sent."""
    cte = (part.get("Content-Transfer-Encoding") or "").strip().lower()
    if cte not in _TRANSFER_ENCODINGS:
        raise sender_fault(f"Partie MIME {index} : Content-Transfer-Encoding {cte!r} non pris en charge (binary, "
                           "8bit, 7bit ou base64)")
    if cte == "base64":
        raw = part.get_payload(decode=False)
        text = raw if isinstance(raw, str) else ""
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise sender_fault(f"Partie MIME {index} ({'<' + cid + '>' if cid else 'sans Content-ID'}) : contenu "
                               "base64 invalide") from None
    return part.get_payload(decode=True) or b""


def read_message(data: bytes, content_type: str | None, max_bytes: int) -> Message:
    """Split a MTOM/XOP multipart/related body into its SOAP root part and attachments (by Content-ID)."""
    ctype = (content_type or "").strip()
    if not ctype.lower().startswith("multipart/"):
        return Message(data, {}, False)
    subtype = ctype.split(";", 1)[0].strip().lower()
    if subtype != "multipart/related":
        raise sender_fault(f"Content-Type {subtype} : un message MTOM est multipart/related (XOP)")
    if len(data) > max_bytes:
        raise sender_fault(f"Message de {len(data)} octets superieur au maximum de {max_bytes}")
    if not re.search(r"boundary\s*=", ctype, re.IGNORECASE):
        raise sender_fault("Content-Type multipart sans parametre boundary")
    header = b"Content-Type: " + ctype.encode("latin-1", "replace") + b"\r\nMIME-Version: 1.0\r\n\r\n"
    msg = BytesParser(policy=policy.compat32).parsebytes(header + data)
    if not msg.is_multipart():
        raise sender_fault("Corps multipart/related illisible (aucune partie trouvee)")
    parts = msg.get_payload()
    if not isinstance(parts, list) or not parts:
        raise sender_fault("Corps multipart/related sans partie")
    if len(parts) > MAX_PARTS:
        raise sender_fault(f"Trop de parties MIME ({len(parts)} > {MAX_PARTS})")
    start = _cid(msg.get_param("start") or "") if msg.get_param("start") else ""
    root = None
    attachments: dict[str, bytes] = {}
    seen: set[str] = set()
    for i, part in enumerate(parts, start=1):
        if part.is_multipart():
            raise sender_fault("Parties multipart imbriquees non acceptees")
        cid = _cid(part.get("Content-ID", "") or "")
        payload = _part_payload(part, i, cid)
        if cid in seen:
            raise sender_fault(f"Content-ID <{cid}> en double (partie MIME {i}) : chaque partie XOP a le sien")
        if cid:
            seen.add(cid)
        if root is None and ((start and cid == start) or (not start and i == 1)):
            if part.get_content_type() != "application/xop+xml":
                raise sender_fault(f"Partie racine de type {part.get_content_type()} : application/xop+xml attendu "
                                   "(XOP, MTOM)")
            root = payload
            continue
        if not cid:
            # Also what a boundary string inside a part leaves: the part is cut and its end becomes a part of its
            # own, without headers. Refused rather than stored truncated.
            raise sender_fault(f"Partie MIME {i} sans Content-ID : une piece jointe XOP est designee par son "
                               "Content-ID (chaine de delimitation presente dans une partie ?)")
        attachments[cid] = payload
    if root is None:
        raise sender_fault(f"Partie racine (start={start!r}) introuvable dans le message MTOM")
    return Message(root, attachments, True)


def mtom_response(envelope: bytes, action: str, attachments: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/related MTOM response; attachments are (content id, mime type, bytes)."""
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    root_id = "root.message@dmp.segur-bench"
    out = [f"--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"; "
           f"action=\"{action}\"\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{root_id}>\r\n\r\n".encode(),
           envelope, b"\r\n"]
    for cid, mime, data in attachments:
        out += [f"--{boundary}\r\nContent-Type: {mime}\r\nContent-Transfer-Encoding: binary\r\n"
                f"Content-ID: <{cid}>\r\n\r\n".encode(), data, b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode())
    ctype = (f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; start="<{root_id}>"; '
             f'start-info="application/soap+xml"; action="{action}"')
    return b"".join(out), ctype


# ----------------------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------------------


@dataclass
class Request:
    envelope: Envelope
    action: str
    transaction: str
    message: Message

    @property
    def body(self) -> etree._Element:
        return self.envelope.body_element

    @property
    def message_id(self) -> str | None:
        return self.envelope.message_id


def parse_request(data: bytes, content_type: str | None, service: str, max_bytes: int) -> Request:
    # The SOAP 1.2 binding's media type, or a XOP package (MTOM), before the body is read (core soap.py); the
    # package's parts are then checked by read_message.
    check_content_type(content_type, mtom=True)
    message = read_message(data, content_type, max_bytes)
    env = parse_envelope(message.soap, max_bytes=max_bytes)
    not_understood = env.must_understand_blocks([NS["wsse"], NS["wsa"]])
    if not_understood:
        raise SoapError(must_understand_fault(not_understood), relates_to=env.message_id)
    action = env.action or action_from_content_type(content_type)
    if not action:
        raise sender_fault("Action SOAP absente (ni wsa:Action ni parametre action du Content-Type)",
                           ("http://www.w3.org/2005/08/addressing", "ActionNotSupported"), env.message_id)
    known = ACTIONS.get(action)
    if known is None:
        raise sender_fault(f"Action SOAP inconnue du DMP : {action}",
                           ("http://www.w3.org/2005/08/addressing", "ActionNotSupported"), env.message_id)
    expected_service, transaction, body_tag = known
    if expected_service != service:
        raise sender_fault(f"L'action {action} ({transaction}) est servie par le service {expected_service}, "
                           f"pas {service}", ("http://www.w3.org/2005/08/addressing", "ActionNotSupported"),
                           env.message_id)
    if env.body_element.tag != body_tag:
        q = etree.QName(env.body_element)
        raise sender_fault(f"Element de corps {{{q.namespace or ''}}}{q.localname} inattendu pour {transaction} "
                           f"(attendu {body_tag})", relates_to=env.message_id)
    return Request(env, action, transaction, message)


def _slots(el: etree._Element) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for slot in findall(el, "rim:Slot"):
        out.setdefault(slot.get("name", ""), []).extend(text(v) or "" for v in findall(slot, "rim:ValueList/rim:Value"))
    return out


def _name(el: etree._Element) -> str:
    ls = find(el, "rim:Name/rim:LocalizedString")
    return (ls.get("value") or "") if ls is not None else ""


def _classifications(el: etree._Element, scheme: str) -> list[Code]:
    out = []
    for c in findall(el, "rim:Classification"):
        if c.get("classificationScheme") == scheme:
            coding = (_slots(c).get("codingScheme") or [""])[0]
            out.append(Code(c.get("nodeRepresentation") or "", coding, _name(c)))
    return out


def _first(el: etree._Element, scheme: str) -> Code | None:
    found = _classifications(el, scheme)
    return found[0] if found else None


def _external(el: etree._Element, scheme: str) -> str:
    for e in findall(el, "rim:ExternalIdentifier"):
        if e.get("identificationScheme") == scheme:
            return (e.get("value") or "").strip()
    return ""


def _author_nid(el: etree._Element, scheme: str) -> str:
    for c in findall(el, "rim:Classification"):
        if c.get("classificationScheme") == scheme:
            person = (_slots(c).get("authorPerson") or [""])[0]
            return person.split("^", 1)[0]
    return ""


def assign_uuids(container: etree._Element) -> None:
    """Replace symbolic ids (e.g. "Document01") by urn:uuid ones everywhere they are referenced."""
    mapping: dict[str, str] = {}
    for el in container.iter():
        if not isinstance(el.tag, str):
            continue
        ident = el.get("id")
        if ident and not ident.startswith("urn:uuid:") and etree.QName(el).namespace == RIM:
            mapping.setdefault(ident, f"urn:uuid:{uuid.uuid4()}")
    if not mapping:
        return
    for el in container.iter():
        if not isinstance(el.tag, str):
            continue
        for attr in _REF_ATTRS:
            value = el.get(attr)
            if value in mapping:
                el.set(attr, mapping[value])


def cda_facts(content: bytes, mime: str) -> dict[str, str]:
    if mime != "text/xml" or not content.lstrip().startswith((b"<", b"\xef\xbb\xbf<")):
        return {}
    try:
        root = parse_xml(content)
    except XmlRejected:
        return {}
    if root.tag != qname(HL7, "ClinicalDocument"):
        return {}
    facts = {}
    set_id = find(root, "hl7:setId")
    if set_id is not None:
        facts["set_id"] = f"{set_id.get('root', '')}^{set_id.get('extension', '')}".rstrip("^")
    vn = find(root, "hl7:versionNumber")
    if vn is not None and vn.get("value"):
        facts["version_number"] = vn.get("value", "")
    return facts


def parse_submission(sor: etree._Element, documents: dict[str, bytes | None]) -> Submission:
    """lcm:SubmitObjectsRequest -> Submission; ``documents`` maps Document ids to their bytes (ITI-41)."""
    rol = find(sor, "rim:RegistryObjectList")
    if rol is None:
        raise sender_fault("SubmitObjectsRequest sans rim:RegistryObjectList")
    ids_before = {eo.get("id"): eo.get("id") for eo in findall(rol, "rim:ExtrinsicObject")}
    originals = list(ids_before)
    assign_uuids(rol)
    new_ids = [eo.get("id") for eo in findall(rol, "rim:ExtrinsicObject")]
    by_new = dict(zip(new_ids, originals, strict=False))
    ss_ids = {c.get("classifiedObject") for c in rol.iter(qname(RIM, "Classification"))
              if c.get("classificationNode") == U_SS}
    ss = None
    for rp in findall(rol, "rim:RegistryPackage"):
        if rp.get("id") not in ss_ids:
            continue
        if not any(c.get("classificationNode") == U_SS for c in findall(rp, "rim:Classification")):
            etree.SubElement(rp, qname(RIM, "Classification"), classificationNode=U_SS,
                             classifiedObject=rp.get("id", ""), id=f"urn:uuid:{uuid.uuid4()}")
        ct = _first(rp, U_SS_CONTENT)
        ss = SubmissionSet(
            entry_id=rp.get("id", ""), xml=etree.tostring(rp), unique_id=_external(rp, U_SS_UNIQUE),
            source_id=_external(rp, U_SS_SOURCE), patient_id=_external(rp, U_SS_PATIENT),
            submission_time=(_slots(rp).get("submissionTime") or [""])[0], content_type=ct,
            author_nid=_author_nid(rp, U_SS_AUTHOR))
        break
    docs = []
    used: set[str] = set()
    for eo in findall(rol, "rim:ExtrinsicObject"):
        entry = eo.get("id", "")
        original = by_new.get(entry, entry)
        content = documents.get(original, documents.get(entry))
        if original in documents or entry in documents:
            used.add(original if original in documents else entry)
        slots = _slots(eo)
        mime = eo.get("mimeType", "")
        doc = DocEntry(
            entry_id=entry, xml=etree.tostring(eo), mime_type=mime, unique_id=_external(eo, U_DE_UNIQUE),
            patient_id=_external(eo, U_DE_PATIENT), lid=eo.get("lid", ""), title=_name(eo),
            creation_time=(slots.get("creationTime") or [""])[0], class_code=_first(eo, U_CLASS),
            type_code=_first(eo, U_TYPE), format_code=_first(eo, U_FORMAT),
            confidentiality=_classifications(eo, U_CONF), hcf_code=_first(eo, U_HCF),
            practice_code=_first(eo, U_PRACTICE), author_nid=_author_nid(eo, U_DE_AUTHOR),
            hash=(slots.get("hash") or [""])[0], size=(slots.get("size") or [""])[0], content=content)
        if content is not None:
            doc.cda = cda_facts(content, mime)
        docs.append(doc)
    assocs = [Association(a.get("id", ""), a.get("associationType", ""), a.get("sourceObject", ""),
                          a.get("targetObject", ""), _slots(a)) for a in findall(rol, "rim:Association")]
    extra = [d for d in documents if d not in used]
    return Submission(ss, docs, assocs, extra)


def parse_pnr(req: Request) -> Submission:
    body = req.body
    sor = find(body, "lcm:SubmitObjectsRequest", NSX)
    if sor is None:
        raise sender_fault("ProvideAndRegisterDocumentSetRequest sans lcm:SubmitObjectsRequest")
    documents: dict[str, bytes | None] = {}
    for d in findall(body, "xds:Document"):
        doc_id = d.get("id", "")
        include = find(d, "xop:Include")
        if include is not None:
            href = include.get("href", "")
            cid = urllib.parse.unquote(href.removeprefix("cid:"))
            if cid not in req.message.attachments:
                raise sender_fault(f"Document {doc_id} : partie MIME {href!r} introuvable")
            documents[doc_id] = req.message.attachments[cid]
        else:
            raw = "".join(d.itertext())
            try:
                documents[doc_id] = base64.b64decode("".join(raw.split()), validate=True)
            except (binascii.Error, ValueError):
                raise sender_fault(f"Document {doc_id} : contenu base64 invalide") from None
    return parse_submission(sor, documents)


def parse_update(req: Request) -> Submission:
    return parse_submission(req.body, {})


def parse_query(req: Request) -> StoredQuery:
    body = req.body
    option = find(body, "rim:ResponseOption") or find(body, "query:ResponseOption")
    aq = find(body, "rim:AdhocQuery")
    if aq is None:
        raise sender_fault("AdhocQueryRequest sans rim:AdhocQuery")
    params: dict[str, list[str]] = {}
    for name, values in _slots(aq).items():
        for v in values:
            params.setdefault(name, []).extend(_query_values(v))
    return StoredQuery(aq.get("id", ""), params, (option.get("returnType") if option is not None else None)
                       or "LeafClass")


_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def _query_values(value: str) -> list[str]:
    v = value.strip()
    if v.startswith("("):
        return [m.replace("''", "'") for m in _QUOTED.findall(v)]
    if v.startswith("'"):
        found = _QUOTED.findall(v)
        return [found[0].replace("''", "'")] if found else []
    return [v]


def parse_retrieve(req: Request) -> list[tuple[str, str]]:
    out = []
    for dr in findall(req.body, "xds:DocumentRequest"):
        out.append((text(dr, "xds:RepositoryUniqueId") or "", text(dr, "xds:DocumentUniqueId") or ""))
    if not out:
        raise sender_fault("RetrieveDocumentSetRequest sans DocumentRequest")
    return out


def parse_td02(req: Request) -> dict[str, str]:
    body = req.body
    if body.get("ITSVersion") != "XML_1.0":
        raise sender_fault("PRPA_IN201307UV02 : ITSVersion=\"XML_1.0\" attendu")
    iid = find(body, "hl7:interactionId")
    if iid is None or iid.get("extension") != "PRPA_IN201307UV02":
        raise sender_fault("PRPA_IN201307UV02 : interactionId extension=\"PRPA_IN201307UV02\" attendu")
    cap = find(body, "hl7:controlActProcess")
    reason = find(cap, "hl7:reasonCode")
    if reason is None or reason.get("code") != "TEST_EXST":
        raise sender_fault("PRPA_IN201307UV02 : controlActProcess/reasonCode code=\"TEST_EXST\" attendu")
    value = find(cap, "hl7:queryByParameter/hl7:parameterList/hl7:patientIdentifier/hl7:value")
    if value is None or not value.get("extension") or not value.get("root"):
        raise sender_fault("PRPA_IN201307UV02 : queryByParameter/parameterList/patientIdentifier/value "
                           "(root = OID INS, extension = INS) absent")
    msg_id = find(body, "hl7:id")
    qid = find(cap, "hl7:queryByParameter/hl7:queryId")
    return {"ins": value.get("extension", ""), "oid": value.get("root", ""),
            "message_root": msg_id.get("root", "") if msg_id is not None else "",
            "message_ext": msg_id.get("extension", "") if msg_id is not None else "",
            "query_root": qid.get("root", "") if qid is not None else "",
            "query_ext": qid.get("extension", "") if qid is not None else "",
            "sender": (find(body, "hl7:sender/hl7:device/hl7:id").get("root", "")
                       if find(body, "hl7:sender/hl7:device/hl7:id") is not None else "")}


def parse_td03(req: Request) -> dict[str, Any]:
    body = req.body
    action = (text(body, "hab:action", ns=NSX) or "").upper()
    if action not in ("AJOUT", "RETRAIT"):
        raise sender_fault(f"setAuthorization : action {action!r} invalide (AJOUT ou RETRAIT attendu)")
    mt = (text(body, "hab:medecinTraitantDMP", ns=NSX) or "false").lower() in ("true", "1")
    patient = find(body, "hab:patientINS", NSX)
    return {"action": action, "medecin_traitant": mt,
            "ins": (text(patient) if patient is not None else None),
            "oid": patient.get("root") if patient is not None else None}


def request_attrs(data: bytes) -> dict[str, str]:
    """Cheap attributes for fault rules (``match.attrs``): ins and national_id, read from the VIHF."""
    attrs = {}
    m = re.search(rb"resource-id\"[^>]*>\s*<(?:\w+:)?AttributeValue[^>]*>\s*([0-9AB]{15})\^", data)
    if m:
        attrs["ins"] = m.group(1).decode()
    m = re.search(rb"<(?:\w+:)?NameID[^>]*>\s*([^<\s]+)", data)
    if m:
        attrs["national_id"] = m.group(1).decode("utf-8", "replace")
    return attrs


# ----------------------------------------------------------------------------------------------------
# Responses
# ----------------------------------------------------------------------------------------------------


def _el(ns: str, local: str, parent: etree._Element | None = None, **attrs: str) -> etree._Element:
    if parent is None:
        return etree.Element(qname(ns, local), {k: v for k, v in attrs.items() if v is not None})
    return etree.SubElement(parent, qname(ns, local), {k: v for k, v in attrs.items() if v is not None})


def registry_error_list(parent: etree._Element, errors: list[RegError]) -> None:
    if not errors:
        return
    lst = _el(RS, "RegistryErrorList", parent, highestSeverity=ERR_SEVERITY)
    for e in errors:
        _el(RS, "RegistryError", lst, errorCode=e.code, codeContext=e.message, location=e.location or None,
            severity=ERR_SEVERITY)


def registry_response(errors: list[RegError]) -> etree._Element:
    root = etree.Element(qname(RS, "RegistryResponse"), nsmap={"rs": RS},
                         status=RS_FAILURE if errors else RS_SUCCESS)
    registry_error_list(root, errors)
    return root


def envelope(body: etree._Element, request_action: str, relates_to: str | None) -> bytes:
    return build_envelope(body, action=RESPONSE_ACTIONS[request_action], relates_to=relates_to)


def _slot(parent: etree._Element, name: str, values: list[str], index: int | None = None) -> None:
    slot = etree.Element(qname(RIM, "Slot"), name=name)
    vl = _el(RIM, "ValueList", slot)
    for v in values:
        _el(RIM, "Value", vl).text = v
    if index is None:
        parent.append(slot)
    else:
        parent.insert(index, slot)


def _classification(parent: etree._Element, scheme: str, obj: str, code: Code) -> etree._Element:
    c = etree.Element(qname(RIM, "Classification"), classificationScheme=scheme, classifiedObject=obj,
                      nodeRepresentation=code.code, id=f"urn:uuid:{uuid.uuid4()}",
                      objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification")
    _slot(c, "codingScheme", [code.scheme])
    name = _el(RIM, "Name", c)
    _el(RIM, "LocalizedString", name, value=code.display or code.code)
    return c


CONF_DISPLAY = {"N": "Normal", "R": "Restreint", "V": "Tres restreint", "INVISIBLE_PATIENT": "Non visible par le "
                "patient", "INVISIBLE_REPRESENTANTS_LEGAUX": "Non visible par les representants legaux du patient",
                "MASQUE_PS": "Masque aux professionnels de sante"}


def document_element(row: dict, repository_id: str) -> etree._Element:
    """A stored DocumentEntry as returned by ITI-18: current status, version, confidentiality, size/hash."""
    import json

    el = etree.fromstring(row["xml"])
    el.set("status", row["status"])
    el.set("lid", row["lid"])
    el.set("objectType", U_DE_OBJECT_TYPE)
    for old in findall(el, "rim:VersionInfo"):
        el.remove(old)
    for c in findall(el, "rim:Classification"):
        if c.get("classificationScheme") == U_CONF:
            el.remove(c)
    for s in findall(el, "rim:Slot"):
        if s.get("name") in ("size", "hash", "repositoryUniqueId"):
            el.remove(s)
    _slot(el, "repositoryUniqueId", [repository_id], 0)
    if row.get("hash"):
        _slot(el, "hash", [row["hash"]], 0)
    if row.get("size") is not None:
        _slot(el, "size", [str(row["size"])], 0)
    children = [c for c in el if isinstance(c.tag, str)]
    pos = 0
    for i, c in enumerate(children):
        if etree.QName(c).localname in ("Slot", "Name", "Description"):
            pos = i + 1
    vi = etree.Element(qname(RIM, "VersionInfo"), versionName=str(row["version"]))
    el.insert(pos, vi)
    anchor = next((c for c in el if isinstance(c.tag, str) and etree.QName(c).localname == "ExternalIdentifier"), None)
    for code, scheme in json.loads(row["confidentiality"]):
        c = _classification(el, U_CONF, row["entry_uuid"], Code(code, scheme, CONF_DISPLAY.get(code, code)))
        if anchor is not None:
            anchor.addprevious(c)
        else:
            el.append(c)
    return el


def document_element_bytes(row: dict, repository_id: str) -> bytes:
    return etree.tostring(document_element(row, repository_id))


LEAF_MARKER = "segur-bench-leaf-objects"


def adhoc_response(rows: list[dict], return_type: str, repository_id: str,
                   errors: list[RegError] | None = None) -> tuple[etree._Element, bytes]:
    """The AdhocQueryResponse and the pre-rendered LeafClass objects to splice in at LEAF_MARKER.

    Documents are stored pre-rendered (model._refresh), so a FindDocuments answer is assembled without
    re-parsing every ExtrinsicObject.
    """
    root = etree.Element(qname(QUERY, "AdhocQueryResponse"), nsmap={"query": QUERY, "rim": RIM, "rs": RS},
                         status=RS_FAILURE if errors else RS_SUCCESS)
    rol = _el(RIM, "RegistryObjectList", root)
    leaves: list[bytes] = []
    if not errors:
        for row in rows:
            if return_type == "ObjectRef":
                _el(RIM, "ObjectRef", rol, id=row["entry_uuid"])
            elif row["kind"] == "ss":
                leaves.append(bytes(row["xml"]))
            else:
                leaves.append(bytes(row["rendered"]) if row.get("rendered")
                              else document_element_bytes(row, repository_id))
    if leaves:
        rol.append(etree.Comment(LEAF_MARKER))
    registry_error_list(root, errors or [])
    return root, b"".join(leaves)


def splice_leaves(data: bytes, leaves: bytes) -> bytes:
    return data.replace(f"<!--{LEAF_MARKER}-->".encode(), leaves, 1) if leaves else data


def retrieve_response(found: list[dict], errors: list[RegError], repository_id: str
                      ) -> tuple[etree._Element, list[tuple[str, str, bytes]]]:
    root = etree.Element(qname(XDS, "RetrieveDocumentSetResponse"), nsmap={"xds": XDS, "rs": RS, "xop": XOP})
    status = RS_SUCCESS if not errors else (RS_PARTIAL if found else RS_FAILURE)
    rr = _el(RS, "RegistryResponse", root, status=status)
    registry_error_list(rr, errors)
    attachments = []
    for i, doc in enumerate(found, start=1):
        dr = _el(XDS, "DocumentResponse", root)
        _el(XDS, "RepositoryUniqueId", dr).text = repository_id
        _el(XDS, "DocumentUniqueId", dr).text = doc["unique_id"]
        _el(XDS, "mimeType", dr).text = doc["mime_type"]
        cid = f"document{i}.{uuid.uuid4().hex[:8]}@dmp.segur-bench"
        d = _el(XDS, "Document", dr)
        _el(XOP, "Include", d, href=f"cid:{cid}")
        attachments.append((cid, doc["mime_type"], doc["data"]))
    return root, attachments


def _hl7(local: str, parent: etree._Element | None = None, **attrs: str) -> etree._Element:
    return _el(HL7, local, parent, **attrs)


def _ts(now: datetime) -> str:
    return dtm_now(now)


def _observation(parent: etree._Element, code: str, value: str, **extra: str) -> etree._Element:
    so = _hl7("subjectOf", parent, typeCode="SBJ")
    obs = _hl7("administrativeObservation", so, classCode="VERIF", moodCode="EVN")
    _hl7("code", obs, code=code, codeSystem="1.2.250.1.213.4.1.2.1")
    v = _hl7("value", obs, code=value)
    v.set(qname(XSI, "type"), "CV")
    for k, val in extra.items():
        if val:
            _hl7(k, obs).set("value", val)
    return obs


def td02_response(req_info: dict, result: dict, now: datetime) -> etree._Element:
    """PRPA_IN201308UV02; the DMP-specific statuses are administrativeObservations (bench's own shape)."""
    root = etree.Element(qname(HL7, "PRPA_IN201308UV02"), nsmap={None: HL7, "xsi": XSI}, ITSVersion="XML_1.0")
    _hl7("id", root, root=str(uuid.uuid4()))
    _hl7("creationTime", root, value=_ts(now))
    _hl7("interactionId", root, root="2.16.840.1.113883.1.6", extension="PRPA_IN201308UV02")
    _hl7("processingCode", root, code="P")
    _hl7("processingModeCode", root, code="T")
    _hl7("acceptAckCode", root, code="NE")
    rcv = _hl7("device", _hl7("receiver", root, typeCode="RCV"), classCode="DEV", determinerCode="INSTANCE")
    _hl7("id", rcv, root=req_info.get("sender") or "0")
    snd = _hl7("device", _hl7("sender", root, typeCode="SND"), classCode="DEV", determinerCode="INSTANCE")
    _hl7("id", snd, root="1.2.250.1.213.4.1.1.1")
    _hl7("softwareName", snd).text = "DMP"
    ack = _hl7("acknowledgement", root)
    _hl7("typeCode", ack, code="AE" if result.get("error") else "AA")
    target = _hl7("targetMessage", ack)
    _hl7("id", target, root=req_info.get("message_root") or "0", extension=req_info.get("message_ext") or None)
    if result.get("error"):
        detail = _hl7("acknowledgementDetail", ack, typeCode="E")
        _hl7("text", detail).text = result["error"]
    cap = _hl7("controlActProcess", root, classCode="CACT", moodCode="EVN")
    _hl7("code", cap, code="PRPA_TE201308UV02", codeSystem="2.16.840.1.113883.1.6")
    if result.get("found"):
        reg = _hl7("registrationEvent", _hl7("subject", cap, typeCode="SUBJ"), classCode="REG", moodCode="EVN")
        _hl7("statusCode", reg, code="active" if result["status"] == "ouvert" else "terminated")
        pat = _hl7("patient", _hl7("subject1", reg, typeCode="SBJ"), classCode="PAT")
        _hl7("id", pat, root=result["oid"], extension=result["ins"])
        _hl7("statusCode", pat, code="active")
        persona = result.get("persona")
        if persona is not None:
            person = _hl7("patientPerson", pat, classCode="PSN", determinerCode="INSTANCE")
            name = _hl7("name", person)
            _hl7("family", name, qualifier="BR").text = persona.nom_naissance
            for g in persona.prenoms:
                _hl7("given", name).text = g
            _hl7("administrativeGenderCode", person, code=persona.sexe)
            _hl7("birthTime", person, value=persona.date_naissance.strftime("%Y%m%d"))
        auth = result["authorisation"]
        _observation(pat, "DMP_STATUT", result["status"],
                     effectiveTime=(result.get("closed_at") or "") if result["status"] == "ferme" else "")
        _observation(pat, "AUTORISATION_PS", auth["status"], effectiveTime=auth.get("expires_at") or "")
        _observation(pat, "PS_BLOQUE", "true" if result["blocked"] else "false")
        _observation(pat, "MEDECIN_TRAITANT_DMP", "true" if auth.get("medecin_traitant") else "false")
        cust = _hl7("assignedEntity", _hl7("custodian", reg, typeCode="CST"), classCode="ASSIGNED")
        _hl7("id", cust, root="1.2.250.1.213.4.1.1.1")
    qa = _hl7("queryAck", cap)
    _hl7("queryId", qa, root=req_info.get("query_root") or "0", extension=req_info.get("query_ext") or None)
    _hl7("queryResponseCode", qa, code="OK" if result.get("found") else ("QE" if result.get("error") else "NF"))
    return root


def td03_response(ok: bool, auth: dict | None, error: RegError | None) -> etree._Element:
    root = etree.Element(qname(HAB, "setAuthorizationResponse"), nsmap={"hab": HAB})
    _el(HAB, "status", root).text = "OK" if ok else "KO"
    if error is not None:
        _el(HAB, "code", root).text = error.code
        _el(HAB, "message", root).text = error.message
    if auth is not None:
        a = _el(HAB, "authorization", root)
        _el(HAB, "statut", a).text = auth["status"]
        if auth.get("granted_at"):
            _el(HAB, "dateDebut", a).text = auth["granted_at"]
        if auth.get("expires_at"):
            _el(HAB, "dateFin", a).text = auth["expires_at"]
        _el(HAB, "medecinTraitantDMP", a).text = "true" if auth.get("medecin_traitant") else "false"
    return root


# ----------------------------------------------------------------------------------------------------
# Builders used for seeded / patient-added documents
# ----------------------------------------------------------------------------------------------------


def extrinsic_object(doc: DocEntry) -> bytes:
    eo = etree.Element(qname(RIM, "ExtrinsicObject"), nsmap={"rim": RIM}, id=doc.entry_id, mimeType=doc.mime_type,
                       objectType=U_DE_OBJECT_TYPE)
    _slot(eo, "creationTime", [doc.creation_time])
    _slot(eo, "languageCode", ["fr-FR"])
    _slot(eo, "sourcePatientId", [doc.patient_id])
    name = _el(RIM, "Name", eo)
    _el(RIM, "LocalizedString", name, value=doc.title)
    author = etree.SubElement(eo, qname(RIM, "Classification"), classificationScheme=U_DE_AUTHOR,
                              classifiedObject=doc.entry_id, nodeRepresentation="", id=f"urn:uuid:{uuid.uuid4()}")
    if doc.author_nid.startswith("patient:"):
        _slot(author, "authorRole", ["Patient"])
    else:
        _slot(author, "authorPerson", [f"{doc.author_nid}^^^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"])
    for scheme, code in ((U_CLASS, doc.class_code), (U_TYPE, doc.type_code), (U_FORMAT, doc.format_code),
                         (U_HCF, doc.hcf_code), (U_PRACTICE, doc.practice_code)):
        if code is not None:
            eo.append(_classification(eo, scheme, doc.entry_id, code))
    for code in doc.confidentiality:
        eo.append(_classification(eo, U_CONF, doc.entry_id, code))
    for scheme, value, label in ((U_DE_PATIENT, doc.patient_id, "XDSDocumentEntry.patientId"),
                                 (U_DE_UNIQUE, doc.unique_id, "XDSDocumentEntry.uniqueId")):
        ei = _el(RIM, "ExternalIdentifier", eo, identificationScheme=scheme, value=value, registryObject=doc.entry_id,
                 id=f"urn:uuid:{uuid.uuid4()}")
        _el(RIM, "LocalizedString", _el(RIM, "Name", ei), value=label)
    return etree.tostring(eo)

