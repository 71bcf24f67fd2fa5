"""XDS metadata (protocols.md §2.5) of an ordonnance CDA for :func:`reference_lgc.services.dmp.provide_document`.

``unique_id`` is the CDA ``ClinicalDocument/id`` written as the DMP expects it: ``root`` alone when the id has no
extension, else ``root^extension`` (the convention of ``services.xdm.read_cda_header`` and of IHE XDS for CDA).
The bench's DMP simulator does not cross-check this uniqueId with the CDA id (it reads only ``setId`` and
``versionNumber`` from the CDA, simulators/dmp/README.md), so it is read from the CDA bytes here to stay
consistent by construction.
"""

from __future__ import annotations

from typing import Literal

from ..services.xds import Code, DocumentMetadata
from .cda import HL7, LOINC, TYPE_CODE, TYPE_LABEL
from .model import Prescription
from .validation import parse

CLASS_PRESCRIPTION = Code("42", "1.2.250.1.213.1.1.4.1", "Prescription")  # JDV_J57 / TRE_A03
TYPE_PRESCRIPTION = Code(TYPE_CODE, LOINC, TYPE_LABEL)  # JDV_J66
FORMAT_N1 = Code("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3",
                 "Document à corps non structuré en PDF")  # JDV_J60 (fact)
FORMAT_N3 = Code("urn:ihe:pharm:pre:2010", "1.3.6.1.4.1.19376.1.2.3",
                 "Prescription de produits de santé structurée")  # assumption, see README
PRACTICE_LABELS = {"AMBULATOIRE": "Ambulatoire"}


def cda_unique_id(cda: bytes) -> str:
    """``root`` or ``root^extension`` of ``ClinicalDocument/id``."""
    root = parse(cda).getroot()
    ident = root.find(f"{{{HL7}}}id")
    if ident is None or not ident.get("root"):
        raise ValueError("CDA sans id/@root")
    ext = ident.get("extension")
    return f"{ident.get('root')}^{ext}" if ext else str(ident.get("root"))


def dmp_metadata(p: Prescription, level: Literal["N1", "N3"], cda: bytes, *,
                 invisible_to_patient: bool = False) -> DocumentMetadata:
    """The DocumentEntry metadata of ``cda`` (built from ``p``) for an ITI-41 feed."""
    if level not in ("N1", "N3"):
        raise ValueError(f"niveau CDA inconnu : {level!r} (N1 ou N3)")
    unstructured = parse(cda).getroot().find(f"{{{HL7}}}component/{{{HL7}}}nonXMLBody") is not None
    if unstructured != (level == "N1"):
        raise ValueError(f"le CDA fourni n'est pas de niveau {level}")
    s = p.author.structure
    return DocumentMetadata(
        title=p.title,
        class_code=CLASS_PRESCRIPTION,
        type_code=TYPE_PRESCRIPTION,
        format_code=FORMAT_N1 if level == "N1" else FORMAT_N3,
        creation_time=p.created,
        unique_id=cda_unique_id(cda),
        mime_type="text/xml",
        confidentiality=p.confidentiality,
        invisible_to_patient=invisible_to_patient,
        healthcare_facility_type=Code(s.sector, "1.2.250.1.71.4.2.4", s.sector_label),
        practice_setting=Code(s.practice_setting, "1.2.250.1.213.1.1.4.9",
                              PRACTICE_LABELS.get(s.practice_setting, s.practice_setting)),
        language="fr-FR",
    )
