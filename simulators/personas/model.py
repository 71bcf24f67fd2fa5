"""Persona records (patients, professionals, structures, communes) and the dataset with its lookups.

Records are plain frozen dataclasses; ``loader.py`` builds them from the TOML files of ``data/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .nir import nir_key

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
    "Patient",
    "PersonaDataError",
    "Personas",
    "Professional",
    "Structure",
]

OID_INS_NIR = "1.2.250.1.213.1.4.8"
OID_INS_NIA = "1.2.250.1.213.1.4.9"
OID_INS_NIR_TEST = "1.2.250.1.213.1.4.10"  # used by DMP test platforms and ANS CDA samples
OID_INS_NIR_DEMO = "1.2.250.1.213.1.4.11"
OID_RPPS = "1.2.250.1.71.4.2.1"  # national PS id (CDA author/id root, Annuaire identifiers)

DMP_STATUSES = ("ouvert", "ferme", "absent")
MSS_PATIENT_DOMAIN = "patient.mssante.fr"


class PersonaDataError(ValueError):
    """A persona data file is missing, unreadable, or holds an invalid record."""


# ----------------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commune:
    """A COG code used by the personas (commune, country 99xxx, or unknown 99999)."""

    code: str
    nom: str
    type: str  # "commune" | "pays" | "inconnu"
    departement: str | None = None
    actuel: bool = True  # False when absent from the current COG but still returned by a teleservice


@dataclass(frozen=True)
class HistoricalIns:
    """An INSHISTO entry: a former matricule of the same person."""

    matricule: str
    cle: str
    oid: str
    date_deb: date | None = None
    date_fin: date | None = None  # CNDA data may have date_fin < date_deb; kept as is
    type_matricule: str | None = None

    @property
    def ins(self) -> str:
        return self.matricule + self.cle


@dataclass(frozen=True)
class CarteVitale:
    """What the patient's carte Vitale (or Appli carte Vitale) carries for INSi RECVITALE / ApCV."""

    nir_ouvrant_droit: str  # 15 chars: NIR of the insured person the patient is attached to
    rang_naissance: int  # tells apart beneficiaries of one card born on the same day (twins)
    regime: str  # "01" régime général
    caisse: str
    centre: str

    @property
    def matricule_od(self) -> str:
        return self.nir_ouvrant_droit[:13]

    @property
    def cle_od(self) -> str:
        return self.nir_ouvrant_droit[13:]


@dataclass(frozen=True)
class InsiCase:
    """One INSi query by traits (the patient's name, sex and birth date) and its expected outcome."""

    prenoms: tuple[str, ...]
    expected: str  # "00" | "01" | "02" | "fault"
    lieu_naissance: str | None = None


@dataclass(frozen=True)
class InsiExpectation:
    """How the INSi should answer for this identity."""

    expected: str | None  # CR of the canonical query (birth name, first first name, sex, birth date)
    fault: str | None = None  # e.g. "siram_40/insi_102": any matching query gives this SOAP fault
    cnda_case: str | None = None
    cases: tuple[InsiCase, ...] = ()

    @property
    def fault_codes(self) -> tuple[str, str] | None:
        """The fault as (siram subcode, detail code), e.g. ("siram_40", "insi_102")."""
        if self.fault is None:
            return None
        siram, detail = self.fault.split("/")
        return siram, detail


@dataclass(frozen=True)
class DmpInfo:
    """State of the patient's DMP (Mon espace santé)."""

    status: str  # "ouvert" | "ferme" | "absent"
    blocked_professionals: tuple[str, ...] = ()  # national ids the patient has blocked

    def is_blocked(self, national_id: str) -> bool:
        return national_id in self.blocked_professionals


