"""Ordonnance numérique business model: header and input rules, prescription numbers, 2D code, store.

Everything here works on plain Python values; ``wire.py`` turns XML into these values and back. The CNAM
wire format, the prescription-number format, the 2D-code payload and the fault codes are the bench's own
choices (public material is silent, protocols.md §5 and §9.6): README.md lists them as assumptions.
"""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import segno

from simulators.core.store import Store
from simulators.core.teleservice import (
    Headers,
    TeleserviceError,
    check_assertion,
)
from simulators.insi import model as insi_rules
from simulators.personas import (
    OID_INS_NIA,
    OID_INS_NIR,
    OID_INS_NIR_DEMO,
    OID_INS_NIR_TEST,
    Personas,
    Professional,
    nir_key,
)

ACTION_PREFIX = "urn:ServiceEPrescription:1.0.0:"
OP_CREER = "creerEPrescription"
OP_CONSULTER = "consulterEPrescription"
OP_RECHERCHER = "rechercherEPrescriptions"
OPERATIONS = (OP_CREER, OP_CONSULTER, OP_RECHERCHER)
VERSION = "1.0"

INS_OIDS = (OID_INS_NIR, OID_INS_NIA, OID_INS_NIR_TEST, OID_INS_NIR_DEMO)

# Dispensation states (EtatDelivrance) and their French labels.
ETATS = {
    "NON_DELIVREE": "non délivrée",
    "PARTIELLEMENT_DELIVREE": "partiellement délivrée",
    "DELIVREE": "délivrée",
    "ANNULEE": "annulée",
}

# Business answer codes (CR) — assumed.
CR_LIBELLES = {
    "00": "OK",
    "01": "Aucune prescription trouvee",
    "10": "KO : prescription non enregistree par le serveur e-prescription",
}

# TRE_A05 type codes of prescriptions (protocols.md §5) accepted in TypePrescription.
TYPES_PRESCRIPTION = ("57833-6", "57828-6", "57832-8", "PRESC-BIO", "PRESC-KINE", "PRESC-INF", "PRESC-PEDI",
                      "PRESC-ORTHOPHO", "PRESC-ORTHOPTIE", "PRESC-AAT")
DEFAULT_TYPE = "57833-6"

OUTCOMES = {
    "on.ko": "réponse KO (CR 10, code inventé par le banc) : la prescription n'est pas enregistrée, aucun "
    "numéro ni code 2D",
    "on.indisponible": "faute SOAP Receiver siram_40 / epresc_102 : service e-prescription temporairement "
    "indisponible (forme de la faute INSi capturée ; code epresc_102 inventé par le banc)",
    "on.sans-reponse": "aucune réponse : la requête reste sans réponse jusqu'à l'expiration du client "
    "(120 s au plus, puis connexion coupée)",
    "on.lent": "réponse normale après 5 s",
}
# Transport behaviours: carried out by the core's hang and latency effects, on the event loop.
OUTCOME_EFFECTS = {
    "on.sans-reponse": {"type": "hang", "max_s": 120},
    "on.lent": {"type": "latency", "ms": 5000},
}

NUMERO_LENGTH = 22
NUMERO_VERSION = "1"
QR_PREFIX = "ON"
QR_VERSION = "1"
MAX_LIGNES = 50
MAX_LIBELLE = 200
MAX_POSOLOGIE = 1000


# ----------------------------------------------------------------------------------------------------
# Faults
# ----------------------------------------------------------------------------------------------------


class OnError(TeleserviceError):
    """A request the service refuses (a TeleserviceError of the service's own families)."""


# (subcode, detail code) of the service's own failure families — all assumed. The platform-level ones
# (F_ACTION siram_10, F_CTXLPS siram_20, F_SECURITY siram_30, F_IDAM siram_100) come from core.teleservice.
F_INPUT = ("siram_50", "epresc_001")
F_PATIENT = ("siram_51", "epresc_010")
F_PRESCRIPTEUR = ("siram_52", "epresc_020")
F_NUMERO = ("siram_53", "epresc_030")
F_UNAVAILABLE = ("siram_40", "epresc_102")


def sender(family: tuple[str, str], reason: str, http_status: int | None = None) -> OnError:
    return OnError("Sender", family[0], family[1], reason, http_status=http_status)


def unavailable(reason: str = "Service e-prescription temporairement indisponible, reessayer ulterieurement"
                ) -> OnError:
    return OnError("Receiver", F_UNAVAILABLE[0], F_UNAVAILABLE[1], reason, severite="fatal")


