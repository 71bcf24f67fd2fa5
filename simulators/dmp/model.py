"""DMP business model: value sets, access rules, registry/repository state in SQLite, patient-side actions.

Everything here works on plain Python values (``wire.py`` turns XML into them and back). RegistryError
codes prefixed ``DMP`` and the TD0.2/TD0.3 statuses are the bench's own assumptions (README.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from dateutil.relativedelta import relativedelta

from simulators.core.clock import iso
from simulators.core.store import Store
from simulators.personas import OID_INS_NIR, OID_INS_NIR_TEST, Personas, nir_key

from .vihf import Vihf

# ----------------------------------------------------------------------------------------------------
# Constants and value sets (protocols.md §2.4-2.5)
# ----------------------------------------------------------------------------------------------------

ST_APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
ST_DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
ST_ARCHIVED = "urn:asip:ci-sis:2010:StatusType:Archived"
ST_DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
STATUSES = (ST_APPROVED, ST_DEPRECATED, ST_ARCHIVED, ST_DELETED)

INS_OIDS = (OID_INS_NIR, OID_INS_NIR_TEST)  # production and test INS-NIR
AUTHORISATION_DURATION = relativedelta(months=6)
INFORM_AFTER = relativedelta(months=1)
VISIBLE_AFTER = relativedelta(months=3)

SCHEME_CLASS = "1.2.250.1.213.1.1.4.1"  # TRE_A03 (JDV_J57)
CLASS_CODES = {"10", "11", "31", "42", "43", "44", "45", "52", "60", "90", "95"}
SIGNATURE_CLASS = "urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1"
SIGNATURE_TYPE = "E1762"
SIGNATURE_FORMAT = "http://www.w3.org/2000/09/xmldsig#"
SCHEME_LOINC = "2.16.840.1.113883.6.1"
SCHEME_TRE_A05 = "1.2.250.1.213.1.1.4.12"
TYPE_CODES = {
    SCHEME_LOINC: {"11488-4", "11490-0", "11502-2", "18748-4", "34133-9", "57833-6", "57828-6", "57832-8",
                   "60591-5", "87273-9", "11506-3", "34112-3", "34794-8", "15507-7", "18842-5", "34749-2",
                   "68604-8", "75497-8"},
    SCHEME_TRE_A05: {"PRESC-BIO", "PRESC-KINE", "PRESC-INF", "PRESC-PEDI", "PRESC-ORTHOPHO", "PRESC-ORTHOPTIE",
                     "PRESC-AAT", "SYNTH", "CERT_DECL", "IMG-KOS"},
}
SCHEME_FORMAT_IHE = "1.3.6.1.4.1.19376.1.2.3"
SCHEME_FORMAT_ASIP = "1.2.250.1.213.1.1.4.2.282"
FORMAT_CODES = {  # subset of JDV_J60: N1 PDF/text and N3 formats the bench's scenarios use
    "urn:ihe:iti:xds-sd:pdf:2008": SCHEME_FORMAT_IHE,
    "urn:ihe:iti:xds-sd:text:2008": SCHEME_FORMAT_IHE,
    "urn:ihe:pharm:pre:2010": SCHEME_FORMAT_IHE,
    "urn:ihe:lab:xd-lab:2008": SCHEME_FORMAT_IHE,
    "urn:ihe:pcc:xphr:2007": SCHEME_FORMAT_IHE,
    "urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013": SCHEME_FORMAT_IHE,
    "urn:asip:ci-sis:vsm:2012": SCHEME_FORMAT_ASIP,
    "urn:asip:ci-sis:ldl-ses:2017": SCHEME_FORMAT_ASIP,
    "urn:asip:ci-sis:cr-bio:2021": SCHEME_FORMAT_ASIP,
    "urn:asip:ci-sis:vac-note:2023": SCHEME_FORMAT_ASIP,
}
SCHEME_CONF_HL7 = "2.16.840.1.113883.5.25"
SCHEME_CONF_DMP = "1.2.250.1.213.1.1.4.13"  # TRE_A07
CONF_HL7 = {"N", "R", "V"}
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
INVISIBLE_REPRESENTANTS = "INVISIBLE_REPRESENTANTS_LEGAUX"
MASQUE_PS = "MASQUE_PS"
CONF_DMP = {INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS, MASQUE_PS}
SCHEME_HCF = "1.2.250.1.71.4.2.4"
_HCF = re.compile(r"^SA\d{2}$")
SCHEME_PRACTICE = "1.2.250.1.213.1.1.4.9"
SCHEME_CONTENT_TYPE = "1.2.250.1.213.2.2"
_DTM = re.compile(r"^\d{4}(\d{2}){0,5}$")
_INS = re.compile(r"^[12]\d{4}[0-9AB]\d{7}\d{2}$")


OUTCOMES = {
    "dmp.indisponible": "faute SOAP Receiver : DMP indisponible (toutes transactions)",
    "dmp.patient-oppose": "le patient s'oppose a l'alimentation / la consultation : RegistryError DMPPatientOpposed",
    "dmp.ps-bloque": "le professionnel appelant est traite comme bloque par le patient",
    "dmp.absent": "le patient n'a pas de DMP (TD0.2 NF, XDSUnknownPatientId)",
    "dmp.ferme": "le DMP du patient est ferme",
    "dmp.autorisation-expiree": "l'autorisation du professionnel est traitee comme expiree",
    "dmp.erreur.XDSRegistryError": "RegistryError XDSRegistryError (erreur interne du registre)",
    "dmp.erreur.XDSRegistryBusy": "RegistryError XDSRegistryBusy",
    "dmp.erreur.XDSRepositoryError": "RegistryError XDSRepositoryError",
    "dmp.erreur.XDSRegistryMetadataError": "RegistryError XDSRegistryMetadataError",
    "dmp.erreur.XDSUnknownPatientId": "RegistryError XDSUnknownPatientId",
    "dmp.erreur.XDSDocumentUniqueIdError": "RegistryError XDSDocumentUniqueIdError",
}


# ----------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegError:
    code: str
    message: str
    location: str = ""


class Refused(Exception):
    """The transaction fails with one or more RegistryErrors (RegistryResponse status Failure)."""

    def __init__(self, errors: Sequence[RegError]) -> None:
        super().__init__("; ".join(f"{e.code}: {e.message}" for e in errors))
        self.errors = list(errors)


def refuse(code: str, message: str, location: str = "") -> Refused:
    return Refused([RegError(code, message, location)])


class Unavailable(Exception):
    """The DMP does not answer the transaction (SOAP Receiver fault)."""


# ----------------------------------------------------------------------------------------------------
# Metadata values parsed from the wire
# ----------------------------------------------------------------------------------------------------


@dataclass
class Code:
    code: str
    scheme: str
    display: str = ""


@dataclass
class DocEntry:
    entry_id: str
    xml: bytes
    mime_type: str = ""
    unique_id: str = ""
    patient_id: str = ""
    lid: str = ""
    title: str = ""
    creation_time: str = ""
    class_code: Code | None = None
    type_code: Code | None = None
    format_code: Code | None = None
    confidentiality: list[Code] = field(default_factory=list)
    hcf_code: Code | None = None
    practice_code: Code | None = None
    author_nid: str = ""
    hash: str = ""
    size: str = ""
    content: bytes | None = None
    cda: dict[str, str] = field(default_factory=dict)  # set_id, version_number, id (from a CDA document)

    @property
    def is_signature(self) -> bool:
        return self.class_code is not None and self.class_code.code == SIGNATURE_CLASS


@dataclass
class SubmissionSet:
    entry_id: str
    xml: bytes
    unique_id: str = ""
    source_id: str = ""
    patient_id: str = ""
    submission_time: str = ""
    content_type: Code | None = None
    author_nid: str = ""


@dataclass
class Association:
    id: str
    type: str
    source: str
    target: str
    slots: dict[str, list[str]] = field(default_factory=dict)

    @property
    def short_type(self) -> str:
        return self.type.rsplit(":", 1)[-1]


@dataclass
class Submission:
    submission_set: SubmissionSet | None
    documents: list[DocEntry]
    associations: list[Association]
    extra_documents: list[str] = field(default_factory=list)  # Document parts without metadata


@dataclass
class StoredQuery:
    query_id: str
    params: dict[str, list[str]]
    return_type: str = "LeafClass"


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------


def dtm14(value: str) -> str:
    """XDS DTM (YYYY[MM[DD[hh[mm[ss]]]]]) padded to 14 digits, for comparisons."""
    v = value.strip()
    return v + "00000000000000"[len(v):] if len(v) < 14 else v[:14]


def dtm_now(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def split_code(value: str) -> tuple[str, str | None]:
    """Stored-query code value ``code^^scheme`` -> (code, scheme)."""
    parts = value.split("^")
    return parts[0], (parts[2] if len(parts) > 2 and parts[2] else None)


def check_ins(ins: str, oid: str, where: str) -> RegError | None:
    if oid not in INS_OIDS:
        return RegError("XDSUnknownPatientId", f"{where} : OID {oid!r} n'est pas un OID d'INS-NIR accepte par le "
                                               f"DMP ({' ou '.join(INS_OIDS)})", where)
    if not _INS.match(ins or ""):
        return RegError("XDSUnknownPatientId", f"{where} : INS {ins!r} mal forme (15 caracteres attendus)", where)
    try:
        if nir_key(ins[:13]) != ins[13:]:
            return RegError("XDSUnknownPatientId", f"{where} : cle de l'INS {ins!r} incorrecte", where)
    except ValueError:
        return RegError("XDSUnknownPatientId", f"{where} : INS {ins!r} invalide", where)
    return None


# ----------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------

MIGRATIONS = (
    """
    CREATE TABLE dmp_patients (ins TEXT PRIMARY KEY, oid TEXT NOT NULL, status TEXT NOT NULL, persona_id TEXT,
        closed_at TEXT, closing_reason TEXT);
    CREATE TABLE dmp_blocked (ins TEXT NOT NULL, national_id TEXT NOT NULL, since TEXT NOT NULL,
        PRIMARY KEY (ins, national_id));
    CREATE TABLE dmp_authorisations (ins TEXT NOT NULL, national_id TEXT NOT NULL, status TEXT NOT NULL,
        granted_at TEXT, expires_at TEXT, medecin_traitant INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL,
        PRIMARY KEY (ins, national_id));
    CREATE TABLE dmp_documents (entry_uuid TEXT PRIMARY KEY, lid TEXT NOT NULL, unique_id TEXT NOT NULL UNIQUE,
        ins TEXT NOT NULL, patient_oid TEXT NOT NULL, status TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 1,
        creation_time TEXT NOT NULL, submitted_at TEXT NOT NULL, author_nid TEXT NOT NULL,
        class_code TEXT, type_code TEXT, type_scheme TEXT, format_code TEXT, hcf_code TEXT, practice_code TEXT,
        confidentiality TEXT NOT NULL, mime_type TEXT NOT NULL, title TEXT, hash TEXT, size INTEGER,
        set_id TEXT, version_number INTEGER, is_signature INTEGER NOT NULL DEFAULT 0,
        invisible_patient INTEGER NOT NULL DEFAULT 0, invisible_since TEXT, informed INTEGER NOT NULL DEFAULT 0,
        masked_ps INTEGER NOT NULL DEFAULT 0, hidden_by_patient INTEGER NOT NULL DEFAULT 0,
        ss_uuid TEXT, replaces TEXT, replaced_by TEXT, added_by_patient INTEGER NOT NULL DEFAULT 0,
        xml BLOB NOT NULL, updated_at TEXT NOT NULL);
    CREATE INDEX dmp_documents_find ON dmp_documents (ins, status, creation_time);
    CREATE INDEX dmp_documents_lid ON dmp_documents (lid);
    CREATE INDEX dmp_documents_invisible ON dmp_documents (invisible_since) WHERE invisible_patient = 1;
    CREATE TABLE dmp_contents (unique_id TEXT PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE dmp_submission_sets (entry_uuid TEXT PRIMARY KEY, unique_id TEXT NOT NULL UNIQUE,
        ins TEXT NOT NULL, source_id TEXT, submission_time TEXT NOT NULL, author_nid TEXT, content_type TEXT,
        status TEXT NOT NULL, xml BLOB NOT NULL);
    CREATE INDEX dmp_ss_find ON dmp_submission_sets (ins, submission_time);
    CREATE TABLE dmp_associations (id TEXT PRIMARY KEY, type TEXT NOT NULL, source TEXT NOT NULL,
        target TEXT NOT NULL, ss_uuid TEXT);
    CREATE INDEX dmp_assoc_source ON dmp_associations (source);
    CREATE TABLE dmp_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, ins TEXT NOT NULL,
        kind TEXT NOT NULL, document TEXT, national_id TEXT, detail TEXT);
    CREATE INDEX dmp_events_ins ON dmp_events (ins, seq);
    CREATE TABLE dmp_meta (key TEXT PRIMARY KEY, value TEXT)
    """,
    # pre-rendered ITI-18 ExtrinsicObject (status, version, confidentiality, size/hash applied), refreshed on write
    "ALTER TABLE dmp_documents ADD COLUMN rendered BLOB",
)

PATIENT_NOTIFIED = {"document_ajoute", "information_document_invisible", "document_rendu_visible",
                    "acces_bris_de_glace", "acces_centre_15", "autorisation_ajoutee", "document_supprime"}


_FIND_COLUMNS = ("entry_uuid, lid, unique_id, ins, status, version, author_nid, confidentiality, masked_ps, "
                 "hidden_by_patient, rendered")


def _row_dict(row: Any) -> dict:
    return {k: row[k] for k in row.keys()}  # noqa: SIM118 (sqlite3.Row)


@dataclass
class Patient:
    ins: str
    oid: str
    status: str  # ouvert | ferme
    closed_at: str | None = None
    closing_reason: str | None = None


# ITI-18 stored queries the DMP answers (their ids are those of IHE ITI TF-2a, Registry Stored Query)
Q_FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
Q_GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
Q_FIND_SUBMISSION_SETS = "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9"

# a document row -> its ITI-18 ExtrinsicObject (wire.document_element_bytes)
RenderEntry = Callable[[dict, str], bytes]


class Seeds(Protocol):
    """Where documents come from when no LGC sends them (the `seed` module)."""

    def documents(self, personas: Personas, now: datetime) -> Iterable[DocEntry]:
        """The personas' initial DMP documents."""

    def patient_document(self, ins: str, oid: str, spec: dict[str, Any], now: datetime) -> DocEntry:
        """A document the patient adds from Mon espace santé (control API)."""


