"""What the LGC does with the national services, as background calls. Each operation's after-hook applies its
result to the patient file and chains the next call, so the user never waits. One module per area."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from .. import dmp_view
from .. import identity as idn
from ..calls import REUSSI, CallRunner, CallView
from ..config import LgcConfig
from ..consent import dica, feeding_allowed
from ..db import Database
from ..outbox import Outbox
from ..records import Patient, Records
from .cse_ops import CHILD_MAX_MONTHS, CertificateError, CseOps, age_months
from .dmp_ops import TEST_OIDS, DmpOps
from .identity_ops import INSI_COG_NOTE, IdentityOps
from .messaging_ops import MessagingOps
from .prescription_ops import PrescriptionError, PrescriptionOps, lines_from_form

__all__ = ["INSI_COG_NOTE", "TEST_OIDS", "CertificateError", "Operations", "PrescriptionError", "lines_from_form"]


class Operations(IdentityOps, DmpOps, PrescriptionOps, MessagingOps, CseOps):
    def __init__(self, db: Database, records: Records, runner: CallRunner, config: LgcConfig,
                 outbox: Outbox) -> None:
        super().__init__(db, records, runner, config)
        self.outbox = outbox
        for op in (*self.identity_operations(), *self.dmp_operations(), *self.prescription_operations(),
                   *self.messaging_operations(), *self.cse_operations()):
            runner.register(op)

    def on_open(self, p: Patient, user: Any, session_row: Any) -> None:
        sid = session_row["sid"] if session_row is not None else None
        why = idn.insi_call_needed(retrieved=p.retrieved, douteuse=p.douteuse, fictive=p.fictive,
                                   retrieved_at=p.retrieved_at)
        if why and not self._insi_pending(p.id):
            self.start_insi(p, user, session_row, reason=why)
        # An INS due for its periodic verification is not sent to the DMP before the INSi has answered: the
        # verification's end starts the DMP call, with the INS it confirmed or the new one (SC.INS.13).
        if p.qualified and why != "verification" and not self._in_flight(p.id, "dmp", "acces"):
            self._submit("dmp", "acces", p, user, sid, self._dmp_params(p))

    def _insi_pending(self, patient_id: int) -> bool:
        """An INSi call of the file still running, or one of this consultation whose identity awaits the user's
        decision (e.g. found by the carte Vitale, to be recorded in one click): the file's page shown again after
        an action is not a new opening, and an automatic search must not push that answer off the screen."""
        last = self.runner.latest(patient_id, "insi")
        if last is None:
            return False
        if last.in_flight:
            return True
        fresh = datetime.now(UTC) - datetime.fromisoformat(last.created_at) < Records.VISIT_GAP
        return fresh and last.status == REUSSI and bool(last.result and last.result.get("individual")) \
            and not last.result.get("applied")

    def file_context(self, p: Patient, user: Any, session_row: Any) -> dict[str, Any]:
        from ..web.auth import authenticated

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
        # Counted once the consultation has answered: while it runs (3 s of latency in the flagship), the local
        # copy of the DMP list is not filled yet and a "0 nouveau document" would be wrong.
        new_docs = dmp_view.new_since(self.db, p.id, self.records.previous_visit(p.id)) \
            if consult_call is not None and consult_call.status == REUSSI else None
        calls: list[CallView] = [c for c in (
            insi_call, self.runner.latest(p.id, "apcv"), self.runner.latest(p.id, "dmp", "acces"),
            self.runner.latest(p.id, "dmp", "autorisation")) if c is not None]
        child = age_months(p.traits.birth_date, date.today()) < CHILD_MAX_MONTHS if p.traits.birth_date else False
        return {"patient": p, "insi_call": insi_call, "comparison": comparison,
                "ins_history": self.records.ins_history(p.id),
                "certificates": self.certificates(p.id) if child else None,
                "insi_applied": bool(insi_call and insi_call.result and insi_call.result.get("applied")),
                "apcv_call": self.runner.latest(p.id, "apcv"), "dmp_call": self.runner.latest(p.id, "dmp", "acces"),
                "auth_call": self.runner.latest(p.id, "dmp", "autorisation"), "consent": consent,
                "dmp_access": access, "dica": checklist, "feeding_ok": feed_ok, "feeding_why": feed_why,
                "calls": calls, "id_documents": idn.ID_DOCUMENTS, "status_url": self.config.service_status_url,
                "cog_label": idn.cog_label, "consult_call": consult_call, "new_docs": new_docs,
                "integration_call": self.runner.latest(p.id, "dmp", "integration"),
                "visibility_call": self.runner.latest(p.id, "dmp", "visibilite"),
                "deletion_call": self.runner.latest(p.id, "dmp", "suppression"),
                "warnings": dmp_view.local_warnings(self.db, p.id), "documents": self.records.documents(p.id),
                "outbox": {item.document_id: item for item in reversed(self.outbox.list(p.id))},
                "prescriptions": self.db.all("SELECT * FROM prescriptions WHERE patient_id=? ORDER BY id DESC",
                                             (p.id,))}


