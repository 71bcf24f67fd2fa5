"""What the physician sees of a patient's DMP: categories, documents new since the last visit (invisible ones
counted and marked), filters, and the warnings on local documents (newer version in the DMP, deleted)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from .calls import now_iso
from .db import Database
from .services.dmp import DocumentEntry
from .services.xds import ST_APPROVED, ST_DEPRECATED

# Display categories (domain.md §3: configurable): typeCode first, then classCode (JDV_J57), else "Autres".
CATEGORIES = ("Documents hospitaliers", "Synthèse", "Biologie", "Imagerie", "Prescriptions", "Vaccination",
              "Autres")
BY_TYPE = {"11490-0": "Documents hospitaliers", "34133-9": "Documents hospitaliers", "60591-5": "Synthèse",
           "SYNTH": "Synthèse", "11502-2": "Biologie", "18748-4": "Imagerie", "IMG-KOS": "Imagerie",
           "87273-9": "Vaccination"}
BY_CLASS = {"11": "Synthèse", "31": "Imagerie", "42": "Prescriptions", "43": "Prescriptions"}


def category(type_code: str, class_code: str) -> str:
    return BY_TYPE.get(type_code) or BY_CLASS.get(class_code) or "Autres"


@dataclass(frozen=True)
class DmpDocument:
    entry_uuid: str
    lid: str
    unique_id: str
    title: str
    type_code: str
    class_code: str
    creation_time: str
    author: str
    status: str
    invisible_to_patient: bool
    masked: bool
    version: int | None
    first_seen: str
    integrated: bool

    @property
    def category(self) -> str:
        return category(self.type_code, self.class_code)

    @property
    def approved(self) -> bool:
        return self.status == ST_APPROVED


def store_entries(db: Database, patient_id: int, entries: list[DocumentEntry]) -> list[str]:
    """Upsert what ITI-18 returned; returns the entry UUIDs seen for the first time."""
    now = now_iso()
    new: list[str] = []
    with db.transaction() as tx:
        known = {r[0] for r in tx.execute("SELECT entry_uuid FROM dmp_entries WHERE patient_id=?", (patient_id,))}
        for e in entries:
            author = ""
            if e.author is not None:
                author = " ".join(x for x in (e.author.given_name, e.author.family_name) if x) or \
                    ("patient" if e.author.is_patient else e.author.national_id)
            if e.entry_uuid not in known:
                new.append(e.entry_uuid)
            tx.execute(
                "INSERT INTO dmp_entries (patient_id, entry_uuid, lid, unique_id, title, type_code, class_code, "
                "creation_time, author, status, invisible_to_patient, masked, version, first_seen) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (patient_id, entry_uuid) DO UPDATE SET "
                "status=excluded.status, invisible_to_patient=excluded.invisible_to_patient, masked=excluded.masked,"
                " version=excluded.version, title=excluded.title",
                (patient_id, e.entry_uuid, e.lid, e.unique_id, e.title, e.type_code.code if e.type_code else "",
                 e.class_code.code if e.class_code else "",
                 e.creation_time.isoformat() if isinstance(e.creation_time, datetime) else "", author, e.status,
                 int(e.invisible_to_patient), int(e.masked_to_professionals), e.version, now))
        # Entries the DMP no longer returns were deleted there.
        returned = {e.entry_uuid for e in entries}
        for uuid in known - returned:
            tx.execute("UPDATE dmp_entries SET status='deleted' WHERE patient_id=? AND entry_uuid=?",
                       (patient_id, uuid))
    return new


def documents(db: Database, patient_id: int, *, type_code: str = "", since: str = "", until: str = "",
              author: str = "", visibility: str = "") -> list[DmpDocument]:
    sql = ("SELECT e.*, EXISTS(SELECT 1 FROM documents d WHERE d.patient_id=e.patient_id AND "
           "(d.unique_id=e.unique_id OR d.source_ref=e.entry_uuid)) AS integrated FROM dmp_entries e "
           "WHERE e.patient_id=? AND e.status != 'deleted'")
    args: list[object] = [patient_id]
    if type_code:
        sql += " AND e.type_code=?"
        args.append(type_code)
    if since:
        sql += " AND e.creation_time >= ?"
        args.append(since)
    if until:
        sql += " AND e.creation_time < ?"
        args.append(until + "T99")  # the whole end day
    if author:
        sql += " AND e.author LIKE ?"
        args.append(f"%{author}%")
    if visibility == "invisible":
        sql += " AND e.invisible_to_patient=1"
    elif visibility == "visible":
        sql += " AND e.invisible_to_patient=0"
    sql += " ORDER BY e.creation_time DESC"
    return [_doc(r) for r in db.all(sql, tuple(args))]


def _doc(r: sqlite3.Row) -> DmpDocument:
    return DmpDocument(entry_uuid=r["entry_uuid"], lid=r["lid"] or "", unique_id=r["unique_id"], title=r["title"],
                       type_code=r["type_code"], class_code=r["class_code"], creation_time=r["creation_time"] or "",
                       author=r["author"], status=r["status"], invisible_to_patient=bool(r["invisible_to_patient"]),
                       masked=bool(r["masked"]), version=r["version"], first_seen=r["first_seen"],
                       integrated=bool(r["integrated"]))


@dataclass(frozen=True)
class NewDocuments:
    total: int
    invisible: int
    by_category: dict[str, tuple[int, int]]  # category -> (count, of which invisible to the patient)
    since: str | None


def new_since(db: Database, patient_id: int, previous_visit: str | None) -> NewDocuments:
    """Documents the LGC had not seen before this visit (all of them at the first visit)."""
    docs = [d for d in documents(db, patient_id) if d.approved and (previous_visit is None
                                                                     or d.first_seen > previous_visit)]
    by: dict[str, tuple[int, int]] = {}
    for d in docs:
        count, invisible = by.get(d.category, (0, 0))
        by[d.category] = (count + 1, invisible + int(d.invisible_to_patient))
    ordered = {c: by[c] for c in CATEGORIES if c in by}
    return NewDocuments(total=len(docs), invisible=sum(d.invisible_to_patient for d in docs), by_category=ordered,
                        since=previous_visit)


def local_warnings(db: Database, patient_id: int) -> dict[int, str]:
    """Local document id -> warning: a newer version exists in the DMP, or the DMP no longer holds it."""
    out: dict[int, str] = {}
    rows = db.all("SELECT d.id, e.status, e.lid FROM documents d JOIN dmp_entries e ON e.patient_id=d.patient_id "
                  "AND (e.entry_uuid=d.dmp_entry_uuid OR e.entry_uuid=d.source_ref OR e.unique_id=d.unique_id) "
                  "WHERE d.patient_id=?", (patient_id,))
    for r in rows:
        if r["status"] == ST_DEPRECATED:
            out[r["id"]] = "Une version plus récente de ce document existe dans le DMP"
        elif r["status"] == "deleted":
            out[r["id"]] = "Ce document a été supprimé du DMP"
    # a version received later (MSSanté, RPLC) replaces a document of the file
    for r in db.all("SELECT old.id, new.origin FROM documents old JOIN documents new ON new.replaces_id = old.id "
                    "WHERE old.patient_id=?", (patient_id,)):
        out.setdefault(r["id"], "Remplacé par une version plus récente" + (" reçue par MSSanté" if r["origin"] == "mss"
                                                                            else ""))
    return out
