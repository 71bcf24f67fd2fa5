"""The durable DMP outbox: deferred, background, retried feeding of the DMP, never twice, never lost.

Every document to send (ITI-41) or to delete from the DMP (ITI-57) is a row of the SQLite table ``outbox``
(migration 2) that holds all a worker needs to act without the user: the INS, the XDS metadata (JSON), a snapshot
of the professional (JSON) and, through ``documents.cda``, the exact CDA bytes. A background thread
(:meth:`Outbox.start`) or a test (:meth:`Outbox.run_once`) sends the due rows.

States (``outbox.state``)::

    differe ──(due_at)──┐         ┌──────── ServiceUnavailable, nothing reached the DMP (503, busy…)
       │ hold           ▼         ▼
    suspendu ─release─► a_envoyer ─claim─► envoi ──success / duplicate of our uniqueId──► envoye
       ▲ hold               ▲                 │  └──ServiceRefused──► echec ──retry()──► a_envoyer
       └────────────────────┘                 └──uncertain failure (timeout, network, crash)──► a_verifier
    differe / suspendu / a_envoyer / echec ──cancel()──► annule          a_verifier ─claim─► envoi (check first)

Never twice: the XDS uniqueId (the CDA id) is fixed at enqueue time, the row turns ``envoi`` in the base *before*
the network call, and an item that may have reached the DMP (``a_verifier``, or ``envoi`` left by a dead worker) is
first looked up in the DMP (ITI-18, every status, by uniqueId): found → recorded as sent, without resending. When
the lookup itself is refused (no authorisation: feeding needs none, consultation does) the document is resent, and
the DMP's refusal of a duplicate uniqueId (``XDSDocumentUniqueIdError``) is read as "already there" → sent. The DMP
registry's uniqueness of uniqueIds is the last guard, so two workers (threads or processes) racing on one row can
at worst cost a refused resend, never a second copy.

Never lost: the row is committed before the caller is answered; failures that are worth retrying go back to the
queue with a backoff (1, 2, 5, 10, 30, 60 s…); a row claimed by a worker that died is taken over at start-up
(:meth:`Outbox.recover`) or once its lease has expired.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree

from .db import Database
from .endpoint_settings import effective
from .services import dmp
from .services.api_psc import ApiPsc, access_for
from .services.context import (
    CallContext,
    Endpoint,
    Professional,
    ServiceError,
    ServiceRefused,
    ServiceUnavailable,
    Software,
)
from .services.xds import Code, DocumentMetadata, new_oid

log = logging.getLogger("reference_lgc.outbox")

# actions
ENVOI, SUPPRESSION = "envoi", "suppression"
# states
DIFFERE, SUSPENDU, A_ENVOYER, A_VERIFIER, EN_COURS, ENVOYE, ECHEC, ANNULE = (
    "differe", "suspendu", "a_envoyer", "a_verifier", "envoi", "envoye", "echec", "annule")
STATE_LABELS = {
    DIFFERE: "envoi différé",
    SUSPENDU: "envoi suspendu",
    A_ENVOYER: "en attente d'envoi",
    A_VERIFIER: "en attente (vérification dans le DMP avant un nouvel essai)",
    EN_COURS: "envoi en cours",
    ENVOYE: "envoyé au DMP",
    ECHEC: "échec",
    ANNULE: "envoi annulé",
}
DELETE_LABELS = {**STATE_LABELS, A_ENVOYER: "suppression en attente", EN_COURS: "suppression en cours",
                 ENVOYE: "supprimé du DMP", ECHEC: "échec de la suppression", ANNULE: "suppression annulée"}
DUE_STATES = (DIFFERE, A_ENVOYER, A_VERIFIER)
PENDING_STATES = (DIFFERE, SUSPENDU, A_ENVOYER, A_VERIFIER, EN_COURS)
CANCELLABLE = (DIFFERE, SUSPENDU, A_ENVOYER, ECHEC)
HOLDABLE = (DIFFERE, A_ENVOYER)

# RegistryError codes the DMP gives for a uniqueId it already holds (the simulator: XDSDocumentUniqueIdError).
DUPLICATE_CODES = ("XDSDocumentUniqueIdError", "XDSDuplicateUniqueIdInRegistry")
# ServiceUnavailable codes meaning the DMP did not process the request: nothing to verify before resending.
NOT_PROCESSED = {"HTTP 503", "HTTP 429", "XDSRegistryBusy", "XDSRepositoryBusy", "XDSRegistryOutOfResources",
                 "XDSRepositoryOutOfResources"}
ALL_STATUSES = (dmp.ST_APPROVED, dmp.ST_DEPRECATED, dmp.ST_ARCHIVED)


class OutboxError(Exception):
    """An outbox request that cannot be done (wrong state, unknown row…); ``reason`` is French, for the UI."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class OutboxItem:
    id: int
    document_id: int
    patient_id: int
    action: str  # envoi | suppression
    state: str
    due_at: datetime
    attempts: int
    last_error: str
    unique_id: str
    ins: str
    ins_oid: str
    invisible_to_patient: bool
    replaces_entry_uuid: str | None
    entry_uuid: str | None
    author_national_id: str
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None

    @property
    def label(self) -> str:
        return (DELETE_LABELS if self.action == SUPPRESSION else STATE_LABELS).get(self.state, self.state)

    @property
    def pending(self) -> bool:
        return self.state in PENDING_STATES

    @property
    def done(self) -> bool:
        return self.state == ENVOYE

    @property
    def cancellable(self) -> bool:
        return self.state in CANCELLABLE


