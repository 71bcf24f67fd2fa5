"""ApCV business model: header rules, QR-code tokens, ApCV contexts (SQLite), control state.

Everything here works on plain Python values; ``wire.py`` turns XML into these values and back.
Fault codes, the QR payload format and the context contents are the bench's own choices (public
material is silent): README.md lists them as assumptions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import segno

from simulators.core.store import Store
from simulators.core.teleservice import Headers, TeleserviceError, check_assertion, check_lps, receiver, sender
from simulators.personas import Patient, Personas

ACTION_PREFIX = "urn:ApCV_AUTH:1.0.0:"
OP_AUTH = "authentifierUtilisateurProximite"
OP_RESTITUER = "restituerContexteApCV"
OP_DETRUIRE = "detruireContexteApCV"
OPERATIONS = (OP_AUTH, OP_RESTITUER, OP_DETRUIRE)
VERSION = "1.0"

QR_PREFIX = "APCV1"
QR_TYP = "apcv-qr"
DEFAULT_QR_TTL_S = 300  # 5 minutes
DEFAULT_CONTEXT_TTL_S = 3600  # 1 hour
MAX_DONNEES = 2048
MODE_QRCODE = "QRCODE"

OUTCOMES = {
    "apcv.qr-expire": "authentifierUtilisateurProximite : faute « QR code ApCV expiré » (siram_60 / apcv_011, "
    "codes inventés par le banc)",
    "apcv.contexte-inconnu": "restituer/detruireContexteApCV : faute « contexte ApCV inconnu » (siram_61 / "
    "apcv_020, codes inventés par le banc)",
    "apcv.contexte-expire": "restituer/detruireContexteApCV : faute « contexte ApCV expiré » (siram_61 / apcv_021, "
    "codes inventés par le banc)",
    "apcv.service-indisponible": "toute opération : faute SOAP Receiver siram_40 / apcv_102, service indisponible "
    "(forme de la faute INSi capturée ; code apcv_102 inventé par le banc)",
}


# ----------------------------------------------------------------------------------------------------
# Faults
# ----------------------------------------------------------------------------------------------------


# (subcode, detail code) per failure family; all assumed (see README.md). The platform-level families
# (action, ContexteLPS, assertion, IDAM) are in simulators.core.teleservice.
F_UNAVAILABLE = ("siram_40", "apcv_102")
F_INPUT = ("siram_50", "apcv_001")
F_QR_INVALID = ("siram_60", "apcv_010")
F_QR_EXPIRED = ("siram_60", "apcv_011")
F_QR_USED = ("siram_60", "apcv_012")
F_CTX_UNKNOWN = ("siram_61", "apcv_020")
F_CTX_EXPIRED = ("siram_61", "apcv_021")


def unavailable(reason: str = "Service ApCV temporairement indisponible, reessayer ulterieurement") -> TeleserviceError:
    return receiver(F_UNAVAILABLE, reason)


def qr_expired(expired_at: datetime | None = None) -> TeleserviceError:
    when = f" le {xml_datetime(expired_at)}" if expired_at else ""
    return sender(F_QR_EXPIRED, f"Donnees : QR code ApCV expire{when} ; le patient doit afficher un nouveau QR code "
                                "dans l'Appli carte Vitale")


def context_unknown(context_id: str) -> TeleserviceError:
    return sender(F_CTX_UNKNOWN, f"Contexte ApCV {context_id!r} inconnu ou detruit ; relancer "
                                 "authentifierUtilisateurProximite")


def context_expired(context_id: str, expired_at: datetime | None = None) -> TeleserviceError:
    when = f" le {xml_datetime(expired_at)}" if expired_at else ""
    return sender(F_CTX_EXPIRED, f"Contexte ApCV {context_id!r} expire{when} ; relancer "
                                 "authentifierUtilisateurProximite")


def xml_datetime(dt: datetime) -> str:
    """xs:dateTime in UTC, second precision: 2026-01-10T09:00:00Z."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------------------------------
# Headers (ContexteLPS + wsse:Security; no ContexteBAM)
# ----------------------------------------------------------------------------------------------------


