"""XDS.b / ebRIM 3.0 for the DMP: ITI-41 submission, ITI-57 updates, ITI-18 queries and their LeafClass answers.

Metadata values: protocols.md §2.4-2.5. Every object gets a ``urn:uuid`` id of our own so the LGC knows the
entryUUID of what it submitted without a second query.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
XDS = "urn:ihe:iti:xds-b:2007"
XOP = "http://www.w3.org/2004/08/xop/include"
DS = "http://www.w3.org/2000/09/xmldsig#"

ST_APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
ST_DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
ST_ARCHIVED = "urn:asip:ci-sis:2010:StatusType:Archived"
ST_DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
RS_SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"

Q_FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
Q_GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"

U_SS = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
U_DE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
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

AT_HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
AT_RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
AT_SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
AT_UPDATE_STATUS = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"

SCHEME_CONF_HL7 = "2.16.840.1.113883.5.25"
SCHEME_CONF_DMP = "1.2.250.1.213.1.1.4.13"  # TRE_A07
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
INVISIBLE_LEGAL_REPS = "INVISIBLE_REPRESENTANTS_LEGAUX"
MASKED_PS = "MASQUE_PS"
SIGNATURE_CLASS = "urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1"
PS_ID_OID = "1.2.250.1.71.4.2.1"  # identifiant national PS (IDNPS)
STRUCTURE_ID_OID = "1.2.250.1.71.4.2.2"  # identifiant national de structure (IDNST)


@dataclass(frozen=True)
class Code:
    code: str
    scheme: str
    display: str = ""


@dataclass(frozen=True)
class Author:
    national_id: str = ""  # "8" + RPPS for a doctor; "" when the patient added the document
    family_name: str = ""
    given_name: str = ""
    profession: str = ""  # first component of authorRole
    speciality: str = ""  # first component of authorSpecialty
    is_patient: bool = False

    @property
    def rpps(self) -> str:
        return self.national_id[1:] if len(self.national_id) == 12 and self.national_id.startswith("8") else ""


@dataclass(frozen=True)
class DocumentEntry:
    """One DocumentEntry as returned by ITI-18 (LeafClass)."""

    entry_uuid: str
    lid: str  # logical id: shared by every version of a replaced document
    unique_id: str
    repository_id: str
    status: str  # full StatusType URN (ST_APPROVED, ST_DEPRECATED, ST_ARCHIVED)
    version: int  # registry version (VersionInfo), needed for an ITI-57 metadata update
    title: str
    mime_type: str
    creation_time: datetime | None
    class_code: Code | None
    type_code: Code | None
    format_code: Code | None
    confidentiality: tuple[Code, ...]
    author: Author | None
    patient_id: str = ""
    healthcare_facility_type: Code | None = None
    practice_setting: Code | None = None
    size: int | None = None
    hash: str = ""
    is_signature: bool = False

    def _has(self, code: str) -> bool:
        return any(c.code == code for c in self.confidentiality)

    @property
    def invisible_to_patient(self) -> bool:
        return self._has(INVISIBLE_PATIENT)

    @property
    def invisible_to_legal_reps(self) -> bool:
        return self._has(INVISIBLE_LEGAL_REPS)

    @property
    def masked_to_professionals(self) -> bool:
        return self._has(MASKED_PS)

    @property
    def short_status(self) -> str:
        return self.status.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class DocumentMetadata:
    """What the LGC knows about a document it submits (mostly from the CDA header, protocols.md §2.5)."""

    title: str
    class_code: Code  # JDV_J57, e.g. Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
    type_code: Code  # JDV_J66, e.g. Code("11488-4", "2.16.840.1.113883.6.1", "CR de consultation")
    format_code: Code  # JDV_J60, e.g. Code("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3")
    creation_time: datetime
    unique_id: str | None = None  # ClinicalDocument/id; generated (2.25 OID) when None
    mime_type: str = "text/xml"
    confidentiality: str = "N"  # N / R / V
    invisible_to_patient: bool = False
    invisible_to_legal_reps: bool = False
    masked_to_professionals: bool = False
    healthcare_facility_type: Code | None = None  # default: the professional's sector (SAxx)
    practice_setting: Code = field(default_factory=lambda: Code("AMBULATOIRE", "1.2.250.1.213.1.1.4.9",
                                                                "Ambulatoire"))
    content_type: Code = field(default_factory=lambda: Code("07", "1.2.250.1.213.2.2", "Consultation externe"))
    language: str = "fr-FR"


def new_oid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def dtm(when: datetime) -> str:
    """XDS DTM, always UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S")


