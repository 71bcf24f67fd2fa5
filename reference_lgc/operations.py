"""What the LGC does with the national services, as background calls: INSi retrieval (with the silent COG
retry), ApCV reading, DMP existence/authorisation test (TD0.2) and authorisation (TD0.3). Each operation's
after-hook applies its result to the patient file and chains the next call, so the user never waits."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from datetime import date
from typing import Any

from . import cda_reader, dmp_view
from . import identity as idn
from .calls import EN_COURS, REUSSI, CallRunner, CallView, Job, Operation, now_iso
from .config import LgcConfig
from .consent import DmpAccess, authorisation_to_set, dica, feeding_allowed
from .db import Database
from .records import Patient, Records
from .services import apcv, dmp, insi
from .services.context import ServiceError, ServiceRefused
from .web.auth import professional_for

log = logging.getLogger("reference_lgc.operations")

# Test INS OIDs used by the DMP test platforms (protocols.md §1.9): production OID → test OID.
TEST_OIDS = {idn.OID_NIR: idn.OID_NIR_TEST, idn.OID_NIA: idn.OID_NIA_TEST}
INSI_COG_NOTE = "Plusieurs identités trouvées sans le lieu de naissance : relance automatique avec le COG."


def _iso(value: date | str | None) -> str:
    return value.isoformat() if isinstance(value, date) else (value or "")


class Operations:
    def __init__(self, db: Database, records: Records, runner: CallRunner, config: LgcConfig) -> None:
        self.db, self.records, self.runner, self.config = db, records, runner, config
        for op in (
            Operation("insi", "recherche_traits", "Recherche INS (INSi)", self._insi, self._after_insi),
            Operation("apcv", "lecture", "Lecture Appli carte Vitale", self._apcv, self._after_apcv),
            Operation("dmp", "acces", "Accès au DMP (test d'existence)", self._dmp_access, self._after_dmp_access),
            Operation("dmp", "autorisation", "Autorisation d'accès au DMP", self._dmp_authorise,
                      self._after_authorise),
            Operation("dmp", "consultation", "Consultation du DMP (documents)", self._dmp_find, None),
            Operation("dmp", "integration", "Intégration de documents du DMP", self._dmp_integrate, None),
            Operation("dmp", "visibilite", "Visibilité d'un document pour le patient", self._dmp_visibility,
                      self._after_visibility),
        ):
            runner.register(op)

    # ----------------------------------------------------------------------------------------- starting

    def _submit(self, service: str, operation: str, p: Patient, user: Any, sid: str | None,
                params: dict[str, Any]) -> int:
        params = {"user_label": _label(user), **params}
        return self.runner.submit(service, operation, professional=professional_for(self.db, sid, user),
                                  patient_id=p.id, params=params, user_id=user["id"] if user else None, sid=sid)

    def _in_flight(self, patient_id: int, service: str, operation: str) -> bool:
        last = self.runner.latest(patient_id, service, operation)
        return last is not None and last.in_flight

    def on_open(self, p: Patient, user: Any, session_row: Any) -> None:
        sid = session_row["sid"] if session_row is not None else None
        why = idn.insi_call_needed(retrieved=p.retrieved, douteuse=p.douteuse, fictive=p.fictive,
                                   retrieved_at=p.retrieved_at)
        if why and not self._in_flight(p.id, "insi", "recherche_traits"):
            self.start_insi(p, user, session_row, reason=why)
        if p.qualified and not self._in_flight(p.id, "dmp", "acces"):
            self._submit("dmp", "acces", p, user, sid, self._dmp_params(p))

    def start_insi(self, p: Patient, user: Any, session_row: Any, *, reason: str,
                   traits: idn.Traits | None = None) -> int:
        t = traits or p.traits
        return self._submit("insi", "recherche_traits", p, user, session_row["sid"] if session_row else None,
                            {"reason": reason, "traits": asdict(t)})

    def start_apcv(self, p: Patient, user: Any, session_row: Any, payload: str) -> int:
        return self._submit("apcv", "lecture", p, user, session_row["sid"] if session_row else None,
                            {"payload": payload})

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

    # ------------------------------------------------------------------------------------------- INSi

    def _insi(self, job: Job) -> dict[str, Any]:
        t = job.params["traits"]
        attempts: list[dict[str, Any]] = []

        def search(cog: str | None) -> insi.InsiResult:
            res = insi.search_by_traits(job.ctx, birth_name=t["birth_name"], first_names=t["first_names"],
                                        sex=t["sex"], birth_date=t["birth_date"], birthplace_cog=cog)
            attempts.append({"cog": cog, "code": res.code, "label": res.label,
                             "message_id": res.exchange.message_id, "duree_s": round(res.exchange.elapsed_s, 3)})
            return res

        # Traits without the COG first; several identities → silent retry with the COG (INS guide).
        res = search(None)
        cog = t.get("birthplace_cog")
        if res.code == "02" and cog and cog != idn.COG_UNKNOWN:
            job.notes.append(INSI_COG_NOTE)
            res = search(cog)
        out: dict[str, Any] = {"code": res.code, "label": res.label, "attempts": attempts,
                               "reason": job.params.get("reason", "")}
        if res.individual is not None:
            ind = res.individual
            out["individual"] = {
                "matricule": ind.matricule, "oid": ind.oid, "birth_name": ind.birth_name,
                "first_name": ind.first_name, "first_names": ind.first_names_text, "sex": ind.sex,
                "birth_date": _iso(ind.birth_date), "birthplace_cog": ind.birthplace_cog or "",
                "history": [{"matricule": h.matricule, "oid": h.oid} for h in ind.history]}
        return out

    def _after_insi(self, job: Job, result: dict[str, Any] | None, error: ServiceError | None) -> None:
        pid, who = job.patient_id, job.params.get("user_label", "système")
        assert pid is not None
        if error is not None:
            self.records.trace(pid, who, "insi_echec", {"motif": error.reason, "code": error.code or ""})
            return
        assert result is not None
        self.records.trace(pid, who, "insi_recherche", {"motif_appel": result.get("reason", ""),
                                                         "tentatives": result["attempts"]})
        ind = result.get("individual")
        p = self.records.get(pid)
        if ind is None or p is None:
            return
        rows = idn.compare(p.traits, p.ins_matricule, ind)
        # A full match (or a verification of the INS already held) is recorded without asking.
        if idn.full_match(rows) or (p.ins_matricule == ind["matricule"] and p.retrieved):
            self.records.apply_ins(pid, matricule=ind["matricule"], oid=ind["oid"], traits=_traits_of(ind, p),
                                   user_label=who, source="INSi (correspondance complète)")
            result["applied"] = True
            now = self.records.get(pid)
            if now is not None and now.qualified:
                self._chain_dmp(job, now)

    def accept_insi(self, patient_id: int, call_id: int, user_label: str) -> None:
        """One click: take the identity the INSi returned (traits replaced by the reference ones)."""
        call = self.runner.get(call_id)
        if call is None or call.patient_id != patient_id or call.status != REUSSI or not call.result \
                or not call.result.get("individual"):
            raise ValueError("Aucune identité INSi à enregistrer pour ce patient (relancer la recherche)")
        p = self.records.get(patient_id)
        assert p is not None
        if p.fictive or p.douteuse:
            raise ValueError("Identité fictive ou douteuse : l'INS ne peut pas lui être associée")
        ind = call.result["individual"]
        self.records.apply_ins(patient_id, matricule=ind["matricule"], oid=ind["oid"], traits=_traits_of(ind, p),
                               user_label=user_label, source="INSi (validée par l'utilisateur)")

    # ------------------------------------------------------------------------------------------- ApCV

    def _apcv(self, job: Job) -> dict[str, Any]:
        ctx = apcv.authenticate_proximity(job.ctx, job.params["payload"])
        try:
            ids = apcv.restore_context(job.ctx, ctx.context_id)
        finally:
            try:
                apcv.destroy_context(job.ctx, ctx.context_id)
            except ServiceError as exc:  # the context expires by itself; the reading succeeded anyway
                job.notes.append(f"Contexte ApCV non détruit : {exc.reason}")
        p = self.records.get(job.patient_id) if job.patient_id else None
        chosen = _pick_beneficiary(ids.beneficiaries, p)
        if chosen is None:
            names = ", ".join(f"{b.birth_name} {b.first_name} ({_iso(b.birth_date)})" for b in ids.beneficiaries)
            raise ServiceRefused(f"L'Appli carte Vitale présentée ne correspond pas à ce patient (bénéficiaires : "
                                 f"{names})", code="apcv_autre_patient")
        return {"beneficiary": {
            "ins": chosen.ins, "ins_oid": chosen.ins_oid, "nir": chosen.nir, "birth_name": chosen.birth_name,
            "first_name": chosen.first_name, "first_names": chosen.first_names_text, "sex": chosen.sex,
            "birth_date": _iso(chosen.birth_date), "birthplace_cog": chosen.birthplace_cog or "",
            "used_name": chosen.used_name or "", "used_first_name": chosen.used_first_name or ""},
            "context_id": ids.context_id, "beneficiaries": len(ids.beneficiaries)}

    def _after_apcv(self, job: Job, result: dict[str, Any] | None, error: ServiceError | None) -> None:
        pid, who = job.patient_id, job.params.get("user_label", "système")
        assert pid is not None
        if error is not None:
            self.records.trace(pid, who, "apcv_echec", {"motif": error.reason, "code": error.code or ""})
            return
        assert result is not None
        b = result["beneficiary"]
        p = self.records.get(pid)
        if p is None:
            return
        if b.get("ins"):
            # Identity from the Appli carte Vitale: qualified at once (SC.INS.04, SC.INS.22).
            self.records.apply_ins(pid, matricule=b["ins"], oid=b["ins_oid"] or idn.OID_NIR,
                                   traits=_traits_of(b, p), user_label=who, source="Appli carte Vitale",
                                   validated_by=idn.APCV_MEANS)
        else:
            self.records.validate(pid, idn.APCV_MEANS, user_label=who)
        now = self.records.get(pid)
        assert now is not None
        # Then the INSi, in the background, with the traits the ApCV gave (verification of the INS).
        self._submit("insi", "recherche_traits", now, _user(self.db, job.user_id), job.sid,
                     {"reason": "verification_apcv", "traits": asdict(now.traits)})
        if now.qualified:
            self._chain_dmp(job, now)

    # -------------------------------------------------------------------------------------------- DMP

    def _chain_dmp(self, job: Job, p: Patient) -> None:
        if not self._in_flight(p.id, "dmp", "acces"):
            self._submit("dmp", "acces", p, _user(self.db, job.user_id), job.sid, self._dmp_params(p))

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
            self._submit("dmp", "autorisation", p, _user(self.db, job.user_id), job.sid, job.params)
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
            self._submit("dmp", "consultation", p, _user(self.db, job.user_id), job.sid, self._dmp_params(p))

    def _session_alive(self, sid: str | None) -> bool:
        row = self.db.one("SELECT access_token, refresh_token, expires_at FROM sessions WHERE sid=?", (sid,)) \
            if sid else None
        return row is not None and bool(row["access_token"]) and (
            (row["expires_at"] or 0) > time.time() or bool(row["refresh_token"]))

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
        done, skipped = [], []
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
        if done:
            self.records.trace(pid, job.params.get("user_label", "système"), "integration_dmp",
                               {"documents": done, "ignores": skipped})
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

    def file_context(self, p: Patient, user: Any, session_row: Any) -> dict[str, Any]:
        from .web.auth import authenticated

        insi_call = self.runner.latest(p.id, "insi")
        comparison = None
        if insi_call and insi_call.status == REUSSI and insi_call.result and insi_call.result.get("individual"):
            comparison = idn.compare(p.traits, p.ins_matricule, insi_call.result["individual"])
        consent = self.records.consent(p.id)
        access = self.dmp_access(p.id) if p.qualified else None
        links = {"identity": f"/patients/{p.id}#identite", "consent": f"/patients/{p.id}#consentement",
                 "login": "/connexion", "status": self.config.service_status_url}
        checklist = dica(ins_qualified=p.qualified, dmp=access, consent=consent, authenticated=authenticated(),
                         links=links)
        feed_ok, feed_why = feeding_allowed(ins_qualified=p.qualified, consent=consent)
        consult_call = self.runner.latest(p.id, "dmp", "consultation")
        new_docs = dmp_view.new_since(self.db, p.id, self.records.previous_visit(p.id)) \
            if consult_call is not None else None
        calls: list[CallView] = [c for c in (
            insi_call, self.runner.latest(p.id, "apcv"), self.runner.latest(p.id, "dmp", "acces"),
            self.runner.latest(p.id, "dmp", "autorisation")) if c is not None]
        return {"patient": p, "insi_call": insi_call, "comparison": comparison,
                "insi_applied": bool(insi_call and insi_call.result and insi_call.result.get("applied")),
                "apcv_call": self.runner.latest(p.id, "apcv"), "dmp_call": self.runner.latest(p.id, "dmp", "acces"),
                "auth_call": self.runner.latest(p.id, "dmp", "autorisation"), "consent": consent,
                "dmp_access": access, "dica": checklist, "feeding_ok": feed_ok, "feeding_why": feed_why,
                "calls": calls, "id_documents": idn.ID_DOCUMENTS, "status_url": self.config.service_status_url,
                "cog_label": idn.cog_label, "consult_call": consult_call, "new_docs": new_docs,
                "integration_call": self.runner.latest(p.id, "dmp", "integration"),
                "visibility_call": self.runner.latest(p.id, "dmp", "visibilite"),
                "warnings": dmp_view.local_warnings(self.db, p.id), "documents": self.records.documents(p.id)}


_NO_LINKS = {"identity": "", "consent": "", "login": "", "status": ""}


def _label(user: Any) -> str:
    if user is None:
        return "système"
    return f"{user['family_name']} {user['given_name']} ({user['national_id'] or user['login']})"


def _user(db: Database, user_id: int | None) -> Any:
    return db.one("SELECT * FROM users WHERE id=?", (user_id,)) if user_id else None


def _traits_of(ident: dict[str, Any], p: Patient) -> idn.Traits:
    """Reference traits from a teleservice; names the service does not carry stay as they were."""
    return idn.Traits(birth_name=idn.normalize(ident["birth_name"]),
                      first_names=idn.normalize(ident.get("first_names") or ident.get("first_name") or ""),
                      sex=ident["sex"], birth_date=ident["birth_date"],
                      birthplace_cog=ident.get("birthplace_cog") or p.traits.birthplace_cog,
                      used_name=idn.normalize(ident.get("used_name") or "") or p.traits.used_name,
                      used_first_name=idn.normalize(ident.get("used_first_name") or "") or p.traits.used_first_name)


def _pick_beneficiary(beneficiaries: tuple[apcv.ApcvBeneficiary, ...], p: Patient | None
                      ) -> apcv.ApcvBeneficiary | None:
    """The card's beneficiary this file is about: same birth date and birth name (or first name for a child)."""
    if p is None:
        return next((b for b in beneficiaries if b.is_user), None)
    for b in beneficiaries:
        if _iso(b.birth_date) == p.traits.birth_date and (
                idn.normalize(b.birth_name) == p.traits.birth_name
                or idn.normalize(b.first_name) == p.traits.first_first_name):
            return b
    return None
