"""CDA R2 renderings of a :class:`~.model.Prescription`: N1 (PDF in ``nonXMLBody``) and N3 (structured body); and
of a :class:`~.model.ClinicalNote` of the record (N1), sent to the DMP as a historical document.

Header per protocols.md §7; facts vs assumptions are listed in this package's README. Built with lxml.
"""

from __future__ import annotations

import base64
from datetime import datetime

from lxml import etree

from .model import INS_OIDS, PS_ID_OID, STRUCTURE_ID_OID, ClinicalNote, Prescription, PrescriptionLine, uuid_oid

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
LOINC = "2.16.840.1.113883.6.1"
TYPE_CODE = "57833-6"
TYPE_LABEL = "Prescription de produits de santé"
CONF_SYSTEM = "2.16.840.1.113883.5.25"
CONF_LABELS = {"N": "Normal", "R": "Restreint", "V": "Très restreint"}
GENDER_SYSTEM = "2.16.840.1.113883.5.1"
PROF_SPECIALITY_SYSTEM = "1.2.250.1.213.1.1.4.5"  # "G15_10/SM26" (protocols.md §7)
FACILITY_SYSTEM = "1.2.250.1.71.4.2.4"
PRACTICE_SYSTEM = "1.2.250.1.213.1.1.4.9"
SUBSTITUTION_SYSTEM = "2.16.840.1.113883.5.1070"  # HL7 ActSubstanceAdminSubstitutionCode (assumption)

T_HL7_FRANCE = "2.16.840.1.113883.2.8.2.1"
T_CISIS = "1.2.250.1.213.1.1.1.1"
T_XDS_SD = "1.3.6.1.4.1.19376.1.2.20"
T_IHE_PRE = "1.3.6.1.4.1.19376.1.9.1.1.1"
T_IHE_PCC = "1.3.6.1.4.1.19376.1.5.3.1.1.1"
T_EP_MED_DM = "1.2.250.1.213.1.1.1.39"
T_PRE_SECTION = "1.3.6.1.4.1.19376.1.9.1.2.1"  # assumption: IHE Pharm PRE "Prescription Section"
T_PRE_ITEM = "1.3.6.1.4.1.19376.1.9.1.3.1"  # assumption: IHE Pharm PRE "Prescription Item"
SECTION_CODE = ("57828-6", "Prescriptions")  # assumption: LOINC section code

# The PDF copy inside a structured document (DSR 001: in vague 2 structured documents are produced only in CDA R2
# N3 "avec une section spécifique portant le PDF"): section FR-Document-PDF-copie, one FR-Document-attache entry
# whose FR-Type-document-attache observation says what the copy is and whose observationMedia carries the PDF.
# Template ids and codes as published in the CI-SIS content models (ANS).
T_PDF_COPY_SECTION = "1.2.250.1.213.1.1.2.243"
PDF_COPY_CODE = ("55108-5", "Copie du document")
T_ATTACHED = "1.2.250.1.213.1.1.3.18"
ATTACHED_CODE = ("55107-7", "Document attaché")
T_ATTACHED_TYPE = ("1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.2.250.1.213.1.1.3.48", "1.2.250.1.213.1.1.3.48.18")
ATTACHED_TYPE_CODE = "69764-9"

N1_TEMPLATES = (T_HL7_FRANCE, T_CISIS, T_XDS_SD)
N3_TEMPLATES = (T_HL7_FRANCE, T_CISIS, T_IHE_PRE, T_IHE_PCC, T_EP_MED_DM)


def ts(when: datetime, *, seconds: bool = True) -> str:
    """HL7 TS with the zone offset (``YYYYMMDDHHMMSS+ZZZZ``); naive datetimes are taken as they are."""
    text = when.strftime("%Y%m%d%H%M%S" if seconds else "%Y%m%d%H%M")
    return text + when.strftime("%z") if when.tzinfo else text


