"""Child health certificates CS9 and CS24 (LGC.CSE.12): written in the child's file, kept as a draft, and sent by
MSSanté to the CSE platform (certificatsdesante@plateformecse.mssante.fr) as soon as the physician validates
them — by the LGC itself, with no further action, once (a validated certificate is never sent twice)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

from ..calls import Job, Operation, now_iso
from ..documents.cse import CSE_ADDRESS, TITLES, ChildCertificate, build_cse
from ..documents.metadata import cda_unique_id
from ..records import Patient
from ..services import mss
from ..services.context import ServiceError, ServiceRefused
from .base import OpsBase, load_user

CHILD_MAX_MONTHS = 36  # the certificates' window (9th month, 24th-25th month), with room for a late exam


class CertificateError(ValueError):
    """A certificate the physician must complete or cannot validate (French, shown as is)."""


def age_months(birth: str, on: date) -> int:
    b = date.fromisoformat(birth)
    return (on.year - b.year) * 12 + on.month - b.month - (on.day < b.day)


class CseOps(OpsBase):
    def cse_operations(self) -> list[Operation]:
        return [Operation("mss", "envoi_cse", "Envoi du certificat de santé à la plateforme CSE", self._cse_send,
                          self._after_cse_send)]

    def save_certificate(self, p: Patient, user: Any, form: dict[str, str]) -> int:
        """A draft certificate (nothing leaves the LGC before validation). Returns the document id."""
        kind = form.get("type", "")
        if kind not in TITLES:
            raise CertificateError("Type de certificat : CS9 (9e mois) ou CS24 (24e mois)")
        try:
            exam = date.fromisoformat(form.get("date_examen", ""))
            values = {k: float(form.get(k, "").replace(",", ".")) for k in ("poids_kg", "taille_cm", "perimetre_cm")}
        except ValueError:
            raise CertificateError("Date de l'examen (AAAA-MM-JJ), poids (kg), taille et périmètre crânien (cm) "
                                   "sont obligatoires") from None
        if not (0 < values["poids_kg"] < 40 and 30 < values["taille_cm"] < 130 and 25 < values["perimetre_cm"] < 60):
            raise CertificateError("Mesures hors des bornes d'un enfant de moins de 3 ans : vérifiez les unités")
        draft = {"type": kind, "date_examen": exam.isoformat(), **values,
                 "observations": (form.get("observations") or "").strip() or "Examen sans particularité."}
        cur = self.db.execute(
            "INSERT INTO documents (patient_id, title, type_code, type_label, act_date, author, mime, content, origin, "
            "created_at, class_code) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (p.id, TITLES[kind], "CERT_DECL", TITLES[kind], exam.isoformat(),
             f"Dr {user['given_name']} {user['family_name']}", "application/json",
             json.dumps(draft, ensure_ascii=False).encode(), "local", now_iso(), "52"))
        return int(cur.lastrowid)

    def validate_certificate(self, p: Patient, doc_id: int, user: Any, session_row: Any) -> int:
        """Validation: the certificate becomes its CDA, and its send to the CSE platform starts by itself."""
        doc = self.db.one("SELECT * FROM documents WHERE id=? AND patient_id=? AND type_code='CERT_DECL'",
                          (doc_id, p.id))
        if doc is None:
            raise CertificateError("Certificat introuvable dans ce dossier")
        if doc["validated_at"]:
            raise CertificateError("Certificat déjà validé : il est parti à la plateforme CSE")
        if not p.ins_matricule:
            raise CertificateError("Le certificat porte l'INS de l'enfant : récupérez-le d'abord (INSi ou carte "
                                   "Vitale)")
        draft = json.loads(bytes(doc["content"]))
        cert = ChildCertificate(
            id=uuid.uuid4(), created=datetime.now(UTC), patient=self._patient_model(p),  # type: ignore[attr-defined]
            author=self._author_model(user), kind=draft["type"],  # type: ignore[attr-defined]
            exam_date=date.fromisoformat(draft["date_examen"]), weight_kg=draft["poids_kg"],
            height_cm=draft["taille_cm"], head_cm=draft["perimetre_cm"], findings=draft["observations"])
        cda = build_cse(cert)
        with self.db.transaction() as tx:  # validated once: a second validation finds validated_at set
            cur = tx.execute("UPDATE documents SET cda=?, mime='text/xml', level='N3', unique_id=?, set_id=?, "
                             "version=1, validated_at=? WHERE id=? AND validated_at IS NULL",
                             (cda, cda_unique_id(cda), cert.document_set_id.hex, now_iso(), doc_id))
            if cur.rowcount != 1:
                raise CertificateError("Certificat déjà validé : il est parti à la plateforme CSE")
        return self._submit("mss", "envoi_cse", p, user, session_row["sid"] if session_row else None,
                            {"document": doc_id}, endpoint_extra={"mailbox": user["mss_address"] or ""})

    def _cse_send(self, job: Job) -> dict[str, Any]:
        doc = self.db.one("SELECT cda FROM documents WHERE id=?", (job.params["document"],))
        if doc is None or not doc["cda"]:
            raise ServiceRefused("Certificat sans CDA : validez-le d'abord", code="brouillon")
        body = "Bonjour,\n\nVeuillez trouver ci-joint le certificat de santé de l'enfant.\n"
        sent = self._with_mss_session(  # type: ignore[attr-defined]
            job, lambda ctx: mss.send(ctx, [CSE_ADDRESS], None, body, cda=[bytes(doc["cda"])]))
        return {"message_id": sent.message_id, "to": list(sent.recipients), "subject": sent.subject}

    def _after_cse_send(self, job: Job, result: dict[str, Any] | None, error: ServiceError | None) -> None:
        if result is None:
            return
        user = load_user(self.db, job.user_id)
        self.db.execute("INSERT INTO mss_messages (patient_id, document_id, direction, message_id, sender, recipients,"
                        " subject, at, call_id) VALUES (?,?,?,?,?,?,?,?,?)",
                        (job.patient_id, job.params["document"], "envoye", result["message_id"],
                         (user["mss_address"] if user else "") or job.ctx.endpoint.extra.get("mailbox", ""),
                         ", ".join(result["to"]), result["subject"], now_iso(), job.id))

    def certificates(self, patient_id: int) -> list[dict[str, Any]]:
        """The file's certificates, newest first, with their state and their send."""
        rows = self.db.all("SELECT id, title, act_date, validated_at FROM documents WHERE patient_id=? AND "
                           "type_code='CERT_DECL' ORDER BY id DESC", (patient_id,))
        out = []
        for r in rows:
            sends = self.db.all("SELECT id FROM service_calls WHERE service='mss' AND operation='envoi_cse' AND "
                                "patient_id=? AND json_extract(params, '$.document')=? ORDER BY id DESC",
                                (patient_id, r["id"]))
            out.append({"id": r["id"], "title": r["title"], "exam": r["act_date"], "validated_at": r["validated_at"],
                        "send": self.runner.get(sends[0]["id"]) if sends else None})
        return out
