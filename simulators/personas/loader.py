"""Load the persona TOML files and validate every record and cross-reference.

A simulator can then trust what it gets; every error names the file and the record.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from .model import (
    DMP_STATUSES,
    OID_INS_NIA,
    OID_INS_NIR,
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
from .nir import NirError, check_nir, parse_matricule, split_nir

__all__ = ["DATA_DIR", "FILES", "load_personas"]

DATA_DIR = Path(__file__).parent / "data"
FILES = {
    "patients": "patients.toml",
    "professionals": "professionals.toml",
    "structures": "structures.toml",
    "communes": "communes.toml",
}

_ID_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# INSi lexical rules: A-Z, space, apostrophe, hyphen (double hyphen allowed); starts and ends with a letter;
# no doubled space or apostrophe. A single first name has no space (ListePrenom is space separated).
_NOM_RE = re.compile(r"[A-Z](?:[A-Z]|[ '](?=[A-Z])|--?(?=[A-Z]))*")
_PRENOM_RE = re.compile(r"[A-Z](?:[A-Z]|'(?=[A-Z])|--?(?=[A-Z]))*")
_COG_RE = re.compile(r"\d{5}|2[AB]\d{3}")
_CR_RE = re.compile(r"0[012]")
_FAULT_RE = re.compile(r"siram_\d+/[a-z]+_\d+")
_MSS_RE = re.compile(r"[a-z0-9][a-z0-9._-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.mssante\.fr")
_INS_OIDS = (OID_INS_NIR, OID_INS_NIA)
# Human wording for the patterns whose regex would puzzle a data editor.
_PATTERN_HELP = {
    _NOM_RE.pattern: "upper-case A-Z, single spaces, ' and - only (INSi lexical rules)",
    _PRENOM_RE.pattern: "one first name per item: upper-case A-Z, ' and - only, no space (INSi rules)",
    _COG_RE.pattern: "a 5-character COG code such as 63220 or 2B020",
    _MSS_RE.pattern: "a lower-case MSSanté address ending in .mssante.fr",
}


def _expected(pattern: re.Pattern[str]) -> str:
    return _PATTERN_HELP.get(pattern.pattern, f"/{pattern.pattern}/")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


class _Table:
    """Typed, checked access to one TOML table; every error names the file and the record."""

    def __init__(self, data: Any, where: str, known: Iterable[str]) -> None:
        self.where = where
        if not isinstance(data, dict):
            raise self.error(f"expected a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        unknown = sorted(set(data) - set(known))
        if unknown:  # catches typos such as "prenom" for "prenoms"
            raise self.error(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")

    def error(self, message: str) -> PersonaDataError:
        return PersonaDataError(f"{self.where}: {message}")

    def opt(
        self, key: str, pattern: re.Pattern[str] | None = None, choices: Sequence[str] = ()
    ) -> str | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, str):
            raise self.error(f"field {key!r} must be a string, got {value!r}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(f"field {key!r} has an invalid value {value!r} (expected {_expected(pattern)})")
        if choices and value not in choices:
            raise self.error(f"field {key!r} must be one of {', '.join(choices)}; got {value!r}")
        return value

    def req(self, key: str, pattern: re.Pattern[str] | None = None, choices: Sequence[str] = ()) -> str:
        value = self.opt(key, pattern, choices)
        if value is None:
            raise self.error(f"missing required field {key!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"field {key!r} must be true or false, got {value!r}")
        return value

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.data.get(key)
        if value is None:
            raise self.error(f"missing required field {key!r}")
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.error(f"field {key!r} must be an integer in {low}..{high}, got {value!r}")
        return value

    def req_day(self, key: str) -> date:
        value = self.day(key)
        if value is None:
            raise self.error(f"missing required field {key!r}")
        return value

    def day(self, key: str) -> date | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise self.error(f"field {key!r} must be a date YYYY-MM-DD, got {value!r}") from None
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        raise self.error(f"field {key!r} must be a date YYYY-MM-DD, got {value!r}")

    def strings(
        self, key: str, pattern: re.Pattern[str] | None = None, required: bool = False
    ) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(f"missing required field {key!r}")
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(f"field {key!r} must be a list of strings, got {value!r}")
        if required and not value:
            raise self.error(f"field {key!r} must not be empty")
        for item in value:
            if pattern is not None and not pattern.fullmatch(item):
                raise self.error(
                    f"field {key!r} has an invalid item {item!r} (expected {_expected(pattern)})"
                )
        return tuple(value)

    def sub(self, key: str, known: Iterable[str]) -> _Table | None:
        if key not in self.data:
            return None
        return _Table(self.data[key], f"{self.where}, [{key}]", known)

    def subs(self, key: str, known: Iterable[str]) -> list[_Table]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self.error(f"field {key!r} must be an array of tables ([[...{key}]])")
        return [_Table(item, f"{self.where}, [[{key}]] #{i}", known) for i, item in enumerate(value, 1)]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise PersonaDataError(f"{path}: persona data file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise PersonaDataError(f"{path}: invalid TOML: {exc}") from None


def _records(path: Path, document: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    items = document.get(key)
    if not isinstance(items, list) or not items:
        raise PersonaDataError(f"{path}: expected at least one [[{key}]] table")
    labelled = []
    for index, item in enumerate(items, 1):
        ident = item.get("id") if isinstance(item, dict) else None
        labelled.append((f"{path}: [[{key}]] #{index}" + (f" (id {ident!r})" if ident else ""), item))
    return labelled


def _check_ins(table: _Table, nir15: str, key_check: bool, what: str) -> None:
    try:
        matricule, cle = split_nir(nir15)
    except NirError as exc:
        raise table.error(f"{what}: {exc}") from None
    if key_check:
        try:
            check_nir(matricule + cle)
        except NirError as exc:
            hint = "set key_check = false if the wrong key is deliberate test data"
            raise table.error(f"{what}: {exc} ({hint})") from None


def _check_matricule(table: _Table, matricule: str, cle: str, key_check: bool, what: str) -> None:
    try:
        parse_matricule(matricule)  # a precise message about the matricule itself comes first
    except NirError as exc:
        raise table.error(f"{what}: {exc}") from None
    _check_ins(table, matricule + cle, key_check, what)


def _load_communes(path: Path) -> dict[str, Commune]:
    document = _read_toml(path)
    entries = document.get("communes")
    if not isinstance(entries, dict) or not entries:
        raise PersonaDataError(f'{path}: expected [communes."<COG>"] tables')
    communes = {}
    for code, data in entries.items():
        table = _Table(data, f"{path}: communes.{code!r}", ("nom", "type", "departement", "actuel"))
        if not _COG_RE.fullmatch(code):
            raise table.error(f"COG code {code!r} must be 5 characters (digits, or 2A/2B + 3 digits)")
        communes[code] = Commune(
            code=code,
            nom=table.req("nom"),
            type=table.req("type", choices=("commune", "pays", "inconnu")),
            departement=table.opt("departement"),
            actuel=table.flag("actuel", True),
        )
    return communes


_STRUCTURE_FIELDS = (
    "id", "nom", "secteur_activite", "finess", "finess_juridique", "siret", "identifiant_technique",
    "identifiant_national", "mss_organisationnelle", "telephone", "adresse", "source", "invented", "notes",
)  # fmt: skip


def _load_structures(path: Path, communes: Mapping[str, Commune]) -> list[Structure]:
    structures = []
    for where, data in _records(path, _read_toml(path), "structure"):
        t = _Table(data, where, _STRUCTURE_FIELDS)
        a = t.sub("adresse", ("numero", "voie", "code_postal", "commune", "ville"))
        if a is None:
            raise t.error("missing required table [structure.adresse]")
        adresse = Adresse(
            numero=a.req("numero"),
            voie=a.req("voie"),
            code_postal=a.req("code_postal", re.compile(r"\d{5}")),
            commune=a.req("commune", _COG_RE),
            ville=a.req("ville"),
        )
        if adresse.commune not in communes:
            raise a.error(f"commune {adresse.commune!r} is not in communes.toml")
        structure = Structure(
            id=t.req("id", _ID_RE),
            nom=t.req("nom"),
            secteur_activite=t.req("secteur_activite", re.compile(r"SA\d{2}")),
            adresse=adresse,
            source=t.req("source"),
            finess=t.opt("finess", re.compile(r"\d[0-9AB]\d{7}")),
            finess_juridique=t.opt("finess_juridique", re.compile(r"\d[0-9AB]\d{7}")),
            siret=t.opt("siret", re.compile(r"\d{14}")),
            identifiant_technique=t.opt("identifiant_technique", re.compile(r"[0-9A-Za-z]+")),
            identifiant_national_explicite=t.opt("identifiant_national", re.compile(r"[0-9][0-9A-Z]{8,19}")),
            mss_organisationnelle=t.opt("mss_organisationnelle", _MSS_RE),
            telephone=t.opt("telephone", re.compile(r"0\d{9}")),
            invented=t.strings("invented"),
            notes=t.opt("notes") or "",
        )
        if not (structure.finess or structure.siret or structure.identifiant_national_explicite):
            raise t.error("a structure needs at least one of finess, siret, identifiant_national")
        structures.append(structure)
    return structures


_PROFESSIONAL_FIELDS = (
    "id", "national_id", "rpps", "civilite", "civilite_exercice", "nom", "prenom", "profession", "categorie",
    "type_savoir_faire", "savoir_faire", "code_specialite_amo", "identifiant_facturation", "psc_sub",
    "mss_personnelle", "activite", "source", "invented", "notes",
)  # fmt: skip


def _load_professionals(path: Path, structures: Mapping[str, Structure]) -> list[Professional]:
    professionals = []
    for where, data in _records(path, _read_toml(path), "professional"):
        t = _Table(data, where, _PROFESSIONAL_FIELDS)
        rpps = t.req("rpps", re.compile(r"\d{11}"))
        if not _luhn_ok(rpps):
            raise t.error(f"rpps {rpps!r} fails its Luhn check digit")
        national_id = t.req("national_id", re.compile(r"8\d{11}"))
        if national_id != "8" + rpps:
            raise t.error(f"national_id {national_id!r} must be '8' + rpps ('8{rpps}')")
        psc_sub = t.req("psc_sub")
        if not psc_sub.endswith(":" + national_id):
            raise t.error(
                f"psc_sub {psc_sub!r} must end with ':{national_id}' (PSC sub = f:<uuid>:<national id>)"
            )
        activites = []
        for a in t.subs("activite", ("structure", "mode_exercice")):
            structure_id = a.req("structure")
            if structure_id not in structures:
                raise a.error(f"unknown structure {structure_id!r}; known: {', '.join(sorted(structures))}")
            activites.append(
                Activite(structures[structure_id], a.req("mode_exercice", choices=("L", "S", "B")))
            )
        if not activites:
            raise t.error("at least one [[professional.activite]] is required")
        professionals.append(
            Professional(
                id=t.req("id", _ID_RE),
                national_id=national_id,
                rpps=rpps,
                civilite=t.req("civilite", choices=("M", "MME")),
                civilite_exercice=t.opt("civilite_exercice", re.compile(r"[A-Z]{1,4}")),
                nom=t.req("nom"),
                prenom=t.req("prenom"),
                profession=t.req("profession", re.compile(r"\d{2}")),
                categorie=t.req("categorie", re.compile(r"[A-Z]")),
                type_savoir_faire=t.opt("type_savoir_faire", re.compile(r"[A-Z]{1,4}")),
                savoir_faire=t.opt("savoir_faire", re.compile(r"[A-Z]{1,4}\d{1,3}")),
                code_specialite_amo=t.req("code_specialite_amo", re.compile(r"\d{2}")),
                identifiant_facturation=t.req("identifiant_facturation", re.compile(r"[0-9A-Z]{9}")),
                psc_sub=psc_sub,
                mss_personnelle=t.req("mss_personnelle", _MSS_RE),
                activites=tuple(activites),
                source=t.req("source"),
                invented=t.strings("invented"),
                notes=t.opt("notes") or "",
            )
        )
    return professionals


_PATIENT_FIELDS = (
    "id", "source", "matricule", "cle", "oid", "key_check", "nom_naissance", "nom_utilise", "nom_affiche",
    "prenoms", "prenom_utilise", "prenom_affiche", "sexe", "date_naissance", "lieu_naissance", "inshisto",
    "carte_vitale", "insi", "dmp", "dmp_test_oid", "variant_of", "variant", "invented", "notes",
)  # fmt: skip


def _load_patient(t: _Table, communes: Mapping[str, Commune]) -> Patient:
    key_check = t.flag("key_check", True)
    matricule = t.opt("matricule")
    cle = t.opt("cle")
    oid = t.opt("oid", choices=_INS_OIDS)
    if matricule is not None or cle is not None or oid is not None:
        if matricule is None or cle is None or oid is None:
            raise t.error("matricule, cle and oid go together: give all three or none")
        _check_matricule(t, matricule, cle, key_check, "active INS")

    def cog(table: _Table, key: str) -> str | None:
        code = table.opt(key, _COG_RE)
        if code is not None and code not in communes:
            raise table.error(f"{key} {code!r} is not in communes.toml")
        return code

    inshisto = []
    for h in t.subs("inshisto", ("matricule", "cle", "oid", "date_deb", "date_fin", "type_matricule")):
        entry = HistoricalIns(
            matricule=h.req("matricule").upper(),
            cle=h.req("cle"),
            oid=h.req("oid", choices=_INS_OIDS),
            date_deb=h.day("date_deb"),
            date_fin=h.day("date_fin"),
            type_matricule=h.opt("type_matricule", choices=("NIR", "NIA")),
        )
        _check_matricule(h, entry.matricule, entry.cle, key_check, "historical INS")
        inshisto.append(entry)

    carte_vitale = None
    c = t.sub("carte_vitale", ("nir_ouvrant_droit", "rang_naissance", "regime", "caisse", "centre"))
    if c is not None:
        carte_vitale = CarteVitale(
            nir_ouvrant_droit=c.req("nir_ouvrant_droit").upper(),
            rang_naissance=c.integer("rang_naissance", 1, 9),
            regime=c.req("regime", re.compile(r"\d{2}")),
            caisse=c.req("caisse", re.compile(r"\d{3}")),
            centre=c.req("centre", re.compile(r"\d{4}")),
        )
        _check_ins(c, carte_vitale.nir_ouvrant_droit, key_check, "nir_ouvrant_droit")

    i = t.sub("insi", ("expected", "fault", "cnda_case", "cases"))
    expected = i.opt("expected", _CR_RE) if i else None
    fault = i.opt("fault", _FAULT_RE) if i else None
    if expected is None and fault is None:
        expected = "00" if matricule else "01"  # default: found when it has an INS, else not found
    if expected in ("00", "02") and matricule is None:
        raise (i or t).error(f"expected {expected} needs an INS (matricule, cle, oid)")
    cases = []
    for case in i.subs("cases", ("prenoms", "lieu_naissance", "expected")) if i else []:
        cases.append(
            InsiCase(
                prenoms=case.strings("prenoms", _PRENOM_RE, required=True),
                expected=case.req("expected", choices=("00", "01", "02", "fault")),
                lieu_naissance=cog(case, "lieu_naissance"),
            )
        )
    insi = InsiExpectation(expected, fault, i.opt("cnda_case") if i else None, tuple(cases))

    d = t.sub("dmp", ("status", "blocked_professionals"))
    if d is None:
        raise t.error("missing required table [patient.dmp] (status = ouvert | ferme | absent)")
    dmp = DmpInfo(
        d.req("status", choices=DMP_STATUSES), d.strings("blocked_professionals", re.compile(r"8\d{11}"))
    )

    variant_of = t.opt("variant_of", _ID_RE)
    variant = t.opt("variant")
    if (variant_of is None) != (variant is None):
        raise t.error("variant_of and variant go together (the base record id and a label such as TEST_1.10)")

    return Patient(
        id=t.req("id", _ID_RE),
        source=t.req("source"),
        nom_naissance=t.req("nom_naissance", _NOM_RE),
        prenoms=t.strings("prenoms", _PRENOM_RE, required=True),
        sexe=t.req("sexe", choices=("M", "F")),
        date_naissance=t.req_day("date_naissance"),
        dmp=dmp,
        insi=insi,
        matricule=matricule.upper() if matricule else None,
        cle=cle,
        oid=oid,
        key_check=key_check,
        lieu_naissance=cog(t, "lieu_naissance"),
        nom_utilise=t.opt("nom_utilise", _NOM_RE),
        prenom_utilise=t.opt("prenom_utilise", _PRENOM_RE),
        nom_affiche=t.opt("nom_affiche"),
        prenom_affiche=t.opt("prenom_affiche"),
        inshisto=tuple(inshisto),
        carte_vitale=carte_vitale,
        dmp_test_oid=t.flag("dmp_test_oid", True),
        variant_of=variant_of,
        variant=variant,
        invented=t.strings("invented"),
        notes=t.opt("notes") or "",
    )


def _traits(p: Patient) -> tuple[object, ...]:
    return (p.nom_naissance, p.prenoms, p.sexe, p.date_naissance, p.lieu_naissance)


def _load_patients(
    path: Path, communes: Mapping[str, Commune], professionals: Sequence[Professional]
) -> list[Patient]:
    patients: list[Patient] = []
    where_of: dict[str, str] = {}
    for where, data in _records(path, _read_toml(path), "patient"):
        patient = _load_patient(_Table(data, where, _PATIENT_FIELDS), communes)
        where_of[patient.id] = where
        patients.append(patient)

    national_ids = {p.national_id for p in professionals}
    by_id = {p.id: p for p in patients}
    seen_ins: dict[str, str] = {}
    for patient in patients:
        where = where_of[patient.id]
        for nid in patient.dmp.blocked_professionals:
            if nid not in national_ids:
                raise PersonaDataError(f"{where}: dmp.blocked_professionals has unknown national id {nid!r}")
        if patient.variant_of is not None:
            base = by_id.get(patient.variant_of)
            if base is None or base.variant_of is not None:
                raise PersonaDataError(
                    f"{where}: variant_of {patient.variant_of!r} is not a main patient record"
                )
            if _traits(base) != _traits(patient):
                raise PersonaDataError(f"{where}: a variant must have the same traits as {base.id!r}")
        elif patient.ins:
            if patient.ins in seen_ins:
                raise PersonaDataError(
                    f"{where}: INS {patient.ins} already used by {seen_ins[patient.ins]!r}"
                )
            seen_ins[patient.ins] = patient.id
    return patients


def _check_unique(path: Path, kind: str, values: Iterable[tuple[str, str]]) -> None:
    seen: set[str] = set()
    for field, value in values:
        if value in seen:
            raise PersonaDataError(f"{path}: duplicate {kind} {field} {value!r}")
        seen.add(value)


def _load(directory: Path) -> Personas:
    paths = {name: directory / filename for name, filename in FILES.items()}
    communes = _load_communes(paths["communes"])
    structures = _load_structures(paths["structures"], communes)
    _check_unique(paths["structures"], "structure", (("id", s.id) for s in structures))
    professionals = _load_professionals(paths["professionals"], {s.id: s for s in structures})
    for field in ("id", "national_id", "mss_personnelle"):
        _check_unique(
            paths["professionals"], "professional", ((field, getattr(p, field)) for p in professionals)
        )
    patients = _load_patients(paths["patients"], communes, professionals)
    _check_unique(paths["patients"], "patient", (("id", p.id) for p in patients))
    return Personas(patients, professionals, structures, communes, directory)


@lru_cache(maxsize=1)
def _load_default() -> Personas:
    return _load(DATA_DIR)


def load_personas(path: Path | None = None) -> Personas:
    """Load and validate the dataset from a directory holding the four TOML files.

    Without path, the package's own data is loaded once and cached (the records are immutable).
    Raises PersonaDataError naming the file and record on any missing or invalid field.
    """
    if path is None:
        return _load_default()
    return _load(Path(path))
