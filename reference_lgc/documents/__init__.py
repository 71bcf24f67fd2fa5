"""Health-product prescription (ordonnance de produits de santé): one data model, three renderings
(PDF/A-1b, CDA R2 N1, CDA R2 N3), our own XSD validation and the DMP (XDS) metadata. See README.md."""

from .cda import build_n1, build_n3, build_note_n1
from .metadata import dmp_metadata
from .model import Author, ClinicalNote, Patient, Prescription, PrescriptionLine, ProductCode, Structure
from .pdf import render_note_pdf, render_pdf
from .validation import DocumentInvalid, validate

__all__ = [
    "Author",
    "ClinicalNote",
    "DocumentInvalid",
    "Patient",
    "Prescription",
    "PrescriptionLine",
    "ProductCode",
    "Structure",
    "build_n1",
    "build_n3",
    "build_note_n1",
    "dmp_metadata",
    "render_note_pdf",
    "render_pdf",
    "validate",
]