@dataclass(frozen=True)
class Patient:
    """A synthetic patient: INS, identity traits, carte Vitale, and expected service behaviour."""

    id: str
    source: str
    nom_naissance: str
    prenoms: tuple[str, ...]
    sexe: str
    date_naissance: date
    dmp: DmpInfo
    insi: InsiExpectation
    matricule: str | None = None
    cle: str | None = None
    oid: str | None = None
    key_check: bool = True
    lieu_naissance: str | None = None
    nom_utilise: str | None = None
    prenom_utilise: str | None = None
    nom_affiche: str | None = None
    prenom_affiche: str | None = None
    inshisto: tuple[HistoricalIns, ...] = ()
    carte_vitale: CarteVitale | None = None
    dmp_test_oid: bool = True
    variant_of: str | None = None
    variant: str | None = None
    invented: tuple[str, ...] = ()
    notes: str = ""

    @property
    def ins(self) -> str | None:
        """The 15-character matricule INS (matricule + key), or None for identities without INS."""
        if self.matricule is None or self.cle is None:
            return None
        return self.matricule + self.cle

    @property
    def nir_valid(self) -> bool:
        """True if the INS key satisfies the mod-97 rule (False without INS or for deliberate bad keys)."""
        return self.ins is not None and nir_key(self.matricule or "") == self.cle

    @property
    def is_nia(self) -> bool:
        return self.oid == OID_INS_NIA

    @property
    def premier_prenom(self) -> str:
        return self.prenoms[0]

    @property
    def liste_prenoms(self) -> str:
        """Birth first names as INSi's ListePrenom and the datamatrix S3 block write them."""
        return " ".join(self.prenoms)

    @property
    def display_name(self) -> str:
        nom = self.nom_affiche or self.nom_utilise or self.nom_naissance
        prenom = self.prenom_affiche or self.prenom_utilise or self.premier_prenom
        return f"{nom} {prenom}"

    @property
    def dmp_oid(self) -> str | None:
        """INS OID to use in DMP contexts: the test INS-NIR OID when flagged, as DMP test platforms do."""
        if self.oid == OID_INS_NIR and self.dmp_test_oid:
            return OID_INS_NIR_TEST
        return self.oid

    @property
    def mss_address(self) -> str | None:
        """Patient MSSanté address ``<INS>@patient.mssante.fr``; None without INS."""
        return f"{self.ins}@{MSS_PATIENT_DOMAIN}" if self.ins else None


@dataclass(frozen=True)
class Adresse:
    numero: str
    voie: str
    code_postal: str
    commune: str  # COG
    ville: str


@dataclass(frozen=True)
class Structure:
    """A place of practice (cabinet, établissement, officine)."""

    id: str
    nom: str
    secteur_activite: str  # TRE_R02 SAxx
    adresse: Adresse
    source: str
    finess: str | None = None
    finess_juridique: str | None = None
    siret: str | None = None
    identifiant_technique: str | None = None
    identifiant_national_explicite: str | None = None
    mss_organisationnelle: str | None = None
    telephone: str | None = None
    invented: tuple[str, ...] = ()
    notes: str = ""

    @property
    def identifiant_national(self) -> str:
        """National id (CPS, VIHF Identifiant_Structure): explicit, else "1"+FINESS, else "3"+SIRET."""
        if self.identifiant_national_explicite:
            return self.identifiant_national_explicite
        if self.finess:
            return "1" + self.finess
        return "3" + (self.siret or "")


@dataclass(frozen=True)
class Activite:
    """One activity (situation d'exercice) of a professional in a structure."""

    structure: Structure
    mode_exercice: str  # "L" libéral, "S" salarié, "B" bénévole

    @property
    def secteur_activite(self) -> str:
        return self.structure.secteur_activite


@dataclass(frozen=True)
class Professional:
    """A health professional (RPPS), usable by PSC, Annuaire santé, MSSanté, DMP (VIHF), ApCV."""

    id: str
    national_id: str  # "8" + RPPS
    rpps: str
    civilite: str
    nom: str
    prenom: str
    profession: str  # TRE_G15
    categorie: str  # TRE_R09, "C" civil
    code_specialite_amo: str
    identifiant_facturation: str
    psc_sub: str
    mss_personnelle: str
    activites: tuple[Activite, ...]
    source: str
    civilite_exercice: str | None = None
    type_savoir_faire: str | None = None
    savoir_faire: str | None = None  # TRE_R38, e.g. SM26
    invented: tuple[str, ...] = ()
    notes: str = ""

    @property
    def structure(self) -> Structure:
        """The structure of the main (first) activity."""
        return self.activites[0].structure

    @property
    def mode_exercice(self) -> str:
        return self.activites[0].mode_exercice

    @property
    def secteur_activite(self) -> str:
        return self.activites[0].secteur_activite

    @property
    def mss_organisationnelle(self) -> str | None:
        return self.structure.mss_organisationnelle

    @property
    def display_name(self) -> str:
        prefix = f"{self.civilite_exercice} " if self.civilite_exercice == "DR" else ""
        return f"{prefix}{self.prenom} {self.nom}"


# ----------------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------------