def _bad(field_name: str, why: str, family: tuple[str, str] = F_INPUT) -> OnError:
    return sender(family, f"{field_name} : {why}")


def _insi(check: Any, *args: Any, prefix: str, **kw: Any) -> Any:
    """Run an INSi input rule (protocols.md §1.4, EF_EP04.01 -> EF_INS25_01) and re-badge its error."""
    try:
        return check(*args, **kw)
    except TeleserviceError as exc:
        raise sender(F_INPUT, f"{prefix}/{exc.reason}") from None


def xml_datetime(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------------------------------
# Headers: ContexteLPS (core.teleservice) + PS assertion in wsse:Security, or a bearer token (app.py)
# ----------------------------------------------------------------------------------------------------


def check_prescriber_assertion(headers: Headers, settings: Mapping[str, Any] | None = None,
                               clock: Callable[[], datetime] | None = None) -> str:
    """PS assertion (CPS or PSC form, core.teleservice rules); returns the PS national id (Subject/NameID)."""
    check_assertion(headers, settings, clock, missing_security="En-tete wsse:Security absent : l'ordonnance "
                    "numerique exige l'assertion du prescripteur (CPS ou Pro Sante Connect) ou un jeton Bearer (API "
                    "Pro Sante Connectee)")
    assert headers.assertion is not None
    return str(headers.assertion["name_id"]).strip()


# ----------------------------------------------------------------------------------------------------
# Prescription numbers: 1 (format) + AAMMJJ + 13 random digits + 2-digit key 97 - (N mod 97) = 22 digits
# ----------------------------------------------------------------------------------------------------

_NUMERO = re.compile(r"\d{22}")


def numero_key(base20: str) -> str:
    return f"{97 - int(base20) % 97:02d}"


def new_numero(day: date) -> str:
    base = NUMERO_VERSION + day.strftime("%y%m%d") + "".join(secrets.choice("0123456789") for _ in range(13))
    return base + numero_key(base)


def check_numero(value: str | None, field_name: str = "NumeroPrescription") -> str:
    if not value:
        raise _bad(field_name, "valeur obligatoire absente ou vide")
    if not _NUMERO.fullmatch(value):
        raise _bad(field_name, f"numero {value[:40]!r} invalide ({NUMERO_LENGTH} chiffres attendus)", F_NUMERO)
    if not value.startswith(NUMERO_VERSION):
        raise _bad(field_name, f"numero {value!r} invalide (version de format {value[0]!r}, attendu "
                               f"{NUMERO_VERSION!r})", F_NUMERO)
    try:
        datetime.strptime(value[1:7], "%y%m%d")
    except ValueError:
        raise _bad(field_name, f"numero {value!r} invalide (date AAMMJJ {value[1:7]!r} inexistante)",
                   F_NUMERO) from None
    if numero_key(value[:20]) != value[20:]:
        raise _bad(field_name, f"numero {value!r} invalide : cle {value[20:]} incorrecte, attendu "
                               f"{numero_key(value[:20])}", F_NUMERO)
    return value


def qr_payload(numero: str, national_id: str, day: date) -> str:
    """Text of the 2D code printed on the ordonnance: ON|1|<numero>|<PS national id>|<AAAAMMJJ>."""
    return "|".join((QR_PREFIX, QR_VERSION, numero, national_id, day.strftime("%Y%m%d")))


def qr_png(payload: str, scale: int = 4) -> bytes:
    buf = io.BytesIO()
    segno.make(payload, error="m", micro=False).save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------
# Request bodies
# ----------------------------------------------------------------------------------------------------

_CIP13 = re.compile(r"\d{13}")
_CIS = re.compile(r"\d{8}")
_UCD = re.compile(r"\d{7}|\d{13}")
_INT = re.compile(r"\d{1,4}")
CODE_SYSTEMS = {"CIP13": _CIP13, "CIS": _CIS, "UCD": _UCD}
DUREE_UNITES = {"j": 1, "s": 7, "m": 31}
MAX_DUREE_JOURS = 366


@dataclass(frozen=True)
class PatientIdentity:
    ins: str  # 15 chars
    oid: str
    nom_naissance: str
    prenoms: tuple[str, ...]
    sexe: str
    date_naissance: date
    lieu_naissance: str | None = None

    def as_json(self) -> dict:
        d = asdict(self)
        d["date_naissance"] = self.date_naissance.isoformat()
        d["prenoms"] = list(self.prenoms)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PatientIdentity:
        return cls(d["ins"], d["oid"], d["nom_naissance"], tuple(d["prenoms"]), d["sexe"],
                   date.fromisoformat(d["date_naissance"]), d.get("lieu_naissance"))


@dataclass
class Ligne:
    libelle: str
    posologie: str
    code: str | None = None
    code_systeme: str | None = None
    duree: int | None = None
    duree_unite: str | None = None
    quantite: int | None = None
    quantite_unite: str | None = None
    renouvellements: int = 0
    non_substituable: bool = False
    quantite_delivree: int = 0


def check_ins(raw: Mapping[str, Any] | None, personas: Personas, settings: Mapping[str, Any]) -> tuple[str, str]:
    if raw is None:
        raise _bad("Patient/INS", "element obligatoire absent")
    ins = _insi(insi_rules.check_matricule, raw.get("num"), raw.get("cle"), "INS", prefix="Patient")
    known = personas.patient_by_ins(ins, include_history=True)
    if nir_key(ins[:13]) != ins[13:] and (known is None or known.key_check):
        raise _bad("Patient/INS/Cle", f"cle {ins[13:]!r} incorrecte pour le matricule {ins[:13]}, attendu "
                                      f"{nir_key(ins[:13])}")
    oid = raw.get("oid")
    if not oid:
        raise _bad("Patient/INS/OID", "valeur obligatoire absente ou vide")
    if oid not in INS_OIDS:
        raise _bad("Patient/INS/OID", f"OID {oid!r} inconnu, attendu l'un de {', '.join(INS_OIDS)}")
    return ins, oid


def check_patient(raw: Mapping[str, Any] | None, personas: Personas, settings: Mapping[str, Any]
                  ) -> PatientIdentity:
    if raw is None or not raw.get("present"):
        raise _bad("Patient", "element obligatoire absent")
    ins, oid = check_ins(raw.get("ins"), personas, settings)
    ident = PatientIdentity(
        ins=ins, oid=oid,
        nom_naissance=_insi(insi_rules.check_nom, raw.get("nom"), prefix="Patient"),
        prenoms=_insi(insi_rules.check_prenoms, raw.get("prenoms") or (), prefix="Patient"),
        sexe=_insi(insi_rules.check_sexe, raw.get("sexe"), prefix="Patient"),
        date_naissance=_insi(insi_rules.check_date, raw.get("date_naissance"), prefix="Patient"),
        lieu_naissance=_insi(insi_rules.check_cog, raw.get("lieu_naissance"), prefix="Patient"),
    )
    if ident.ins[6] in "AB" and ident.ins[5] != "2":
        raise _bad("Patient/INS/NumIdentifiant", f"matricule {ins[:13]!r} invalide (A/B seulement pour la Corse, "
                                                 "departement 2A/2B)")
    person = personas.patient_by_ins(ins, include_history=True)
    if person is None:
        if settings.get("require_known_patient"):
            raise _bad("Patient/INS", f"INS {ins} inconnu du referentiel national", F_PATIENT)
        return ident
    mismatches = []
    if person.nom_naissance != ident.nom_naissance:
        mismatches.append("NomNaissance")
    if person.sexe != ident.sexe:
        mismatches.append("Sexe")
    if person.date_naissance != ident.date_naissance:
        mismatches.append("DateNaissance")
    if not all(p in person.prenoms for p in ident.prenoms):
        mismatches.append("Prenom")
    if ident.lieu_naissance and person.lieu_naissance and ident.lieu_naissance != person.lieu_naissance:
        mismatches.append("LieuNaissance")
    if mismatches:
        raise _bad("Patient", f"traits {', '.join(mismatches)} differents de ceux de l'INS {ins} (identite non "
                              "qualifiee ou INS d'un autre patient)", F_PATIENT)
    if person.ins == ins and person.oid and oid not in (person.oid, person.dmp_oid):
        raise _bad("Patient/INS/OID", f"OID {oid} incoherent avec l'INS {ins} (attendu {person.oid})", F_PATIENT)
    return ident


def check_prescripteur(raw: Mapping[str, Any] | None, caller_nid: str, personas: Personas) -> Professional:
    if raw is None or not raw.get("present"):
        raise _bad("Prescripteur", "element obligatoire absent")
    nid = raw.get("id_national")
    if not nid:
        raise _bad("Prescripteur/IdNational", "valeur obligatoire absente ou vide")
    if not re.fullmatch(r"8\d{11}", nid):
        raise _bad("Prescripteur/IdNational", f"identifiant {nid!r} invalide ('8' + RPPS sur 11 chiffres attendu)")
    pro = personas.professional_by_national_id(nid)
    if pro is None:
        raise _bad("Prescripteur/IdNational", f"RPPS {nid[1:]} inconnu du RPPS", F_PRESCRIPTEUR)
    if nid != caller_nid:
        raise _bad("Prescripteur/IdNational", f"{nid} differe du professionnel authentifie ({caller_nid})",
                   F_PRESCRIPTEUR)
    if pro.profession == "21":
        raise _bad("Prescripteur", f"profession {pro.profession} (pharmacien) non autorisee a prescrire",
                   F_PRESCRIPTEUR)
    fact = raw.get("identifiant_facturation")
    if fact and fact != pro.identifiant_facturation:
        raise _bad("Prescripteur/IdentifiantFacturation", f"{fact!r} ne correspond pas au prescripteur "
                                                          f"{nid} ({pro.identifiant_facturation})", F_PRESCRIPTEUR)
    return pro


def _int(value: str | None, field_name: str, lo: int, hi: int) -> int:
    if value is None or not _INT.fullmatch(value) or not lo <= int(value) <= hi:
        raise _bad(field_name, f"valeur {value!r} invalide (entier de {lo} a {hi} attendu)")
    return int(value)


def check_ligne(raw: Mapping[str, Any], n: int) -> Ligne:
    where = f"Lignes/Ligne[{n}]"
    libelle = (raw.get("libelle") or "").strip()
    if not libelle:
        raise _bad(f"{where}/Produit/Libelle", "libelle du produit obligatoire absent ou vide")
    if len(libelle) > MAX_LIBELLE:
        raise _bad(f"{where}/Produit/Libelle", f"longueur {len(libelle)} superieure a {MAX_LIBELLE} caracteres")
    code, systeme = raw.get("code"), raw.get("code_systeme")
    if code is not None:
        if systeme not in CODE_SYSTEMS:
            raise _bad(f"{where}/Produit/Code/@systeme", f"systeme {systeme!r} inconnu, attendu "
                                                         f"{', '.join(CODE_SYSTEMS)}")
        if not CODE_SYSTEMS[systeme].fullmatch(code):
            raise _bad(f"{where}/Produit/Code", f"code {systeme} {code[:40]!r} mal forme")
    posologie = (raw.get("posologie") or "").strip()
    if not posologie:
        raise _bad(f"{where}/Posologie", "posologie obligatoire absente ou vide")
    if len(posologie) > MAX_POSOLOGIE:
        raise _bad(f"{where}/Posologie", f"longueur {len(posologie)} superieure a {MAX_POSOLOGIE} caracteres")
    duree = duree_unite = quantite = None
    if raw.get("duree") is not None:
        duree_unite = raw.get("duree_unite") or "j"
        if duree_unite not in DUREE_UNITES:
            raise _bad(f"{where}/Duree/@unite", f"unite {duree_unite!r} inconnue, attendu j, s ou m")
        duree = _int(raw["duree"], f"{where}/Duree", 1, 999)
        if duree * DUREE_UNITES[duree_unite] > MAX_DUREE_JOURS:
            raise _bad(f"{where}/Duree", f"duree superieure a {MAX_DUREE_JOURS} jours")
    if raw.get("quantite") is not None:
        quantite = _int(raw["quantite"], f"{where}/Quantite", 1, 999)
    if duree is None and quantite is None:
        raise _bad(where, "Duree ou Quantite obligatoire")
    renouv = raw.get("renouvellements")
    non_sub = raw.get("non_substituable")
    if non_sub not in (None, "true", "false", "1", "0"):
        raise _bad(f"{where}/NonSubstituable", f"valeur {non_sub!r} invalide (booleen attendu)")
    return Ligne(
        libelle=libelle, posologie=posologie, code=code, code_systeme=systeme if code else None, duree=duree,
        duree_unite=duree_unite, quantite=quantite, quantite_unite=raw.get("quantite_unite") or None,
        renouvellements=_int(renouv, f"{where}/Renouvellements", 0, 12) if renouv is not None else 0,
        non_substituable=non_sub in ("true", "1"),
    )


def check_version(value: str | None, element: str) -> None:
    if value is not None and value != VERSION:
        raise _bad(f"{element}/@version", f"valeur {value!r} invalide, attendu '{VERSION}'")


@dataclass(frozen=True)
class CreateRequest:
    numero: str | None
    patient: PatientIdentity
    prescripteur: Professional
    date_prescription: date
    type_prescription: str
    lignes: tuple[Ligne, ...]

    @classmethod
    def validated(cls, raw: Mapping[str, Any], caller_nid: str, personas: Personas, settings: Mapping[str, Any],
                  today: date) -> CreateRequest:
        check_version(raw.get("version"), "CreerEPrescriptionReq")
        numero = check_numero(raw["numero"]) if raw.get("numero") is not None else None
        prescripteur = check_prescripteur(raw.get("prescripteur"), caller_nid, personas)
        patient = check_patient(raw.get("patient"), personas, settings)
        day = _insi(insi_rules.check_date, raw.get("date_prescription"), "DatePrescription", prefix="EPrescription")
        if day > today:
            raise _bad("DatePrescription", f"date {day.isoformat()} posterieure a la date du jour {today.isoformat()}")
        type_p = raw.get("type_prescription") or DEFAULT_TYPE
        if type_p not in TYPES_PRESCRIPTION:
            raise _bad("TypePrescription", f"code {type_p!r} inconnu (TRE_A05), attendu l'un de "
                                           f"{', '.join(TYPES_PRESCRIPTION)}")
        raw_lignes: Sequence[Mapping[str, Any]] = raw.get("lignes") or ()
        if not raw.get("has_lignes"):
            raise _bad("Lignes", "element obligatoire absent")
        if not raw_lignes:
            raise _bad("Lignes", "au moins une ligne de prescription est requise")
        if len(raw_lignes) > MAX_LIGNES:
            raise _bad("Lignes", f"{len(raw_lignes)} lignes, au plus {MAX_LIGNES} acceptees")
        lignes = tuple(check_ligne(r, i) for i, r in enumerate(raw_lignes, start=1))
        return cls(numero, patient, prescripteur, day, type_p, lignes)


# ----------------------------------------------------------------------------------------------------
# Stored prescriptions
# ----------------------------------------------------------------------------------------------------


@dataclass
class Prescription:
    numero: str
    created_at: datetime
    date_prescription: date
    type_prescription: str
    prescripteur_nid: str
    patient: PatientIdentity
    lignes: list[Ligne]
    etat: str = "NON_DELIVREE"
    qr: str = ""
    updated_at: datetime | None = None
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "numero": self.numero, "created_at": xml_datetime(self.created_at),
            "date_prescription": self.date_prescription.isoformat(), "type_prescription": self.type_prescription,
            "prescripteur": self.prescripteur_nid, "patient": self.patient.as_json(), "etat": self.etat,
            "etat_libelle": ETATS[self.etat], "qr_payload": self.qr,
            "lignes": [asdict(line) for line in self.lignes],
        }


