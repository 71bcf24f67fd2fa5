"""Prescriptions: the document is validated first (our XSD on the CDA), then sent "in Y" — Ordonnance numérique
(number + QR code printed on the PDF), the DMP through the durable outbox, MSSanté to the patient. When ON
answers KO or not at all, the prescription still goes to the DMP and to the patient, without the QR code."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from .. import documents as docs
from .. import mailbox_setup
from ..calls import Job, Operation, now_iso
from ..consent import feeding_allowed
from ..documents.model import uuid_oid
from ..outbox import Outbox, OutboxError
from ..records import Patient
from ..services import mss, mss_autoconfig, on
from ..services.context import ServiceError, ServiceRefused
from ..web.auth import refresh_tokens
from .base import OpsBase, load_user

DURATION_UNITS = {"j": "d", "s": "wk", "m": "mo"}  # form / ON unit -> document model unit

T = TypeVar("T")


class PrescriptionError(ValueError):
    pass


def lines_from_form(form: Any, count: int = 5) -> list[dict[str, Any]]:
    """The editor's lines; empty ones are dropped, incomplete ones refused with the line number."""
    lines = []
    for i in range(count):
        label = (form.get(f"produit_{i}") or "").strip()
        dosage = (form.get(f"posologie_{i}") or "").strip()
        if not label and not dosage:
            continue
        if not label or not dosage:
            raise PrescriptionError(f"Ligne {i + 1} : le produit et la posologie sont obligatoires")
        try:
            duration = int(form.get(f"duree_{i}") or 0) or None
            quantity = int(form.get(f"quantite_{i}") or 1)
            renewals = int(form.get(f"renouvellements_{i}") or 0)
        except ValueError:
            raise PrescriptionError(f"Ligne {i + 1} : durée, quantité et renouvellements sont des nombres") from None
        if not 1 <= quantity <= 999 or not 0 <= renewals <= 12 or (duration is not None and duration > 366):
            raise PrescriptionError(f"Ligne {i + 1} : quantité 1–999, renouvellements 0–12, durée ≤ 366")
        lines.append({"label": label, "dosage": dosage, "duration": duration,
                      "unit": form.get(f"unite_{i}") if form.get(f"unite_{i}") in DURATION_UNITS else "j",
                      "quantity": quantity, "renewals": renewals,
                      "non_substitutable": form.get(f"non_substituable_{i}") == "on"})
    if not lines:
        raise PrescriptionError("L'ordonnance ne contient aucune ligne")
    return lines