class DmpModel:
    """The DMP's rules and state. What turns rows into bytes (`render`) and where documents come from when no LGC
    sends them (`seeds`) are given by the app: the model imports neither `wire` nor `seed`, which build on it."""

    def __init__(self, personas: Personas, store: Store, settings: Mapping[str, Any] | None = None, *,
                 render: RenderEntry, seeds: Seeds) -> None:
        self.personas = personas
        self.store = store
        self.settings = dict(settings or {})
        self.repository_id = str(self.settings.get("repository_unique_id") or "1.2.250.1.213.4.1.1.2")
        self.render = render
        self.seeds = seeds

    # -- lifecycle ----------------------------------------------------------------------------------

    def migrate(self, now: datetime) -> None:
        self.store.migrate("dmp", list(MIGRATIONS))
        with self.store.transaction() as conn:
            seeded = conn.execute("SELECT value FROM dmp_meta WHERE key = 'seeded'").fetchone()
            if not seeded:
                self._seed(conn, now)

    def reset(self, now: datetime) -> None:
        with self.store.transaction() as conn:
            for table in ("dmp_patients", "dmp_blocked", "dmp_authorisations", "dmp_documents", "dmp_contents",
                          "dmp_submission_sets", "dmp_associations", "dmp_events", "dmp_meta"):
                conn.execute(f"DELETE FROM {table}")
            self._seed(conn, now)

    def _seed(self, conn: Any, now: datetime) -> None:
        for p in self.personas.patients:
            if not p.ins or p.dmp.status == "absent" or p.dmp_oid not in INS_OIDS:
                continue
            conn.execute("INSERT OR REPLACE INTO dmp_patients (ins, oid, status, persona_id, closed_at) "
                         "VALUES (?, ?, ?, ?, ?)", (p.ins, p.dmp_oid, p.dmp.status, p.id,
                                                    iso(now) if p.dmp.status == "ferme" else None))
            for nid in p.dmp.blocked_professionals:
                conn.execute("INSERT OR REPLACE INTO dmp_blocked VALUES (?, ?, ?)", (p.ins, nid, iso(now)))
        for doc in self.seeds.documents(self.personas, now):
            self._insert_document(conn, doc, now, ss_uuid=None, added_by_patient=False)
        conn.execute("INSERT OR REPLACE INTO dmp_meta VALUES ('seeded', ?)", (iso(now),))

    # -- patients, authorisations ------------------------------------------------------------------

    def patient(self, ins: str) -> Patient | None:
        row = self.store.execute("SELECT * FROM dmp_patients WHERE ins = ?", (ins,)).fetchone()
        if row is None:
            return None
        return Patient(row["ins"], row["oid"], row["status"], row["closed_at"], row["closing_reason"])

    def is_blocked(self, ins: str, national_id: str) -> bool:
        return self.store.execute("SELECT 1 FROM dmp_blocked WHERE ins = ? AND national_id = ?",
                                  (ins, national_id)).fetchone() is not None

    def authorisation(self, ins: str, national_id: str, now: datetime) -> dict:
        row = self.store.execute("SELECT * FROM dmp_authorisations WHERE ins = ? AND national_id = ?",
                                 (ins, national_id)).fetchone()
        if row is None:
            return {"status": "aucune", "expires_at": None, "granted_at": None, "medecin_traitant": False}
        status = row["status"]
        if status == "valide" and row["expires_at"] and iso(now) >= row["expires_at"]:
            status = "expiree"
        return {"status": status, "expires_at": row["expires_at"], "granted_at": row["granted_at"],
                "medecin_traitant": bool(row["medecin_traitant"])}

    def existence(self, vihf: Vihf, ins: str, oid: str, now: datetime, outcome: str | None) -> dict:
        """TD0.2: what the DMP says about the patient and the calling professional."""
        bad = check_ins(ins, oid, "patientIdentifier")
        if bad:
            return {"found": False, "error": bad.message}
        if ins != vihf.patient_ins:  # as TD0.3 and the XDS transactions: one patient per request and token
            return {"found": False, "error": f"Le patient de la requete ({ins}) differe de la ressource du VIHF "
                                             f"({vihf.patient_ins})"}
        patient = self.patient(ins)
        if outcome == "dmp.absent" or patient is None:
            return {"found": False}
        status = "ferme" if outcome == "dmp.ferme" else patient.status
        auth = self.authorisation(ins, vihf.national_id, now)
        if outcome == "dmp.autorisation-expiree" and auth["status"] == "valide":
            auth["status"] = "expiree"
        if outcome == "dmp.patient-oppose":
            auth["status"] = "refusee"
        blocked = outcome == "dmp.ps-bloque" or self.is_blocked(ins, vihf.national_id)
        persona = self.personas.patient_by_ins(ins)
        return {"found": True, "ins": ins, "oid": patient.oid, "status": status, "closed_at": patient.closed_at,
                "closing_reason": patient.closing_reason, "authorisation": auth, "blocked": blocked,
                "persona": persona}

    def set_authorisation(self, vihf: Vihf, ins: str, action: str, medecin_traitant: bool, now: datetime,
                          outcome: str | None) -> dict:
        """TD0.3: AJOUT (6-month authorisation) or RETRAIT. Raises Refused."""
        patient = self._patient_for(ins, vihf, outcome, feeding=True)
        current = self.authorisation(ins, vihf.national_id, now)
        if action == "AJOUT":
            if current["status"] == "refusee":
                raise refuse("DMPAuthorizationDenied", "Le patient a refuse l'acces de ce professionnel a son DMP")
            expires = iso(now + AUTHORISATION_DURATION)
            with self.store.transaction() as conn:
                conn.execute(
                    "INSERT INTO dmp_authorisations (ins, national_id, status, granted_at, expires_at, "
                    "medecin_traitant, updated_at) VALUES (?, ?, 'valide', ?, ?, ?, ?) ON CONFLICT(ins, national_id)"
                    " DO UPDATE SET status='valide', granted_at=excluded.granted_at, expires_at=excluded.expires_at,"
                    " medecin_traitant=excluded.medecin_traitant, updated_at=excluded.updated_at",
                    (patient.ins, vihf.national_id, iso(now), expires, int(medecin_traitant), iso(now)))
                self._event(conn, now, patient.ins, "autorisation_ajoutee", national_id=vihf.national_id,
                            detail={"expires_at": expires, "medecin_traitant": medecin_traitant})
        else:
            with self.store.transaction() as conn:
                conn.execute("DELETE FROM dmp_authorisations WHERE ins = ? AND national_id = ?",
                             (patient.ins, vihf.national_id))
                self._event(conn, now, patient.ins, "autorisation_retiree", national_id=vihf.national_id)
        return self.authorisation(ins, vihf.national_id, now)

    # -- access rules ------------------------------------------------------------------------------

    def _patient_for(self, ins: str, vihf: Vihf, outcome: str | None, *, feeding: bool) -> Patient:
        patient = None if outcome == "dmp.absent" else self.patient(ins)
        if patient is None:
            raise refuse("XDSUnknownPatientId", f"Aucun DMP pour le patient INS {ins}", "patientId")
        if patient.status != "ouvert" or outcome == "dmp.ferme":
            raise refuse("DMPClosed", f"Le DMP du patient INS {ins} est ferme", "patientId")
        if outcome == "dmp.ps-bloque" or self.is_blocked(ins, vihf.national_id):
            raise refuse("DMPBlockedProfessional",
                         f"Le patient a bloque l'acces du professionnel {vihf.national_id} a son DMP")
        if outcome == "dmp.patient-oppose":
            what = "l'alimentation de" if feeding else "la consultation de"
            raise refuse("DMPPatientOpposed", f"Le patient s'oppose a {what} son DMP")
        return patient

    def check_consultation(self, vihf: Vihf, ins: str, now: datetime, outcome: str | None) -> Patient:
        patient = self._patient_for(ins, vihf, outcome, feeding=False)
        if vihf.purpose in ("bris_de_glace", "centre_15"):
            kind = "acces_bris_de_glace" if vihf.purpose == "bris_de_glace" else "acces_centre_15"
            with self.store.transaction() as conn:
                self._event(conn, now, ins, kind, national_id=vihf.national_id)
            return patient
        auth = self.authorisation(ins, vihf.national_id, now)
        if outcome == "dmp.autorisation-expiree" and auth["status"] == "valide":
            auth["status"] = "expiree"
        if auth["status"] != "valide":
            raise refuse("DMPAuthorizationRequired",
                         f"Consultation refusee : autorisation d'acces du professionnel {vihf.national_id} "
                         f"{auth['status']} (mode d'acces normal)")
        return patient

    # -- simulated time ----------------------------------------------------------------------------

    def tick(self, now: datetime) -> None:
        """Apply the time-based rules: patient informed at 1 month, visible at 3 months."""
        inform_cut = iso(now - INFORM_AFTER)
        visible_cut = iso(now - VISIBLE_AFTER)
        rows = self.store.query(
            "SELECT entry_uuid, ins, invisible_since, informed, confidentiality FROM dmp_documents "
            "WHERE invisible_patient = 1 AND invisible_since <= ?", (inform_cut,))
        if not rows:
            return
        with self.store.transaction() as conn:
            for r in rows:
                since = datetime.fromisoformat(r["invisible_since"].replace("Z", "+00:00"))
                still = conn.execute("SELECT informed, invisible_patient FROM dmp_documents WHERE entry_uuid = ?",
                                     (r["entry_uuid"],)).fetchone()
                if still is None or not still["invisible_patient"]:
                    continue
                if not still["informed"]:
                    conn.execute("UPDATE dmp_documents SET informed = 1 WHERE entry_uuid = ?", (r["entry_uuid"],))
                    self._event(conn, since + INFORM_AFTER, r["ins"], "information_document_invisible",
                                document=r["entry_uuid"],
                                detail={"visible_le": iso(since + VISIBLE_AFTER)})
                if r["invisible_since"] <= visible_cut:
                    conf = [c for c in json.loads(r["confidentiality"]) if c[0] != INVISIBLE_PATIENT]
                    conn.execute("UPDATE dmp_documents SET invisible_patient = 0, confidentiality = ?, "
                                 "updated_at = ? WHERE entry_uuid = ?",
                                 (json.dumps(conf), iso(now), r["entry_uuid"]))
                    self._refresh(conn, r["entry_uuid"])
                    self._event(conn, since + VISIBLE_AFTER, r["ins"], "document_rendu_visible",
                                document=r["entry_uuid"], detail={"automatique": True})

    # -- ITI-41 ------------------------------------------------------------------------------------

    def provide_and_register(self, vihf: Vihf, sub: Submission, now: datetime, outcome: str | None) -> None:
        errors: list[RegError] = []
        ss = sub.submission_set
        if ss is None:
            raise refuse("XDSRegistryMetadataError", "RegistryPackage SubmissionSet absent", "SubmissionSet")
        errors += self._check_submission_set(ss)
        docs = sub.documents
        if not docs:
            errors.append(RegError("XDSRegistryMetadataError", "Aucun DocumentEntry (ExtrinsicObject) soumis"))
        for doc_id in sub.extra_documents:
            errors.append(RegError("XDSMissingDocumentMetadata",
                                   f"Document {doc_id} transmis sans ExtrinsicObject correspondant", doc_id))
        for doc in docs:
            errors += self._check_document(doc, ss)
        signatures = [d for d in docs if d.is_signature]
        signs = [a for a in sub.associations if a.short_type == "signs"]
        if not signatures:
            errors.append(RegError("XDSRegistryMetadataError",
                                   "Document de signature XAdES (classCode urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1) "
                                   "absent de la soumission", "Signature"))
        elif not any(a.source in {s.entry_id for s in signatures} and a.target == ss.entry_id for a in signs):
            errors.append(RegError("XDSRegistryMetadataError", "Association signs (signature -> SubmissionSet) "
                                                               "absente", "Signature"))
        members = {a.target for a in sub.associations if a.short_type == "HasMember" and a.source == ss.entry_id}
        for doc in docs:
            if doc.entry_id not in members:
                errors.append(RegError("XDSRegistryMetadataError",
                                       f"DocumentEntry {doc.entry_id} non rattache au SubmissionSet (HasMember)",
                                       doc.entry_id))
        replacements: list[tuple[DocEntry, dict]] = []
        for a in sub.associations:
            if a.short_type not in ("HasMember", "signs", "RPLC"):
                errors.append(RegError("XDSRegistryMetadataError", f"Type d'association {a.type!r} non supporte "
                                                                   "par le DMP en ITI-41", a.id))
            if a.short_type == "RPLC":
                doc = next((d for d in docs if d.entry_id == a.source), None)
                if doc is None:
                    errors.append(RegError("XDSRegistryMetadataError",
                                           f"Association RPLC {a.id} : sourceObject {a.source} n'est pas un "
                                           "DocumentEntry de la soumission", a.id))
                    continue
                old = self.store.execute("SELECT * FROM dmp_documents WHERE entry_uuid = ?", (a.target,)).fetchone()
                if old is None:
                    errors.append(RegError("UnresolvedReferenceException",
                                           f"Remplacement d'un document inconnu : {a.target} n'existe pas dans le "
                                           "registre", a.target))
                    continue
                replacements.append((doc, _row_dict(old)))
        if errors:
            raise Refused(errors)
        # patient and access
        ins, _oid = _cx(ss.patient_id)
        if vihf.patient_ins != ins:
            raise refuse("XDSPatientIdDoesNotMatch", f"Le patient de la soumission ({ins}) differe de la ressource "
                                                     f"du VIHF ({vihf.patient_ins})", "patientId")
        self._patient_for(ins, vihf, outcome, feeding=True)
        self._forced(outcome)
        for doc, old in replacements:
            errors += self._check_replacement(vihf, doc, old, ins)
        for doc in docs:
            exists = self.store.execute("SELECT 1 FROM dmp_documents WHERE unique_id = ?", (doc.unique_id,)).fetchone()
            if exists:
                errors.append(RegError("XDSDocumentUniqueIdError",
                                       f"uniqueId {doc.unique_id} deja present dans le DMP", doc.entry_id))
        if self.store.execute("SELECT 1 FROM dmp_submission_sets WHERE unique_id = ?", (ss.unique_id,)).fetchone():
            errors.append(RegError("XDSRegistryDuplicateUniqueIdInMessage",
                                   f"SubmissionSet uniqueId {ss.unique_id} deja enregistre", ss.entry_id))
        if errors:
            raise Refused(errors)
        with self.store.transaction() as conn:
            conn.execute("INSERT INTO dmp_submission_sets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (ss.entry_id, ss.unique_id, ins, ss.source_id, dtm_now(now), vihf.national_id,
                          ss.content_type.code if ss.content_type else None, ST_APPROVED, ss.xml))
            for doc in docs:
                self._insert_document(conn, doc, now, ss_uuid=ss.entry_id, author_nid=vihf.national_id)
                conn.execute("INSERT OR REPLACE INTO dmp_contents VALUES (?, ?)", (doc.unique_id, doc.content))
            for a in sub.associations:
                conn.execute("INSERT OR REPLACE INTO dmp_associations VALUES (?, ?, ?, ?, ?)",
                             (a.id, a.type, a.source, a.target, ss.entry_id))
            for doc, old in replacements:
                conn.execute("UPDATE dmp_documents SET status = ?, replaced_by = ?, updated_at = ? "
                             "WHERE entry_uuid = ?", (ST_DEPRECATED, doc.entry_id, iso(now), old["entry_uuid"]))
                conn.execute("UPDATE dmp_documents SET lid = ?, version = ?, replaces = ? WHERE entry_uuid = ?",
                             (old["lid"], old["version"] + 1, old["entry_uuid"], doc.entry_id))
                self._refresh(conn, old["entry_uuid"])
                self._refresh(conn, doc.entry_id)
                self._event(conn, now, ins, "document_remplace", document=old["entry_uuid"],
                            national_id=vihf.national_id, detail={"par": doc.entry_id})
            for doc in docs:
                if doc.is_signature:
                    continue
                invisible = any(c.code == INVISIBLE_PATIENT for c in doc.confidentiality)
                self._event(conn, now, ins, "document_ajoute", document=doc.entry_id, national_id=vihf.national_id,
                            detail={"titre": doc.title, "visible_patient": not invisible})

    def _forced(self, outcome: str | None) -> None:
        if outcome and outcome.startswith("dmp.erreur."):
            code = outcome.removeprefix("dmp.erreur.")
            raise refuse(code, f"Erreur {code} forcee par le banc de test")

    def _check_submission_set(self, ss: SubmissionSet) -> list[RegError]:
        errs = []
        if not ss.unique_id:
            errs.append(RegError("XDSRegistryMetadataError", "SubmissionSet.uniqueId absent", ss.entry_id))
        if not ss.source_id:
            errs.append(RegError("XDSRegistryMetadataError", "SubmissionSet.sourceId absent", ss.entry_id))
        if not ss.submission_time or not _DTM.match(ss.submission_time):
            errs.append(RegError("XDSRegistryMetadataError", "SubmissionSet : slot submissionTime absent ou invalide",
                                 ss.entry_id))
        if ss.content_type is None or ss.content_type.scheme != SCHEME_CONTENT_TYPE:
            errs.append(RegError("XDSRegistryMetadataError", "SubmissionSet.contentTypeCode absent ou hors "
                                                             f"JDV_J59 (schema {SCHEME_CONTENT_TYPE})", ss.entry_id))
        errs += self._check_patient(ss.patient_id, f"SubmissionSet {ss.entry_id}.patientId")
        return errs

    def _check_patient(self, cx: str, where: str) -> list[RegError]:
        parsed = _cx_or_none(cx)
        if parsed is None:
            return [RegError("XDSUnknownPatientId", f"{where} {cx!r} : format INS^^^&OID&ISO^NH attendu", where)]
        bad = check_ins(parsed[0], parsed[1], where)
        return [bad] if bad else []

    def _check_document(self, doc: DocEntry, ss: SubmissionSet) -> list[RegError]:
        where = f"DocumentEntry {doc.entry_id}"
        errs: list[RegError] = []

        def meta(message: str) -> None:
            errs.append(RegError("XDSRegistryMetadataError", f"{where} : {message}", doc.entry_id))

        if doc.content is None:
            errs.append(RegError("XDSMissingDocument", f"{where} : contenu (Document) absent", doc.entry_id))
        if not doc.unique_id:
            meta("uniqueId absent")
        if not doc.mime_type:
            meta("mimeType absent")
        if not doc.creation_time or not _DTM.match(doc.creation_time):
            meta("slot creationTime absent ou invalide (format AAAAMMJJ[hhmmss])")
        errs += self._check_patient(doc.patient_id, f"{where}.patientId")
        if doc.patient_id and ss.patient_id and doc.patient_id != ss.patient_id:
            errs.append(RegError("XDSPatientIdDoesNotMatch", f"{where} : patientId {doc.patient_id} different de "
                                                             f"celui du SubmissionSet {ss.patient_id}", doc.entry_id))
        if doc.content is not None and doc.hash and doc.hash.lower() != _sha1(doc.content):
            errs.append(RegError("XDSRepositoryMetadataError", f"{where} : hash {doc.hash} ne correspond pas au "
                                                               "contenu (SHA-1)", doc.entry_id))
        if doc.content is not None and doc.size and doc.size != str(len(doc.content)):
            errs.append(RegError("XDSRepositoryMetadataError", f"{where} : size {doc.size} ne correspond pas au "
                                                               f"contenu ({len(doc.content)} octets)", doc.entry_id))
        if doc.is_signature:
            if not doc.type_code or doc.type_code.code != SIGNATURE_TYPE:
                meta(f"typeCode du document de signature attendu {SIGNATURE_TYPE}")
            if not doc.format_code or doc.format_code.code != SIGNATURE_FORMAT:
                meta(f"formatCode du document de signature attendu {SIGNATURE_FORMAT}")
            return errs
        c = doc.class_code
        if c is None:
            meta("classCode absent")
        elif c.scheme != SCHEME_CLASS or c.code not in CLASS_CODES:
            meta(f"classCode {c.code}^{c.scheme} hors JDV_J57-ClassCode-DMP")
        t = doc.type_code
        if t is None:
            meta("typeCode absent")
        elif t.code not in TYPE_CODES.get(t.scheme, ()):
            meta(f"typeCode {t.code}^{t.scheme} hors JDV_J66-TypeCode-DMP")
        f = doc.format_code
        if f is None:
            meta("formatCode absent")
        elif FORMAT_CODES.get(f.code) != f.scheme:
            meta(f"formatCode {f.code}^{f.scheme} hors JDV_J60-FormatCode-DMP")
        hl7 = [x for x in doc.confidentiality if x.scheme == SCHEME_CONF_HL7]
        others = [x for x in doc.confidentiality if x.scheme != SCHEME_CONF_HL7]
        if len(hl7) != 1 or hl7[0].code not in CONF_HL7:
            meta(f"confidentialityCode : exactement un code N, R ou V du systeme {SCHEME_CONF_HL7} attendu")
        for x in others:
            if x.scheme != SCHEME_CONF_DMP or x.code not in CONF_DMP:
                meta(f"confidentialityCode {x.code}^{x.scheme} hors JDV_J58-ConfidentialityCode-DMP")
        if len(doc.confidentiality) > 4:
            meta("confidentialityCode : 4 codes au plus")
        h = doc.hcf_code
        if h is None:
            meta("healthcareFacilityTypeCode absent")
        elif h.scheme != SCHEME_HCF or not _HCF.match(h.code):
            meta(f"healthcareFacilityTypeCode {h.code}^{h.scheme} hors JDV_J61 (SAxx^{SCHEME_HCF})")
        p = doc.practice_code
        if p is None:
            meta("practiceSettingCode absent")
        elif p.scheme != SCHEME_PRACTICE:
            meta(f"practiceSettingCode {p.code}^{p.scheme} hors JDV_J04 (systeme {SCHEME_PRACTICE})")
        return errs

    def _check_replacement(self, vihf: Vihf, doc: DocEntry, old: dict, ins: str) -> list[RegError]:
        errs = []
        if old["ins"] != ins:
            errs.append(RegError("XDSPatientIdDoesNotMatch", f"Le document remplace {old['entry_uuid']} appartient a "
                                                             "un autre patient", old["entry_uuid"]))
        if old["status"] != ST_APPROVED:
            errs.append(RegError("XDSRegistryMetadataError", f"Le document remplace {old['entry_uuid']} n'est pas au "
                                                             f"statut Approved ({old['status']})", old["entry_uuid"]))
        if old["author_nid"] != vihf.national_id:
            errs.append(RegError("DMPNotAuthor", f"Seul l'auteur ({old['author_nid']}) peut remplacer le document "
                                                 f"{old['entry_uuid']}", old["entry_uuid"]))
        if old["set_id"] and doc.cda.get("set_id") and old["set_id"] != doc.cda["set_id"]:
            errs.append(RegError("XDSRegistryMetadataError", f"setId du document de remplacement "
                                                             f"({doc.cda['set_id']}) different de celui du document "
                                                             f"remplace ({old['set_id']})", doc.entry_id))
        new_v, old_v = doc.cda.get("version_number"), old["version_number"]
        if old_v is not None and new_v is not None and int(new_v) <= int(old_v):
            errs.append(RegError("XDSRegistryMetadataError", f"versionNumber {new_v} du remplacant doit etre "
                                                             f"superieur a {old_v}", doc.entry_id))
        return errs

    def _insert_document(self, conn: Any, doc: DocEntry, now: datetime, *, ss_uuid: str | None,
                         author_nid: str | None = None, added_by_patient: bool = False) -> None:
        ins, oid = _cx(doc.patient_id)
        conf = [[c.code, c.scheme] for c in doc.confidentiality]
        invisible = any(c.code == INVISIBLE_PATIENT for c in doc.confidentiality)
        masked = any(c.code == MASQUE_PS for c in doc.confidentiality)
        version_number = doc.cda.get("version_number")
        conn.execute(
            "INSERT INTO dmp_documents (entry_uuid, lid, unique_id, ins, patient_oid, status, version, creation_time,"
            " submitted_at, author_nid, class_code, type_code, type_scheme, format_code, hcf_code, practice_code,"
            " confidentiality, mime_type, title, hash, size, set_id, version_number, is_signature, invisible_patient,"
            " invisible_since, masked_ps, ss_uuid, added_by_patient, xml, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (doc.entry_id, doc.entry_id, doc.unique_id, ins, oid, ST_APPROVED, dtm14(doc.creation_time), iso(now),
             author_nid or doc.author_nid, _c(doc.class_code), _c(doc.type_code),
             doc.type_code.scheme if doc.type_code else None, _c(doc.format_code), _c(doc.hcf_code),
             _c(doc.practice_code), json.dumps(conf), doc.mime_type, doc.title,
             _sha1(doc.content) if doc.content is not None else doc.hash,
             len(doc.content) if doc.content is not None else None, doc.cda.get("set_id"),
             int(version_number) if version_number and version_number.isdigit() else None, int(doc.is_signature),
             int(invisible), iso(now) if invisible else None, int(masked), ss_uuid, int(added_by_patient),
             doc.xml, iso(now)))
        self._refresh(conn, doc.entry_id)
        if doc.content is not None:
            conn.execute("INSERT OR REPLACE INTO dmp_contents VALUES (?, ?)", (doc.unique_id, doc.content))

    def _refresh(self, conn: Any, entry_uuid: str) -> None:
        """Re-render the ITI-18 form of a document after any change of its registry metadata."""
        row = conn.execute("SELECT * FROM dmp_documents WHERE entry_uuid = ?", (entry_uuid,)).fetchone()
        if row is not None:
            conn.execute("UPDATE dmp_documents SET rendered = ? WHERE entry_uuid = ?",
                         (self.render(_row_dict(row), self.repository_id), entry_uuid))

    # -- ITI-18 ------------------------------------------------------------------------------------

    def stored_query(self, vihf: Vihf, q: StoredQuery, now: datetime, outcome: str | None) -> list[dict]:
        """Returns rows (documents or submission sets, with ``kind``) the caller may see. Raises Refused."""
        if q.query_id == Q_FIND_DOCUMENTS:
            ins = self._query_patient(q, "$XDSDocumentEntryPatientId")
            statuses = self._required(q, "$XDSDocumentEntryStatus")
            self._check_query_access(vihf, ins, now, outcome)
            return self._find_documents(vihf, ins, statuses, q.params)
        if q.query_id == Q_GET_DOCUMENTS:
            uuids = q.params.get("$XDSDocumentEntryEntryUUID") or q.params.get("$XDSDocumentEntryUUID") or []
            uids = q.params.get("$XDSDocumentEntryUniqueId") or []
            if bool(uuids) == bool(uids):
                raise refuse("XDSStoredQueryParamNumber", "GetDocuments : donner soit $XDSDocumentEntryEntryUUID "
                                                          "soit $XDSDocumentEntryUniqueId")
            col, values = ("entry_uuid", uuids) if uuids else ("unique_id", uids)
            marks = ",".join("?" * len(values))
            rows = self.store.query(f"SELECT * FROM dmp_documents WHERE {col} IN ({marks}) "
                                    f"AND status != ?", (*values, ST_DELETED))
            for ins in {r["ins"] for r in rows}:
                if ins != vihf.patient_ins:
                    raise refuse("XDSPatientIdDoesNotMatch", "Document d'un autre patient que la ressource du VIHF")
            self._check_query_access(vihf, vihf.patient_ins, now, outcome)
            return [_doc_row(r) for r in rows if self._visible_to(vihf, r)]
        if q.query_id == Q_FIND_SUBMISSION_SETS:
            ins = self._query_patient(q, "$XDSSubmissionSetPatientId")
            self._required(q, "$XDSSubmissionSetStatus")
            self._check_query_access(vihf, ins, now, outcome)
            sql = "SELECT * FROM dmp_submission_sets WHERE ins = ?"
            args: list[Any] = [ins]
            for name, op in (("$XDSSubmissionSetSubmissionTimeFrom", ">="), ("$XDSSubmissionSetSubmissionTimeTo", "<")):
                if q.params.get(name):
                    sql += f" AND submission_time {op} ?"
                    args.append(dtm14(q.params[name][0]))
            return [{"kind": "ss", **_row_dict(r)} for r in self.store.query(sql + " ORDER BY submission_time", args)]
        raise refuse("XDSUnknownStoredQuery", f"Requete stockee {q.query_id} non supportee par le DMP")

    def _required(self, q: StoredQuery, name: str) -> list[str]:
        values = q.params.get(name)
        if not values:
            raise refuse("XDSStoredQueryParamNumber", f"Parametre obligatoire {name} absent", name)
        return values

    def _query_patient(self, q: StoredQuery, name: str) -> str:
        cx = self._required(q, name)[0]
        parsed = _cx_or_none(cx)
        if parsed is None:
            raise refuse("XDSUnknownPatientId", f"{name} {cx!r} : format INS^^^&OID&ISO^NH attendu", name)
        bad = check_ins(parsed[0], parsed[1], name)
        if bad:
            raise Refused([bad])
        return parsed[0]

    def _check_query_access(self, vihf: Vihf, ins: str, now: datetime, outcome: str | None) -> None:
        if ins != vihf.patient_ins:
            raise refuse("XDSPatientIdDoesNotMatch", f"Le patient de la requete ({ins}) differe de la ressource du "
                                                     f"VIHF ({vihf.patient_ins})", "patientId")
        self.check_consultation(vihf, ins, now, outcome)
        self._forced(outcome)

    @staticmethod
    def _visible_to(vihf: Vihf, row: Any) -> bool:
        """Masked documents (MASQUE_PS or hidden by the patient) are only listed to their author."""
        if row["masked_ps"] or row["hidden_by_patient"]:
            return row["author_nid"] == vihf.national_id
        return True

    def _find_documents(self, vihf: Vihf, ins: str, statuses: list[str], params: dict[str, list[str]]) -> list[dict]:
        wanted = [s for s in statuses if s in STATUSES and s != ST_DELETED]
        if not wanted:
            return []
        sql = f"SELECT * FROM dmp_documents WHERE ins = ? AND status IN ({','.join('?' * len(wanted))})"
        args: list[Any] = [ins, *wanted]
        for name, op in (("$XDSDocumentEntryCreationTimeFrom", ">="), ("$XDSDocumentEntryCreationTimeTo", "<")):
            if params.get(name):
                sql += f" AND creation_time {op} ?"
                args.append(dtm14(params[name][0]))
        for name, col in (("$XDSDocumentEntryClassCode", "class_code"), ("$XDSDocumentEntryTypeCode", "type_code"),
                          ("$XDSDocumentEntryFormatCode", "format_code"),
                          ("$XDSDocumentEntryHealthcareFacilityTypeCode", "hcf_code"),
                          ("$XDSDocumentEntryPracticeSettingCode", "practice_code")):
            if params.get(name):
                codes = [split_code(v)[0] for v in params[name]]
                sql += f" AND {col} IN ({','.join('?' * len(codes))})"
                args += codes
        sql = sql.replace("SELECT *", f"SELECT {_FIND_COLUMNS}", 1)  # no original XML blob: rendered is enough
        rows = self.store.query(sql + " ORDER BY creation_time DESC", args)
        conf_filter = {split_code(v)[0] for v in params.get("$XDSDocumentEntryConfidentialityCode", [])}
        out = []
        for r in rows:
            if not self._visible_to(vihf, r):
                continue
            if conf_filter and not conf_filter & {c[0] for c in json.loads(r["confidentiality"])}:
                continue
            out.append(_doc_row(r))
        return out

    # -- ITI-43 ------------------------------------------------------------------------------------

    def retrieve(self, vihf: Vihf, requests: list[tuple[str, str]], now: datetime,
                 outcome: str | None) -> tuple[list[dict], list[RegError]]:
        found: list[dict] = []
        errors: list[RegError] = []
        checked: set[str] = set()
        for repo, uid in requests:
            if repo != self.repository_id:
                errors.append(RegError("XDSUnknownRepositoryId", f"RepositoryUniqueId {repo} inconnu (attendu "
                                                                 f"{self.repository_id})", uid))
                continue
            row = self.store.execute("SELECT * FROM dmp_documents WHERE unique_id = ? AND status != ?",
                                     (uid, ST_DELETED)).fetchone()
            if row is None or not self._visible_to(vihf, row):
                errors.append(RegError("XDSDocumentUniqueIdError", f"Document {uid} introuvable", uid))
                continue
            if row["ins"] not in checked:
                if row["ins"] != vihf.patient_ins:
                    raise refuse("XDSPatientIdDoesNotMatch", "Document d'un autre patient que la ressource du VIHF")
                self.check_consultation(vihf, row["ins"], now, outcome)
                self._forced(outcome)
                checked.add(row["ins"])
            data = self.store.execute("SELECT data FROM dmp_contents WHERE unique_id = ?", (uid,)).fetchone()
            content = bytes(data["data"]) if data else b""
            found.append({"unique_id": uid, "mime_type": row["mime_type"], "data": content})
        return found, errors

    # -- ITI-57 ------------------------------------------------------------------------------------

    def update(self, vihf: Vihf, sub: Submission, now: datetime, outcome: str | None) -> None:
        ss = sub.submission_set
        if ss is None:
            raise refuse("XDSRegistryMetadataError", "RegistryPackage SubmissionSet absent", "SubmissionSet")
        status_updates = [a for a in sub.associations if a.short_type == "UpdateAvailabilityStatus"]
        meta_updates = sub.documents
        if not status_updates and not meta_updates:
            raise refuse("XDSMetadataUpdateOperationError", "Aucune mise a jour (UpdateAvailabilityStatus ou "
                                                            "DocumentEntry) dans la demande")
        ins_cx = _cx_or_none(ss.patient_id)
        if ins_cx is None:
            raise refuse("XDSUnknownPatientId", "SubmissionSet.patientId absent ou mal forme", "patientId")
        ins = ins_cx[0]
        if ins != vihf.patient_ins:
            raise refuse("XDSPatientIdDoesNotMatch", "Le patient de la mise a jour differe de la ressource du VIHF")
        self._patient_for(ins, vihf, outcome, feeding=True)
        self._forced(outcome)
        changes: list[tuple[str, dict, Any]] = []
        for a in status_updates:
            row = self.store.execute("SELECT * FROM dmp_documents WHERE entry_uuid = ? OR lid = ? ORDER BY version "
                                     "DESC", (a.target, a.target)).fetchone()
            if row is None or row["ins"] != ins:
                raise refuse("UnresolvedReferenceException", f"Document {a.target} inconnu du DMP", a.target)
            original = (a.slots.get("OriginalStatus") or [""])[0]
            new = (a.slots.get("NewStatus") or [""])[0]
            if original != row["status"]:
                raise refuse("XDSMetadataUpdateError", f"OriginalStatus {original!r} ne correspond pas au statut "
                                                       f"courant {row['status']}", a.target)
            allowed = {(ST_APPROVED, ST_DELETED), (ST_APPROVED, ST_ARCHIVED), (ST_ARCHIVED, ST_APPROVED),
                       (ST_ARCHIVED, ST_DELETED)}
            if (original, new) not in allowed:
                raise refuse("XDSMetadataUpdateOperationError", f"Changement de statut {original} -> {new} non "
                                                                "autorise par le DMP", a.target)
            if row["author_nid"] != vihf.national_id:
                what = "supprimer" if new == ST_DELETED else "archiver ou desarchiver"
                raise refuse("DMPNotAuthor", f"Seul l'auteur du document ({row['author_nid']}) peut le {what}",
                             a.target)
            changes.append(("status", _row_dict(row), new))
        for doc in meta_updates:
            key = doc.lid or doc.entry_id
            row = self.store.execute("SELECT * FROM dmp_documents WHERE (lid = ? OR entry_uuid = ? OR unique_id = ?)"
                                     " AND status != ? ORDER BY version DESC",
                                     (key, key, doc.unique_id, ST_DEPRECATED)).fetchone()
            if row is None or row["ins"] != ins:
                raise refuse("UnresolvedReferenceException", f"Document {key} inconnu du DMP", key)
            prev = next((a.slots.get("PreviousVersion", [""])[0] for a in sub.associations
                         if a.short_type == "HasMember" and a.target == doc.entry_id), "")
            if prev and prev != str(row["version"]):
                raise refuse("XDSMetadataVersionError", f"PreviousVersion {prev} ne correspond pas a la version "
                                                        f"courante {row['version']}", key)
            hl7 = [c for c in doc.confidentiality if c.scheme == SCHEME_CONF_HL7]
            bad = [c for c in doc.confidentiality if not ((c.scheme == SCHEME_CONF_HL7 and c.code in CONF_HL7)
                                                          or (c.scheme == SCHEME_CONF_DMP and c.code in CONF_DMP))]
            if len(hl7) != 1 or bad:
                raise refuse("XDSRegistryMetadataError", "confidentialityCode hors JDV_J58-ConfidentialityCode-DMP "
                                                         "(un code N/R/V + codes TRE_A07)", key)
            if row["author_nid"] != vihf.national_id:
                self.check_consultation(vihf, ins, now, outcome)
            changes.append(("conf", _row_dict(row), doc.confidentiality))
        with self.store.transaction() as conn:
            for kind, row, value in changes:
                if kind == "status":
                    conn.execute("UPDATE dmp_documents SET status = ?, version = version + 1, updated_at = ? "
                                 "WHERE entry_uuid = ?", (value, iso(now), row["entry_uuid"]))
                    self._refresh(conn, row["entry_uuid"])
                    ev = {ST_DELETED: "document_supprime", ST_ARCHIVED: "document_archive",
                          ST_APPROVED: "document_desarchive"}[value]
                    self._event(conn, now, ins, ev, document=row["entry_uuid"], national_id=vihf.national_id)
                    continue
                self._apply_conf(conn, row, value, now, vihf.national_id)

    def _apply_conf(self, conn: Any, row: dict, codes: list[Code], now: datetime, who: str) -> None:
        invisible = any(c.code == INVISIBLE_PATIENT for c in codes)
        masked = any(c.code == MASQUE_PS for c in codes)
        since = row["invisible_since"] if invisible and row["invisible_patient"] else (iso(now) if invisible else None)
        conn.execute("UPDATE dmp_documents SET confidentiality = ?, invisible_patient = ?, invisible_since = ?, "
                     "informed = ?, masked_ps = ?, version = version + 1, updated_at = ? WHERE entry_uuid = ?",
                     (json.dumps([[c.code, c.scheme] for c in codes]), int(invisible), since,
                      row["informed"] if invisible else 0, int(masked), iso(now), row["entry_uuid"]))
        self._refresh(conn, row["entry_uuid"])
        if row["invisible_patient"] and not invisible:
            self._event(conn, now, row["ins"], "document_rendu_visible", document=row["entry_uuid"], national_id=who,
                        detail={"automatique": False})
        elif invisible and not row["invisible_patient"]:
            self._event(conn, now, row["ins"], "document_rendu_invisible", document=row["entry_uuid"],
                        national_id=who)
        if masked != bool(row["masked_ps"]):
            self._event(conn, now, row["ins"], "document_masque_ps" if masked else "document_demasque_ps",
                        document=row["entry_uuid"], national_id=who)

    # -- events and control API --------------------------------------------------------------------

    def _event(self, conn: Any, at: datetime, ins: str, kind: str, *, document: str | None = None,
               national_id: str | None = None, detail: dict | None = None) -> None:
        conn.execute("INSERT INTO dmp_events (at, ins, kind, document, national_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
                     (iso(at), ins, kind, document, national_id, json.dumps(detail or {}, ensure_ascii=False)))

    def state(self, ins: str | None = None, limit: int = 500) -> dict:
        where, args = ("WHERE ins = ?", [ins]) if ins else ("", [])
        patients = []
        for r in self.store.query(f"SELECT * FROM dmp_patients {where} ORDER BY ins", args):
            blocked = [b["national_id"] for b in self.store.query("SELECT national_id FROM dmp_blocked WHERE ins = ?",
                                                                  (r["ins"],))]
            patients.append({"ins": r["ins"], "oid": r["oid"], "status": r["status"], "persona": r["persona_id"],
                             "closed_at": r["closed_at"], "blocked_professionals": blocked})
        docs = [_doc_state(r) for r in self.store.query(
            f"SELECT * FROM dmp_documents {where} ORDER BY submitted_at DESC, rowid DESC LIMIT ?",
            [*args, limit])]
        auths = [_row_dict(r) for r in self.store.query(f"SELECT * FROM dmp_authorisations {where}", args)]
        events = []
        for r in self.store.query(f"SELECT * FROM dmp_events {where} ORDER BY seq DESC LIMIT ?",
                                  [*args, limit]):
            e = _row_dict(r)
            e["detail"] = json.loads(e["detail"] or "{}")
            e["patient_notified"] = e["kind"] in PATIENT_NOTIFIED
            events.append(e)
        events.reverse()
        total = self.store.execute(f"SELECT count(*) FROM dmp_documents {where}", args).fetchone()[0]
        return {"repository_unique_id": self.repository_id, "patients": patients, "documents": docs,
                "documents_total": total, "authorisations": auths, "events": events}

    def apply(self, body: Any, now: datetime) -> dict:
        actions = body.get("actions") if isinstance(body, dict) and "actions" in body else [body]
        if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
            raise ValueError('expected {"action": "...", "ins": "..."} or {"actions": [...]}')
        for a in actions:
            self._apply_one(a, now)
        ins = actions[-1].get("ins") if actions else None
        return self.state(ins if isinstance(ins, str) else None)

    def _apply_one(self, a: dict, now: datetime) -> None:
        action = a.get("action")
        ins = a.get("ins")
        known = ("block", "unblock", "close", "reopen", "create", "add_document", "hide_document", "unhide_document",
                 "refuse_authorisation", "revoke_authorisation", "grant_authorisation")
        if action not in known:
            raise ValueError(f"unknown action {action!r}; known: {', '.join(known)}")
        if not isinstance(ins, str) or not ins:
            raise ValueError('"ins" (the patient\'s 15-character INS) is required')
        if action == "create":
            oid = a.get("oid") or OID_INS_NIR_TEST
            bad = check_ins(ins, oid, "ins")
            if bad:
                raise ValueError(bad.message)
            with self.store.transaction() as conn:
                conn.execute("INSERT OR REPLACE INTO dmp_patients (ins, oid, status) VALUES (?, ?, 'ouvert')",
                             (ins, oid))
            return
        if self.patient(ins) is None:
            raise ValueError(f"no DMP for INS {ins!r}")
        nid = a.get("national_id")
        with self.store.transaction() as conn:
            needs_nid = action in ("block", "unblock", "refuse_authorisation", "revoke_authorisation",
                                   "grant_authorisation")
            if needs_nid and (not isinstance(nid, str) or not nid):
                raise ValueError(f'"{action}" needs "national_id"')
            if action == "block":
                conn.execute("INSERT OR REPLACE INTO dmp_blocked VALUES (?, ?, ?)", (ins, nid, iso(now)))
                self._event(conn, now, ins, "ps_bloque_par_patient", national_id=nid)
            elif action == "unblock":
                conn.execute("DELETE FROM dmp_blocked WHERE ins = ? AND national_id = ?", (ins, nid))
                self._event(conn, now, ins, "ps_debloque_par_patient", national_id=nid)
            elif action == "close":
                conn.execute("UPDATE dmp_patients SET status = 'ferme', closed_at = ?, closing_reason = ? "
                             "WHERE ins = ?", (iso(now), a.get("reason") or "demande du patient", ins))
                self._event(conn, now, ins, "dmp_ferme")
            elif action == "reopen":
                conn.execute("UPDATE dmp_patients SET status = 'ouvert', closed_at = NULL, closing_reason = NULL "
                             "WHERE ins = ?", (ins,))
                self._event(conn, now, ins, "dmp_reactive")
            elif action in ("refuse_authorisation", "revoke_authorisation", "grant_authorisation"):
                if action == "revoke_authorisation":
                    conn.execute("DELETE FROM dmp_authorisations WHERE ins = ? AND national_id = ?", (ins, nid))
                else:
                    status = "refusee" if action == "refuse_authorisation" else "valide"
                    expires = iso(now + AUTHORISATION_DURATION) if status == "valide" else None
                    conn.execute(
                        "INSERT INTO dmp_authorisations (ins, national_id, status, granted_at, expires_at, "
                        "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(ins, national_id) DO UPDATE SET "
                        "status=excluded.status, granted_at=excluded.granted_at, expires_at=excluded.expires_at, "
                        "updated_at=excluded.updated_at", (ins, nid, status, iso(now), expires, iso(now)))
                self._event(conn, now, ins, action.replace("_authorisation", "") + "_autorisation_par_patient",
                            national_id=nid)
            elif action in ("hide_document", "unhide_document"):
                doc = a.get("document")
                hidden = int(action == "hide_document")
                cur = conn.execute("UPDATE dmp_documents SET hidden_by_patient = ?, updated_at = ? WHERE ins = ? AND "
                                   "(entry_uuid = ? OR unique_id = ?)", (hidden, iso(now), ins, doc, doc))
                if cur.rowcount == 0:
                    raise ValueError(f"no document {doc!r} in the DMP of {ins}")
                kind = "document_masque_par_patient" if hidden else "document_demasque_par_patient"
                self._event(conn, now, ins, kind, document=doc)
            elif action == "add_document":
                doc = self.seeds.patient_document(ins, self.patient(ins).oid, a, now)  # type: ignore[union-attr]
                self._insert_document(conn, doc, now, ss_uuid=None, author_nid=f"patient:{ins}",
                                      added_by_patient=True)
                self._event(conn, now, ins, "document_ajoute_par_patient", document=doc.entry_id,
                            detail={"titre": doc.title})


def _c(code: Code | None) -> str | None:
    return code.code if code else None


def _sha1(data: bytes | None) -> str:
    import hashlib

    return hashlib.sha1(data or b"").hexdigest()


def _cx_or_none(cx: str) -> tuple[str, str] | None:
    from .vihf import parse_cx

    return parse_cx(cx) if cx else None


def _cx(cx: str) -> tuple[str, str]:
    parsed = _cx_or_none(cx)
    if parsed is None:
        raise refuse("XDSUnknownPatientId", f"patientId {cx!r} mal forme")
    return parsed


def _doc_row(r: Any) -> dict:
    d = _row_dict(r)
    d["kind"] = "doc"
    return d


def _doc_state(r: Any) -> dict:
    d = {k: r[k] for k in r.keys() if k not in ("xml", "rendered")}  # noqa: SIM118 (sqlite3.Row)
    d["confidentiality"] = json.loads(d["confidentiality"])
    d["visible_patient"] = not d["invisible_patient"]
    d["masked_ps"] = bool(d["masked_ps"])
    d["hidden_by_patient"] = bool(d["hidden_by_patient"])
    return d

