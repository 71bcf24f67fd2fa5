"""Initial DMP contents built from the personas, and documents a patient adds through the control API."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from simulators.personas import Personas

from .model import (
    SCHEME_CLASS,
    SCHEME_CONF_HL7,
    SCHEME_FORMAT_IHE,
    SCHEME_HCF,
    SCHEME_LOINC,
    SCHEME_PRACTICE,
    Code,
    DocEntry,
    dtm_now,
)

SEED_AUTHOR = "899700218896"  # ROBERT SPECIALISTE0021889: "another professional" than the default test user
FLAGSHIP_INS = ("143110095083713", "167100093480710")

# A one-page PDF small enough to inline; only its bytes matter to the bench.
_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")

_CDA = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.2.8.2.1"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <templateId root="1.3.6.1.4.1.19376.1.2.20"/>
  <id root="{uid}"/>
  <code code="{type_code}" codeSystem="2.16.840.1.113883.6.1" displayName="{title}"/>
  <title>{title}</title>
  <effectiveTime value="{time}"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="{set_id}"/>
  <versionNumber value="1"/>
  <recordTarget><patientRole><id root="{oid}" extension="{ins}"/></patientRole></recordTarget>
  <author><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="{author}"/></assignedAuthor></author>
  <component><nonXMLBody><text mediaType="application/pdf" representation="B64">{pdf}</text></nonXMLBody></component>
</ClinicalDocument>
"""

SEEDS = (
    # (days ago, typeCode, title)
    (40, "11488-4", "Compte rendu de consultation de cardiologie"),
    (12, "11502-2", "Compte rendu d'examens biologiques"),
)


def _oid_uid() -> str:
    return f"1.2.250.1.213.4.1.9.{uuid.uuid4().int % 10**20}"


def cda_bytes(uid: str, type_code: str, title: str, when: datetime, ins: str, oid: str, author: str) -> bytes:
    return _CDA.format(uid=uid, type_code=type_code, title=title, time=dtm_now(when), set_id=_oid_uid(), oid=oid,
                       ins=ins, author=author, pdf=base64.b64encode(_PDF).decode()).encode()


def make_document(ins: str, oid: str, *, type_code: str, title: str, when: datetime, author: str,
                  class_code: str = "10", content: bytes | None = None, mime_type: str = "text/xml",
                  conf: list[Code] | None = None) -> DocEntry:
    from .wire import cda_facts, extrinsic_object

    uid = _oid_uid()
    data = content if content is not None else cda_bytes(uid, type_code, title, when, ins, oid, author)
    entry = f"urn:uuid:{uuid.uuid4()}"
    doc = DocEntry(
        entry_id=entry, xml=b"", mime_type=mime_type, unique_id=uid, patient_id=f"{ins}^^^&{oid}&ISO^NH",
        lid=entry, title=title, creation_time=dtm_now(when), class_code=Code(class_code, SCHEME_CLASS),
        type_code=Code(type_code, SCHEME_LOINC), format_code=Code("urn:ihe:iti:xds-sd:pdf:2008", SCHEME_FORMAT_IHE),
        confidentiality=conf or [Code("N", SCHEME_CONF_HL7)], hcf_code=Code("SA07", SCHEME_HCF),
        practice_code=Code("AMBULATOIRE", SCHEME_PRACTICE), author_nid=author,
        hash=hashlib.sha1(data).hexdigest(), size=str(len(data)), content=data,
    )
    doc.cda = cda_facts(data, mime_type)  # setId / versionNumber, as an ITI-41 of this CDA would record them
    doc.xml = extrinsic_object(doc)
    return doc


def documents(personas: Personas, now: datetime) -> Iterator[DocEntry]:
    for p in personas.patients:
        if not p.ins or p.dmp.status == "absent" or p.dmp_oid is None:
            continue
        if p.ins in FLAGSHIP_INS:
            seeds = SEEDS
        elif p.dmp.blocked_professionals:
            seeds = SEEDS[:1]
        else:
            continue
        for days, type_code, title in seeds:
            yield make_document(p.ins, p.dmp_oid, type_code=type_code, title=title, author=SEED_AUTHOR,
                                when=now - timedelta(days=days))


def patient_document(ins: str, oid: str, spec: dict[str, Any], now: datetime) -> DocEntry:
    """A document the patient adds in Mon espace santé (class 90 "documents patient")."""
    title = str(spec.get("title") or "Document ajoute par le patient")
    content = spec.get("content")
    data = content.encode() if isinstance(content, str) else _PDF
    return make_document(ins, oid, type_code=str(spec.get("type_code") or "11488-4"), title=title, when=now,
                         author=f"patient:{ins}", class_code="90", content=data,
                         mime_type=str(spec.get("mime_type") or "application/pdf"))
