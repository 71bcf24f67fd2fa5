"""Child health certificates (certificats de santé de l'enfant, CI-SIS volet CSE): the 9th-month (CS9) and
24th-month (CS24) ones, which the DSR asks to send, once validated and with no user action, to the platform that
forwards them to the child's PMI (LGC.CSE.12).

The CDA R2 N3 carries what the volet's schematron checks in its header — the templateIds (1.2.250.1.213.1.1.1.5 and
.5.2 / .5.3), the code CERT_DECL (TRE_A05, 1.2.250.1.213.1.1.4.12), the documented act 11429006 (SNOMED CT) with the
exam's date and the examining physician — and the seven sections it requires, with the growth measurements as coded
vital-sign entries and the other sections in narrative. It is not the volet's full content (dozens of coded entries,
each from its own value set): the bench does not run the CI-SIS schematron, and the LGC's own restricted schema
(validation.py) is for its prescriptions and notes, not this volet. The MSSanté simulator checks the certificate it
receives (templateIds, code). Section codes marked "assumption" are the bench's choice."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from lxml import etree

from .cda import HL7, LOINC, T_CISIS, T_HL7_FRANCE, XSI, _el, _header, _serialize
from .model import Author, Patient

T_CSE = "1.2.250.1.213.1.1.1.5"
T_KIND = {"CS9": "1.2.250.1.213.1.1.1.5.2", "CS24": "1.2.250.1.213.1.1.1.5.3"}
TITLES = {"CS9": "Certificat de santé du 9ème mois de l'enfant", "CS24": "Certificat de santé du 24ème mois de "
          "l'enfant"}
TYPE_SYSTEM = "1.2.250.1.213.1.1.4.12"  # TRE_A05 (document types outside LOINC)
SNOMED = "2.16.840.1.113883.6.96"
CSE_ADDRESS = "certificatsdesante@plateformecse.mssante.fr"  # the DSR's platform address

# (templateId, LOINC code, title) of the sections the volet requires
SECTIONS = (
    ("1.3.6.1.4.1.19376.1.5.3.1.3.16.1", "29762-2", "Habitus, mode de vie"),
    ("1.3.6.1.4.1.19376.1.5.3.1.3.8", "11348-0", "Antécédents médicaux"),
    ("1.3.6.1.4.1.19376.1.5.3.1.1.5.3.2", "8716-3", "Signes vitaux"),
    ("1.3.6.1.4.1.19376.1.7.3.1.1.13.4", "75275-8", "Développement psychomoteur"),  # code: assumption
    ("1.3.6.1.4.1.19376.1.5.3.1.3.23", "11369-6", "Vaccinations"),
    ("1.3.6.1.4.1.19376.1.5.3.1.3.21", "29549-3", "Traitements administrés"),
    ("1.3.6.1.4.1.19376.1.5.3.1.3.36", "18776-5", "Plan de soins"),
)
T_VITAL_ORGANIZER = "1.3.6.1.4.1.19376.1.5.3.1.4.13.1"
T_VITAL_OBSERVATION = "1.3.6.1.4.1.19376.1.5.3.1.4.13.2"
VITALS = (("weight_kg", "29463-7", "Poids", "kg"), ("height_cm", "8302-2", "Taille", "cm"),
          ("head_cm", "8287-5", "Périmètre crânien", "cm"))


@dataclass(frozen=True)
class ChildCertificate:
    id: uuid.UUID
    created: datetime  # validation time, timezone-aware
    patient: Patient
    author: Author
    kind: Literal["CS9", "CS24"]
    exam_date: date
    weight_kg: float
    height_cm: float
    head_cm: float
    findings: str = "Examen sans particularité."
    confidentiality: Literal["N", "R", "V"] = "N"
    version: int = 1
    parent_id: uuid.UUID | None = None
    type_code = "CERT_DECL"
    type_system = TYPE_SYSTEM

    @property
    def title(self) -> str:
        return TITLES[self.kind]

    @property
    def type_label(self) -> str:
        return self.title

    @property
    def service_event(self) -> tuple[str, str, str]:
        return ("11429006", SNOMED, "Consultation")

    @property
    def document_set_id(self) -> uuid.UUID:
        return self.id

    @property
    def valid_until(self) -> datetime:
        return self.created


def build_cse(c: ChildCertificate) -> bytes:
    if c.kind not in T_KIND:
        raise ValueError(f"certificat {c.kind!r} : CS9 ou CS24 attendu")
    root = _header(c, (T_HL7_FRANCE, T_CISIS, T_CSE, T_KIND[c.kind]))  # type: ignore[arg-type]
    event = root.find(f"{{{HL7}}}documentationOf/{{{HL7}}}serviceEvent/{{{HL7}}}effectiveTime")
    assert event is not None  # the exam's day, not the validation's
    for bound in event:
        bound.set("value", c.exam_date.strftime("%Y%m%d"))
    body = _el(_el(root, "component"), "structuredBody")
    for template, code, title in SECTIONS:
        section = _el(_el(body, "component"), "section")
        _el(section, "templateId", root=template)
        _el(section, "code", code=code, codeSystem=LOINC, codeSystemName="LOINC", displayName=title)
        _el(section, "title", title)
        if template == "1.3.6.1.4.1.19376.1.5.3.1.1.5.3.2":
            _vital_signs(section, c)
        else:
            _el(section, "text", c.findings if code == "75275-8" else "Non renseigné.")
    return _serialize(root)


def _vital_signs(section: etree._Element, c: ChildCertificate) -> None:
    text = _el(section, "text")
    for field, _code, label, unit in VITALS:
        _el(text, "paragraph", f"{label} : {getattr(c, field):g} {unit}")
    organizer = _el(_el(section, "entry"), "organizer", classCode="CLUSTER", moodCode="EVN")
    _el(organizer, "templateId", root=T_VITAL_ORGANIZER)
    _el(organizer, "id", root=str(uuid.uuid4()))
    _el(organizer, "code", code="46680005", codeSystem=SNOMED, displayName="Signes vitaux")
    _el(organizer, "statusCode", code="completed")
    _el(organizer, "effectiveTime", value=c.exam_date.strftime("%Y%m%d"))
    for field, code, label, unit in VITALS:
        obs = _el(_el(organizer, "component"), "observation", classCode="OBS", moodCode="EVN")
        _el(obs, "templateId", root=T_VITAL_OBSERVATION)
        _el(obs, "id", root=str(uuid.uuid4()))
        _el(obs, "code", code=code, codeSystem=LOINC, codeSystemName="LOINC", displayName=label)
        _el(obs, "statusCode", code="completed")
        _el(obs, "effectiveTime", value=c.exam_date.strftime("%Y%m%d"))
        value = _el(obs, "value", value=f"{getattr(c, field):g}", unit=unit)
        value.set(f"{{{XSI}}}type", "PQ")
