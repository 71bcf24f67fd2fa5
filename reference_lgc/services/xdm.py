"""IHE XDM (ITI-32) archive ``IHE_XDM.zip`` for MSSanté: build one around CDA documents, read one received.

Layout: ``INDEX.HTM`` and ``README.TXT`` at the root, ``IHE_XDM/SUBSET01/METADATA.XML`` (ebRIM 3.0
``lcm:SubmitObjectsRequest``: SubmissionSet, one DocumentEntry per document, HasMember associations) and the
documents, each named by the DocumentEntry ``URI`` slot. Metadata values come from the CDA header
(protocols.md §2.5, §4.3) so that the subject, ``X-MSS-*`` headers and metadata always agree with the CDA.
"""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

NS_CDA = "urn:hl7-org:v3"
NS_RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
NS_LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
_NS = {"cda": NS_CDA, "rim": NS_RIM, "lcm": NS_LCM}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)

INS_OIDS = ("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11")
SUBJECT_PREFIX = "XDM/1.0/DDM+"
XDM_NAME = "IHE_XDM.zip"
SUBSET = "IHE_XDM/SUBSET01/"

# XDS scheme UUIDs (IHE ITI TF-3 §4.2.5).
DOC_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONF = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"

# typeCode -> classCode (TRE_A03, JDV_J57), for the common documents of a GP; "10" (compte rendu) otherwise.
CLASS_OF_TYPE = {"57833-6": "42", "57828-6": "42", "57832-8": "42", "PRESC-BIO": "42", "PRESC-KINE": "42",
                 "PRESC-INF": "42", "60591-5": "11", "SYNTH": "11", "CERT_DECL": "52", "87273-9": "44"}
CLASS_LABELS = {"10": "Compte rendu", "11": "Synthèse", "42": "Prescription", "44": "Plan de soins",
                "52": "Certificat, déclaration"}


@dataclass(frozen=True)
class CdaHeader:
    """What the XDM metadata, the mail subject and the X-MSS headers need from a CDA R2 header."""

    unique_id: str  # id/@root[^@extension]
    type_code: str
    type_system: str
    type_label: str
    title: str
    effective_time: str  # HL7 TS as in the CDA
    confidentiality: str
    language: str
    ins: str | None
    ins_oid: str | None
    family: str | None  # birth family name (qualifier BR, else first)
    given: str | None  # first birth first name
    birth_date: date | None
    gender: str | None
    author_id: str | None
    author_family: str | None
    author_given: str | None
    facility_code: str | None  # healthCareFacility code (SA..)
    practice_code: str | None  # standardIndustryClassCode
    unstructured: bool  # N1: nonXMLBody (PDF)

    @property
    def qualified_ins(self) -> bool:
        """INS with OID and the traits that make it usable (X-MSS-INS = O)."""
        return bool(self.ins and self.ins_oid and self.family and self.given and self.birth_date and self.gender)

    @property
    def patient_id(self) -> str:
        return f"{self.ins}^^^&{self.ins_oid}&ISO^NH" if self.ins else ""

    def subject(self, title: str | None = None) -> str:
        """``XDM/1.0/DDM+<titre> <NOM> <PRENOM> <JJ/MM/AAAA>`` (protocols.md §4.3)."""
        parts = [title or self.title, self.family or "", self.given or "",
                 self.birth_date.strftime("%d/%m/%Y") if self.birth_date else ""]
        return SUBJECT_PREFIX + " ".join(p for p in parts if p)


def _x(root: etree._Element, path: str) -> str | None:
    value = root.xpath(f"string({path})", namespaces=_NS).strip()
    return value or None