class Personas:
    """The loaded dataset with its lookups. Immutable; share one instance freely."""

    def __init__(
        self,
        patients: Sequence[Patient],
        professionals: Sequence[Professional],
        structures: Sequence[Structure],
        communes: Mapping[str, Commune],
        source_dir: Path,
    ) -> None:
        self.source_dir = source_dir
        self.all_patients: tuple[Patient, ...] = tuple(patients)
        self.patients: tuple[Patient, ...] = tuple(p for p in patients if p.variant_of is None)
        self.professionals: tuple[Professional, ...] = tuple(professionals)
        self.structures: tuple[Structure, ...] = tuple(structures)
        self.communes: Mapping[str, Commune] = dict(communes)
        self._patients_by_id = {p.id: p for p in self.all_patients}
        self._patients_by_ins = {p.ins: p for p in self.patients if p.ins}
        self._patients_by_mss = {p.mss_address.lower(): p for p in self.patients if p.mss_address}
        self._pros_by_id = {p.id: p for p in self.professionals}
        self._pros_by_nid = {p.national_id: p for p in self.professionals}
        self._pros_by_mss = {p.mss_personnelle: p for p in self.professionals}
        self._structures_by_id = {s.id: s for s in self.structures}

    def __repr__(self) -> str:
        return (
            f"<Personas {len(self.patients)} patients (+{len(self.all_patients) - len(self.patients)} "
            f"variants), {len(self.professionals)} professionals, {len(self.structures)} structures "
            f"from {self.source_dir}>"
        )

    # -- patients ------------------------------------------------------------------------------------

    def patient(self, patient_id: str) -> Patient:
        """The patient (or variant) with this id; KeyError listing known ids otherwise."""
        try:
            return self._patients_by_id[patient_id]
        except KeyError:
            raise KeyError(
                f"unknown patient id {patient_id!r}; known: {', '.join(sorted(self._patients_by_id))}"
            ) from None

    def patient_by_ins(self, ins: str, *, include_history: bool = False) -> Patient | None:
        """The person whose active INS (15 chars) is ins, or whose INSHISTO holds it if include_history."""
        ins = ins.strip().upper()
        found = self._patients_by_ins.get(ins)
        if found is None and include_history:
            found = next((p for p in self.patients if any(h.ins == ins for h in p.inshisto)), None)
        return found

    def patient_by_mss(self, address: str) -> Patient | None:
        """The patient owning the MSSanté address ``<INS>@patient.mssante.fr``."""
        return self._patients_by_mss.get(address.strip().lower())

    def variants(self, patient_id: str) -> tuple[Patient, ...]:
        """Variant answers recorded for a patient (e.g. the NIA answer of CNDA TEST_1.10)."""
        self.patient(patient_id)
        return tuple(p for p in self.all_patients if p.variant_of == patient_id)

    def patients_on_card(self, nir_ouvrant_droit: str) -> tuple[Patient, ...]:
        """Beneficiaries whose carte Vitale is opened by this NIR (the insured person and dependants)."""
        return tuple(
            p
            for p in self.patients
            if p.carte_vitale and p.carte_vitale.nir_ouvrant_droit == nir_ouvrant_droit
        )

    def search_patients(
        self,
        nom: str,
        prenoms: str | Sequence[str],
        sexe: str,
        date_naissance: date | str,
        lieu_naissance: str | None = None,
    ) -> tuple[Patient, ...]:
        """Persons whose traits match: a plain data filter, not the INSi matching rules.

        Birth name, sex and birth date must be equal (case-insensitive); every given first name must be
        one of the birth first names (a string is split on spaces; none given = no constraint); the COG
        must be equal when given. Variants are excluded; identities without INS are included (the INSi
        simulator decides what it answers for them).
        """
        wanted_nom = nom.strip().upper()
        wanted_prenoms = prenoms.split() if isinstance(prenoms, str) else list(prenoms)
        wanted_prenoms = [p.strip().upper() for p in wanted_prenoms if p.strip()]
        wanted_sexe = sexe.strip().upper()
        wanted_date = (
            date.fromisoformat(date_naissance) if isinstance(date_naissance, str) else date_naissance
        )
        wanted_lieu = lieu_naissance.strip().upper() if lieu_naissance else None
        return tuple(
            p
            for p in self.patients
            if p.nom_naissance == wanted_nom
            and p.sexe == wanted_sexe
            and p.date_naissance == wanted_date
            and all(prenom in p.prenoms for prenom in wanted_prenoms)
            and (wanted_lieu is None or p.lieu_naissance == wanted_lieu)
        )

    # -- professionals and structures ----------------------------------------------------------------

    def professional(self, professional_id: str) -> Professional:
        """The professional with this id; KeyError listing known ids otherwise."""
        try:
            return self._pros_by_id[professional_id]
        except KeyError:
            raise KeyError(
                f"unknown professional id {professional_id!r}; known: {', '.join(sorted(self._pros_by_id))}"
            ) from None

    def professional_by_national_id(self, national_id: str) -> Professional | None:
        """The professional with this national id ("8" + RPPS), or None."""
        return self._pros_by_nid.get(national_id.strip())

    def professional_by_mss(self, address: str) -> Professional | None:
        """The professional owning this personal MSSanté address, or None."""
        return self._pros_by_mss.get(address.strip().lower())

    def structure(self, structure_id: str) -> Structure:
        """The structure with this id; KeyError listing known ids otherwise."""
        try:
            return self._structures_by_id[structure_id]
        except KeyError:
            raise KeyError(
                f"unknown structure id {structure_id!r}; known: {', '.join(sorted(self._structures_by_id))}"
            ) from None

    def commune(self, code: str) -> Commune | None:
        """The COG entry for code, or None when the tiny referential does not hold it."""
        return self.communes.get(code.strip().upper())