@dataclass
class OnModel:
    personas: Personas
    store: Store
    settings: Mapping[str, Any] = field(default_factory=dict)

    MIGRATIONS = (
        "CREATE TABLE on_prescriptions (numero TEXT PRIMARY KEY, created_at TEXT NOT NULL, "
        "date_prescription TEXT NOT NULL, type_prescription TEXT NOT NULL, prescripteur TEXT NOT NULL, "
        "ins TEXT NOT NULL, patient TEXT NOT NULL, lignes TEXT NOT NULL, etat TEXT NOT NULL, qr TEXT NOT NULL, "
        "updated_at TEXT);"
        "CREATE INDEX on_prescriptions_ins ON on_prescriptions (ins)",
    )

    def migrate(self) -> None:
        self.store.migrate("on", list(self.MIGRATIONS))

    def create(self, req: CreateRequest, now: datetime) -> Prescription:
        for _ in range(20):
            numero = req.numero or new_numero(now.date())
            p = Prescription(
                numero=numero, created_at=now.replace(microsecond=0), date_prescription=req.date_prescription,
                type_prescription=req.type_prescription, prescripteur_nid=req.prescripteur.national_id,
                patient=req.patient, lignes=list(req.lignes),
                qr=qr_payload(numero, req.prescripteur.national_id, req.date_prescription),
            )
            with self.store.transaction() as conn:
                if conn.execute("SELECT 1 FROM on_prescriptions WHERE numero = ?", (numero,)).fetchone():
                    if req.numero:
                        raise _bad("NumeroPrescription", f"numero {numero} deja utilise par une autre prescription",
                                   F_NUMERO)
                    continue
                conn.execute(
                    "INSERT INTO on_prescriptions (numero, created_at, date_prescription, type_prescription, "
                    "prescripteur, ins, patient, lignes, etat, qr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (p.numero, p.created_at.isoformat(), p.date_prescription.isoformat(), p.type_prescription,
                     p.prescripteur_nid, p.patient.ins, json.dumps(p.patient.as_json()),
                     json.dumps([asdict(line) for line in p.lignes]), p.etat, p.qr),
                )
            return p
        raise unavailable("Generation du numero de prescription impossible, reessayer")

    @staticmethod
    def _row(r: Any) -> Prescription:
        return Prescription(
            numero=r["numero"], created_at=datetime.fromisoformat(r["created_at"]),
            date_prescription=date.fromisoformat(r["date_prescription"]), type_prescription=r["type_prescription"],
            prescripteur_nid=r["prescripteur"], patient=PatientIdentity.from_json(json.loads(r["patient"])),
            lignes=[Ligne(**d) for d in json.loads(r["lignes"])], etat=r["etat"], qr=r["qr"],
            updated_at=datetime.fromisoformat(r["updated_at"]) if r["updated_at"] else None,
        )

    def get(self, numero: str) -> Prescription | None:
        row = self.store.execute("SELECT * FROM on_prescriptions WHERE numero = ?", (numero,)).fetchone()
        return self._row(row) if row else None

    def search(self, ins: str | None, debut: date | None, fin: date | None) -> list[Prescription]:
        rows = self.store.query("SELECT * FROM on_prescriptions WHERE ins = ? ORDER BY created_at, numero", (ins,))
        out = [self._row(r) for r in rows]
        return [p for p in out if (debut is None or p.date_prescription >= debut)
                and (fin is None or p.date_prescription <= fin)]

    # -- control ------------------------------------------------------------------------------------

    def set_delivrance(self, numero: str, etat: str, now: datetime, quantites: Sequence[int] | None = None) -> None:
        if etat not in ETATS:
            raise ValueError(f"unknown dispensation state {etat!r}; known: {', '.join(ETATS)}")
        p = self.get(numero)
        if p is None:
            raise ValueError(f"unknown prescription number {numero!r}")
        if quantites is not None:
            if len(quantites) != len(p.lignes) or not all(isinstance(q, int) and q >= 0 for q in quantites):
                raise ValueError(f"quantites: give one non-negative integer per line ({len(p.lignes)} lines)")
            for line, q in zip(p.lignes, quantites, strict=True):
                line.quantite_delivree = q
        elif etat == "DELIVREE":
            for line in p.lignes:
                line.quantite_delivree = line.quantite or 1
        elif etat == "NON_DELIVREE":
            for line in p.lignes:
                line.quantite_delivree = 0
        self.store.execute("UPDATE on_prescriptions SET etat = ?, lignes = ?, updated_at = ? WHERE numero = ?",
                           (etat, json.dumps([asdict(line) for line in p.lignes]), now.isoformat(), numero))

    def state(self) -> dict:
        rows = self.store.query("SELECT * FROM on_prescriptions ORDER BY created_at, numero")
        return {"etats": ETATS, "prescriptions": [self._row(r).summary() for r in rows]}

    def apply(self, body: Any, now: datetime) -> dict:
        usage = ('expected {"delivrance": {"numero": "<22 digits>", "etat": "NON_DELIVREE|PARTIELLEMENT_DELIVREE|'
                 'DELIVREE|ANNULEE", "quantites"?: [<delivered quantity per line>]}} (or a list of them)')
        if not isinstance(body, dict) or set(body) != {"delivrance"}:
            raise ValueError(usage)
        items = body["delivrance"] if isinstance(body["delivrance"], list) else [body["delivrance"]]
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("numero"), str) or "etat" not in item:
                raise ValueError(usage)
            self.set_delivrance(item["numero"], item["etat"], now, item.get("quantites"))
        return self.state()

    def reset(self) -> None:
        self.store.execute("DELETE FROM on_prescriptions")


def png_base64(payload: str) -> str:
    return base64.b64encode(qr_png(payload)).decode("ascii")
