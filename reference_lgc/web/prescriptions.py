"""Prescriptions (editor prefilled from the patient file, validation that starts the sends) and the DMP outbox
controls (hold, send now, cancel, retry, delete from the DMP)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for

from .. import documents as docs_pkg
from ..consent import feeding_allowed
from ..operations import Operations, PrescriptionError, lines_from_form
from ..outbox import Outbox, OutboxError
from ..records import Patient
from ..services.xds import Code, DocumentMetadata
from .auth import professional_for

bp = Blueprint("prescriptions", __name__)


def _ops() -> Operations:
    return current_app.config["OPERATIONS"]


def _outbox() -> Outbox:
    return current_app.config["OUTBOX"]


def _patient(patient_id: int) -> Patient:
    p = current_app.config["RECORDS"].get(patient_id)
    if p is None:
        abort(404, description=f"Patient {patient_id} introuvable")
    return p


@bp.route("/patients/<int:patient_id>/ordonnances/nouvelle", methods=["GET", "POST"])
def new(patient_id: int) -> Any:
    p = _patient(patient_id)
    feed_ok, feed_why = feeding_allowed(ins_qualified=p.qualified, consent=current_app.config["RECORDS"].consent(p.id))
    if request.method == "POST":
        try:
            lines = lines_from_form(request.form)
        except PrescriptionError as exc:
            flash(str(exc), "error")
            return render_template("prescription_form.html", patient=p, form=request.form, feeding_ok=feed_ok,
                                   feeding_why=feed_why, defer=current_app.config["LGC"].dmp_defer_seconds), 400
        options = {"dmp": request.form.get("dmp") == "on", "mss": request.form.get("mss") == "on",
                   "invisible": request.form.get("invisible") == "on",
                   "delai": _seconds(request.form.get("delai"), current_app.config["LGC"].dmp_defer_seconds)}
        pid = _ops().create_draft(p, g.user, lines, (request.form.get("notes") or "").strip(), options)
        return redirect(url_for("prescriptions.show", prescription_id=pid))
    return render_template("prescription_form.html", patient=p, form={}, feeding_ok=feed_ok, feeding_why=feed_why,
                           defer=current_app.config["LGC"].dmp_defer_seconds)


def _seconds(value: str | None, default: float) -> float:
    try:
        return max(0.0, min(float(value), 86400.0)) if value not in (None, "") else default
    except ValueError:
        return default


@bp.get("/ordonnances/<int:prescription_id>")
def show(prescription_id: int) -> Any:
    row = _ops().prescription(prescription_id)
    if row is None:
        abort(404, description="Ordonnance introuvable")
    p = _patient(row["patient_id"])
    runner = current_app.config["RUNNER"]
    on_call = next((c for c in _calls(runner, p.id, "on") if c.params.get("prescription") == prescription_id), None)
    mss_call = next((c for c in _calls(runner, p.id, "mss") if c.params.get("prescription") == prescription_id),
                    None)
    doc = current_app.config["DB"].one("SELECT * FROM documents WHERE id=?", (row["document_id"],)) \
        if row["document_id"] else None
    return render_template("prescription.html", patient=p, rx=row, lines=json.loads(row["lines"]), doc_sent=bool(
                               doc and doc["dmp_state"] == "envoye"),
                           options=json.loads(row["options"] or "{}"), on_call=on_call, mss_call=mss_call, doc=doc,
                           outbox_item=_outbox().state(row["document_id"]) if row["document_id"] else None)


def _calls(runner: Any, patient_id: int, service: str) -> list[Any]:
    rows = current_app.config["DB"].all("SELECT id FROM service_calls WHERE patient_id=? AND service=? "
                                        "ORDER BY id DESC LIMIT 50", (patient_id, service))
    return [runner.get(r["id"]) for r in rows]


@bp.post("/ordonnances/<int:prescription_id>/remplacer")
def replace_prescription(prescription_id: int) -> Any:
    try:
        new_id = _ops().draft_replacement(prescription_id, g.user)
    except PrescriptionError as exc:
        flash(str(exc), "error")
        return redirect(url_for("prescriptions.show", prescription_id=prescription_id))
    flash("Nouvelle version en brouillon : elle remplacera l'ordonnance dans le DMP une fois validée.", "ok")
    return redirect(url_for("prescriptions.show", prescription_id=new_id))


@bp.post("/ordonnances/<int:prescription_id>/valider")
def validate(prescription_id: int) -> Any:
    row = _ops().prescription(prescription_id)
    if row is None:
        abort(404)
    p = _patient(row["patient_id"])
    try:
        _ops().validate_and_send(prescription_id, p, g.user, g.session_row)
    except PrescriptionError as exc:
        flash(str(exc), "error")
    return redirect(url_for("prescriptions.show", prescription_id=prescription_id))


# ------------------------------------------------------------------------------------------------ outbox

ACTIONS = {"suspendre": "hold", "reprendre": "release", "envoyer": "release_now", "annuler": "cancel",
           "reessayer": "retry", "invisible": "invisible", "visible": "visible"}


@bp.post("/envois/<int:item_id>/<action>")
def outbox_action(item_id: int, action: str) -> Any:
    if action not in ACTIONS:
        abort(404)
    ob = _outbox()
    try:
        if action == "suspendre":
            ob.hold(item_id)
        elif action == "reprendre":
            ob.release(item_id)
        elif action == "envoyer":
            ob.release(item_id, now=True)
        elif action == "annuler":
            ob.cancel(item_id)
        elif action == "reessayer":
            ob.retry(item_id)
        else:
            ob.set_invisible_to_patient(item_id, action == "invisible")
    except OutboxError as exc:
        flash(exc.reason, "error")
    return redirect(request.referrer or url_for("patients.index"))


@bp.get("/envois/<int:item_id>")
def outbox_fragment(item_id: int) -> Any:
    item = _outbox().get(item_id)
    if item is None:
        abort(404)
    return render_template("_outbox.html", item=item)


@bp.post("/documents/<int:doc_id>/dmp/envoyer")
def send_to_dmp(doc_id: int) -> Any:
    """A document of the record sent by hand (historical ones included): only with a qualified INS."""
    d = current_app.config["DB"].one("SELECT * FROM documents WHERE id=?", (doc_id,))
    if d is None:
        abort(404)
    p = _patient(d["patient_id"])
    back = redirect(url_for("patients.show", patient_id=p.id, _anchor="documents"))
    ok, why = feeding_allowed(ins_qualified=p.qualified, consent=current_app.config["RECORDS"].consent(p.id))
    if not ok:
        flash(f"Envoi au DMP impossible : {why}", "error")
        return back
    if not d["cda"] and d["origin"] == "local" and (d["mime"] or "").startswith("text/"):
        try:  # a note of an earlier care episode: its CDA N1 is made now, with the act's date and its author
            _ops().historical_n1(d, p, g.user)
        except (PrescriptionError, docs_pkg.DocumentInvalid) as exc:
            flash(f"Envoi au DMP impossible : {exc}", "error")
            return back
        d = current_app.config["DB"].one("SELECT * FROM documents WHERE id=?", (doc_id,))
    if not d["cda"] or d["level"] != "N1":
        flash("Seuls les documents CDA N1 du dossier peuvent être envoyés au DMP", "error")
        return back
    try:
        docs_pkg.validate(bytes(d["cda"]), type_code=d["type_code"])
    except docs_pkg.DocumentInvalid as exc:
        flash(f"Document refusé avant envoi : {exc}", "error")
        return back
    meta = DocumentMetadata(title=d["title"], class_code=Code(d["class_code"] or "42", "1.2.250.1.213.1.1.4.1"),
                            type_code=Code(d["type_code"], "2.16.840.1.113883.6.1", d["type_label"]),
                            format_code=Code("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3"),
                            creation_time=datetime.fromisoformat(d["act_date"] + "T00:00:00+00:00"),
                            unique_id=d["unique_id"])
    try:
        _outbox().enqueue(doc_id, patient_id=p.id, cda=bytes(d["cda"]), metadata=meta, ins=p.ins_matricule or "",
                          ins_oid=_ops().dmp_oid(p.ins_oid or ""),
                          professional=professional_for(current_app.config["DB"], g.session_row["sid"], g.user),
                          defer_s=0)
    except OutboxError as exc:
        flash(exc.reason, "error")
    else:
        flash("Document placé dans la file d'envoi au DMP.", "ok")
    return back


@bp.post("/documents/<int:doc_id>/dmp/supprimer")
def delete_from_dmp(doc_id: int) -> Any:
    d = current_app.config["DB"].one("SELECT * FROM documents WHERE id=?", (doc_id,))
    if d is None:
        abort(404)
    p = _patient(d["patient_id"])
    try:
        _outbox().delete_from_dmp(doc_id, professional_for(current_app.config["DB"], g.session_row["sid"], g.user),
                                  ins=p.ins_matricule, ins_oid=_ops().dmp_oid(p.ins_oid or ""))
    except OutboxError as exc:
        flash(exc.reason, "error")
    else:
        flash("Suppression du document dans le DMP demandée.", "ok")
    return redirect(url_for("patients.show", patient_id=p.id, _anchor="documents"))
