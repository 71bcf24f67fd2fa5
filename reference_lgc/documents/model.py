"""One data model for a health-product prescription (ordonnance de produits de santé), rendered three ways:
PDF/A (:mod:`.pdf`), CDA R2 N1 and N3 (:mod:`.cda`). Independent of the LGC's database: the caller fills it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

INS_OIDS = {
    "1.2.250.1.213.1.4.8": "INS-NIR",
    "1.2.250.1.213.1.4.9": "INS-NIA",
    "1.2.250.1.213.1.4.10": "INS-NIR de test",
    "1.2.250.1.213.1.4.11": "INS-NIR de démonstration",
}  # protocols.md §1.9
PS_ID_OID = "1.2.250.1.71.4.2.1"  # identifiant national PS ("8" + RPPS), protocols.md §7
STRUCTURE_ID_OID = "1.2.250.1.71.4.2.2"  # identifiant national de structure
CIP13_OID = "1.2.250.1.213.2.3.2"  # CIP (13 digits) [reported, see README]
UCD_OID = "1.2.250.1.213.2.61"  # UCD [reported, see README]
PRODUCT_SYSTEMS = {"CIP13": CIP13_OID, "UCD": UCD_OID}

DurationUnit = Literal["d", "wk", "mo"]  # UCUM
_UNIT_FR = {"d": ("jour", "jours"), "wk": ("semaine", "semaines"), "mo": ("mois", "mois")}
_UNIT_DAYS = {"d": 1, "wk": 7, "mo": 30}

FACILITY_LABELS = {"SA07": "Cabinet individuel", "SA08": "Cabinet de groupe", "SA05": "Centre de santé",
                   "SA01": "Etablissement public de santé", "SA04": "Maison de santé pluriprofessionnelle"}


def ins_key_ok(ins: str) -> bool:
    """Key = 97 - (N mod 97) on the 13-character matricule; Corsica 2A -> 19, 2B -> 18 (protocols.md §1.8)."""
    if len(ins) != 15 or not ins[13:].isdigit():
        return False
    body = ins[:13].upper()
    body = body[:5] + {"2A": "19", "2B": "18"}.get(body[5:7], body[5:7]) + body[7:]
    if not body.isdigit():
        return False
    return 97 - int(body) % 97 == int(ins[13:])


@dataclass(frozen=True)
class Patient:
    birth_family: str  # nom de naissance (traits stricts, upper case as in INSi)
    birth_given_names: tuple[str, ...]  # all birth first names, first one first
    sex: Literal["M", "F"]
    birth_date: date
    ins: str  # matricule INS, 15 characters (13 + key)
    ins_oid: str = "1.2.250.1.213.1.4.10"
    used_family: str | None = None  # nom utilisé
    used_given: str | None = None  # prénom utilisé
    birthplace_cog: str | None = None
    address: str | None = None  # one line; nullFlavor in the CDA when unknown
    phone: str | None = None

    @property
    def first_given(self) -> str:
        return self.birth_given_names[0] if self.birth_given_names else ""


@dataclass(frozen=True)
class Structure:
    id: str  # identifiant national de structure, e.g. "499700366240007"
    name: str
    street: str = ""
    postal_code: str = ""
    city: str = ""
    phone: str = ""
    sector: str = "SA07"  # healthcareFacilityTypeCode (JDV_J61, 1.2.250.1.71.4.2.4)
    practice_setting: str = "AMBULATOIRE"  # practiceSettingCode (JDV_J04, 1.2.250.1.213.1.1.4.9)

    @property
    def sector_label(self) -> str:
        return FACILITY_LABELS.get(self.sector, self.sector)


@dataclass(frozen=True)
class Author:
    rpps: str  # 11 digits
    family_name: str
    given_name: str
    structure: Structure
    profession: str = "10"  # G15 (10 = médecin)
    speciality: str = "SM26"  # savoir-faire (SM26 = qualifié en médecine générale)
    speciality_label: str = "Qualifié en médecine générale"

    @property
    def national_id(self) -> str:
        return "8" + self.rpps


@dataclass(frozen=True)
class ProductCode:
    code: str
    system: Literal["CIP13", "UCD"] = "CIP13"

    @property
    def oid(self) -> str:
        return PRODUCT_SYSTEMS[self.system]


@dataclass(frozen=True)
class PrescriptionLine:
    label: str  # e.g. "PARACETAMOL 500 mg, comprimé"
    dosage: str  # posologie en clair
    duration: int | None = None
    duration_unit: DurationUnit = "d"
    quantity: int = 1  # boîtes / unités de conditionnement
    quantity_unit: str = "boîte(s)"
    renewals: int = 0  # nombre de renouvellements
    non_substitutable: bool = False
    product: ProductCode | None = None

    @property
    def duration_text(self) -> str:
        if not self.duration:
            return ""
        one, many = _UNIT_FR[self.duration_unit]
        return f"{self.duration} {one if self.duration == 1 else many}"

    @property
    def days(self) -> int:
        return (self.duration or 0) * _UNIT_DAYS[self.duration_unit] * (1 + self.renewals)


@dataclass(frozen=True)
class Prescription:
    id: uuid.UUID  # this version's document id (CDA id = XDS uniqueId)
    created: datetime  # date of the act, timezone-aware
    patient: Patient
    author: Author
    lines: tuple[PrescriptionLine, ...]
    notes: str = ""
    on_number: str | None = None  # numéro unique de l'ordonnance numérique (when the ON server accepted it)
    on_payload: str | None = None  # contents of the ON 2D code
    set_id: uuid.UUID | None = None  # constant across versions; defaults to ``id`` for version 1
    version: int = 1
    parent_id: uuid.UUID | None = None  # id of the replaced version (relatedDocument RPLC), required if version > 1
    confidentiality: Literal["N", "R", "V"] = "N"
    title: str = "Ordonnance de produits de santé"

    @property
    def document_set_id(self) -> uuid.UUID:
        return self.set_id or self.id

    @property
    def valid_until(self) -> datetime:
        """End of the prescription's validity (serviceEvent/effectiveTime/high): longest line, at least 3 months."""
        return self.created + timedelta(days=max([90, *(line.days for line in self.lines)]))


@dataclass(frozen=True)
class ClinicalNote:
    """A document of the record written as text (a consultation note, a letter…), sent to the DMP later as a CDA
    R2 N1 (SC.DMP/HISTO.03/.05: a document of an earlier care episode keeps its date of the act and its author)."""

    id: uuid.UUID  # CDA id = XDS uniqueId
    created: datetime  # date of the act, timezone-aware (not the date it is sent)
    patient: Patient
    author: Author
    title: str
    text: str
    type_code: str = "11488-4"  # LOINC, in the DMP's JDV_J66 (the record's own type of the document)
    type_label: str = "Compte rendu de consultation"
    confidentiality: Literal["N", "R", "V"] = "N"
    version: int = 1
    parent_id: uuid.UUID | None = None

    @property
    def document_set_id(self) -> uuid.UUID:
        return self.id

    @property
    def valid_until(self) -> datetime:
        return self.created  # the act is one moment: serviceEvent low = high


def uuid_oid(value: uuid.UUID) -> str:
    """A UUID as an OID under the ``2.25`` arc (ISO/IEC 9834-8): a valid CDA ``II/@root`` and XDS uniqueId."""
    return f"2.25.{value.int}"
