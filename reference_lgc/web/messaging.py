"""Annuaire santé search and the MSSanté inbox (both run in the background; the page shows their status)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for

from .. import mailbox_setup
from ..endpoint_settings import effective

bp = Blueprint("messaging", __name__)

# The directory search's criteria (SC.MSS/CONF.20, multi-criteria): ANDed by the Annuaire santé
CRITERIA = ("nom", "prenom", "rpps", "ville", "profession")
# Professions (TRE_G15) offered as a criterion: the ones a GP's correspondents mostly belong to
PROFESSIONS = (("", "toutes"), ("10", "Médecin"), ("60", "Infirmier"), ("21", "Pharmacien"),
               ("40", "Chirurgien-dentiste"), ("50", "Sage-femme"), ("70", "Masseur-kinésithérapeute"))


def _latest(service: str, operation: str) -> Any:
    row = current_app.config["DB"].one("SELECT id FROM service_calls WHERE service=? AND operation=? AND user_id=? "
                                       "ORDER BY id DESC LIMIT 1", (service, operation, g.user["id"]))
    return current_app.config["RUNNER"].get(row["id"]) if row else None


@bp.get("/annuaire")
def directory() -> Any:
    criteria = {k: request.args.get(k, "").strip() for k in CRITERIA}
    call = _latest("annuaire", "recherche")
    return render_template("annuaire.html", criteria=criteria, call=call, professions=PROFESSIONS)


@bp.post("/annuaire")
def directory_search() -> Any:
    criteria = {k: (request.form.get(k) or "").strip() for k in CRITERIA}
    if any(v for k, v in criteria.items() if k != "profession"):  # a profession alone would list a whole trade
        current_app.config["OPERATIONS"].start_directory_search(g.user, g.session_row, criteria)
    return redirect(url_for("messaging.directory", **criteria))


@bp.get("/messagerie")
def inbox() -> Any:
    db, config = current_app.config["DB"], current_app.config["LGC"]
    endpoint = effective(db, "mss", config.service("mss").endpoint())
    found = mailbox_setup.stored(db)
    servers = {"smtp": f"{endpoint.extra.get('smtp_host') or urlsplit(endpoint.url).hostname}:"
                       f"{endpoint.extra.get('smtp_port') or 587}",
               "imap": f"{endpoint.extra.get('imap_host') or urlsplit(endpoint.url).hostname}:"
                       f"{endpoint.extra.get('imap_port') or 143}",
               "source": f"configuration automatique du {found[1][:16].replace('T', ' ')}" if found
               else "paramètres saisis"}
    return render_template("messagerie.html", call=_latest("mss", "releve"), mailbox=g.user["mss_address"],
                           integration=_latest("mss", "integration"), servers=servers,
                           configuration=_latest("mss", "configuration"))


@bp.post("/messagerie/configuration")
def autoconfigure() -> Any:
    """Read the operator's auto-configuration document (SC.MSS/CONF.04), in the background like any call."""
    current_app.config["OPERATIONS"].start_mss_autoconfig(g.user, g.session_row)
    return redirect(url_for("messaging.inbox"))


@bp.post("/messagerie/<int:uid>/integrer")
def integrate(uid: int) -> Any:
    """The documents of a received message into their patients' files (LGC.MDV.06, LGC.MSS/UX.05), then the inbox
    read again so that the row says it."""
    ops = current_app.config["OPERATIONS"]
    ops.start_mss_integration(g.user, g.session_row, uid)
    return redirect(url_for("messaging.inbox"))


@bp.post("/messagerie")
def inbox_refresh() -> Any:
    current_app.config["OPERATIONS"].start_inbox(g.user, g.session_row)
    return redirect(url_for("messaging.inbox"))
