"""DMP operations: existence and authorisation test (TD0.2), authorisation (TD0.3) once consent is recorded,
consultation (ITI-18) only when the DICA allows it, integration (ITI-43) without duplicates, visibility (ITI-57)."""

from __future__ import annotations

from typing import Any

from .. import cda_reader, dmp_view
from .. import identity as idn
from ..calls import EN_COURS, REUSSI, Job, Operation, now_iso
from ..consent import DmpAccess, authorisation_to_set, dica
from ..records import Patient
from ..services import dmp
from ..services.context import ServiceError, ServiceRefused
from .base import OpsBase, load_user

# Test INS OIDs used by the DMP test platforms (protocols.md §1.9): production OID → test OID.
TEST_OIDS = {idn.OID_NIR: idn.OID_NIR_TEST, idn.OID_NIA: idn.OID_NIA_TEST}
_NO_LINKS = {"identity": "", "consent": "", "login": "", "status": ""}


class DmpOps(OpsBase):
    def dmp_operations(self) -> list[Operation]:
        return [
            Operation("dmp", "acces", "Accès au DMP (test d'existence)", self._dmp_access, self._after_dmp_access),
            Operation("dmp", "autorisation", "Autorisation d'accès au DMP", self._dmp_authorise,
                      self._after_authorise),
            Operation("dmp", "consultation", "Consultation du DMP (documents)", self._dmp_find, None),
            Operation("dmp", "integration", "Intégration de documents du DMP", self._dmp_integrate, None),
            Operation("dmp", "visibilite", "Visibilité d'un document pour le patient", self._dmp_visibility,
                      self._after_visibility),
            Operation("dmp", "suppression", "Suppression d'un document du DMP", self._dmp_delete,
                      self._after_delete),
        ]

    def start_dmp_check(self, p: Patient, user: Any, session_row: Any) -> int | None:
        if not p.qualified or self._in_flight(p.id, "dmp", "acces"):
            return None
        return self._submit("dmp", "acces", p, user, session_row["sid"] if session_row else None,
                            self._dmp_params(p))

    def after_consent(self, p: Patient, user: Any, session_row: Any) -> None:
        """Recording consent sets the professional's DMP authorisation (TD0.3) when the DMP allows it."""
        if not p.qualified:
            return
        access = self.dmp_access(p.id)
        consent = self.records.consent(p.id)
        if access is None or access.state in ("en_cours", "echec"):
            self.start_dmp_check(p, user, session_row)  # its after-hook sets the authorisation
        elif authorisation_to_set(consent=consent, dmp=access):
            self._submit("dmp", "autorisation", p, user, session_row["sid"] if session_row else None,
                         self._dmp_params(p))

    def _dmp_params(self, p: Patient) -> dict[str, Any]:
        consent = self.records.consent(p.id)
        purpose = "bris_de_glace" if consent and consent.emergency and not consent.consultation_consent \
            else "normal"
        return {"ins": p.ins_matricule, "oid": self.dmp_oid(p.ins_oid or ""), "purpose": purpose}

    def dmp_oid(self, oid: str) -> str:
        """The INS OID as the DMP platform wants it: the test OIDs on test platforms (the default here)."""
        if self.config.service("dmp").extra.get("ins_oids", "test") == "test":
            return TEST_OIDS.get(oid, oid)
        return oid


    def _chain_dmp(self, job: Job, p: Patient) -> None:
        if not self._in_flight(p.id, "dmp", "acces"):
            self._submit("dmp", "acces", p, load_user(self.db, job.user_id), job.sid, self._dmp_params(p))

    def _dmp_access(self, job: Job) -> dict[str, Any]:
        st = dmp.test_existence(job.ctx, job.params["ins"], job.params["oid"], purpose=job.params["purpose"])
        return {"state": st.state, "authorisation": st.authorisation, "blocked": st.blocked,
                "closed_at": st.closed_at, "authorisation_expires": st.authorisation_expires,
                "medecin_traitant": st.medecin_traitant}

    def _after_dmp_access(self, job: Job, result: dict[str, Any] | None, error: ServiceError | None) -> None:
        if result is None or job.patient_id is None:
            return
        access = DmpAccess(state=result["state"], authorisation=result["authorisation"], blocked=result["blocked"])
        p = self.records.get(job.patient_id)
        if p is None:
            return
        if authorisation_to_set(consent=self.records.consent(job.patient_id), dmp=access) \
                and not self._authorisation_pending_or_newer(job):
            self._submit("dmp", "autorisation", p, load_user(self.db, job.user_id), job.sid, job.params)
        elif access.authorisation == "valide" or self._authorisation_pending_or_newer(job):
            self._consult_if_allowed(job, p, access)

    def _authorisation_pending_or_newer(self, job: Job) -> bool:
        """A TD0.3 in flight, or one that ended after this TD0.2 started (its answer may predate it)."""
        started = self.db.one("SELECT started_at FROM service_calls WHERE id=?", (job.id,))["started_at"]
        row = self.db.one("SELECT 1 FROM service_calls WHERE patient_id=? AND service='dmp' AND operation="
                          "'autorisation' AND (status=? OR (status=? AND finished_at >= ?)) LIMIT 1",
                          (job.patient_id, EN_COURS, REUSSI, started))
        return row is not None

    def _dmp_authorise(self, job: Job) -> dict[str, Any]:
        auth = dmp.set_authorisation(job.ctx, job.params["ins"], job.params["oid"], grant=True)
        return {"status": auth.status, "start": auth.start, "end": auth.end}

    def _after_authorise(self, job: Job, result: dict[str, Any] | None, error: ServiceError | None) -> None:
        p = self.records.get(job.patient_id) if job.patient_id else None
        access = self.dmp_access(job.patient_id) if job.patient_id else None
        if result is not None and p is not None and access is not None:
            self._consult_if_allowed(job, p, DmpAccess(state=access.state, authorisation="valide",
                                                       blocked=access.blocked))

    def _consult_if_allowed(self, job: Job, p: Patient, access: DmpAccess) -> None:
        """Consultation (ITI-18) only when the DICA allows it: never without traced consent."""
        checklist = dica(ins_qualified=p.qualified, dmp=access, consent=self.records.consent(p.id),
                         authenticated=self._session_alive(job.sid), links=_NO_LINKS)
        if checklist.can_consult and not self._in_flight(p.id, "dmp", "consultation"):
            self._submit("dmp", "consultation", p, load_user(self.db, job.user_id), job.sid, self._dmp_params(p))

    def start_consultation(self, p: Patient, user: Any, session_row: Any) -> int | None:
        if self._in_flight(p.id, "dmp", "consultation"):
            return None
        return self._submit("dmp", "consultation", p, user, session_row["sid"] if session_row else None,
                            self._dmp_params(p))

    def _dmp_find(self, job: Job) -> dict[str, Any]:
        entries = dmp.find_documents(job.ctx, job.params["ins"], job.params["oid"],
                                     statuses=(dmp.ST_APPROVED, dmp.ST_DEPRECATED, dmp.ST_ARCHIVED),
                                     purpose=job.params["purpose"])
        assert job.patient_id is not None
        new = dmp_view.store_entries(self.db, job.patient_id, entries)
        return {"count": len(entries), "first_seen": len(new)}

    def start_integration(self, p: Patient, user: Any, session_row: Any, entry_uuids: list[str]) -> int:
        return self._submit("dmp", "integration", p, user, session_row["sid"] if session_row else None,
                            {**self._dmp_params(p), "entries": entry_uuids})

    def _dmp_integrate(self, job: Job) -> dict[str, Any]:
        """Retrieve (ITI-43) and store the selected documents, never twice (CDA id, or setId + version)."""
        pid = job.patient_id
        assert pid is not None
        done, skipped, traced = [], [], []
        for uuid in job.params["entries"]:
            entry = self.db.one("SELECT * FROM dmp_entries WHERE patient_id=? AND entry_uuid=?", (pid, uuid))
            if entry is None:
                skipped.append({"entry": uuid, "why": "inconnu (actualiser la liste du DMP)"})
                continue
            if self.db.one("SELECT 1 FROM documents WHERE patient_id=? AND (unique_id=? OR source_ref=?)",
                           (pid, entry["unique_id"], uuid)):
                skipped.append({"entry": uuid, "why": "déjà dans le dossier local"})
                continue
            doc = dmp.retrieve_document(job.ctx, job.params["ins"], job.params["oid"], entry["unique_id"],
                                        purpose=job.params["purpose"])
            # SC.DMP/CONF.14: every document read from the DMP is an access, traced (who, when, which document,
            # integrated or not) and exportable (/patients/<id>/traces.csv)
            access = {"entree": uuid, "identifiant": entry["unique_id"], "titre": entry["title"],
                      "auteur": entry["author"], "integre": False}
            traced.append(access)
            try:
                _root, info = cda_reader.parse(doc.content)
            except cda_reader.NotACda as exc:
                skipped.append({"entry": uuid, "why": f"illisible : {exc}"})
                continue
            if info.set_id and self.db.one("SELECT 1 FROM documents WHERE patient_id=? AND set_id=? AND version=?",
                                           (pid, info.set_id, info.version)):
                skipped.append({"entry": uuid, "why": "même setId et même version déjà dans le dossier"})
                continue
            self.db.execute(
                "INSERT INTO documents (patient_id, title, type_code, type_label, act_date, author, mime, content, "
                "origin, created_at, unique_id, set_id, version, level, cda, pdf, class_code, source_ref) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (pid, info.title or entry["title"], info.type_code or entry["type_code"],
                 info.type_label or entry["title"], info.effective_time or (entry["creation_time"] or "")[:10],
                 info.author or entry["author"], doc.mime_type, doc.content, "dmp", now_iso(),
                 info.unique_id or entry["unique_id"], info.set_id or None, info.version, info.level, doc.content,
                 info.pdf, entry["class_code"], uuid))
            done.append(uuid)
            access["integre"] = True
        if traced:
            self.records.trace(pid, job.params.get("user_label", "système"), "integration_dmp",
                               {"documents": traced, "ignores": skipped})
        if skipped:
            job.notes.append(f"{len(skipped)} document(s) non intégré(s) : "
                             + "; ".join(sorted({s['why'] for s in skipped})))
        return {"integrated": done, "skipped": skipped}

    def start_visibility(self, p: Patient, user: Any, session_row: Any, entry_uuid: str, visible: bool) -> int:
        return self._submit("dmp", "visibilite", p, user, session_row["sid"] if session_row else None,
                            {**self._dmp_params(p), "entry": entry_uuid, "visible": visible})

    def _dmp_visibility(self, job: Job) -> dict[str, Any]:
        # ITI-57 needs the entry's current registry version: read it fresh.
        entries = dmp.find_documents(job.ctx, job.params["ins"], job.params["oid"], purpose=job.params["purpose"])
        entry = next((e for e in entries if e.entry_uuid == job.params["entry"]), None)
        if entry is None:
            raise ServiceRefused("Document introuvable dans le DMP (supprimé ou remplacé)", code="introuvable")
        dmp.update_visibility(job.ctx, job.params["ins"], job.params["oid"], entry,
                              invisible_to_patient=not job.params["visible"])
        return {"entry": entry.entry_uuid, "visible": job.params["visible"]}

    def _after_visibility(self, job: Job, result: dict[str, Any] | None, error: ServiceError | None) -> None:
        if result is not None and job.patient_id is not None:
            self.db.execute("UPDATE dmp_entries SET invisible_to_patient=? WHERE patient_id=? AND entry_uuid=?",
                            (int(not result["visible"]), job.patient_id, result["entry"]))

    def start_deletion(self, p: Patient, user: Any, session_row: Any, entry_uuid: str) -> int:
        return self._submit("dmp", "suppression", p, user, session_row["sid"] if session_row else None,
                            {**self._dmp_params(p), "entry": entry_uuid})

    def _dmp_delete(self, job: Job) -> dict[str, Any]:
        """ITI-57 to Deleted (SC.DMP/CONF.03), from the entry's current status. Only its author may: the DMP is
        the judge (the document may come from this professional's other software), and its refusal is shown."""
        entries = dmp.find_documents(job.ctx, job.params["ins"], job.params["oid"],
                                     statuses=(dmp.ST_APPROVED, dmp.ST_ARCHIVED), purpose=job.params["purpose"])
        entry = next((e for e in entries if e.entry_uuid == job.params["entry"]), None)
        if entry is None:
            raise ServiceRefused("Document introuvable dans le DMP (déjà supprimé ou remplacé)", code="introuvable")
        dmp.delete_document(job.ctx, job.params["ins"], job.params["oid"], entry.entry_uuid,
                            current_status=entry.status)
        return {"entry": entry.entry_uuid, "title": entry.title}

    def _after_delete(self, job: Job, result: dict[str, Any] | None, error: ServiceError | None) -> None:
        if job.patient_id is None:
            return
        if result is None:
            self.records.trace(job.patient_id, job.params.get("user_label", "système"), "suppression_dmp_refusee",
                               {"document": job.params["entry"], "motif": str(error) if error else ""})
            return
        self.db.execute("UPDATE dmp_entries SET status='deleted' WHERE patient_id=? AND entry_uuid=?",
                        (job.patient_id, result["entry"]))
        self.db.execute("UPDATE documents SET dmp_state='supprime' WHERE patient_id=? AND dmp_entry_uuid=?",
                        (job.patient_id, result["entry"]))
        self.records.trace(job.patient_id, job.params.get("user_label", "système"), "suppression_dmp",
                           {"document": result["entry"], "titre": result["title"]})

    def dmp_access(self, patient_id: int) -> DmpAccess | None:
        """The DMP state for the DICA: the last TD0.2, with the authorisation of a later TD0.3."""
        check = self.runner.latest(patient_id, "dmp", "acces")
        if check is None:
            return None
        if check.status == EN_COURS:
            return DmpAccess(state="en_cours")
        if check.status != REUSSI or not check.result:
            return DmpAccess(state="echec", reason=check.reason)
        r = check.result
        authorisation = r["authorisation"]
        auth = self.runner.latest(patient_id, "dmp", "autorisation")
        # A TD0.3 that ended after this TD0.2 started is newer than what TD0.2 answered.
        if auth is not None and auth.status == REUSSI and auth.result and auth.finished_at \
                and (check.started_at is None or auth.finished_at >= check.started_at):
            authorisation = auth.result.get("status", authorisation)
        return DmpAccess(state=r["state"], authorisation=authorisation, blocked=bool(r["blocked"]))

    # ----------------------------------------------------------------------------------------- views

