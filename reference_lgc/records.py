"""Patient records: storage of traits, INS, statuses and attributes, with a trace of every identity operation."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from . import identity as idn
from .calls import now_iso
from .consent import Consent
from .db import Database


@dataclass(frozen=True)
class Patient:
    id: int
    traits: idn.Traits
    birthplace_label: str
    ins_matricule: str | None
    ins_oid: str | None
    retrieved: bool
    validated: bool
    validation_means: str
    homonyme: bool
    douteuse: bool
    fictive: bool
    retrieved_at: str | None
    last_record_visit: str | None

    @property
    def status(self) -> str:
        return idn.status(retrieved=self.retrieved, validated=self.validated, douteuse=self.douteuse,
                          fictive=self.fictive)

    @property
    def status_label(self) -> str:
        return idn.STATUS_LABELS[self.status]

    @property
    def advice(self) -> str:
        return idn.status_advice(self.status, douteuse=self.douteuse, fictive=self.fictive)

    @property
    def qualified(self) -> bool:
        return self.status == idn.QUALIFIEE

    @property
    def display_name(self) -> str:
        t = self.traits
        name = t.used_name or t.birth_name
        first = t.used_first_name or t.first_first_name
        return f"{name} {first.title()}"

    @property
    def ins_label(self) -> str:
        if not self.ins_matricule:
            return ""
        return f"{self.ins_matricule} ({idn.OID_LABELS.get(self.ins_oid or '', self.ins_oid)})"


def _row_to_patient(row: sqlite3.Row) -> Patient:
    return Patient(
        id=row["id"],
        traits=idn.Traits(birth_name=row["birth_name"], first_names=row["first_names"], sex=row["sex"],
                          birth_date=row["birth_date"], birthplace_cog=row["birthplace_cog"],
                          used_name=row["used_name"], used_first_name=row["used_first_name"]),
        birthplace_label=row["birthplace_label"], ins_matricule=row["ins_matricule"], ins_oid=row["ins_oid"],
        retrieved=bool(row["retrieved"]), validated=bool(row["validated"]), validation_means=row["validation_means"],
        homonyme=bool(row["homonyme"]), douteuse=bool(row["douteuse"]), fictive=bool(row["fictive"]),
        retrieved_at=row["retrieved_at"], last_record_visit=row["last_record_visit"])


class Records:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, patient_id: int) -> Patient | None:
        row = self.db.one("SELECT * FROM patients WHERE id=?", (patient_id,))
        return _row_to_patient(row) if row else None

    def search(self, *, name: str = "", birth_date: str = "", ins: str = "", limit: int = 200) -> list[Patient]:
        sql, args = "SELECT * FROM patients WHERE 1=1", []
        if name:
            for word in idn.normalize(name).split():
                sql += " AND (birth_name LIKE ? OR used_name LIKE ? OR first_names LIKE ? OR used_first_name LIKE ?)"
                args += [f"%{word}%"] * 4
        if birth_date:
            sql += " AND birth_date = ?"
            args.append(birth_date)
        if ins:
            sql += " AND ins_matricule LIKE ?"
            args.append(ins.replace(" ", "") + "%")
        sql += " ORDER BY birth_name, first_names LIMIT ?"
        args.append(limit)
        return [_row_to_patient(r) for r in self.db.all(sql, tuple(args))]

    def create(self, traits: idn.Traits, *, user_label: str, homonyme: bool = False, douteuse: bool = False,
               fictive: bool = False) -> int:
        idn.set_attributes(homonyme=homonyme, douteuse=douteuse, fictive=fictive, retrieved=False, validated=False)
        now = now_iso()
        cur = self.db.execute(
            "INSERT INTO patients (birth_name, used_name, first_names, used_first_name, sex, birth_date, "
            "birthplace_cog, birthplace_label, homonyme, douteuse, fictive, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (traits.birth_name, traits.used_name, traits.first_names, traits.used_first_name, traits.sex,
             traits.birth_date, traits.birthplace_cog, idn.cog_label(traits.birthplace_cog), int(homonyme),
             int(douteuse), int(fictive), now, now))
        pid = int(cur.lastrowid)
        self.trace(pid, user_label, "creation", {"traits": traits.__dict__})
        return pid

    def update_traits(self, patient_id: int, traits: idn.Traits, *, user_label: str) -> bool:
        """Editing a trait of a retrieved identity unlinks the INS: it no longer matches what INSi returned."""
        before = self.get(patient_id)
        assert before is not None
        changed = traits != before.traits
        strict_change = (traits.birth_name, traits.first_names, traits.sex, traits.birth_date,
                         traits.birthplace_cog) != (before.traits.birth_name, before.traits.first_names,
                                                    before.traits.sex, before.traits.birth_date,
                                                    before.traits.birthplace_cog)
        unlink = strict_change and before.retrieved
        self.db.execute(
            "UPDATE patients SET birth_name=?, used_name=?, first_names=?, used_first_name=?, sex=?, birth_date=?, "
            "birthplace_cog=?, birthplace_label=?, updated_at=?" +
            (", retrieved=0, ins_matricule=NULL, ins_oid=NULL, retrieved_at=NULL" if unlink else "") +
            (", validated=0, validation_means=''" if strict_change else "") + " WHERE id=?",
            (traits.birth_name, traits.used_name, traits.first_names, traits.used_first_name, traits.sex,
             traits.birth_date, traits.birthplace_cog, idn.cog_label(traits.birthplace_cog), now_iso(), patient_id))
        if changed:
            self.trace(patient_id, user_label, "modification_traits",
                       {"avant": before.traits.__dict__, "apres": traits.__dict__, "ins_dissociee": unlink})
        return unlink

    def set_attributes(self, patient_id: int, *, homonyme: bool, douteuse: bool, fictive: bool,
                       user_label: str) -> idn.AttributeChange:
        p = self.get(patient_id)
        assert p is not None
        change = idn.set_attributes(homonyme=homonyme, douteuse=douteuse, fictive=fictive, retrieved=p.retrieved,
                                    validated=p.validated)
        self.db.execute("UPDATE patients SET homonyme=?, douteuse=?, fictive=?, updated_at=? WHERE id=?",
                        (int(homonyme), int(douteuse), int(fictive), now_iso(), patient_id))
        if change.demoted:
            self.db.execute("UPDATE patients SET retrieved=0, validated=0, validation_means='', ins_matricule=NULL, "
                            "ins_oid=NULL, retrieved_at=NULL WHERE id=?", (patient_id,))
        self.trace(patient_id, user_label, "attributs", {"homonyme": homonyme, "douteuse": douteuse,
                                                         "fictive": fictive, "retrogradee": change.demoted})
        return change

    def apply_ins(self, patient_id: int, *, matricule: str, oid: str, traits: idn.Traits | None, user_label: str,
                  source: str, validated_by: str | None = None) -> None:
        """Record a retrieved INS (and the teleservice's traits, which replace the typed ones)."""
        sets = ["ins_matricule=?", "ins_oid=?", "retrieved=1", "retrieved_at=?", "updated_at=?"]
        args: list[Any] = [matricule, oid, now_iso(), now_iso()]
        if traits is not None:
            sets += ["birth_name=?", "first_names=?", "sex=?", "birth_date=?", "birthplace_cog=?",
                     "birthplace_label=?"]
            args += [traits.birth_name, traits.first_names, traits.sex, traits.birth_date, traits.birthplace_cog,
                     idn.cog_label(traits.birthplace_cog)]
        if validated_by:
            sets += ["validated=1", "validation_means=?"]
            args.append(validated_by)
        self.db.execute(f"UPDATE patients SET {', '.join(sets)} WHERE id=?", (*args, patient_id))
        self.trace(patient_id, user_label, "ins_recuperee", {"matricule": matricule, "oid": oid, "source": source,
                                                             "validation": validated_by or ""})

    def replace_ins(self, patient_id: int, *, matricule: str, oid: str, user_label: str, reason: str) -> None:
        """The Assurance maladie gave the person a new INS (the INSi answers it, the held one in its history): the
        new one replaces it, the identity keeps its status, the old one stays in the file's INS history."""
        p = self.get(patient_id)
        if p is None or not p.ins_matricule:
            return
        self.db.execute("UPDATE patients SET ins_matricule=?, ins_oid=?, retrieved_at=?, updated_at=? WHERE id=?",
                        (matricule, oid, now_iso(), now_iso(), patient_id))
        self.trace(patient_id, user_label, "ins_remplacee", {
            "ancien": {"matricule": p.ins_matricule, "oid": p.ins_oid or ""},
            "nouveau": {"matricule": matricule, "oid": oid}, "motif": reason})

    def ins_history(self, patient_id: int) -> list[dict[str, Any]]:
        """The INS the file held before, newest first: {"matricule", "oid", "until"} (from the traces)."""
        rows = self.db.all("SELECT at, detail FROM identity_traces WHERE patient_id=? AND operation='ins_remplacee' "
                           "ORDER BY id DESC", (patient_id,))
        return [{**json.loads(r["detail"])["ancien"], "until": r["at"]} for r in rows]

    def validate(self, patient_id: int, means: str, *, user_label: str) -> None:
        self.db.execute("UPDATE patients SET validated=1, validation_means=?, updated_at=? WHERE id=?",
                        (means, now_iso(), patient_id))
        self.trace(patient_id, user_label, "validation", {"moyen": means})

    VISIT_GAP = timedelta(minutes=30)  # openings closer than this belong to the same consultation

    def visit(self, patient_id: int) -> str | None:
        """Mark the record as opened now; return the previous visit (for 'new since last visit'). Reopening the
        file during the same consultation (within VISIT_GAP) keeps the previous visit where it was."""
        p = self.get(patient_id)
        now = now_iso()
        last = p.last_record_visit if p else None
        if last and datetime.fromisoformat(now) - datetime.fromisoformat(last) < self.VISIT_GAP:
            self.db.execute("UPDATE patients SET last_record_visit=? WHERE id=?", (now, patient_id))
        else:
            self.db.execute("UPDATE patients SET previous_record_visit=last_record_visit, last_record_visit=? "
                            "WHERE id=?", (now, patient_id))
        return self.previous_visit(patient_id)

    def previous_visit(self, patient_id: int) -> str | None:
        row = self.db.one("SELECT previous_record_visit FROM patients WHERE id=?", (patient_id,))
        return row["previous_record_visit"] if row else None

    def trace(self, patient_id: int, user_label: str, operation: str, detail: dict[str, Any]) -> None:
        self.db.execute("INSERT INTO identity_traces (patient_id, at, user_label, operation, detail) "
                        "VALUES (?,?,?,?,?)", (patient_id, now_iso(), user_label, operation,
                                               json.dumps(detail, ensure_ascii=False)))

    def traces(self, patient_id: int) -> list[sqlite3.Row]:
        return self.db.all("SELECT * FROM identity_traces WHERE patient_id=? ORDER BY id DESC", (patient_id,))

    # ------------------------------------------------------------------------------------------ consent

    def consent(self, patient_id: int) -> Consent | None:
        row = self.db.one("SELECT * FROM consents WHERE patient_id=? ORDER BY id DESC LIMIT 1", (patient_id,))
        if row is None:
            return None
        return Consent(episode=row["episode"], feeding_opposed=bool(row["feeding_opposed"]),
                       consultation_consent=bool(row["consultation_consent"]),
                       emergency_reason=row["emergency_reason"], recorded_at=row["recorded_at"],
                       user_label=row["user_label"])

    def record_consent(self, patient_id: int, consent: Consent) -> None:
        self.db.execute("INSERT INTO consents (patient_id, episode, feeding_opposed, consultation_consent, "
                        "emergency_reason, recorded_at, user_label) VALUES (?,?,?,?,?,?,?)",
                        (patient_id, consent.episode, int(consent.feeding_opposed),
                         int(consent.consultation_consent), consent.emergency_reason, now_iso(), consent.user_label))
        self.trace(patient_id, consent.user_label, "consentement_dmp",
                   {"episode": consent.episode, "opposition_alimentation": consent.feeding_opposed,
                    "consentement_consultation": consent.consultation_consent,
                    "bris_de_glace": consent.emergency_reason})

    def documents(self, patient_id: int) -> list[sqlite3.Row]:
        return self.db.all("SELECT id, title, type_code, type_label, act_date, author, mime, origin, level, version, "
                           "dmp_state, dmp_sent_at, cda IS NOT NULL AS is_cda, pdf IS NOT NULL AS has_pdf "
                           "FROM documents WHERE patient_id=? ORDER BY type_label, act_date DESC", (patient_id,))