_DTM_FORMATS = {4: "%Y", 6: "%Y%m", 8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}


def parse_dtm(value: str) -> datetime | None:
    digits = value.strip()[:14]
    fmt = _DTM_FORMATS.get(len(digits))
    if fmt is None or not digits.isdigit():
        return None
    try:
        return datetime.strptime(digits, fmt).replace(tzinfo=UTC)
    except ValueError:
        return None


def conf_codes(level: str, *, invisible_patient: bool, invisible_legal_reps: bool, masked: bool) -> list[Code]:
    codes = [Code(level, SCHEME_CONF_HL7)]
    for flag, code in ((invisible_patient, INVISIBLE_PATIENT), (invisible_legal_reps, INVISIBLE_LEGAL_REPS),
                       (masked, MASKED_PS)):
        if flag:
            codes.append(Code(code, SCHEME_CONF_DMP))
    return codes


# ----------------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------------


def _rim(local: str, parent: etree._Element | None = None, **attrs: str) -> etree._Element:
    if parent is None:
        return etree.Element(f"{{{RIM}}}{local}", nsmap={"rim": RIM}, **attrs)
    return etree.SubElement(parent, f"{{{RIM}}}{local}", **attrs)


def _slot(parent: etree._Element, name: str, *values: str) -> None:
    vl = _rim("ValueList", _rim("Slot", parent, name=name))
    for v in values:
        _rim("Value", vl).text = v


def _name(parent: etree._Element, value: str) -> None:
    _rim("LocalizedString", _rim("Name", parent), value=value)


def classification(parent: etree._Element, scheme: str, obj: str, code: Code) -> None:
    c = _rim("Classification", parent, classificationScheme=scheme, classifiedObject=obj,
             nodeRepresentation=code.code, id=f"urn:uuid:{uuid.uuid4()}")
    _slot(c, "codingScheme", code.scheme)
    _name(c, code.display or code.code)


def external(parent: etree._Element, scheme: str, obj: str, value: str, label: str) -> None:
    ei = _rim("ExternalIdentifier", parent, identificationScheme=scheme, value=value, registryObject=obj,
              id=f"urn:uuid:{uuid.uuid4()}")
    _name(ei, label)


@dataclass(frozen=True)
class AuthorInfo:
    """The submitting professional as XDS author slots."""

    person: str  # XCN
    role: str
    speciality: str
    institution: str


def _author(parent: etree._Element, scheme: str, obj: str, author: AuthorInfo) -> None:
    c = _rim("Classification", parent, classificationScheme=scheme, classifiedObject=obj, nodeRepresentation="",
             id=f"urn:uuid:{uuid.uuid4()}")
    if author.institution:
        _slot(c, "authorInstitution", author.institution)
    _slot(c, "authorPerson", author.person)
    if author.role:
        _slot(c, "authorRole", author.role)
    if author.speciality:
        _slot(c, "authorSpecialty", author.speciality)


