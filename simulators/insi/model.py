"""INSi business model: input rules, header checks, matching over the personas, and the change state.

Everything here works on plain Python values; ``wire.py`` turns XML into these values and back.
Fault codes marked *assumed* in README.md are the bench's own choices (public material is silent).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from simulators.core.store import Store
from simulators.core.teleservice import (
    Headers,
    TeleserviceError,
    check_assertion,
    check_bam,
    check_client_certificate,
    check_lps,
    receiver,
    sender,
)
from simulators.personas import OID_INS_NIA, OID_INS_NIR, HistoricalIns, Patient, Personas, nir_key

OP_TRAITS = "rechercherInsAvecTraitsIdentite"
OP_VITALE = "rechercherInsAvecCarteVitale"
ACTION_PREFIX = "urn:ServiceIdentiteCertifiee:1.0.0:"
OPERATIONS = (OP_TRAITS, OP_VITALE)

LIBELLES = {"00": "OK", "01": "Aucune identite trouvee", "02": "Plusieurs identites trouvees"}


OUTCOMES = {
    "insi.cr01": "réponse CR 01 : aucune identité trouvée (code réel, XSD et réponses CNDA)",
    "insi.cr02": "réponse CR 02 : plusieurs identités trouvées (code réel, XSD et réponses CNDA)",
    "insi.service-indisponible": "faute SOAP Receiver siram_40 / insi_102 : service temporairement "
    "inaccessible (octets de la réponse réelle capturée, cas CNDA D'AEION)",
}


# ----------------------------------------------------------------------------------------------------
# Faults
# ----------------------------------------------------------------------------------------------------


# (subcode, detail code) per failure family; only siram_100/desir_550 and siram_40/insi_102 are public facts.
# Platform-level families (action, ContexteLPS/BAM, assertion, IDAM) are in simulators.core.teleservice.
F_INPUT = ("siram_50", "insi_001")  # assumed
F_UNAVAILABLE = ("siram_40", "insi_102")  # public (PADOA forks, CNDA D'AEION case)


def unavailable(reason: str = "Service INSi temporairement indisponible, reessayer ulterieurement") -> TeleserviceError:
    return receiver(F_UNAVAILABLE, reason)


def fault_from_codes(codes: str) -> TeleserviceError:
    """A persona fault string such as "siram_40/insi_102" as an TeleserviceError."""
    siram, detail = codes.split("/")
    if (siram, detail) == F_UNAVAILABLE:
        return unavailable("Erreur technique lors de la recherche de l'identite (insi_102)")
    return TeleserviceError("Sender", siram, detail, f"Erreur {siram} / {detail}")


# ----------------------------------------------------------------------------------------------------
# Input rules (protocols.md §1.4)
# ----------------------------------------------------------------------------------------------------

_NAME_CHARS = re.compile(r"[A-Z' -]")
_PRENOM_TOKEN = re.compile(r"[A-Z'-]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_LUNAR_DATE = re.compile(r"\d{4}-?\d{2}-?\d{2}")
_COG = re.compile(r"(?:\d{5}|2[AB]\d{3})")
_MATRICULE = re.compile(r"\d{6}[A-Za-z0-9]\d{6}")
_NIR_BAM = re.compile(r"\d{6}[AB0-9]\d{6}")
_CLE = re.compile(r"\d{2}")
_RANG = re.compile(r"\d{1,3}")
MAX_NAME = 100


_NAME_SET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ' -")  # the characters _NAME_CHARS accepts


def _bad_chars(value: str) -> list[str]:
    """The characters of `value` that _NAME_CHARS refuses, in order (usually none: one set operation)."""
    if _NAME_SET.issuperset(value):
        return []
    return [ch for ch in value if not _NAME_CHARS.fullmatch(ch)]


def _bad(field_name: str, why: str) -> TeleserviceError:
    return sender(F_INPUT, f"{field_name} : {why}")


def check_nom(value: str | None, field_name: str = "NomNaissance") -> str:
    if value is None or value == "":
        raise _bad(field_name, "valeur obligatoire absente ou vide")
    if len(value) > MAX_NAME:
        raise _bad(field_name, f"longueur {len(value)} superieure au maximum de {MAX_NAME} caracteres")
    for ch in _bad_chars(value):
        raise _bad(field_name, f"caractere non autorise {ch!r} (seuls A-Z majuscules sans accent, espace, "
                               "apostrophe et tiret sont acceptes)")
    if value[0] in " -":
        raise _bad(field_name, "le premier caractere ne peut pas etre un espace ou un tiret")
    if value[-1] == " ":
        raise _bad(field_name, "le dernier caractere ne peut pas etre un espace")
    if "  " in value or "''" in value:
        raise _bad(field_name, "espace ou apostrophe double non autorise")
    if "---" in value:
        raise _bad(field_name, "plus de deux tirets consecutifs")
    return value


def check_prenoms(values: Sequence[str]) -> tuple[str, ...]:
    """First names: one element per first name, or one element holding the space-separated list."""
    if not values:
        raise _bad("Prenom", "au moins un prenom est requis")
    tokens: list[str] = []
    for value in values:
        if value == "":
            raise _bad("Prenom", "element present mais vide")
        if len(value) > MAX_NAME:
            raise _bad("Prenom", f"longueur {len(value)} superieure au maximum de {MAX_NAME} caracteres")
        for ch in _bad_chars(value):
            raise _bad("Prenom", f"caractere non autorise {ch!r} (seuls A-Z majuscules sans accent, espace, "
                                 "apostrophe et tiret sont acceptes)")
        if "  " in value or value[0] == " " or value[-1] == " ":
            raise _bad("Prenom", "espace en tete, en fin ou double non autorise")
        for token in value.split(" "):
            if not _PRENOM_TOKEN.fullmatch(token) or token[0] == "-" or "--" in token or "''" in token:
                raise _bad("Prenom", f"prenom {token!r} mal forme (tiret en tete, tiret ou apostrophe double)")
            tokens.append(token)
    return tuple(tokens)


def check_sexe(value: str | None) -> str:
    if value not in ("M", "F"):
        raise _bad("Sexe", f"valeur {value!r} invalide, attendu 'M' ou 'F'")
    return value


def check_date(value: str | None, field_name: str = "DateNaissance") -> date:
    if not value:
        raise _bad(field_name, "valeur obligatoire absente ou vide")
    if not _DATE.fullmatch(value):
        raise _bad(field_name, f"format invalide {value!r}, attendu AAAA-MM-JJ")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _bad(field_name, f"date {value!r} inexistante") from None


def check_lunar_date(value: str | None, field_name: str = "DateNaissance") -> str:
    """Carte Vitale dates may be lunar (day/month 00 or > 31): only the shape is checked."""
    if not value:
        raise _bad(field_name, "valeur obligatoire absente ou vide")
    if not _LUNAR_DATE.fullmatch(value):
        raise _bad(field_name, f"format invalide {value!r}, attendu AAAA-MM-JJ (ou AAAAMMJJ)")
    return value.replace("-", "")


def check_cog(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) != 5:
        raise _bad("LieuNaissance", f"code COG {value!r} invalide : 5 caracteres attendus, {len(value)} recus")
    if not _COG.fullmatch(value):
        raise _bad("LieuNaissance", f"code COG {value!r} invalide : 5 chiffres (ou 2A/2B + 3 chiffres) attendus")
    return value


def check_matricule(num: str | None, cle: str | None, field_name: str, *, bam_pattern: bool = False) -> str:
    pattern = _NIR_BAM if bam_pattern else _MATRICULE
    if not num or not pattern.fullmatch(num):
        raise _bad(f"{field_name}/NumIdentifiant", f"matricule {num!r} invalide (13 caracteres attendus)")
    if not cle or not _CLE.fullmatch(cle):
        raise _bad(f"{field_name}/Cle", f"cle {cle!r} invalide (2 chiffres attendus)")
    return num.upper() + cle


def check_rang(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not _RANG.fullmatch(value):
        raise _bad("RangNaissance", f"valeur {value!r} invalide (nombre attendu)")
    return int(value)


# ----------------------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraitsQuery:
    nom: str
    prenoms: tuple[str, ...]
    sexe: str
    date_naissance: date
    lieu_naissance: str | None = None

    @classmethod
    def validated(cls, raw: Mapping[str, Any]) -> TraitsQuery:
        return cls(
            nom=check_nom(raw.get("nom")),
            prenoms=check_prenoms(raw.get("prenoms") or ()),
            sexe=check_sexe(raw.get("sexe")),
            date_naissance=check_date(raw.get("date_naissance")),
            lieu_naissance=check_cog(raw.get("lieu_naissance")),
        )


@dataclass(frozen=True)
class VitaleQuery:
    nir_od: str | None  # 15 chars, NIR ouvrant droit (card holder)
    nir_individu: str | None  # 15 chars, beneficiary's own matricule when on the card
    date_naissance: str  # AAAAMMJJ, possibly lunar
    rang: int | None = None
    nom: str | None = None

    @classmethod
    def validated(cls, raw: Mapping[str, Any]) -> VitaleQuery:
        od = raw.get("od")
        ind = raw.get("individu")
        nir_od = check_matricule(od[0], od[1], "MatriculeOD", bam_pattern=True) if od else None
        nir_ind = check_matricule(ind[0], ind[1], "MatriculeIndividu") if ind else None
        if nir_od is None and nir_ind is None:
            raise _bad("MatriculeOD", "MatriculeOD ou MatriculeIndividu obligatoire pour la recherche par carte Vitale")
        nom = raw.get("nom")
        return cls(
            nir_od=nir_od,
            nir_individu=nir_ind,
            date_naissance=check_lunar_date(raw.get("date_naissance")),
            rang=check_rang(raw.get("rang")),
            nom=check_nom(nom) if nom else None,
        )


def check_headers(headers: Headers, operation: str, settings: Mapping[str, Any],
                  tls: Mapping[str, Any] | None = None, clock: Callable[[], datetime] | None = None) -> None:
    """ContexteLPS, ContexteBAM and wsse:Security rules, or the software certificate in mutual-TLS mode; raises
    TeleserviceError."""
    check_lps(headers, settings)
    check_bam(headers, couverture_required=operation == OP_VITALE)
    if settings.get("auth_mode", "assertion") == "mtls":
        # mutual TLS with a software certificate named INSI-AUTO or INSI-MANU: no PS assertion
        check_client_certificate(tls)
        return
    check_assertion(headers, settings, clock)


# ----------------------------------------------------------------------------------------------------
# Identities and matching
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """One person as the INSi sees it now (persona + active variant + recorded changes)."""

    patient: Patient
    matricule: str | None
    cle: str | None
    oid: str | None
    inshisto: tuple[HistoricalIns, ...] = ()

    @property
    def ins(self) -> str | None:
        return self.matricule + self.cle if self.matricule and self.cle else None


@dataclass(frozen=True)
class Result:
    code: str  # "00" | "01" | "02"
    identity: Identity | None = None

    @property
    def libelle(self) -> str:
        return LIBELLES[self.code]


@dataclass
class InsiModel:
    personas: Personas
    store: Store
    settings: Mapping[str, Any] = field(default_factory=dict)

    MIGRATIONS = (
        "CREATE TABLE insi_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, patient_id TEXT NOT NULL, "
        "old_ins TEXT NOT NULL, new_matricule TEXT NOT NULL, new_cle TEXT NOT NULL, new_oid TEXT NOT NULL, "
        "changed_on TEXT NOT NULL);"
        "CREATE TABLE insi_variants (patient_id TEXT PRIMARY KEY, variant_id TEXT NOT NULL)",
    )

    def migrate(self) -> None:
        self.store.migrate("insi", list(self.MIGRATIONS))

    # -- state --------------------------------------------------------------------------------------

    def _active_variants(self) -> dict[str, str]:
        active: dict[str, str] = {}
        for name in self.settings.get("variants") or ():
            variant = self._variant(name)
            active[variant.variant_of or ""] = variant.id
        for row in self.store.query("SELECT patient_id, variant_id FROM insi_variants"):
            active[row["patient_id"]] = row["variant_id"]
        return active

    def _variant(self, name: str) -> Patient:
        for p in self.personas.all_patients:
            if p.variant_of and name in (p.id, p.variant):
                return p
        known = sorted(f"{p.id} ({p.variant})" for p in self.personas.all_patients if p.variant_of)
        raise ValueError(f"unknown persona variant {name!r}; known: {', '.join(known)}")

    def identities(self) -> list[Identity]:
        # Rebuilt only when the control API changed identities or variants (in any worker process). The store's
        # change counter (bumped by apply and reset) says when to look; one cheap query then tells whether
        # these tables changed, instead of two queries and a walk over every persona on each search.
        generation = self.store.generation()
        cached = self.__dict__.get("_identities")
        if cached is not None and self.__dict__.get("_identities_generation") == generation:
            return cached[1]
        row = self.store.execute(
            "SELECT (SELECT COUNT(*) || ':' || COALESCE(MAX(seq), 0) FROM insi_changes),"
            " (SELECT group_concat(patient_id || '=' || variant_id, ',') FROM insi_variants)"
        ).fetchone()
        key = (row[0], row[1])
        if cached is None or cached[0] != key:
            cached = self.__dict__["_identities"] = (key, self._build_identities())
        self.__dict__["_identities_generation"] = generation
        return cached[1]

    def _build_identities(self) -> list[Identity]:
        variants = self._active_variants()
        by_id: dict[str, Identity] = {}
        for base in self.personas.patients:
            p = self.personas.patient(variants[base.id]) if base.id in variants else base
            histo = p.inshisto or (base.inshisto if p is not base else ())
            by_id[base.id] = Identity(patient=p, matricule=p.matricule, cle=p.cle, oid=p.oid, inshisto=histo)
        for row in self.store.query("SELECT * FROM insi_changes ORDER BY seq"):
            ident = by_id.get(row["patient_id"])
            if ident is None or ident.matricule is None:
                continue
            old = HistoricalIns(matricule=ident.matricule, cle=ident.cle or "", oid=ident.oid or OID_INS_NIR,
                                date_fin=date.fromisoformat(row["changed_on"]))
            by_id[row["patient_id"]] = replace(ident, matricule=row["new_matricule"], cle=row["new_cle"],
                                               oid=row["new_oid"], inshisto=(old, *ident.inshisto))
        return list(by_id.values())

    def state(self) -> dict:
        changes = [
            {"patient_id": r["patient_id"], "old_ins": r["old_ins"], "new_ins": r["new_matricule"] + r["new_cle"],
             "new_oid": r["new_oid"], "changed_on": r["changed_on"]}
            for r in self.store.query("SELECT * FROM insi_changes ORDER BY seq")
        ]
        return {"changes": changes, "variants": self._active_variants()}

    def apply(self, body: Any, today: date) -> dict:
        if not isinstance(body, dict) or not (set(body) & {"changes", "variants"}):
            raise ValueError('expected {"changes": [{"ins": "<15 chars>", "new_matricule": "<13 chars>", '
                             '"new_cle": "<2 digits>"}], "variants": ["<variant id or CNDA case>"]}')
        changes = body.get("changes") or []
        variants = body.get("variants") or []
        if not isinstance(changes, list) or not isinstance(variants, list):
            raise ValueError('"changes" and "variants" must be lists')
        with self.store.transaction() as conn:
            for name in variants:
                v = self._variant(str(name))
                conn.execute("INSERT OR REPLACE INTO insi_variants (patient_id, variant_id) VALUES (?, ?)",
                             (v.variant_of, v.id))
        self.store.bump()  # each change below looks the identities up again
        for change in changes:
            self._change(change, today)
        return self.state()

    def _change(self, change: Any, today: date) -> None:
        if not isinstance(change, dict) or not isinstance(change.get("ins"), str):
            raise ValueError('each change needs "ins" (the current 15-character INS) and "new_matricule"')
        ins = change["ins"].strip().upper()
        new_matricule = str(change.get("new_matricule", "")).strip().upper()
        if not _MATRICULE.fullmatch(new_matricule):
            raise ValueError(f"new_matricule {new_matricule!r} must have 13 characters (\\d{{6}}[A-Z0-9]\\d{{6}})")
        new_cle = str(change.get("new_cle") or nir_key(new_matricule))
        if not _CLE.fullmatch(new_cle):
            raise ValueError(f"new_cle {new_cle!r} must be 2 digits")
        new_oid = str(change.get("new_oid") or OID_INS_NIR)
        if new_oid not in (OID_INS_NIR, OID_INS_NIA):
            raise ValueError(f"new_oid must be {OID_INS_NIR} (NIR) or {OID_INS_NIA} (NIA)")
        ident = next((i for i in self.identities() if i.ins == ins), None)
        if ident is None:
            raise ValueError(f"no identity has the active INS {ins!r}")
        self.store.execute(
            "INSERT INTO insi_changes (patient_id, old_ins, new_matricule, new_cle, new_oid, changed_on) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (ident.patient.variant_of or ident.patient.id, ins, new_matricule, new_cle, new_oid, today.isoformat()),
        )
        self.store.bump()

    def reset(self) -> None:
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM insi_changes")
            conn.execute("DELETE FROM insi_variants")
        self.store.bump()

    # -- searches -----------------------------------------------------------------------------------

    @staticmethod
    def _prenoms_match(query: tuple[str, ...], prenoms: tuple[str, ...]) -> bool:
        """One of the birth first names alone, or the full ordered list (InsiCase rules of the personas)."""
        if len(query) == 1:
            return query[0] in prenoms
        return query == prenoms

    def search_traits(self, q: TraitsQuery) -> Result:
        found = [
            i for i in self.identities()
            if i.patient.nom_naissance == q.nom and i.patient.sexe == q.sexe
            and i.patient.date_naissance == q.date_naissance
            and self._prenoms_match(q.prenoms, i.patient.prenoms)
            and (q.lieu_naissance is None or i.patient.lieu_naissance == q.lieu_naissance)
        ]
        return self._decide(found)

    def search_vitale(self, q: VitaleQuery) -> Result:
        found = []
        for i in self.identities():
            card = i.patient.carte_vitale
            if q.nir_od is not None and (card is None or card.nir_ouvrant_droit != q.nir_od):
                continue
            if q.nir_individu is not None and q.nir_individu not in {i.ins, *(h.ins for h in i.inshisto)}:
                continue
            if i.patient.date_naissance.strftime("%Y%m%d") != q.date_naissance:
                continue
            if q.rang is not None and (card is None or card.rang_naissance != q.rang):
                continue
            if q.nom is not None and i.patient.nom_naissance != q.nom:
                continue
            found.append(i)
        return self._decide(found)

    @staticmethod
    def _decide(found: Iterable[Identity]) -> Result:
        found = list(found)
        for ident in found:
            if ident.patient.insi.fault:
                raise fault_from_codes(ident.patient.insi.fault)
        with_ins = [i for i in found if i.ins]  # identities without INS are unknown to the INSi
        if not with_ins:
            return Result("01")
        if len(with_ins) > 1:
            return Result("02")
        return Result("00", with_ins[0])