def read_cda_header(cda: bytes) -> CdaHeader:
    """Raises ValueError when the bytes are not a CDA R2 ClinicalDocument."""
    try:
        root = etree.fromstring(cda, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"CDA illisible : {exc}") from None
    if root.tag != f"{{{NS_CDA}}}ClinicalDocument":
        raise ValueError(f"pas un ClinicalDocument CDA R2 (racine {root.tag})")
    id_root, id_ext = _x(root, "cda:id/@root"), _x(root, "cda:id/@extension")
    if not id_root:
        raise ValueError("CDA sans id/@root")
    ins = ins_oid = None
    for ident in root.xpath("cda:recordTarget/cda:patientRole/cda:id", namespaces=_NS):
        if ident.get("root") in INS_OIDS and ident.get("extension"):
            ins, ins_oid = ident.get("extension").strip(), ident.get("root")
            break
    pat = "cda:recordTarget/cda:patientRole/cda:patient"
    birth = _x(root, f"{pat}/cda:birthTime/@value")
    try:
        birth_date = datetime.strptime(birth[:8], "%Y%m%d").date() if birth and len(birth) >= 8 else None
    except ValueError:
        birth_date = None
    author = "cda:author/cda:assignedAuthor"
    return CdaHeader(
        unique_id=f"{id_root}^{id_ext}" if id_ext else id_root,
        type_code=_x(root, "cda:code/@code") or "",
        type_system=_x(root, "cda:code/@codeSystem") or "2.16.840.1.113883.6.1",
        type_label=_x(root, "cda:code/@displayName") or _x(root, "cda:title") or "",
        title=_x(root, "cda:title") or "",
        effective_time=_x(root, "cda:effectiveTime/@value") or "",
        confidentiality=_x(root, "cda:confidentialityCode/@code") or "N",
        language=_x(root, "cda:languageCode/@code") or "fr-FR",
        ins=ins, ins_oid=ins_oid,
        family=_x(root, f"{pat}/cda:name/cda:family[@qualifier='BR']") or _x(root, f"{pat}/cda:name/cda:family"),
        given=_x(root, f"{pat}/cda:name/cda:given[@qualifier='BR']") or _x(root, f"{pat}/cda:name/cda:given"),
        birth_date=birth_date, gender=_x(root, f"{pat}/cda:administrativeGenderCode/@code"),
        author_id=_x(root, f"{author}/cda:id/@extension"),
        author_family=_x(root, f"{author}/cda:assignedPerson/cda:name/cda:family"),
        author_given=_x(root, f"{author}/cda:assignedPerson/cda:name/cda:given"),
        facility_code=_x(root, "cda:componentOf/cda:encompassingEncounter/cda:location/cda:healthCareFacility/"
                               "cda:code/@code"),
        practice_code=_x(root, "cda:documentationOf/cda:serviceEvent/cda:performer/cda:assignedEntity/"
                               "cda:representedOrganization/cda:standardIndustryClassCode/@code"),
        unstructured=bool(root.xpath("cda:component/cda:nonXMLBody", namespaces=_NS)),
    )


# ----------------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class XdmAuthor:
    """Author of the submission (the sending professional)."""

    national_id: str
    family_name: str
    given_name: str
    profession: str = "10"
    speciality: str = "SM26"
    sector: str = "SA07"  # healthcareFacilityTypeCode when the CDA has none
    structure_name: str = ""
    structure_id: str = ""


def _slot(name: str, *values: str) -> str:
    vals = "".join(f"<rim:Value>{escape(v)}</rim:Value>" for v in values)
    return f'<rim:Slot name="{name}"><rim:ValueList>{vals}</rim:ValueList></rim:Slot>'


def _name(text: str) -> str:
    return f"<rim:Name><rim:LocalizedString value={quoteattr(text)}/></rim:Name>"


def _classification(scheme: str, obj: str, cid: str, code: str, coding_scheme: str, label: str) -> str:
    return (f'<rim:Classification classificationScheme="{scheme}" classifiedObject="{obj}" id="{cid}" '
            f'objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification" '
            f"nodeRepresentation={quoteattr(code)}>{_slot('codingScheme', coding_scheme)}{_name(label)}"
            "</rim:Classification>")


def _ext_id(scheme: str, obj: str, eid: str, value: str, label: str) -> str:
    return (f'<rim:ExternalIdentifier identificationScheme="{scheme}" id="{eid}" registryObject="{obj}" '
            f"value={quoteattr(value)}>{_name(label)}</rim:ExternalIdentifier>")


def _xds_time(ts: str) -> str:
    """HL7 TS (possibly with a zone) to the XDS DTM (UTC, digits only)."""
    digits = ts[:14]
    if len(ts) > 14 and ts[14] in "+-":
        try:
            when = datetime.strptime(ts[:14] + ts[14:19], "%Y%m%d%H%M%S%z")
            return when.astimezone(UTC).strftime("%Y%m%d%H%M%S")
        except ValueError:
            pass
    return digits


def _author_xml(scheme: str, obj: str, cid: str, a: XdmAuthor) -> str:
    person = f"{a.national_id}^{a.family_name}^{a.given_name}^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
    slots = [_slot("authorPerson", person),
             _slot("authorRole", f"{a.profession}^^^&1.2.250.1.71.1.2.7&ISO"),
             _slot("authorSpecialty", f"{a.speciality}^^^&1.2.250.1.71.4.2.5&ISO")]
    if a.structure_name:
        slots.append(_slot("authorInstitution", f"{a.structure_name}^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^"
                                                f"{a.structure_id}"))
    return (f'<rim:Classification classificationScheme="{scheme}" classifiedObject="{obj}" id="{cid}" '
            f'objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification" '
            f'nodeRepresentation="">{"".join(slots)}</rim:Classification>')