def check_headers(headers: Headers, settings: Mapping[str, Any],
                  clock: Callable[[], datetime] | None = None) -> dict[str, str]:
    """ContexteLPS and PS assertion rules (no ContexteBAM); returns the assertion attributes."""
    check_lps(headers, settings)
    return check_assertion(headers, settings, clock, missing_security="En-tete wsse:Security absent : l'ApCV "
                           "exige l'assertion du professionnel (CPS ou Pro Sante Connect)")


# ----------------------------------------------------------------------------------------------------
# Request bodies
# ----------------------------------------------------------------------------------------------------

_FACTURATION = re.compile(r"[0-9A-Z]{9}")
_SPECIALITE = re.compile(r"\d{2}")
_CONTEXT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _bad(field_name: str, why: str) -> TeleserviceError:
    return sender(F_INPUT, f"{field_name} : {why}")


def check_version(value: str | None, element: str, *, required: bool) -> None:
    if value is None and not required:
        return
    if value != VERSION:
        raise _bad(f"{element}/@version", f"valeur {value!r} invalide, attendu '{VERSION}'")


@dataclass(frozen=True)
class AuthRequest:
    identifiant_facturation: str
    code_specialite: str
    donnees: str

    @classmethod
    def validated(cls, raw: Mapping[str, Any], assertion: Mapping[str, str]) -> AuthRequest:
        check_version(raw.get("version"), "AuthentifierUtilisateurProximiteReq", required=True)
        if not raw.get("has_ps"):
            raise _bad("ProfessionnelSante", "element obligatoire absent")
        fact = raw.get("identifiant_facturation")
        if not fact:
            raise _bad("ProfessionnelSante/IdentifiantFacturation", "valeur obligatoire absente ou vide")
        if not _FACTURATION.fullmatch(fact):
            raise _bad("ProfessionnelSante/IdentifiantFacturation", f"valeur {fact!r} invalide (9 caracteres "
                                                                     "chiffres ou lettres majuscules attendus)")
        spec = raw.get("code_specialite")
        if not spec:
            raise _bad("ProfessionnelSante/CodeSpecialiteAMO", "valeur obligatoire absente ou vide")
        if not _SPECIALITE.fullmatch(spec):
            raise _bad("ProfessionnelSante/CodeSpecialiteAMO", f"valeur {spec!r} invalide (2 chiffres attendus)")
        if fact != assertion.get("identifiantFacturation"):
            raise _bad("ProfessionnelSante/IdentifiantFacturation",
                       f"{fact!r} ne correspond pas a l'identifiantFacturation de l'assertion "
                       f"({assertion.get('identifiantFacturation')!r})")
        donnees = raw.get("donnees")
        if not donnees:
            raise _bad("Donnees", "contenu du QR code ApCV obligatoire absent ou vide")
        if len(donnees) > MAX_DONNEES:
            raise _bad("Donnees", f"longueur {len(donnees)} superieure au maximum de {MAX_DONNEES} caracteres")
        return cls(fact, spec, donnees)


@dataclass(frozen=True)
class ContextRequest:
    context_id: str

    @classmethod
    def validated(cls, raw: Mapping[str, Any], element: str) -> ContextRequest:
        check_version(raw.get("version"), element, required=False)
        if not raw.get("has_contexte"):
            raise _bad("ContexteApCV", "element obligatoire absent")
        value = raw.get("identifiant")
        if not value:
            raise _bad("ContexteApCV/Identifiant", "valeur obligatoire absente ou vide")
        if not _CONTEXT_ID.fullmatch(value):
            raise _bad("ContexteApCV/Identifiant", f"valeur {value[:80]!r} invalide (1 a 64 caracteres "
                                                   "alphanumeriques, '.', '_', ':' ou '-')")
        return cls(value)


# ----------------------------------------------------------------------------------------------------
# QR-code tokens: APCV1.<base64url(JSON claims)>.<base64url(HMAC-SHA256)>
# ----------------------------------------------------------------------------------------------------


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_qr(secret: bytes, claims: Mapping[str, Any]) -> str:
    body = _b64e(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret, f"{QR_PREFIX}.{body}".encode(), hashlib.sha256).digest()
    return f"{QR_PREFIX}.{body}.{_b64e(mac)}"


