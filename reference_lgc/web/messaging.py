"""Annuaire santé search and the MSSanté inbox (both run in the background; the page shows their status)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for

bp = Blueprint("messaging", __name__)


def _latest(service: str, operation: str) -> Any:
    row = current_app.config["DB"].one("SELECT id FROM service_calls WHERE service=? AND operation=? AND user_id=? "
                                       "ORDER BY id DESC LIMIT 1", (service, operation, g.user["id"]))
    return current_app.config["RUNNER"].get(row["id"]) if row else None


@bp.get("/annuaire")
def directory() -> Any:
    criteria = {k: request.args.get(k, "").strip() for k in ("nom", "prenom", "rpps")}
    call = _latest("annuaire", "recherche")
    return render_template("annuaire.html", criteria=criteria, call=call)


@bp.post("/annuaire")
def directory_search() -> Any:
    criteria = {k: (request.form.get(k) or "").strip() for k in ("nom", "prenom", "rpps")}
    if any(criteria.values()):
        current_app.config["OPERATIONS"].start_directory_search(g.user, g.session_row, criteria)
    return redirect(url_for("messaging.directory", **criteria))


@bp.get("/messagerie")
def inbox() -> Any:
    return render_template("messagerie.html", call=_latest("mss", "releve"), mailbox=g.user["mss_address"])


@bp.post("/messagerie")
def inbox_refresh() -> Any:
    current_app.config["OPERATIONS"].start_inbox(g.user, g.session_row)
    return redirect(url_for("messaging.inbox"))