def _document_entry(n: int, uri: str, data: bytes, h: CdaHeader, author: XdmAuthor) -> str:
    obj = f"Document{n:02d}"
    class_code = CLASS_OF_TYPE.get(h.type_code, "10")
    fmt = ("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3", "Document à corps non structuré en PDF") \
        if h.unstructured else ("urn:asip:ci-sis:2010", "1.2.250.1.213.1.1.4.2.282", "Document structuré CI-SIS")
    slots = [_slot("creationTime", _xds_time(h.effective_time) or datetime.now(UTC).strftime("%Y%m%d%H%M%S")),
             _slot("hash", hashlib.sha1(data).hexdigest()), _slot("size", str(len(data))),
             _slot("languageCode", h.language), _slot("URI", uri)]
    if h.ins:
        slots.append(_slot("sourcePatientId", h.patient_id))
        info = [f"PID-5|{h.family or ''}^{h.given or ''}^^^^^L"]
        if h.birth_date:
            info.append(f"PID-7|{h.birth_date:%Y%m%d}")
        if h.gender:
            info.append(f"PID-8|{h.gender}")
        slots.append(_slot("sourcePatientInfo", *info))
    parts = [
        f'<rim:ExtrinsicObject id="{obj}" mimeType="text/xml" objectType="{DOC_ENTRY}" '
        f'status="urn:oasis:names:tc:ebxml-regrep:StatusType:Approved">', *slots, _name(h.title),
        _author_xml(DE_AUTHOR, obj, f"{obj}-author", author),
        _classification(DE_CLASS, obj, f"{obj}-class", class_code, "1.2.250.1.213.1.1.4.1",
                        CLASS_LABELS.get(class_code, "Compte rendu")),
        _classification(DE_CONF, obj, f"{obj}-conf", h.confidentiality, "2.16.840.1.113883.5.25",
                        {"N": "Normal", "R": "Restreint", "V": "Très restreint"}.get(h.confidentiality, "Normal")),
        _classification(DE_FORMAT, obj, f"{obj}-format", fmt[0], fmt[1], fmt[2]),
        _classification(DE_FACILITY, obj, f"{obj}-facility", h.facility_code or author.sector,
                        "1.2.250.1.71.4.2.4", h.facility_code or author.sector),
        _classification(DE_PRACTICE, obj, f"{obj}-practice", h.practice_code or "AMBULATOIRE",
                        "1.2.250.1.213.1.1.4.9", h.practice_code or "Ambulatoire"),
        _classification(DE_TYPE, obj, f"{obj}-type", h.type_code, h.type_system, h.type_label),
        _ext_id(DE_PATIENT_ID, obj, f"{obj}-pid", h.patient_id, "XDSDocumentEntry.patientId"),
        _ext_id(DE_UNIQUE_ID, obj, f"{obj}-uid", h.unique_id, "XDSDocumentEntry.uniqueId"),
        "</rim:ExtrinsicObject>",
    ]
    return "".join(parts)


def _oid_uid() -> str:
    """A fresh OID-form unique id (2.25 = UUID arc) for the submission set."""
    return f"2.25.{uuid.uuid4().int}"


def build_metadata(documents: list[tuple[str, bytes, CdaHeader]], author: XdmAuthor, *, source_id: str,
                   title: str = "") -> bytes:
    """METADATA.XML for the documents (file name in SUBSET01, bytes, parsed header)."""
    first = documents[0][2]
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    ss = "SubmissionSet01"
    entries = [_document_entry(i, uri, data, h, author) for i, (uri, data, h) in enumerate(documents, start=1)]
    assocs = [f'<rim:Association associationType="{HAS_MEMBER}" id="Association{i:02d}" sourceObject="{ss}" '
              f'targetObject="Document{i:02d}" objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:'
              f'RegistryObject:Association">{_slot("SubmissionSetStatus", "Original")}</rim:Association>'
              for i in range(1, len(documents) + 1)]
    package = "".join([
        f'<rim:RegistryPackage id="{ss}" objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:'
        f'RegistryPackage">', _slot("submissionTime", now), _name(title or first.title),
        _author_xml(SS_AUTHOR, ss, f"{ss}-author", author),
        _classification(SS_CONTENT_TYPE, ss, f"{ss}-content", "04", "1.2.250.1.213.2.2", "Consultation"),
        _ext_id(SS_UNIQUE_ID, ss, f"{ss}-uid", _oid_uid(), "XDSSubmissionSet.uniqueId"),
        _ext_id(SS_SOURCE_ID, ss, f"{ss}-src", source_id, "XDSSubmissionSet.sourceId"),
        _ext_id(SS_PATIENT_ID, ss, f"{ss}-pid", first.patient_id, "XDSSubmissionSet.patientId"),
        "</rim:RegistryPackage>",
        f'<rim:Classification classifiedObject="{ss}" classificationNode="{SUBMISSION_SET}" id="{ss}-node" '
        'objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification"/>',
    ])
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<lcm:SubmitObjectsRequest xmlns:lcm="{NS_LCM}" '
           f'xmlns:rim="{NS_RIM}"><rim:RegistryObjectList>{package}{"".join(entries)}{"".join(assocs)}'
           "</rim:RegistryObjectList></lcm:SubmitObjectsRequest>\n")
    return xml.encode("utf-8")