def unverified_claims(payload: str) -> dict[str, Any]:
    """Claims of a QR payload without checking the MAC (for fault-rule attributes only); {} if unreadable."""
    parts = payload.strip().split(".")
    if len(parts) != 3 or parts[0] != QR_PREFIX:
        return {}
    try:
        claims = json.loads(_b64d(parts[1]))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def verify_qr(secret: bytes, payload: str, now: datetime) -> dict[str, Any]:
    """Claims of a well-formed, authentic and unexpired QR payload; TeleserviceError otherwise."""
    payload = payload.strip()
    parts = payload.split(".")
    if not payload.startswith(QR_PREFIX + ".") or len(parts) != 3:
        raise sender(F_QR_INVALID, f"Donnees : format de QR code ApCV non reconnu (attendu '{QR_PREFIX}.<donnees>."
                                   "<signature>' tel que lu par le scanner)")
    try:
        mac = _b64d(parts[2])
    except (ValueError, binascii.Error):
        mac = b""
    expected = hmac.new(secret, f"{QR_PREFIX}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise sender(F_QR_INVALID, "Donnees : signature du QR code ApCV invalide (QR code altere, mal lu ou non "
                                   "emis par l'Appli carte Vitale)")
    claims = unverified_claims(payload)
    ok = (claims.get("typ") == QR_TYP and claims.get("v") == 1 and isinstance(claims.get("nod"), str)
          and isinstance(claims.get("ddn"), str) and isinstance(claims.get("jti"), str)
          and all(type(claims.get(k)) is int for k in ("rang", "exp")))
    if not ok:
        raise sender(F_QR_INVALID, "Donnees : contenu du QR code ApCV incomplet ou de version non supportee")
    expires = datetime.fromtimestamp(claims["exp"], UTC)
    if now >= expires:
        raise qr_expired(expires)
    return claims


def qr_png(payload: str, scale: int = 4) -> bytes:
    buf = io.BytesIO()
    segno.make(payload, error="m", micro=False).save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------
# Contexts
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    id: str
    patient_id: str
    nir_od: str
    identifiant_facturation: str
    code_specialite: str
    created_at: datetime
    expires_at: datetime
    mode: str = MODE_QRCODE


@dataclass(frozen=True)
class ContextView:
    """A context with the card data and beneficiaries, as restituerContexteApCV returns it."""

    context: Context
    user: Patient
    beneficiaries: tuple[Patient, ...]


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass
class ApcvModel:
    personas: Personas
    store: Store
    settings: Mapping[str, Any] = field(default_factory=dict)

    MIGRATIONS = (
        "CREATE TABLE apcv_secret (id INTEGER PRIMARY KEY CHECK (id = 1), secret TEXT NOT NULL);"
        "CREATE TABLE apcv_qr (nonce TEXT PRIMARY KEY, patient_id TEXT NOT NULL, nir_od TEXT NOT NULL, "
        "issued_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT, context_id TEXT);"
        "CREATE TABLE apcv_contexts (id TEXT PRIMARY KEY, patient_id TEXT NOT NULL, nir_od TEXT NOT NULL, "
        "identifiant_facturation TEXT NOT NULL, code_specialite TEXT NOT NULL, mode TEXT NOT NULL, "
        "created_at TEXT NOT NULL, expires_at TEXT NOT NULL)",
    )

    def migrate(self) -> None:
        self.store.migrate("apcv", list(self.MIGRATIONS))

    @property
    def qr_ttl(self) -> timedelta:
        return timedelta(seconds=int(self.settings.get("qr_ttl_s", DEFAULT_QR_TTL_S)))

    @property
    def context_ttl(self) -> timedelta:
        return timedelta(seconds=int(self.settings.get("context_ttl_s", DEFAULT_CONTEXT_TTL_S)))

    def secret(self) -> bytes:
        configured = self.settings.get("qr_secret")
        if configured:
            return str(configured).encode()
        row = self.store.execute("SELECT secret FROM apcv_secret WHERE id = 1").fetchone()
        if row is None:  # one random key per database, shared by the worker processes
            self.store.execute("INSERT OR IGNORE INTO apcv_secret (id, secret) VALUES (1, ?)", (secrets.token_hex(32),))
            row = self.store.execute("SELECT secret FROM apcv_secret WHERE id = 1").fetchone()
        return bytes.fromhex(row["secret"])

    # -- presenting an ApCV (control API) ----------------------------------------------------------

    def find_patient(self, ref: str) -> Patient:
        ref = ref.strip()
        try:
            patient: Patient | None = self.personas.patient(ref)
        except KeyError:
            patient = self.personas.patient_by_ins(ref)
        if patient is None:
            raise ValueError(f"unknown patient {ref!r}: give a persona id (e.g. 'clerico-come') or its 15-character "
                             "INS")
        if patient.carte_vitale is None:
            with_card = sorted(p.id for p in self.personas.patients if p.carte_vitale)
            raise ValueError(f"patient {patient.id!r} has no carte Vitale, so no Appli carte Vitale; patients with "
                             f"one: {', '.join(with_card)}")
        return patient

    def present(self, ref: str, now: datetime) -> dict[str, Any]:
        """Issue a fresh QR code for the patient's Appli carte Vitale; payload + PNG (base64)."""
        patient = self.find_patient(ref)
        card = patient.carte_vitale
        assert card is not None
        expires = now + self.qr_ttl
        nonce = uuid.uuid4().hex
        claims = {
            "v": 1, "typ": QR_TYP, "nod": card.nir_ouvrant_droit, "rang": card.rang_naissance,
            "ddn": patient.date_naissance.strftime("%Y%m%d"), "jti": nonce,
            "iat": int(now.timestamp()), "exp": int(expires.timestamp()),
        }
        payload = sign_qr(self.secret(), claims)
        self.store.execute(
            "INSERT INTO apcv_qr (nonce, patient_id, nir_od, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (nonce, patient.id, card.nir_ouvrant_droit, now.isoformat(),
             datetime.fromtimestamp(claims["exp"], UTC).isoformat()),
        )
        png = qr_png(payload)
        return {
            "patient_id": patient.id, "ins": patient.ins, "nir_ouvrant_droit": card.nir_ouvrant_droit,
            "rang_naissance": card.rang_naissance, "nonce": nonce, "payload": payload,
            "issued_at": xml_datetime(now), "expires_at": xml_datetime(datetime.fromtimestamp(claims["exp"], UTC)),
            "png_base64": base64.b64encode(png).decode("ascii"),
        }

    def card_of(self, ref: str) -> tuple[Patient, tuple[Patient, ...]]:
        """The carte Vitale the patient is on (the bench has no card reader: its image stands in for a read):
        (the patient, every beneficiary of the card, the insured person first, then by rank)."""
        patient = self.find_patient(ref)
        card = patient.carte_vitale
        assert card is not None
        on_card = self.personas.patients_on_card(card.nir_ouvrant_droit)
        return patient, tuple(sorted(on_card, key=lambda p: (p.ins != card.nir_ouvrant_droit,
                                                              p.carte_vitale.rang_naissance if p.carte_vitale else 0,
                                                              p.id)))

    # -- operations ---------------------------------------------------------------------------------

    def _user_of(self, claims: Mapping[str, Any]) -> Patient:
        for p in self.personas.patients_on_card(claims["nod"]):
            card = p.carte_vitale
            if card and card.rang_naissance == claims["rang"] and p.date_naissance.strftime("%Y%m%d") == claims["ddn"]:
                return p
        raise sender(F_QR_INVALID, "Donnees : aucun beneficiaire de la carte ne correspond au QR code ApCV")

    def authenticate(self, req: AuthRequest, now: datetime, *, force_expired: bool = False) -> Context:
        claims = verify_qr(self.secret(), req.donnees, now)
        if force_expired:
            raise qr_expired(datetime.fromtimestamp(claims["exp"], UTC))
        user = self._user_of(claims)
        context = Context(
            id=str(uuid.uuid4()), patient_id=user.id, nir_od=claims["nod"],
            identifiant_facturation=req.identifiant_facturation, code_specialite=req.code_specialite,
            created_at=now.replace(microsecond=0), expires_at=now.replace(microsecond=0) + self.context_ttl,
        )
        with self.store.transaction() as conn:
            row = conn.execute("SELECT used_at FROM apcv_qr WHERE nonce = ?", (claims["jti"],)).fetchone()
            if row is None:
                raise sender(F_QR_INVALID, "Donnees : QR code ApCV inconnu du service (emis avant une "
                                           "reinitialisation ?) ; afficher un nouveau QR code")
            if row["used_at"] is not None:
                raise sender(F_QR_USED, "Donnees : QR code ApCV deja utilise ; chaque QR code ne sert qu'une "
                                        "fois, le patient doit en afficher un nouveau")
            conn.execute("UPDATE apcv_qr SET used_at = ?, context_id = ? WHERE nonce = ?",
                         (now.isoformat(), context.id, claims["jti"]))
            conn.execute(
                "INSERT INTO apcv_contexts (id, patient_id, nir_od, identifiant_facturation, code_specialite, mode, "
                "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (context.id, context.patient_id, context.nir_od, context.identifiant_facturation,
                 context.code_specialite, context.mode, context.created_at.isoformat(),
                 context.expires_at.isoformat()),
            )
        return context

    def _context(self, context_id: str, facturation: str | None, now: datetime) -> Context:
        row = self.store.execute("SELECT * FROM apcv_contexts WHERE id = ?", (context_id,)).fetchone()
        if row is None or (facturation is not None and row["identifiant_facturation"] != facturation):
            raise context_unknown(context_id)
        context = Context(
            id=row["id"], patient_id=row["patient_id"], nir_od=row["nir_od"],
            identifiant_facturation=row["identifiant_facturation"], code_specialite=row["code_specialite"],
            created_at=_dt(row["created_at"]), expires_at=_dt(row["expires_at"]), mode=row["mode"],
        )
        if now >= context.expires_at:
            raise context_expired(context_id, context.expires_at)
        return context

    def restore(self, context_id: str, facturation: str | None, now: datetime) -> ContextView:
        context = self._context(context_id, facturation, now)
        user = self.personas.patient(context.patient_id)
        on_card = self.personas.patients_on_card(context.nir_od)
        ordered = (user, *(p for p in on_card if p.id != user.id))
        return ContextView(context=context, user=user, beneficiaries=ordered)

    def destroy(self, context_id: str, facturation: str | None, now: datetime) -> Context:
        context = self._context(context_id, facturation, now)
        self.store.execute("DELETE FROM apcv_contexts WHERE id = ?", (context_id,))
        return context

    # -- state --------------------------------------------------------------------------------------

    def state(self, now: datetime) -> dict:
        qrs = [
            {"nonce": r["nonce"], "patient_id": r["patient_id"], "nir_ouvrant_droit": r["nir_od"],
             "issued_at": xml_datetime(_dt(r["issued_at"])), "expires_at": xml_datetime(_dt(r["expires_at"])),
             "used_at": xml_datetime(_dt(r["used_at"])) if r["used_at"] else None, "context_id": r["context_id"]}
            for r in self.store.query("SELECT * FROM apcv_qr ORDER BY issued_at")
        ]
        contexts = [
            {"id": r["id"], "patient_id": r["patient_id"], "nir_ouvrant_droit": r["nir_od"],
             "identifiant_facturation": r["identifiant_facturation"], "mode": r["mode"],
             "created_at": xml_datetime(_dt(r["created_at"])), "expires_at": xml_datetime(_dt(r["expires_at"])),
             "expired": now >= _dt(r["expires_at"])}
            for r in self.store.query("SELECT * FROM apcv_contexts ORDER BY created_at")
        ]
        return {"qr_ttl_s": int(self.qr_ttl.total_seconds()), "context_ttl_s": int(self.context_ttl.total_seconds()),
                "qr_codes": qrs, "contexts": contexts}

    def apply(self, body: Any, now: datetime) -> dict:
        if not isinstance(body, dict) or set(body) != {"present"} or not isinstance(body["present"], str):
            raise ValueError('expected {"present": "<patient id or 15-character INS>"}: issues a QR code of the '
                             "patient's Appli carte Vitale")
        presented = self.present(body["present"], now)
        return {"presented": presented, **self.state(now)}

    def reset(self) -> None:
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM apcv_qr")
            conn.execute("DELETE FROM apcv_contexts")
