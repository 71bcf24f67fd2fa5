"""Annuaire santé search (to find a colleague's MSSanté address) and the MSSanté inbox, as background calls."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..calls import Job, Operation
from ..services import annuaire, mss
from ..services.context import ServiceError
from ..web.auth import professional_for
from .base import OpsBase, user_label


class MessagingOps(OpsBase):
    def messaging_operations(self) -> list[Operation]:
        return [Operation("annuaire", "recherche", "Recherche dans l'Annuaire santé", self._annuaire, None),
                Operation("mss", "releve", "Relève de la messagerie MSSanté", self._inbox, None)]

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
                                              rpps=c.get("rpps") or None, limit=50)
        return {"practitioners": [asdict(p) for p in found]}

    def start_inbox(self, user: Any, session_row: Any) -> int:
        return self._global("mss", "releve", user, session_row, {}, endpoint_extra={"mailbox": user["mss_address"]})

    def _inbox(self, job: Job) -> dict[str, Any]:
        if not job.ctx.endpoint.extra.get("mailbox"):
            raise ServiceError("Aucune adresse MSSanté personnelle dans votre compte local")
        ctx = self._fresh_token(job)  # type: ignore[attr-defined]  # PrescriptionOps: the PSC token refresher
        out = []
        for m in mss.list_inbox(ctx):
            integrated = False
            if m.has_xdm:
                full = mss.fetch(ctx, m.uid)
                ids = [d.unique_id for d in (full.xdm.documents if full and full.xdm else []) if d.unique_id]
                integrated = bool(ids) and self.db.one(
                    f"SELECT 1 FROM documents WHERE unique_id IN ({','.join('?' * len(ids))})", tuple(ids)) is not None
            out.append({"uid": m.uid, "sender": m.sender, "sender_name": m.sender_name,
                        "from_patient": m.from_patient, "subject": m.display_subject,
                        "date": m.date.isoformat() if m.date else "", "seen": m.seen, "has_xdm": m.has_xdm,
                        "is_mdn": m.is_mdn, "integrated": integrated,
                        "attachments": [a.filename for a in m.attachments]})
        return {"messages": out}
