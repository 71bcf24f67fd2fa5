"""One coherent synthetic dataset shared by every simulator: patients, professionals, structures.

Usage::

    from simulators.personas import load_personas

    personas = load_personas()
    clerico = personas.patient_by_ins("143110095083713")
    gp = personas.professional_by_national_id("899700366240")

See README.md for what the dataset holds and where each value comes from.
"""

from .loader import load_personas
from .model import (
    DMP_STATUSES,
    OID_INS_NIA,
    OID_INS_NIR,
    OID_INS_NIR_DEMO,
    OID_INS_NIR_TEST,
    OID_RPPS,
    Activite,
    Adresse,
    CarteVitale,
    Commune,
    DmpInfo,
    HistoricalIns,
    InsiCase,
    InsiExpectation,
    Patient,
    PersonaDataError,
    Personas,
    Professional,
    Structure,
)
from .nir import MatriculeParts, NirError, check_nir, is_valid_nir, nir_key, parse_matricule, split_nir

__all__ = [
    "DMP_STATUSES",
    "OID_INS_NIA",
    "OID_INS_NIR",
    "OID_INS_NIR_DEMO",
    "OID_INS_NIR_TEST",
    "OID_RPPS",
    "Activite",
    "Adresse",
    "CarteVitale",
    "Commune",
    "DmpInfo",
    "HistoricalIns",
    "InsiCase",
    "InsiExpectation",
    "MatriculeParts",
    "NirError",
    "Patient",
    "PersonaDataError",
    "Personas",
    "Professional",
    "Structure",
    "check_nir",
    "is_valid_nir",
    "load_personas",
    "nir_key",
    "parse_matricule",
    "split_nir",
]