def _el(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, f"{{{HL7}}}{tag}", {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def _ps_name(parent: etree._Element, family: str, given: str) -> None:
    name = _el(parent, "name")
    _el(name, "family", family)
    _el(name, "given", given)
    _el(name, "prefix", "Dr")


def _addr(parent: etree._Element, street: str, postal_code: str, city: str) -> None:
    if not (street or postal_code or city):
        _el(parent, "addr", nullFlavor="UNK")
        return
    addr = _el(parent, "addr")
    if street:
        _el(addr, "streetAddressLine", street)
    if postal_code:
        _el(addr, "postalCode", postal_code)
    if city:
        _el(addr, "city", city)


def _telecom(parent: etree._Element, phone: str | None) -> None:
    if phone:
        _el(parent, "telecom", value="tel:" + "".join(phone.split()), use="WP")
    else:
        _el(parent, "telecom", nullFlavor="UNK")


def _header(p: Prescription | ClinicalNote, templates: tuple[str, ...]) -> etree._Element:
    if p.version < 1:
        raise ValueError("versionNumber doit être ≥ 1")
    if p.version > 1 and p.parent_id is None:
        raise ValueError("une version > 1 remplace un document : parent_id (document remplacé) est requis")
    a, s, pt = p.author, p.author.structure, p.patient
    root = etree.Element(f"{{{HL7}}}ClinicalDocument", nsmap={None: HL7, "xsi": XSI})
    _el(root, "realmCode", code="FR")
    _el(root, "typeId", root="2.16.840.1.113883.1.3", extension="POCD_HD000040")
    for t in templates:
        _el(root, "templateId", root=t)
    _el(root, "id", root=uuid_oid(p.id))
    # a note or a certificate says what it is; a prescription is always one
    code, label = (p.type_code, p.type_label) if hasattr(p, "type_label") else (TYPE_CODE, TYPE_LABEL)
    system = getattr(p, "type_system", LOINC)  # a child health certificate is CERT_DECL of TRE_A05
    _el(root, "code", code=code, codeSystem=system, displayName=label,
        **({"codeSystemName": "LOINC"} if system == LOINC else {}))
    _el(root, "title", p.title)
    _el(root, "effectiveTime", value=ts(p.created))
    _el(root, "confidentialityCode", code=p.confidentiality, codeSystem=CONF_SYSTEM,
        displayName=CONF_LABELS.get(p.confidentiality, p.confidentiality))
    _el(root, "languageCode", code="fr-FR")
    _el(root, "setId", root=uuid_oid(p.document_set_id))
    _el(root, "versionNumber", value=str(p.version))

    # recordTarget: INS (root = INS OID, extension = matricule) and the strict traits (protocols.md §7)
    role = _el(_el(root, "recordTarget"), "patientRole")
    _el(role, "id", root=pt.ins_oid, extension=pt.ins, assigningAuthorityName=INS_OIDS.get(pt.ins_oid, ""))
    if pt.address:
        _el(_el(role, "addr"), "streetAddressLine", pt.address)
    else:
        _el(role, "addr", nullFlavor="UNK")
    _telecom(role, pt.phone)
    patient = _el(role, "patient")
    name = _el(patient, "name")
    _el(name, "family", pt.birth_family, qualifier="BR")
    if pt.used_family:
        _el(name, "family", pt.used_family, qualifier="SP")
    _el(name, "given", " ".join(pt.birth_given_names))
    _el(name, "given", pt.first_given, qualifier="BR")
    if pt.used_given:
        _el(name, "given", pt.used_given, qualifier="CL")
    _el(patient, "administrativeGenderCode", code=pt.sex, codeSystem=GENDER_SYSTEM,
        displayName="Masculin" if pt.sex == "M" else "Féminin")
    _el(patient, "birthTime", value=pt.birth_date.strftime("%Y%m%d"))
    if pt.birthplace_cog:
        _el(_el(_el(_el(patient, "birthplace"), "place"), "addr"), "county", pt.birthplace_cog)

    # author: national PS id ("8" + RPPS), profession/speciality, person, organisation
    author = _el(root, "author")
    _el(author, "time", value=ts(p.created))
    aa = _el(author, "assignedAuthor")
    _el(aa, "id", root=PS_ID_OID, extension=a.national_id)
    _el(aa, "code", code=f"G15_{a.profession}/{a.speciality}", codeSystem=PROF_SPECIALITY_SYSTEM,
        displayName=f"Médecin - {a.speciality_label}")
    _addr(aa, s.street, s.postal_code, s.city)
    _telecom(aa, s.phone)
    _ps_name(_el(aa, "assignedPerson"), a.family_name, a.given_name)
    org = _el(aa, "representedOrganization")
    _el(org, "id", root=STRUCTURE_ID_OID, extension=s.id)
    _el(org, "name", s.name)

    cust = _el(_el(_el(root, "custodian"), "assignedCustodian"), "representedCustodianOrganization")
    _el(cust, "id", root=STRUCTURE_ID_OID, extension=s.id)
    _el(cust, "name", s.name)

    legal = _el(root, "legalAuthenticator")
    _el(legal, "time", value=ts(p.created))
    _el(legal, "signatureCode", code="S")
    ae = _el(legal, "assignedEntity")
    _el(ae, "id", root=PS_ID_OID, extension=a.national_id)
    _ps_name(_el(ae, "assignedPerson"), a.family_name, a.given_name)

    # documentationOf: validity of the prescription + practice setting (protocols.md §2.5 / §7)
    event = _el(_el(root, "documentationOf"), "serviceEvent")
    act = getattr(p, "service_event", None)  # (code, system, label) of the documented act, when there is one
    if act:
        _el(event, "code", code=act[0], codeSystem=act[1], displayName=act[2])
    period = _el(event, "effectiveTime")
    _el(period, "low", value=ts(p.created))
    _el(period, "high", value=ts(p.valid_until))
    perf = _el(event, "performer", typeCode="PRF")
    pe = _el(perf, "assignedEntity")
    _el(pe, "id", root=PS_ID_OID, extension=a.national_id)
    porg = _el(pe, "representedOrganization")
    _el(porg, "id", root=STRUCTURE_ID_OID, extension=s.id)
    _el(porg, "name", s.name)
    _el(porg, "standardIndustryClassCode", code=s.practice_setting, codeSystem=PRACTICE_SYSTEM,
        displayName="Ambulatoire" if s.practice_setting == "AMBULATOIRE" else s.practice_setting)

    if p.version > 1:
        rel = _el(root, "relatedDocument", typeCode="RPLC")
        _el(_el(rel, "parentDocument"), "id", root=uuid_oid(p.parent_id))  # type: ignore[arg-type]

    enc = _el(_el(root, "componentOf"), "encompassingEncounter")
    _el(_el(enc, "effectiveTime"), "low", value=ts(p.created))
    hcf = _el(_el(enc, "location"), "healthCareFacility")
    _el(hcf, "code", code=s.sector, codeSystem=FACILITY_SYSTEM, displayName=s.sector_label)
    return root


def _serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def build_n1(p: Prescription | ClinicalNote, pdf: bytes) -> bytes:
    """CDA R2 level 1: the PDF (from :func:`.pdf.render_pdf` or :func:`.pdf.render_note_pdf`) base64 in
    ``nonXMLBody/text``. A :class:`~.model.ClinicalNote` keeps its own type and the act's date."""
    if not pdf.startswith(b"%PDF-"):
        raise ValueError("le corps d'un CDA N1 doit être un PDF")
    root = _header(p, N1_TEMPLATES)
    body = _el(_el(root, "component"), "nonXMLBody")
    _el(body, "text", base64.b64encode(pdf).decode("ascii"), mediaType="application/pdf", representation="B64")
    return _serialize(root)


build_note_n1 = build_n1  # the name the historical-document path reads best with


def _narrative(section: etree._Element, p: Prescription) -> None:
    text = _el(section, "text")
    table = _el(text, "table", border="1", width="100%")
    head = _el(_el(table, "thead"), "tr")
    for title in ("Produit", "Posologie", "Durée", "Quantité", "Renouvellements", "Substitution"):
        _el(head, "th", title)
    tbody = _el(table, "tbody")
    for i, line in enumerate(p.lines, start=1):
        tr = _el(tbody, "tr", ID=f"ligne-{i}")
        _el(tr, "td", line.label + (f" ({line.product.system} {line.product.code})" if line.product else ""))
        _el(tr, "td", line.dosage, ID=f"poso-{i}")
        _el(tr, "td", line.duration_text or "-")
        _el(tr, "td", f"{line.quantity} {line.quantity_unit}")
        _el(tr, "td", str(line.renewals))
        _el(tr, "td", "Non substituable" if line.non_substitutable else "Substituable")
    if p.notes:
        _el(text, "paragraph", p.notes)


def _entry(section: etree._Element, p: Prescription, i: int, line: PrescriptionLine) -> None:
    sa = _el(_el(section, "entry"), "substanceAdministration", classCode="SBADM", moodCode="INT")
    _el(sa, "templateId", root=T_PRE_ITEM)
    _el(sa, "id", root=uuid_oid(p.id), extension=str(i))
    text = _el(sa, "text", line.dosage + (f", pendant {line.duration_text}" if line.duration_text else ""))
    _el(text, "reference", value=f"#poso-{i}")
    _el(sa, "statusCode", code="completed")
    period = _el(sa, "effectiveTime")
    period.set(f"{{{XSI}}}type", "IVL_TS")
    _el(period, "low", value=ts(p.created, seconds=False)[:8])
    if line.duration:
        _el(period, "width", value=str(line.duration), unit=line.duration_unit)
    product = _el(_el(sa, "consumable"), "manufacturedProduct", classCode="MANU")
    material = _el(product, "manufacturedMaterial", classCode="MMAT", determinerCode="KIND")
    if line.product:
        code = _el(material, "code", code=line.product.code, codeSystem=line.product.oid,
                   codeSystemName=line.product.system, displayName=line.label)
    else:
        code = _el(material, "code", nullFlavor="UNK")
    _el(_el(code, "originalText"), "reference", value=f"#ligne-{i}")
    _el(material, "name", line.label)
    supply = _el(_el(sa, "entryRelationship", typeCode="COMP"), "supply", classCode="SPLY", moodCode="RQO")
    _el(supply, "text", f"{line.quantity} {line.quantity_unit}, {line.renewals} renouvellement(s)")
    _el(supply, "repeatNumber", value=str(line.renewals))
    _el(supply, "quantity", value=str(line.quantity))
    if line.non_substitutable:
        act = _el(_el(sa, "entryRelationship", typeCode="COMP"), "act", classCode="ACT", moodCode="DEF")
        _el(act, "code", code="N", codeSystem=SUBSTITUTION_SYSTEM, displayName="Non substituable")


def _pdf_copy(body: etree._Element, p: Prescription, pdf: bytes) -> None:
    section = _el(_el(body, "component"), "section")
    _el(section, "templateId", root=T_PDF_COPY_SECTION)
    _el(section, "id", root=uuid_oid(p.id), extension="section-pdf")
    _el(section, "code", code=PDF_COPY_CODE[0], codeSystem=LOINC, codeSystemName="LOINC", displayName=PDF_COPY_CODE[1])
    _el(section, "title", PDF_COPY_CODE[1])
    text = _el(section, "text")
    _el(text, "renderMultiMedia", referencedObject="copie-pdf")
    org = _el(_el(section, "entry"), "organizer", classCode="CLUSTER", moodCode="EVN")
    _el(org, "templateId", root=T_ATTACHED)
    _el(org, "id", root=uuid_oid(p.id), extension="copie-pdf")
    _el(org, "code", code=ATTACHED_CODE[0], codeSystem=LOINC, codeSystemName="LOINC", displayName=ATTACHED_CODE[1])
    _el(org, "statusCode", code="completed")
    _el(org, "effectiveTime", value=ts(p.created))
    obs = _el(_el(org, "component"), "observation", classCode="OBS", moodCode="EVN")
    for root_oid in T_ATTACHED_TYPE:
        _el(obs, "templateId", root=root_oid)
    _el(obs, "id", root=uuid_oid(p.id), extension="type-copie-pdf")
    _el(obs, "code", code=ATTACHED_TYPE_CODE, codeSystem=LOINC, codeSystemName="LOINC",
        displayName="Type de document attaché")
    _el(obs, "text", "Copie PDF de l'ordonnance remise au patient")
    _el(obs, "statusCode", code="completed")
    _el(obs, "effectiveTime", value=ts(p.created))
    # assumption: the nature of the attached copy is the document's own type (the seeds give no value set)
    value = _el(obs, "value", code=TYPE_CODE, codeSystem=LOINC, displayName=TYPE_LABEL)
    value.set(f"{{{XSI}}}type", "CD")
    media = _el(_el(org, "component"), "observationMedia", classCode="OBS", moodCode="EVN", ID="copie-pdf")
    _el(media, "value", base64.b64encode(pdf).decode("ascii"), mediaType="application/pdf", representation="B64")


def build_n3(p: Prescription, pdf: bytes | None = None) -> bytes:
    """CDA R2 level 3: one prescription section, one ``substanceAdministration`` per line + narrative table; with
    ``pdf``, the FR-Document-PDF-copie section carrying the printed ordonnance (what the DMP receives under the
    "Prescription médicaments structurée" profile, SC.ORDN/CONF.06 / SC.CDA/DD.21)."""
    if not p.lines:
        raise ValueError("une ordonnance sans ligne de prescription ne peut pas être produite")
    if pdf is not None and not pdf.startswith(b"%PDF-"):
        raise ValueError("la copie jointe à un CDA N3 doit être un PDF")
    root = _header(p, N3_TEMPLATES)
    body = _el(_el(root, "component"), "structuredBody")
    section = _el(_el(body, "component"), "section")
    _el(section, "templateId", root=T_PRE_SECTION)
    _el(section, "id", root=uuid_oid(p.id), extension="section-1")
    _el(section, "code", code=SECTION_CODE[0], codeSystem=LOINC, codeSystemName="LOINC", displayName=SECTION_CODE[1])
    _el(section, "title", "Prescription")
    _narrative(section, p)
    for i, line in enumerate(p.lines, start=1):
        _entry(section, p, i, line)
    if pdf is not None:
        _pdf_copy(body, p, pdf)
    return _serialize(root)