# ----------------------------------------------------------------------------------------------------
# (de)serialisation
# ----------------------------------------------------------------------------------------------------


def _iso(when: datetime) -> str:
    """One fixed format (UTC, milliseconds) so that SQL string comparisons order instants correctly."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _code_json(c: Code | None) -> dict[str, str] | None:
    return None if c is None else {"code": c.code, "scheme": c.scheme, "display": c.display}


def _code(d: dict[str, str] | None) -> Code | None:
    return None if d is None else Code(d["code"], d["scheme"], d.get("display", ""))


def metadata_to_json(meta: DocumentMetadata, **extra: Any) -> str:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(meta):
        value = getattr(meta, f.name)
        if isinstance(value, Code):
            value = _code_json(value)
        elif isinstance(value, datetime):
            value = _iso(value)
        out[f.name] = value
    out.update(extra)
    return json.dumps(out, ensure_ascii=False)


def metadata_from_json(text: str) -> tuple[DocumentMetadata, dict[str, Any]]:
    """The metadata and the extra keys stored with it (``_cda_sha256``)."""
    data = json.loads(text)
    names = {f.name: f for f in dataclasses.fields(DocumentMetadata)}
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name not in names:
            continue
        if name == "creation_time":
            value = datetime.fromisoformat(value)
        elif isinstance(value, dict):
            value = _code(value)
        kwargs[name] = value
    extra = {k: v for k, v in data.items() if k not in names}
    return DocumentMetadata(**kwargs), extra


def professional_to_json(p: Professional) -> str:
    """A snapshot to act later on the professional's behalf. The PSC access token is kept when present (a DMP in
    "API Pro Santé Connectée" mode checks it); the id_token is not needed."""
    data = dataclasses.asdict(p)
    data.pop("id_token", None)
    if not data.get("access_token"):
        data.pop("access_token", None)
    return json.dumps(data, ensure_ascii=False)


def professional_from_json(text: str) -> Professional:
    data = json.loads(text)
    names = {f.name for f in dataclasses.fields(Professional)}
    return Professional(**{k: v for k, v in data.items() if k in names})


def cda_unique_id(cda: bytes) -> str | None:
    """ClinicalDocument/id as an XDS uniqueId: root, or root^extension when an extension is given."""
    try:
        root = etree.fromstring(cda, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    except etree.XMLSyntaxError:
        return None
    el = root.find("{urn:hl7-org:v3}id")
    if el is None or not el.get("root"):
        return None
    return f"{el.get('root')}^{el.get('extension')}" if el.get("extension") else el.get("root")


def _duplicate_of(exc: ServiceRefused, unique_id: str) -> bool:
    """Does this ITI-41 refusal say the DMP already holds ``unique_id``? (Other errors may come with it: resending a
    replacement also finds its target deprecated — by ourselves.)"""
    text = f"{exc.code or ''} : {exc.detail or ''}"
    for part in text.split(" ; "):
        code, _, context = part.partition(" : ")
        if code.strip() in DUPLICATE_CODES and unique_id in context:
            return True
    return exc.code in DUPLICATE_CODES and unique_id in (exc.detail or exc.reason)


# ----------------------------------------------------------------------------------------------------
# The outbox
# ----------------------------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Claim:
    row: Any  # sqlite3.Row as claimed (state already 'envoi', attempts already incremented)
    previous_state: str
    verify: bool  # a previous attempt may have reached the DMP: look it up before (re)sending


class Outbox:
    def __init__(self, db: Database, *, endpoint: Endpoint, software: Software,
                 clock: Callable[[], datetime] = _utcnow, poll_interval: float = 0.5,
                 backoff: Sequence[float] = (1, 2, 5, 10, 30, 60), lease_s: float | None = None) -> None:
        self.db = db
        self.endpoint = endpoint
        self.software = software
        self.api_psc: ApiPsc | None = None  # API Pro Santé Connectée, set by the application
        self.clock = clock
        self.poll_interval = poll_interval
        self.backoff = tuple(backoff) or (60.0,)
        # A row left 'envoi' longer than this belongs to a dead worker: a live one ends within the call timeout.
        self.lease_s = lease_s if lease_s is not None else 2 * endpoint.timeout + 5
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- queueing ------------------------------------------------------------------------------------

    def enqueue(self, document_id: int, *, patient_id: int, cda: bytes, metadata: DocumentMetadata, ins: str,
                ins_oid: str, professional: Professional, defer_s: float, invisible_to_patient: bool = False,
                replaces_entry_uuid: str | None = None, hold: bool = False) -> int:
        """Queue the validated document for the DMP; returns the outbox row id. State ``differe`` until
        ``now + defer_s`` (``a_envoyer`` when ``defer_s <= 0``), or ``suspendu`` when ``hold``."""
        if not ins or not ins_oid:
            raise OutboxError("Envoi au DMP impossible : INS du patient absent")
        if not cda:
            raise OutboxError("Envoi au DMP impossible : document CDA vide")
        now = self.clock()
        due = now + timedelta(seconds=max(0.0, defer_s))
        state = SUSPENDU if hold else (DIFFERE if defer_s > 0 else A_ENVOYER)
        with self.db.transaction() as tx:
            doc = tx.execute("SELECT id, patient_id, unique_id, cda FROM documents WHERE id=?",
                             (document_id,)).fetchone()
            if doc is None:
                raise OutboxError(f"Document {document_id} inconnu")
            if doc["patient_id"] != patient_id:
                raise OutboxError(f"Le document {document_id} n'appartient pas à ce patient")
            busy = tx.execute("SELECT state FROM outbox WHERE document_id=? AND action=? AND state IN (?,?,?,?,?,?) "
                              "ORDER BY id DESC LIMIT 1", (document_id, ENVOI, *PENDING_STATES, ENVOYE)).fetchone()
            if busy is not None:
                raise OutboxError("Ce document est déjà envoyé au DMP" if busy["state"] == ENVOYE else
                                  f"Ce document est déjà dans la file d'envoi ({STATE_LABELS[busy['state']]})")
            if doc["cda"] is not None and bytes(doc["cda"]) != cda:
                raise OutboxError("Le contenu CDA à envoyer diffère de celui du document enregistré")
            unique_id = metadata.unique_id or doc["unique_id"] or cda_unique_id(cda) or new_oid()
            if doc["unique_id"] and doc["unique_id"] != unique_id:
                raise OutboxError(f"Identifiant du document incohérent : {unique_id} (métadonnées) au lieu de "
                                  f"{doc['unique_id']} (document enregistré)")
            meta = dataclasses.replace(metadata, unique_id=unique_id,
                                       invisible_to_patient=invisible_to_patient or metadata.invisible_to_patient)
            tx.execute("UPDATE documents SET cda=COALESCE(cda, ?), unique_id=COALESCE(unique_id, ?) WHERE id=?",
                       (cda, unique_id, document_id))
            cur = tx.execute(
                "INSERT INTO outbox (document_id, patient_id, action, state, due_at, unique_id, ins, ins_oid, "
                "invisible_to_patient, replaces_entry_uuid, professional, metadata, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (document_id, patient_id, ENVOI, state, _iso(due), unique_id, ins, ins_oid,
                 int(meta.invisible_to_patient), replaces_entry_uuid, professional_to_json(professional),
                 metadata_to_json(meta, _cda_sha256=hashlib.sha256(cda).hexdigest()), _iso(now), _iso(now)))
            item_id = int(cur.lastrowid)
        self._wake.set()
        return item_id

    def delete_from_dmp(self, document_id: int, professional: Professional, *, ins: str | None = None,
                        ins_oid: str | None = None, entry_uuid: str | None = None) -> int:
        """Queue the ITI-57 deletion of a document sent to the DMP (author only); returns the outbox row id.
        The INS and entryUUID come from the send recorded here unless given (document sent otherwise)."""
        now = self.clock()
        with self.db.transaction() as tx:
            doc = tx.execute("SELECT * FROM documents WHERE id=?", (document_id,)).fetchone()
            if doc is None:
                raise OutboxError(f"Document {document_id} inconnu")
            rows = tx.execute("SELECT * FROM outbox WHERE document_id=? ORDER BY id DESC", (document_id,)).fetchall()
            for r in rows:
                if r["state"] in PENDING_STATES:
                    what = "suppression" if r["action"] == SUPPRESSION else "envoi"
                    hint = ("" if r["action"] == SUPPRESSION or r["state"] == EN_COURS
                            else " : annuler l'envoi plutôt que supprimer")
                    raise OutboxError(f"Un(e) {what} de ce document est en cours ({r['state']}){hint}")
            sent = next((r for r in rows if r["action"] == ENVOI and r["state"] == ENVOYE), None)
            if doc["dmp_state"] == "supprime":
                raise OutboxError("Ce document est déjà supprimé du DMP")
            if sent is None and not (doc["dmp_entry_uuid"] or entry_uuid):
                raise OutboxError("Ce document n'a pas été envoyé au DMP : rien à supprimer")
            author = professional_from_json(sent["professional"]).national_id if sent is not None else None
            if author is not None and author != professional.national_id:
                raise OutboxError("Seul l'auteur du document peut le supprimer du DMP")
            if sent is not None:
                ins, ins_oid = ins or sent["ins"], ins_oid or sent["ins_oid"]
            if not (ins and ins_oid):
                patient = tx.execute("SELECT ins_matricule, ins_oid FROM patients WHERE id=?",
                                     (doc["patient_id"],)).fetchone()
                ins, ins_oid = ins or patient["ins_matricule"], ins_oid or patient["ins_oid"]
            if not (ins and ins_oid):
                raise OutboxError("Suppression impossible : INS du patient absent")
            entry = entry_uuid or (sent["entry_uuid"] if sent is not None else None) or doc["dmp_entry_uuid"]
            unique_id = (sent["unique_id"] if sent is not None else None) or doc["unique_id"] or ""
            meta = sent["metadata"] if sent is not None else "{}"
            cur = tx.execute(
                "INSERT INTO outbox (document_id, patient_id, action, state, due_at, unique_id, ins, ins_oid, "
                "professional, metadata, entry_uuid, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (document_id, doc["patient_id"], SUPPRESSION, A_ENVOYER, _iso(now), unique_id, ins, ins_oid,
                 professional_to_json(professional), meta, entry, _iso(now), _iso(now)))
            item_id = int(cur.lastrowid)
        self._wake.set()
        return item_id

    # -- user actions --------------------------------------------------------------------------------

    def _change(self, item_id: int, allowed: Sequence[str], refusal: Callable[[Any], str],
                apply: Callable[[Any, datetime], tuple[str, str]]) -> OutboxItem:
        now = self.clock()
        with self.db.transaction() as tx:
            row = tx.execute("SELECT * FROM outbox WHERE id=?", (item_id,)).fetchone()
            if row is None:
                raise OutboxError(f"Envoi {item_id} inconnu")
            if row["state"] not in allowed:
                raise OutboxError(refusal(row))
            state, due = apply(row, now)
            tx.execute("UPDATE outbox SET state=?, due_at=?, updated_at=? WHERE id=?",
                       (state, due, _iso(now), item_id))
        self._wake.set()
        return self.get(item_id)  # type: ignore[return-value]

    def hold(self, item_id: int) -> OutboxItem:
        """Suspend a send not yet started (deferred or waiting); it keeps its due time."""
        return self._change(item_id, HOLDABLE, lambda r: _refusal("suspendre", r),
                            lambda r, now: (SUSPENDU, r["due_at"]))

    def release(self, item_id: int, *, now: bool = False) -> OutboxItem:
        """Lift a hold: the send goes at its due time (or at once with ``now``, or when that time has passed).
        On a deferred send, ``now=True`` sends without waiting for the end of the deferral."""
        def apply(r: Any, at: datetime) -> tuple[str, str]:
            if now or _dt(r["due_at"]) <= at:
                return A_ENVOYER, min(r["due_at"], _iso(at))
            return DIFFERE, r["due_at"]

        allowed = (SUSPENDU, DIFFERE) if now else (SUSPENDU,)
        return self._change(item_id, allowed, lambda r: _refusal("libérer", r), apply)

    def cancel(self, item_id: int) -> OutboxItem:
        """Cancel a send that has not reached the DMP (deferred, held, waiting or refused). Refused once sent,
        while sending, or when a previous attempt may have reached the DMP."""
        return self._change(item_id, CANCELLABLE, lambda r: _refusal("annuler", r),
                            lambda r, now: (ANNULE, r["due_at"]))

    def cancel_pending_sends(self, patient_id: int) -> tuple[builtins.list[OutboxItem], builtins.list[OutboxItem]]:
        """The patient objects to the feeding of their DMP (SC.DMP/CONF.09.BIS): every send of theirs that has not
        reached the DMP is cancelled. Returns (cancelled, beyond reach): a send under way or that may already have
        reached the DMP cannot be called back (the author deletes it from the DMP if it arrived)."""
        now = self.clock()
        with self.db.transaction() as tx:
            marks = ",".join("?" * len(PENDING_STATES))
            rows = tx.execute(f"SELECT * FROM outbox WHERE patient_id=? AND action=? AND state IN ({marks})",
                              (patient_id, ENVOI, *PENDING_STATES)).fetchall()
            cancelled = [r["id"] for r in rows if r["state"] in CANCELLABLE]
            tx.executemany("UPDATE outbox SET state=?, updated_at=? WHERE id=?",
                           [(ANNULE, _iso(now), i) for i in cancelled])
        self._wake.set()
        return ([self.get(i) for i in cancelled],  # type: ignore[misc]
                [_item(r) for r in rows if r["id"] not in cancelled])

    def retry(self, item_id: int) -> OutboxItem:
        """Send again, now, an item the DMP refused (after the cause was fixed)."""
        return self._change(item_id, (ECHEC,), lambda r: _refusal("relancer", r),
                            lambda r, now: (A_ENVOYER, _iso(now)))

    def set_invisible_to_patient(self, item_id: int, invisible: bool = True) -> OutboxItem:
        """Change the patient-visibility of a document before it is sent (SC.DMP/UX.51)."""
        now = self.clock()
        with self.db.transaction() as tx:
            row = tx.execute("SELECT * FROM outbox WHERE id=?", (item_id,)).fetchone()
            if row is None:
                raise OutboxError(f"Envoi {item_id} inconnu")
            if row["action"] != ENVOI or row["state"] not in (DIFFERE, SUSPENDU, A_ENVOYER, ECHEC):
                raise OutboxError(_refusal("modifier la visibilité de", row))
            meta, extra = metadata_from_json(row["metadata"])
            meta = dataclasses.replace(meta, invisible_to_patient=invisible)
            tx.execute("UPDATE outbox SET invisible_to_patient=?, metadata=?, updated_at=? WHERE id=?",
                       (int(invisible), metadata_to_json(meta, **extra), _iso(now), item_id))
        return self.get(item_id)  # type: ignore[return-value]

    # -- views ---------------------------------------------------------------------------------------

    def get(self, item_id: int) -> OutboxItem | None:
        row = self.db.one("SELECT * FROM outbox WHERE id=?", (item_id,))
        return _item(row) if row else None

    def state(self, document_id: int) -> OutboxItem | None:
        """The latest outbox row of the document (its send, or its deletion), or None if never queued."""
        row = self.db.one("SELECT * FROM outbox WHERE document_id=? ORDER BY id DESC LIMIT 1", (document_id,))
        return _item(row) if row else None

    def list(self, patient_id: int) -> builtins.list[OutboxItem]:
        return [_item(r) for r in self.db.all("SELECT * FROM outbox WHERE patient_id=? ORDER BY id DESC",
                                              (patient_id,))]

    # -- worker --------------------------------------------------------------------------------------

    def recover(self) -> int:
        """Start-up: rows a previous process left 'envoi' may have reached the DMP; check before resending.
        Assumes no other live worker on this base (one LGC process); were it wrong, the DMP's refusal of the
        duplicate uniqueId still keeps a single copy."""
        now = _iso(self.clock())
        cur = self.db.execute("UPDATE outbox SET state=?, due_at=?, updated_at=? WHERE state=?",
                              (A_VERIFIER, now, now, EN_COURS))
        return cur.rowcount

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self.recover()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="dmp-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.endpoint.timeout + 5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.run_once()
            except Exception:  # the worker must survive anything (a locked base, a bug on one row)
                log.exception("DMP outbox worker iteration failed")
                done = 0
            if not done:
                self._wake.wait(self.poll_interval)
                self._wake.clear()

    def run_once(self) -> int:
        """Process every item due now, one at a time; returns how many were processed."""
        seen: set[int] = set()
        worker = threading.current_thread() is self._thread
        while not (worker and self._stop.is_set()):
            claim = self._claim(seen)
            if claim is None:
                break
            seen.add(claim.row["id"])
            self._process(claim)
        return len(seen)

    def _claim(self, seen: set[int]) -> _Claim | None:
        now = self.clock()
        stale = _iso(now - timedelta(seconds=self.lease_s))
        with self.db.transaction() as tx:  # BEGIN IMMEDIATE: one writer at a time, across processes too
            marks = ",".join("?" * len(DUE_STATES))
            skip = ",".join("?" * len(seen))
            row = tx.execute(
                f"SELECT * FROM outbox WHERE ((state IN ({marks}) AND due_at <= ?) OR (state=? AND updated_at < ?))"
                + (f" AND id NOT IN ({skip})" if seen else "") + " ORDER BY due_at, id LIMIT 1",
                (*DUE_STATES, _iso(now), EN_COURS, stale, *seen)).fetchone()
            if row is None:
                return None
            cur = tx.execute("UPDATE outbox SET state=?, attempts=attempts+1, updated_at=? WHERE id=? AND state=? "
                             "AND attempts=?", (EN_COURS, _iso(now), row["id"], row["state"], row["attempts"]))
            if cur.rowcount != 1:  # cannot happen under the write lock; kept as a guard
                return None
            claimed = tx.execute("SELECT * FROM outbox WHERE id=?", (row["id"],)).fetchone()
        return _Claim(claimed, row["state"], verify=row["state"] in (A_VERIFIER, EN_COURS))

    def _ctx(self, row: Any) -> CallContext:
        professional = professional_from_json(row["professional"])
        # the PSC token of the validation (a queued send has no session of its own); the API token it is exchanged
        # for lasts hours (services/api_psc.py)
        endpoint = effective(self.db, "dmp", self.endpoint)  # with the authentication mode chosen, if any
        return CallContext(self.software, professional, endpoint,
                           api=access_for(self.api_psc, endpoint, professional.national_id,
                                          lambda: professional.access_token))

    def _process(self, claim: _Claim) -> None:
        row = claim.row
        try:
            if row["action"] == SUPPRESSION:
                self._delete(claim)
            else:
                self._send(claim)
        except ServiceRefused as exc:
            self._failed(row, ECHEC, f"{exc.reason} — pas de nouvel essai automatique : corriger puis relancer",
                         retry=False)
        except ServiceUnavailable as exc:
            processed = exc.code not in NOT_PROCESSED
            self._failed(row, A_VERIFIER if processed or claim.verify else A_ENVOYER, exc.reason, retry=True)
        except ServiceError as exc:
            self._failed(row, ECHEC, exc.reason, retry=False)
        except Exception as exc:
            log.exception("DMP outbox item %s failed", row["id"])
            self._failed(row, A_VERIFIER, f"Erreur interne du logiciel ({type(exc).__name__})", retry=True)

    def _find(self, ctx: CallContext, row: Any) -> dmp.DocumentEntry | bool | None:
        """ITI-18 lookup of our uniqueId: the entry, None (absent), or False when the DMP refuses the lookup
        (no authorisation: feeding needs none, consultation does)."""
        try:
            entries = dmp.find_documents(ctx, row["ins"], row["ins_oid"], statuses=ALL_STATUSES)
        except ServiceRefused as exc:
            log.info("outbox %s: ITI-18 check refused (%s); relying on the DMP's uniqueId check", row["id"], exc.code)
            return False
        return next((e for e in entries if e.unique_id == row["unique_id"]), None)

    def _send(self, claim: _Claim) -> None:
        row = claim.row
        ctx = self._ctx(row)
        if claim.verify:
            found = self._find(ctx, row)
            if found:
                self._sent(row, found.entry_uuid, "déjà présent dans le DMP (vérifié avant un nouvel essai)")
                return
        doc = self.db.one("SELECT cda FROM documents WHERE id=?", (row["document_id"],))
        meta, extra = metadata_from_json(row["metadata"])
        if doc is None or doc["cda"] is None:
            raise ServiceError("Contenu du document introuvable dans la base : envoi impossible")
        cda = bytes(doc["cda"])
        if extra.get("_cda_sha256") and hashlib.sha256(cda).hexdigest() != extra["_cda_sha256"]:
            raise ServiceError("Le contenu du document a changé depuis sa mise en file : envoi bloqué")
        try:
            sub = dmp.provide_document(ctx, row["ins"], row["ins_oid"], cda, meta,
                                       replaces=row["replaces_entry_uuid"] or None)
        except ServiceRefused as exc:
            if not _duplicate_of(exc, row["unique_id"]):
                raise
            # Already in the DMP: an earlier attempt went through. Learn its entryUUID if we may look.
            found = self._find(ctx, row)
            self._sent(row, found.entry_uuid if found else None,
                       "déjà présent dans le DMP (doublon de l'identifiant refusé par le DMP)")
            return
        self._sent(row, sub.entry_uuid, "")

    def _delete(self, claim: _Claim) -> None:
        row = claim.row
        ctx = self._ctx(row)
        entry_uuid = row["entry_uuid"]
        if not entry_uuid:
            found = self._find(ctx, row)
            if found is None:
                self._sent(row, None, "absent du DMP (déjà supprimé ?)")
                return
            if found is False:
                raise ServiceRefused("Suppression impossible : identifiant du document dans le DMP inconnu et "
                                     "recherche refusée par le DMP (autorisation d'accès nécessaire)")
            entry_uuid = found.entry_uuid
        status = dmp.ST_APPROVED
        for _ in range(2):
            try:
                dmp.delete_document(ctx, row["ins"], row["ins_oid"], entry_uuid, current_status=status)
                break
            except ServiceRefused as exc:
                detail = exc.detail or ""
                if exc.code == "XDSMetadataUpdateError" and "StatusType:Deleted" in detail:
                    break  # an earlier attempt went through
                if exc.code == "XDSMetadataUpdateError" and "StatusType:Archived" in detail and status != \
                        dmp.ST_ARCHIVED:
                    status = dmp.ST_ARCHIVED
                    continue
                raise
        self._sent(row, entry_uuid, "")

    # -- outcomes ------------------------------------------------------------------------------------

    def _sent(self, row: Any, entry_uuid: str | None, note: str) -> None:
        now = _iso(self.clock())
        # Unconditional: a success is the DMP's truth, even if another worker took the row over meanwhile.
        with self.db.transaction() as tx:
            tx.execute("UPDATE outbox SET state=?, entry_uuid=COALESCE(?, entry_uuid), last_error=?, "
                       "sent_at=COALESCE(sent_at, ?), updated_at=? WHERE id=?",
                       (ENVOYE, entry_uuid, note, now, now, row["id"]))
            if row["action"] == SUPPRESSION:
                tx.execute("UPDATE documents SET dmp_state='supprime' WHERE id=?", (row["document_id"],))
                return
            tx.execute("UPDATE documents SET dmp_entry_uuid=COALESCE(?, dmp_entry_uuid), "
                       "dmp_sent_at=COALESCE(dmp_sent_at, ?), dmp_state='envoye' WHERE id=?",
                       (entry_uuid, now, row["document_id"]))
            if row["replaces_entry_uuid"]:
                tx.execute("UPDATE documents SET dmp_state='remplace' WHERE patient_id=? AND dmp_entry_uuid=? "
                           "AND id<>?", (row["patient_id"], row["replaces_entry_uuid"], row["document_id"]))

    def _failed(self, row: Any, state: str, reason: str, *, retry: bool) -> None:
        now = self.clock()
        attempts = row["attempts"]
        due = row["due_at"]
        message = reason
        if retry:
            delay = self.backoff[min(attempts - 1, len(self.backoff) - 1)]
            next_at = now + timedelta(seconds=delay)
            due = _iso(next_at)
            local = next_at.astimezone().strftime("%H:%M:%S")
            message = f"{reason} — tentative {attempts} ; nouvel essai automatique à {local}"
        # Fenced by the attempt number: a worker whose row was taken over must not overwrite the new outcome.
        self.db.execute("UPDATE outbox SET state=?, due_at=?, last_error=?, updated_at=? WHERE id=? AND state=? "
                        "AND attempts=?", (state, due, message, _iso(now), row["id"], EN_COURS, attempts))


def _refusal(verb: str, row: Any) -> str:
    state = row["state"]
    if state == ENVOYE:
        if row["action"] == SUPPRESSION:
            return f"Impossible {_de(verb)} : déjà supprimé du DMP"
        return f"Impossible {_de(verb)} : déjà envoyé au DMP (le supprimer du DMP si nécessaire)"
    if state == EN_COURS:
        return f"Impossible {_de(verb)} : envoi en cours vers le DMP"
    if state == A_VERIFIER:
        return (f"Impossible {_de(verb)} : un essai précédent a peut-être abouti (réponse du DMP non reçue) ; "
                "vérification dans le DMP en attente")
    return f"Impossible {_de(verb)} : l'envoi est à l'état « {STATE_LABELS.get(state, state)} »"


def _de(verb: str) -> str:
    return f"d'{verb}" if verb[0] in "aeiouy" else f"de {verb}"


def _item(row: Any) -> OutboxItem:
    try:
        author = professional_from_json(row["professional"]).national_id
    except (ValueError, TypeError):
        author = ""
    return OutboxItem(
        id=row["id"], document_id=row["document_id"], patient_id=row["patient_id"], action=row["action"],
        state=row["state"], due_at=_dt(row["due_at"]), attempts=row["attempts"],  # type: ignore[arg-type]
        last_error=row["last_error"], unique_id=row["unique_id"], ins=row["ins"], ins_oid=row["ins_oid"],
        invisible_to_patient=bool(row["invisible_to_patient"]), replaces_entry_uuid=row["replaces_entry_uuid"],
        entry_uuid=row["entry_uuid"], author_national_id=author,
        created_at=_dt(row["created_at"]), updated_at=_dt(row["updated_at"]),  # type: ignore[arg-type]
        sent_at=_dt(row["sent_at"]))