class PrescriptionOps(OpsBase):
    outbox: Outbox

    def prescription_operations(self) -> list[Operation]:
        return [Operation("on", "creation", "Ordonnance numérique", self._on_create, self._after_on),
                Operation("mss", "envoi_patient", "Envoi MSSanté au patient", self._mss_send, self._after_mss)]

    # ------------------------------------------------------------------------------------------ drafting

    def create_draft(self, p: Patient, user: Any, lines: list[dict[str, Any]], notes: str,
                     options: dict[str, Any]) -> int:
        cur = self.db.execute(
            "INSERT INTO prescriptions (patient_id, user_id, created_at, lines, notes, options) VALUES (?,?,?,?,?,?)",
            (p.id, user["id"], now_iso(), json.dumps(lines, ensure_ascii=False), notes, json.dumps(options)))
        return int(cur.lastrowid)

    def prescription(self, prescription_id: int) -> Any:
        return self.db.one("SELECT * FROM prescriptions WHERE id=?", (prescription_id,))

    def model(self, row: Any, p: Patient, user: Any, *, on_number: str | None = None,
              on_payload: str | None = None) -> docs.Prescription:
        """The one data model every rendering (PDF, N1, N3, ON request) comes from."""
        if not p.qualified or not p.ins_matricule:
            raise PrescriptionError("Identité non qualifiée : l'ordonnance ne peut pas porter l'INS du patient")
        options = json.loads(row["options"] or "{}")
        doc_id = uuid.UUID(options["document_uuid"]) if options.get("document_uuid") else uuid.uuid4()
        author, patient = self._author_model(user), self._patient_model(p)
        lines = tuple(docs.PrescriptionLine(
            label=li["label"], dosage=li["dosage"], duration=li["duration"],
            duration_unit=DURATION_UNITS[li["unit"]], quantity=li["quantity"], renewals=li["renewals"],
            non_substitutable=li["non_substitutable"]) for li in json.loads(row["lines"]))
        created = datetime.fromisoformat(row["validated_at"] or row["created_at"])
        set_id, version, parent = doc_id, 1, None
        if options.get("replaces"):  # a new version of a sent prescription: same setId, version + 1, RPLC
            old = json.loads(self.prescription(options["replaces"])["options"] or "{}")
            parent = uuid.UUID(old["document_uuid"])
            set_id = uuid.UUID(old.get("set_uuid") or old["document_uuid"])
            version = int(old.get("version", 1)) + 1
        return docs.Prescription(id=doc_id, created=created.astimezone(UTC), patient=patient, author=author,
                                 lines=lines, notes=row["notes"], on_number=on_number, on_payload=on_payload,
                                 set_id=set_id, version=version, parent_id=parent)

    def _author_model(self, user: Any) -> docs.Author:
        structure = docs.Structure(id=user["structure_id"], name=user["structure_name"],
                                   street=user["structure_street"], postal_code=user["structure_postal_code"],
                                   city=user["structure_city"], phone=user["structure_phone"], sector=user["sector"])
        return docs.Author(rpps=user["rpps"] or "", family_name=user["family_name"], given_name=user["given_name"],
                           structure=structure, profession=user["profession"], speciality=user["speciality"])

    def _patient_model(self, p: Patient) -> docs.Patient:
        t = p.traits
        return docs.Patient(birth_family=t.birth_name, birth_given_names=tuple(t.first_names.split()),
                            sex=t.sex, birth_date=date.fromisoformat(t.birth_date), ins=p.ins_matricule or "",
                            ins_oid=self.dmp_oid(p.ins_oid or ""), used_family=t.used_name or None,
                            used_given=t.used_first_name or None, birthplace_cog=t.birthplace_cog)

    def historical_n1(self, doc: Any, p: Patient, user: Any) -> int:
        """A note of the record not yet in CDA (a text of an earlier care episode) becomes the CDA R2 N1 it will be
        sent as (SC.DMP/HISTO.05): the date of the act, its author, the patient's qualified INS. Stored with the
        document, so a resend is the same document (same uniqueId). Only its author may send it under their
        name. Returns the document id."""
        if not p.qualified or not p.ins_matricule:
            raise PrescriptionError("INS non qualifiée : le document ne peut pas porter l'INS du patient")
        me = f"Dr {user['given_name']} {user['family_name']}"
        if (doc["author"] or "").strip() != me:
            raise PrescriptionError(f"Document de {doc['author'] or 'auteur inconnu'} : seul son auteur peut "
                                    "l'envoyer au DMP sous son nom")
        act = datetime.fromisoformat(doc["act_date"]).replace(tzinfo=UTC) if len(doc["act_date"]) == 10 \
            else datetime.fromisoformat(doc["act_date"]).astimezone(UTC)
        text = bytes(doc["content"]).decode("utf-8", "replace") if doc["content"] is not None else ""
        note = docs.ClinicalNote(id=uuid.uuid4(), created=act, patient=self._patient_model(p),
                                 author=self._author_model(user), title=doc["title"], text=text,
                                 type_code=doc["type_code"] or "11488-4",
                                 type_label=doc["type_label"] or "Compte rendu de consultation")
        pdf = docs.render_note_pdf(note)
        n1 = docs.build_note_n1(note, pdf)
        docs.validate(n1, type_code=note.type_code)
        self.db.execute("UPDATE documents SET cda=?, pdf=?, level='N1', unique_id=?, set_id=?, version=1, "
                        "class_code=CASE class_code WHEN '' THEN '10' ELSE class_code END WHERE id=? AND cda IS NULL",
                        (n1, pdf, uuid_oid(note.id), uuid_oid(note.id), doc["id"]))
        return int(doc["id"])

    def draft_replacement(self, prescription_id: int, user: Any) -> int:
        """"Modifier et remplacer": a draft copy of a prescription already in the DMP, sent as its next version."""
        row = self.prescription(prescription_id)
        doc = self.db.one("SELECT dmp_state FROM documents WHERE id=?", (row["document_id"],)) \
            if row and row["document_id"] else None
        if doc is None or doc["dmp_state"] != "envoye":
            raise PrescriptionError("Seule une ordonnance déjà envoyée au DMP peut être remplacée")
        old = json.loads(row["options"] or "{}")
        options = {k: old[k] for k in ("dmp", "mss", "invisible", "delai") if k in old}
        options["replaces"] = prescription_id
        cur = self.db.execute(
            "INSERT INTO prescriptions (patient_id, user_id, created_at, lines, notes, options) VALUES (?,?,?,?,?,?)",
            (row["patient_id"], user["id"], now_iso(), row["lines"], row["notes"], json.dumps(options)))
        return int(cur.lastrowid)

    def validate_and_send(self, prescription_id: int, p: Patient, user: Any, session_row: Any) -> int:
        """Validation: the CDA must pass our XSD before anything is sent; then ON starts, and the rest follows."""
        row = self.prescription(prescription_id)
        if row is None or row["patient_id"] != p.id:
            raise PrescriptionError("Ordonnance introuvable")
        if row["validated_at"]:
            raise PrescriptionError("Ordonnance déjà validée")
        options = json.loads(row["options"] or "{}")
        options["document_uuid"] = str(uuid.uuid4())
        self.db.execute("UPDATE prescriptions SET options=?, validated_at=? WHERE id=?",
                        (json.dumps(options), now_iso(), prescription_id))
        row = self.prescription(prescription_id)
        model = self.model(row, p, user)  # remember the set and the version this document carries
        options.update(set_uuid=str(model.document_set_id), version=model.version)
        self.db.execute("UPDATE prescriptions SET options=? WHERE id=?", (json.dumps(options), prescription_id))
        row = self.prescription(prescription_id)
        try:
            docs.validate(docs.build_n3(self.model(row, p, user)))  # same header as the N1 sent later
        except (docs.DocumentInvalid, PrescriptionError, ValueError) as exc:
            self.db.execute("UPDATE prescriptions SET validated_at=NULL, error=? WHERE id=?", (str(exc), row["id"]))
            raise PrescriptionError(f"Document refusé avant tout envoi : {exc}") from None
        return self._submit("on", "creation", p, user, session_row["sid"] if session_row else None,
                            {"prescription": prescription_id})

    # ------------------------------------------------------------------------------------------------ ON

    def _on_create(self, job: Job) -> dict[str, Any]:
        row = self.prescription(job.params["prescription"])
        p = self.records.get(row["patient_id"])
        assert p is not None
        model = self.model(row, p, load_user(self.db, row["user_id"]))
        patient = on.OnPatient(ins=model.patient.ins, oid=model.patient.ins_oid, birth_name=model.patient.birth_family,
                               first_names=model.patient.birth_given_names, sex=model.patient.sex,
                               birth_date=model.patient.birth_date, birth_place=model.patient.birthplace_cog)
        lines = [on.OnLine(label=li["label"], dosage=li["dosage"], duration=li["duration"], duration_unit=li["unit"],
                           quantity=li["quantity"], renewals=li["renewals"], non_substitutable=li["non_substitutable"])
                 for li in json.loads(row["lines"])]
        res = on.create_prescription(job.ctx, patient=patient, lines=lines, prescription_date=model.created.date())
        return {"number": res.number, "payload": res.code2d_payload, "state": res.dispensation_label}

    def _after_on(self, job: Job, result: dict[str, Any] | None, error: ServiceError | None) -> None:
        """Whatever ON said, the prescription is produced and sent on: with the QR code, or without and why."""
        pid = job.params["prescription"]
        if result is not None:
            self.db.execute("UPDATE prescriptions SET on_state='reussi', on_number=?, on_payload=? WHERE id=?",
                            (result["number"], result["payload"], pid))
        else:
            why = error.reason if error else "erreur inconnue"
            self.db.execute("UPDATE prescriptions SET on_state='echec', on_reason=? WHERE id=?", (why, pid))
        try:
            self._produce_and_send(job, pid)
        except (docs.DocumentInvalid, PrescriptionError, OutboxError, ValueError) as exc:
            self.db.execute("UPDATE prescriptions SET error=? WHERE id=?", (getattr(exc, "reason", str(exc)), pid))

    def _produce_and_send(self, job: Job, prescription_id: int) -> None:
        row = self.prescription(prescription_id)
        p = self.records.get(row["patient_id"])
        user = load_user(self.db, row["user_id"])
        assert p is not None
        model = self.model(row, p, user, on_number=row["on_number"], on_payload=row["on_payload"])
        pdf = docs.render_pdf(model, qr_payload=row["on_payload"], on_number=row["on_number"])
        n1, n3 = docs.build_n1(model, pdf), docs.build_n3(model, pdf)
        docs.validate(n1)
        docs.validate(n3)
        unique_id = f"{docs.model.uuid_oid(model.id)}"
        set_id = docs.model.uuid_oid(model.document_set_id)
        now = now_iso()
        # The prescription's document (its PDF, its sends) is the CDA that goes to the DMP and to the patient:
        # under the structured profile (default) the N3 with its PDF copy, the only rendering kept (DSR 001: in
        # vague 2 structured documents are produced only in CDA R2 N3 with a section carrying the PDF); under the
        # "N1" profile the N1, with the N3 kept beside it.
        level = self.config.dmp_prescription_level
        main = n3 if level == "N3" else n1
        with self.db.transaction() as tx:
            doc_id = tx.execute(
                "INSERT INTO documents (patient_id, title, type_code, type_label, act_date, author, mime, content, "
                "origin, created_at, unique_id, set_id, version, level, cda, pdf, class_code, validated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (p.id, model.title, "57833-6", "Prescription de produits de santé", model.created.date().isoformat(),
                 f"Dr {user['given_name']} {user['family_name']}", "text/xml", main, "local", now, unique_id, set_id,
                 model.version, level, main, pdf, "42", now)).lastrowid
            n3_id = doc_id
            if level == "N1":
                n3_id = tx.execute(
                    "INSERT INTO documents (patient_id, title, type_code, type_label, act_date, author, mime, "
                    "content, origin, created_at, unique_id, set_id, version, level, cda, class_code, validated_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (p.id, model.title + " (structurée)", "57833-6", "Prescription de produits de santé",
                     model.created.date().isoformat(), f"Dr {user['given_name']} {user['family_name']}", "text/xml",
                     n3, "local", now, unique_id + ".3", None, 1, "N3", n3, "42", now)).lastrowid
            tx.execute("UPDATE prescriptions SET document_id=?, n3_document_id=? WHERE id=?",
                       (doc_id, n3_id, prescription_id))
        options = json.loads(row["options"] or "{}")
        replaces_entry = None
        if options.get("replaces"):
            previous = self.db.one("SELECT d.id, d.dmp_entry_uuid FROM prescriptions r JOIN documents d "
                                   "ON d.id = r.document_id WHERE r.id=?", (options["replaces"],))
            replaces_entry = previous["dmp_entry_uuid"] if previous else None
            if previous:
                self.db.execute("UPDATE documents SET replaces_id=? WHERE id=?", (previous["id"], doc_id))
        # Checked again at validation: the patient may have objected since the draft (its form already said so).
        ok, why = feeding_allowed(ins_qualified=p.qualified, consent=self.records.consent(p.id))
        if options.get("dmp", True) or not ok:
            if ok:
                self.outbox.enqueue(doc_id, patient_id=p.id, cda=main, metadata=docs.dmp_metadata(model, level, main),
                                    ins=model.patient.ins, ins_oid=model.patient.ins_oid,
                                    professional=job.ctx.professional,
                                    defer_s=float(options.get("delai", self.config.dmp_defer_seconds)),
                                    invisible_to_patient=bool(options.get("invisible")),
                                    replaces_entry_uuid=replaces_entry)
            else:
                self.db.execute("UPDATE prescriptions SET error=? WHERE id=?", (f"DMP non alimenté : {why}",
                                                                                 prescription_id))
        if options.get("mss"):
            self._submit("mss", "envoi_patient", p, user, job.sid,
                         {"document": doc_id, "prescription": prescription_id},
                         endpoint_extra={"mailbox": user["mss_address"]})

    # ------------------------------------------------------------------------------------------- MSSanté

    def _mss_send(self, job: Job) -> dict[str, Any]:
        doc = self.db.one("SELECT cda, pdf FROM documents WHERE id=?", (job.params["document"],))
        p = self.records.get(job.patient_id) if job.patient_id else None
        assert doc is not None and p is not None and p.ins_matricule
        if not job.ctx.endpoint.extra.get("mailbox"):
            raise ServiceRefused("Aucune adresse MSSanté personnelle dans votre compte local", code="bal_absente")
        sent = self._with_mss_session(job, lambda ctx: mss.send_to_patient(
            ctx, patient_ins=p.ins_matricule, cda=bytes(doc["cda"]), document_pdf=bytes(doc["pdf"])))
        return {"message_id": sent.message_id, "to": list(sent.recipients), "subject": sent.subject}

    def _with_mss_session(self, job: Job, work: Callable[[Any], T]) -> T:
        """`work(ctx)` with a fresh PSC token; when MSSanté refuses it or ends the session on its expiry (SMTP 530,
        IMAP BYE), once more on a new session with a token refreshed at PSC (SC.MSS/CONF.10, CONF.11) — once only:
        a refusal of the fresh token is the user's to see, not a loop's."""
        self._auto_configured(job)
        try:
            return work(self._fresh_token(job))
        except ServiceRefused as exc:
            if exc.code not in ("token_expired", "token_refused"):
                raise
            return work(self._fresh_token(job, force=True))

    def _auto_configured(self, job: Job) -> None:
        """With auto_config on and no servers read yet, the operator's auto-configuration document is read before
        the first connection (SC.MSS/CONF.04), kept, and this call uses its servers."""
        if not mailbox_setup.wanted(job.ctx.endpoint) or mailbox_setup.stored(self.db) is not None:
            return
        servers = mss_autoconfig.fetch(job.ctx.endpoint)
        mailbox_setup.store(self.db, servers)
        job.ctx = replace(job.ctx, endpoint=mailbox_setup.with_servers(job.ctx.endpoint, servers))
        job.notes.append(f"Configuration automatique de la messagerie lue ({servers.source}).")

    def _fresh_token(self, job: Job, *, force: bool = False) -> Any:
        """MSSanté authenticates with the PSC access token (XOAUTH2): refresh it when it is about to expire."""
        if not job.sid:
            return job.ctx
        if force:
            self.db.execute("UPDATE sessions SET expires_at=0 WHERE sid=?", (job.sid,))
        psc = self.config.psc
        token = refresh_tokens(self.db, job.sid, psc.issuer.rstrip("/") + "/protocol/openid-connect/token",
                               psc.client_id, psc.client_secret, tls=self.config.service("psc").tls)
        if not token:
            raise ServiceRefused("Session Pro Santé Connect expirée : reconnectez-vous pour envoyer par MSSanté",
                                 code="psc_expire")
        return replace(job.ctx, professional=replace(job.ctx.professional, access_token=token))

    def _after_mss(self, job: Job, result: dict[str, Any] | None, error: ServiceError | None) -> None:
        if result is None:
            return
        self.db.execute("INSERT INTO mss_messages (patient_id, document_id, direction, message_id, sender, recipients,"
                        " subject, at, call_id) VALUES (?,?,?,?,?,?,?,?,?)",
                        (job.patient_id, job.params["document"], "envoye", result["message_id"],
                         job.ctx.endpoint.extra.get("mailbox", ""), ", ".join(result["to"]), result["subject"],
                         now_iso(), job.id))