def submission_set(rol: etree._Element, ss_id: str, unique_id: str, source_id: str, patient: str,
                   content_type: Code, author: AuthorInfo, now: datetime) -> None:
    rp = _rim("RegistryPackage", rol, id=ss_id,
              objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage")
    _slot(rp, "submissionTime", dtm(now))
    _name(rp, "Soumission LGC")
    _author(rp, U_SS_AUTHOR, ss_id, author)
    classification(rp, U_SS_CONTENT, ss_id, content_type)
    external(rp, U_SS_UNIQUE, ss_id, unique_id, "XDSSubmissionSet.uniqueId")
    external(rp, U_SS_SOURCE, ss_id, source_id, "XDSSubmissionSet.sourceId")
    external(rp, U_SS_PATIENT, ss_id, patient, "XDSSubmissionSet.patientId")
    _rim("Classification", rol, classifiedObject=ss_id, classificationNode=U_SS, id=f"urn:uuid:{uuid.uuid4()}")


def document_entry(rol: etree._Element, entry_id: str, unique_id: str, patient: str, content: bytes,
                   meta: DocumentMetadata, author: AuthorInfo, hcf: Code) -> None:
    eo = _rim("ExtrinsicObject", rol, id=entry_id, mimeType=meta.mime_type, objectType=U_DE)
    _slot(eo, "creationTime", dtm(meta.creation_time))
    _slot(eo, "languageCode", meta.language)
    _slot(eo, "sourcePatientId", patient)
    _slot(eo, "hash", hashlib.sha1(content).hexdigest())  # XDS mandates SHA-1
    _slot(eo, "size", str(len(content)))
    _name(eo, meta.title)
    _author(eo, U_DE_AUTHOR, entry_id, author)
    classification(eo, U_CLASS, entry_id, meta.class_code)
    for c in conf_codes(meta.confidentiality, invisible_patient=meta.invisible_to_patient,
                        invisible_legal_reps=meta.invisible_to_legal_reps, masked=meta.masked_to_professionals):
        classification(eo, U_CONF, entry_id, c)
    classification(eo, U_FORMAT, entry_id, meta.format_code)
    classification(eo, U_HCF, entry_id, hcf)
    classification(eo, U_PRACTICE, entry_id, meta.practice_setting)
    classification(eo, U_TYPE, entry_id, meta.type_code)
    external(eo, U_DE_PATIENT, entry_id, patient, "XDSDocumentEntry.patientId")
    external(eo, U_DE_UNIQUE, entry_id, unique_id, "XDSDocumentEntry.uniqueId")


def signature_entry(rol: etree._Element, entry_id: str, unique_id: str, patient: str, author: AuthorInfo,
                    hcf: Code, practice: Code, now: datetime) -> None:
    """The XAdES signature DocumentEntry every DMP submission carries (protocols.md §2.4)."""
    eo = _rim("ExtrinsicObject", rol, id=entry_id, mimeType="text/xml", objectType=U_DE)
    _slot(eo, "creationTime", dtm(now))
    _slot(eo, "languageCode", "art")
    _slot(eo, "sourcePatientId", patient)
    _name(eo, "Source")
    _author(eo, U_DE_AUTHOR, entry_id, author)
    classification(eo, U_CLASS, entry_id, Code(SIGNATURE_CLASS, "URN", "Digital Signature"))
    classification(eo, U_CONF, entry_id, Code("N", SCHEME_CONF_HL7, "Normal"))
    event = _rim("Classification", eo, classificationScheme="urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4",
                      classifiedObject=entry_id, nodeRepresentation="1.2.840.10065.1.12.1.14",
                      id=f"urn:uuid:{uuid.uuid4()}")
    _slot(event, "codingScheme", "1.2.840.10065.1.12")
    _name(event, "Source")
    classification(eo, U_FORMAT, entry_id, Code("http://www.w3.org/2000/09/xmldsig#", "URN", "Default Signature "
                                                 "Style"))
    classification(eo, U_HCF, entry_id, hcf)
    classification(eo, U_PRACTICE, entry_id, practice)
    classification(eo, U_TYPE, entry_id, Code("E1762", "ASTM", "Full Document"))
    external(eo, U_DE_PATIENT, entry_id, patient, "XDSDocumentEntry.patientId")
    external(eo, U_DE_UNIQUE, entry_id, unique_id, "XDSDocumentEntry.uniqueId")


def association(rol: etree._Element, kind: str, source: str, target: str, **slots: str) -> None:
    a = _rim("Association", rol, associationType=kind, sourceObject=source, targetObject=target,
             id=f"urn:uuid:{uuid.uuid4()}")
    for name, value in slots.items():
        _slot(a, name, value)


def signature_document(ss_unique_id: str, documents: Sequence[tuple[str, bytes]], now: datetime) -> bytes:
    """XAdES-shaped detached signature over an IHE DSG manifest (SubmissionSet + each document, SHA-256).

    No SignatureValue: signing needs the structure's "cachet" certificate, which the reference LGC does not hold.
    """
    sig = etree.Element(f"{{{DS}}}Signature", nsmap={"ds": DS}, Id=f"sig-{uuid.uuid4()}")
    si = etree.SubElement(sig, f"{{{DS}}}SignedInfo")
    etree.SubElement(si, f"{{{DS}}}CanonicalizationMethod", Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
    etree.SubElement(si, f"{{{DS}}}SignatureMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    etree.SubElement(si, f"{{{DS}}}Reference", URI="#manifest", Type="http://www.w3.org/2000/09/xmldsig#Manifest")
    etree.SubElement(sig, f"{{{DS}}}SignatureValue")
    obj = etree.SubElement(sig, f"{{{DS}}}Object")
    manifest = etree.SubElement(obj, f"{{{DS}}}Manifest", Id="manifest")
    for uri, data in ((f"urn:oid:{ss_unique_id}", None), *((f"urn:oid:{u}", d) for u, d in documents)):
        ref = etree.SubElement(manifest, f"{{{DS}}}Reference", URI=uri)
        if data is not None:
            etree.SubElement(ref, f"{{{DS}}}DigestMethod", Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
            etree.SubElement(ref, f"{{{DS}}}DigestValue").text = base64.b64encode(
                hashlib.sha256(data).digest()).decode()
    props = etree.SubElement(etree.SubElement(sig, f"{{{DS}}}Object"), f"{{{DS}}}SignatureProperties")
    prop = etree.SubElement(props, f"{{{DS}}}SignatureProperty", Id="purposeOfSignature", Target=sig.get("Id", ""))
    prop.text = "1.2.840.10065.1.12.1.14"
    etree.SubElement(props, f"{{{DS}}}SignatureProperty", Id="signatureTimestamp",
                     Target=sig.get("Id", "")).text = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return etree.tostring(sig, xml_declaration=True, encoding="UTF-8")


def submit_objects_request() -> tuple[etree._Element, etree._Element]:
    sor = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    return sor, _rim("RegistryObjectList", sor)


def find_documents_query(patient: str, statuses: Iterable[str], *, since: datetime | None = None,
                         until: datetime | None = None, class_codes: Iterable[Code] = (),
                         type_codes: Iterable[Code] = ()) -> etree._Element:
    req = etree.Element(f"{{{QUERY}}}AdhocQueryRequest", nsmap={"query": QUERY, "rim": RIM})
    etree.SubElement(req, f"{{{QUERY}}}ResponseOption", returnComposedObjects="true", returnType="LeafClass")
    aq = _rim("AdhocQuery", req, id=Q_FIND_DOCUMENTS)
    _slot(aq, "$XDSDocumentEntryPatientId", _quote(patient))
    _slot(aq, "$XDSDocumentEntryStatus", _list(statuses))
    if since is not None:
        _slot(aq, "$XDSDocumentEntryCreationTimeFrom", dtm(since))
    if until is not None:
        _slot(aq, "$XDSDocumentEntryCreationTimeTo", dtm(until))
    if class_codes:
        _slot(aq, "$XDSDocumentEntryClassCode", _list(f"{c.code}^^{c.scheme}" for c in class_codes))
    if type_codes:
        _slot(aq, "$XDSDocumentEntryTypeCode", _list(f"{c.code}^^{c.scheme}" for c in type_codes))
    return req


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _list(values: Iterable[str]) -> str:
    return "(" + ",".join(_quote(v) for v in values) + ")"


# ----------------------------------------------------------------------------------------------------
# Parsers
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryError:
    code: str
    context: str
    location: str = ""


def registry_errors(root: etree._Element) -> list[RegistryError]:
    return [RegistryError(e.get("errorCode", ""), e.get("codeContext", ""), e.get("location", ""))
            for e in root.iter(f"{{{RS}}}RegistryError")]


def _slots(el: etree._Element) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for slot in el.findall(f"{{{RIM}}}Slot"):
        out.setdefault(slot.get("name", ""), []).extend(
            (v.text or "").strip() for v in slot.iterfind(f"{{{RIM}}}ValueList/{{{RIM}}}Value"))
    return out


def _localized(el: etree._Element) -> str:
    ls = el.find(f"{{{RIM}}}Name/{{{RIM}}}LocalizedString")
    return ls.get("value", "") if ls is not None else ""


def _codes(eo: etree._Element, scheme: str) -> list[Code]:
    return [Code(c.get("nodeRepresentation", ""), (_slots(c).get("codingScheme") or [""])[0], _localized(c))
            for c in eo.findall(f"{{{RIM}}}Classification") if c.get("classificationScheme") == scheme]


def _first(eo: etree._Element, scheme: str) -> Code | None:
    found = _codes(eo, scheme)
    return found[0] if found else None


def _author_of(eo: etree._Element) -> Author | None:
    for c in eo.findall(f"{{{RIM}}}Classification"):
        if c.get("classificationScheme") != U_DE_AUTHOR:
            continue
        slots = _slots(c)
        role = (slots.get("authorRole") or [""])[0]
        person = (slots.get("authorPerson") or [""])[0].split("^")
        spec = (slots.get("authorSpecialty") or [""])[0]
        if not person[0] and role.lower().startswith("patient"):
            return Author(is_patient=True, profession=role)
        return Author(national_id=person[0], family_name=person[1] if len(person) > 1 else "",
                      given_name=person[2] if len(person) > 2 else "", profession=role.split("^")[0],
                      speciality=spec.split("^")[0])
    return None


def document_entry_from(eo: etree._Element) -> DocumentEntry:
    slots = _slots(eo)
    externals = {e.get("identificationScheme"): e.get("value", "") for e in eo.findall(f"{{{RIM}}}ExternalIdentifier")}
    vi = eo.find(f"{{{RIM}}}VersionInfo")
    version = vi.get("versionName", "1") if vi is not None else "1"
    size = (slots.get("size") or [""])[0]
    class_code = _first(eo, U_CLASS)
    return DocumentEntry(
        entry_uuid=eo.get("id", ""), lid=eo.get("lid") or eo.get("id", ""), unique_id=externals.get(U_DE_UNIQUE, ""),
        repository_id=(slots.get("repositoryUniqueId") or [""])[0], status=eo.get("status", ""),
        version=int(version) if version.isdigit() else 1, title=_localized(eo), mime_type=eo.get("mimeType", ""),
        creation_time=parse_dtm((slots.get("creationTime") or [""])[0]), class_code=class_code,
        type_code=_first(eo, U_TYPE), format_code=_first(eo, U_FORMAT), confidentiality=tuple(_codes(eo, U_CONF)),
        author=_author_of(eo), patient_id=externals.get(U_DE_PATIENT, ""), healthcare_facility_type=_first(eo, U_HCF),
        practice_setting=_first(eo, U_PRACTICE), size=int(size) if size.isdigit() else None,
        hash=(slots.get("hash") or [""])[0], is_signature=class_code is not None and class_code.code == SIGNATURE_CLASS)


def document_entries(root: etree._Element) -> list[DocumentEntry]:
    return [document_entry_from(eo) for eo in root.iter(f"{{{RIM}}}ExtrinsicObject")]
