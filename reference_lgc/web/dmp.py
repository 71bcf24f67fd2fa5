"""DMP consultation pages: the patient's DMP documents with filters, multi-select integration into the local
record, one-click visibility for the patient, refresh. Every DMP call runs in the background."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for

from .. import dmp_view
from ..operations import Operations
from ..records import Patient

bp = Blueprint("dmp", __name__)


def _ops() -> Operations:
    return current_app.config["OPERATIONS"]


def _patient(patient_id: int) -> Patient:
    p = current_app.config["RECORDS"].get(patient_id)
    if p is None:
        abort(404, description=f"Patient {patient_id} introuvable")
    return p


def _allowed(p: Patient) -> bool:
    ctx = _ops().file_context(p, g.user, g.session_row)
    if not ctx["dica"].can_consult:
        causes = "; ".join(f"{i.label} : {i.cause}" for i in ctx["dica"].unmet) or "vérification en cours"
        flash(f"Consultation du DMP impossible — {causes}", "error")
        return False
    return True


@bp.get("/patients/<int:patient_id>/dmp")
def documents(patient_id: int) -> Any:
    p = _patient(patient_id)
    f = {k: request.args.get(k, "").strip() for k in ("type", "depuis", "jusqua", "auteur", "visibilite")}
    docs = dmp_view.documents(current_app.config["DB"], patient_id, type_code=f["type"], since=f["depuis"],
                              until=f["jusqua"], author=f["auteur"], visibility=f["visibilite"])
    types = sorted({(d.type_code, d.title) for d in dmp_view.documents(current_app.config["DB"], patient_id)})
    ctx = _ops().file_context(p, g.user, g.session_row)
    return render_template("dmp_documents.html", docs=docs, filters=f, types=types, **ctx)


@bp.post("/patients/<int:patient_id>/dmp/actualiser")
def refresh(patient_id: int) -> Any:
    p = _patient(patient_id)
    if _allowed(p):
        _ops().start_consultation(p, g.user, g.session_row)
    return redirect(request.referrer or url_for("dmp.documents", patient_id=patient_id))


@bp.post("/patients/<int:patient_id>/dmp/integrer")
def integrate(patient_id: int) -> Any:
    p = _patient(patient_id)
    chosen = request.form.getlist("entree")
    if not chosen:
        flash("Sélectionner au moins un document à intégrer.", "error")
    elif _allowed(p):
        _ops().start_integration(p, g.user, g.session_row, chosen)
        flash(f"Intégration de {len(chosen)} document(s) lancée.", "ok")
    return redirect(url_for("dmp.documents", patient_id=patient_id))


@bp.post("/patients/<int:patient_id>/dmp/visibilite")
def visibility(patient_id: int) -> Any:
    p = _patient(patient_id)
    entry = request.form.get("entree", "")
    if entry and _allowed(p):
        _ops().start_visibility(p, g.user, g.session_row, entry, request.form.get("visible") == "oui")
    return redirect(url_for("dmp.documents", patient_id=patient_id))


@bp.post("/patients/<int:patient_id>/dmp/supprimer")
def delete(patient_id: int) -> Any:
    p = _patient(patient_id)
    entry = request.form.get("entree", "")
    if not entry:
        flash("Choisir le document du DMP à supprimer.", "error")
    elif _allowed(p):
        _ops().start_deletion(p, g.user, g.session_row, entry)
        flash("Suppression du document dans le DMP demandée (seul son auteur le peut).", "ok")
    return redirect(url_for("dmp.documents", patient_id=patient_id))