def build_xdm(cdas: list[bytes], author: XdmAuthor, *, source_id: str, software: str = "LGC") -> bytes:
    """``IHE_XDM.zip`` around CDA documents (DOC0001.XML, DOC0002.XML …)."""
    if not cdas:
        raise ValueError("au moins un document CDA est requis pour une archive IHE XDM")
    docs = [(f"DOC{i:04d}.XML", data, read_cda_header(data)) for i, data in enumerate(cdas, start=1)]
    links = "".join(f'<li><a href="{SUBSET}{uri}">{escape(h.title or uri)}</a></li>' for uri, _, h in docs)
    index = (f"<html><head><meta charset=\"utf-8\"><title>IHE XDM</title></head><body><h1>Archive IHE XDM</h1>"
             f'<p>Lot <a href="{SUBSET}METADATA.XML">SUBSET01</a></p><ul>{links}</ul></body></html>')
    readme = (f"Archive IHE XDM (ITI-32) produite par {software}.\r\nContenu : IHE_XDM/SUBSET01/METADATA.XML "
              f"(métadonnées XDS) et {len(docs)} document(s) CDA R2.\r\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("INDEX.HTM", index.encode("utf-8"))
        zf.writestr("README.TXT", readme.encode("utf-8"))
        zf.writestr(SUBSET + "METADATA.XML", build_metadata(docs, author, source_id=source_id))
        for uri, data, _ in docs:
            zf.writestr(SUBSET + uri, data)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class XdmDocument:
    uri: str  # file name in SUBSET01
    data: bytes
    mime_type: str
    title: str
    type_code: str | None
    unique_id: str | None
    patient_id: str | None
    declared_hash: str | None
    declared_size: int | None

    @property
    def integrity_ok(self) -> bool:
        """Hash and size, when declared, match the file."""
        return ((self.declared_hash is None or self.declared_hash.lower() == hashlib.sha1(self.data).hexdigest())
                and (self.declared_size is None or self.declared_size == len(self.data)))


@dataclass
class XdmPackage:
    members: list[str]
    documents: list[XdmDocument] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # French, for the user / the log


def read_xdm(data: bytes) -> XdmPackage:
    """Parse a received IHE_XDM.zip; never raises, problems are listed."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = zf.namelist()
    except (zipfile.BadZipFile, ValueError) as exc:
        return XdmPackage([], problems=[f"archive IHE_XDM.zip illisible : {exc}"])
    out = XdmPackage(names)
    upper = {n.upper(): n for n in names}
    meta_name = upper.get((SUBSET + "METADATA.XML").upper())
    if meta_name is None:
        out.problems.append("IHE_XDM/SUBSET01/METADATA.XML absent")
        return out
    try:
        meta = etree.fromstring(zf.read(meta_name), _PARSER)
    except etree.XMLSyntaxError as exc:
        out.problems.append(f"METADATA.XML illisible : {exc}")
        return out
    for eo in meta.iter(f"{{{NS_RIM}}}ExtrinsicObject"):
        slots = {s.get("name"): [v.text or "" for v in s.iterfind("rim:ValueList/rim:Value", _NS)]
                 for s in eo.findall("rim:Slot", _NS)}
        uri = "".join(slots.get("URI", [])).strip()
        member = upper.get((SUBSET + uri).upper()) if uri else None
        if member is None:
            out.problems.append(f"document {eo.get('id')} : fichier « {uri} » absent de l'archive")
            continue
        ids = {e.get("identificationScheme"): e.get("value") for e in eo.findall("rim:ExternalIdentifier", _NS)}
        type_code = next((c.get("nodeRepresentation") for c in eo.findall("rim:Classification", _NS)
                          if c.get("classificationScheme") == DE_TYPE), None)
        size = "".join(slots.get("size", [])).strip()
        doc = XdmDocument(
            uri=uri, data=zf.read(member), mime_type=eo.get("mimeType") or "application/octet-stream",
            title=eo.xpath("string(rim:Name/rim:LocalizedString/@value)", namespaces=_NS),
            type_code=type_code, unique_id=ids.get(DE_UNIQUE_ID), patient_id=ids.get(DE_PATIENT_ID),
            declared_hash="".join(slots.get("hash", [])).strip() or None,
            declared_size=int(size) if size.isdigit() else None)
        if not doc.integrity_ok:
            out.problems.append(f"{uri} : empreinte ou taille différente de celles de METADATA.XML")
        out.documents.append(doc)
    if not out.documents and not out.problems:
        out.problems.append("METADATA.XML ne décrit aucun document")
    return out
