"""Annuaire santé search (to find a colleague's MSSanté address) and the MSSanté inbox, as background calls."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .. import cda_reader, mailbox_setup
from ..calls import Job, Operation, now_iso
from ..services import annuaire, mss, mss_autoconfig
from ..services.context import ServiceError
from ..web.auth import professional_for
from .base import OpsBase, user_label


class MessagingOps(OpsBase):
    def messaging_operations(self) -> list[Operation]:
        return [Operation("annuaire", "recherche", "Recherche dans l'Annuaire santé", self._annuaire, None),
                Operation("mss", "releve", "Relève de la messagerie MSSanté", self._inbox, None),
                Operation("mss", "integration", "Intégration d'un document reçu par MSSanté", self._mss_integrate,
                          None),
                Operation("mss", "configuration", "Configuration automatique de la messagerie MSSanté",
                          self._mss_autoconfig, self._after_mss_autoconfig)]

    def _global(self, service: str, operation: str, user: Any, session_row: Any, params: dict[str, Any],
                endpoint_extra: dict[str, str] | None = None) -> int:
        sid = session_row["sid"] if session_row is not None else None
        return self.runner.submit(service, operation, professional=professional_for(self.db, sid, user),
                                  params={"user_label": user_label(user), **params}, user_id=user["id"], sid=sid,
                                  endpoint_extra=endpoint_extra)

    def start_directory_search(self, user: Any, session_row: Any, criteria: dict[str, str]) -> int:
        return self._global("annuaire", "recherche", user, session_row, {"criteres": criteria})

    def _annuaire(self, job: Job) -> dict[str, Any]:
        c = job.params["criteres"]
        found = annuaire.search_practitioners(job.ctx, family=c.get("nom") or None, given=c.get("prenom") or None,
                                              rpps=c.get("rpps") or None, city=c.get("ville") or None,
                                              profession=c.get("profession") or None, limit=50)
        return {"practitioners": [asdict(p) for p in found]}

    def _replaced_local(self, data: bytes) -> Any:
        """The local document a received CDA replaces (RPLC), if a file holds it."""
        try:
            _root, info = cda_reader.parse(data)
        except cda_reader.NotACda:
            return None
        return self.db.one("SELECT id, patient_id FROM documents WHERE unique_id=?", (info.replaces,)) \
            if info.replaces else None

    def start_mss_integration(self, user: Any, session_row: Any, uid: int) -> int:
        return self._global("mss", "integration", user, session_row, {"uid": uid},
                            endpoint_extra={"mailbox": user["mss_address"]})

    def _mss_integrate(self, job: Job) -> dict[str, Any]:
        """The CDA documents of a received message's IHE_XDM.zip into the files of their patients (found by the INS
        of the CDA), never twice (CDA id, or setId + version); a new version (RPLC) is linked to the one it
        replaces. Traced in each file."""
        full = self._with_mss_session(job, lambda ctx: mss.fetch(ctx, int(job.params["uid"])))  # type: ignore[attr-defined]
        if full is None or full.xdm is None:
            raise ServiceError("Message introuvable ou sans document IHE_XDM (relever la messagerie)")
        done, skipped = [], []
        sender = full.summary.sender
        for doc in full.xdm.documents:
            try:
                _root, info = cda_reader.parse(doc.data)
            except cda_reader.NotACda as exc:
                skipped.append({"document": doc.uri, "why": f"illisible : {exc}"})
                continue
            patient = next((p for p in self.records.search(ins=info.patient_ins, limit=5)
                            if info.patient_ins and p.ins_matricule == info.patient_ins), None)
            if patient is None:
                skipped.append({"document": doc.uri, "why": f"aucun dossier pour l'INS {info.patient_ins or '?'}"})
                continue
            if self.db.one("SELECT 1 FROM documents WHERE patient_id=? AND (unique_id=? OR (set_id=? AND version=?))",
                           (patient.id, info.unique_id, info.set_id or None, info.version)):
                skipped.append({"document": doc.uri, "why": "déjà intégré"})
                continue
            replaced = self._replaced_local(doc.data)
            self.db.execute(
                "INSERT INTO documents (patient_id, title, type_code, type_label, act_date, author, mime, content, "
                "origin, created_at, unique_id, set_id, version, level, cda, pdf, source_ref, replaces_id) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (patient.id, info.title or doc.title, info.type_code, info.type_label or info.title,
                 info.effective_time, info.author or sender, doc.mime_type, doc.data, "mss", now_iso(),
                 info.unique_id, info.set_id or None, info.version, info.level, doc.data, info.pdf,
                 full.summary.message_id or f"uid:{job.params['uid']}",
                 replaced["id"] if replaced and replaced["patient_id"] == patient.id else None))
            self.records.trace(patient.id, job.params.get("user_label", "système"), "integration_mss",
                               {"document": info.unique_id, "titre": info.title, "version": info.version,
                                "expediteur": sender, "remplace": info.replaces or ""})
            done.append({"document": info.unique_id, "patient_id": patient.id, "replaces": info.replaces})
        if skipped:
            job.notes.append(f"{len(skipped)} document(s) non intégré(s) : "
                             + "; ".join(sorted({s['why'] for s in skipped})))
        return {"integrated": done, "skipped": skipped}

    def _patient_of(self, address: str) -> Any:
        """The file whose INS is the local part of a Mon espace santé address (<INS>@patient.mssante.fr), if any."""
        ins = address.partition("@")[0]
        if len(ins) != 15:  # a matricule (13 characters, 2A/2B for Corsica) and its 2-digit key
            return None
        return next((p for p in self.records.search(ins=ins, limit=5) if p.ins_matricule == ins), None)

    def start_mss_autoconfig(self, user: Any, session_row: Any) -> int:
        """Read the operator's auto-configuration document (SC.MSS/CONF.04); its servers replace the typed ones."""
        return self._global("mss", "configuration", user, session_row, {})

    def _mss_autoconfig(self, job: Job) -> dict[str, Any]:
        servers = mss_autoconfig.fetch(job.ctx.endpoint)
        return {"servers": servers.as_extra(), "source": servers.source}

    def _after_mss_autoconfig(self, job: Job, result: dict[str, Any] | None, error: ServiceError | None) -> None:
        if result is not None:
            s = result["servers"]
            mailbox_setup.store(self.db, mss_autoconfig.MailServers(
                s["smtp_host"], int(s["smtp_port"]), s["imap_host"], int(s["imap_port"]), result["source"]))

    def start_inbox(self, user: Any, session_row: Any) -> int:
        return self._global("mss", "releve", user, session_row, {}, endpoint_extra={"mailbox": user["mss_address"]})

    def _inbox(self, job: Job) -> dict[str, Any]:
        if not job.ctx.endpoint.extra.get("mailbox"):
            raise ServiceError("Aucune adresse MSSanté personnelle dans votre compte local")
        # PrescriptionOps: the PSC token and one new session on its expiry
        return self._with_mss_session(job, self._read_inbox)  # type: ignore[attr-defined]

    def _read_inbox(self, ctx: Any) -> dict[str, Any]:
        out = []
        for m in mss.list_inbox(ctx):
            integrated, update = False, False
            if m.has_xdm:
                full = mss.fetch(ctx, m.uid)
                docs = full.xdm.documents if full and full.xdm else []
                ids = [d.unique_id for d in docs if d.unique_id]
                integrated = bool(ids) and self.db.one(
                    f"SELECT 1 FROM documents WHERE unique_id IN ({','.join('?' * len(ids))})", tuple(ids)) is not None
                # LGC.MSS/UX.05: a new version (RPLC) of a document already in a file is said as such
                update = not integrated and any(self._replaced_local(d.data) for d in docs)
            patient = self._patient_of(m.sender) if m.from_patient else None
            out.append({"uid": m.uid, "sender": m.sender,
                        # A patient is named as the file names them, not by the INS of their address (SC.MSS/UX.31)
                        "sender_name": patient.display_name if patient else m.sender_name,
                        "patient_id": patient.id if patient else None, "from_patient": m.from_patient,
                        "subject": m.display_subject,
                        "date": m.date.isoformat() if m.date else "", "seen": m.seen, "has_xdm": m.has_xdm,
                        "is_mdn": m.is_mdn, "integrated": integrated, "update": update,
                        "attachments": [a.filename for a in m.attachments]})
        return {"messages": out}
