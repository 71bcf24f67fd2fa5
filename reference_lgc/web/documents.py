"""Local documents: an N1 opens on its PDF, an N3 has a readable rendering on demand, plain text as is."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template

from .. import cda_reader

bp = Blueprint("documents", __name__)


def _doc(doc_id: int) -> Any:
    row = current_app.config["DB"].one("SELECT * FROM documents WHERE id=?", (doc_id,))
    if row is None:
        abort(404, description=f"Document {doc_id} introuvable")
    return row


@bp.get("/documents/<int:doc_id>")
def show(doc_id: int) -> Any:
    d = _doc(doc_id)
    patient = current_app.config["RECORDS"].get(d["patient_id"])
    text = None
    if not d["cda"] and d["mime"].startswith("text/"):
        text = bytes(d["content"]).decode("utf-8", errors="replace")
    return render_template("document.html", d=d, patient=patient, text=text)


@bp.get("/documents/<int:doc_id>/pdf")
def pdf(doc_id: int) -> Any:
    d = _doc(doc_id)
    data = d["pdf"]
    if not data and d["cda"]:
        try:
            data = cda_reader.parse(bytes(d["cda"]))[1].pdf
        except cda_reader.NotACda:
            data = None
    if not data:
        abort(404, description="Ce document n'a pas de version PDF")
    return Response(bytes(data), content_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="document-{doc_id}.pdf"'})


@bp.get("/documents/<int:doc_id>/lisible")
def readable(doc_id: int) -> Any:
    d = _doc(doc_id)
    if not d["cda"]:
        abort(404, description="Ce document n'est pas un CDA")
    try:
        root, info = cda_reader.parse(bytes(d["cda"]))
    except cda_reader.NotACda as exc:
        abort(422, description=f"Document illisible : {exc}")
    return render_template("document_readable.html", d=d, info=info, body=cda_reader.narrative_html(root))
