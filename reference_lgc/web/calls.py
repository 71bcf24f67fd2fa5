"""Status elements of service calls: a fragment the page polls while the call is in flight, and the retry."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for

from ..calls import CallRunner
from ..records import Records
from .auth import professional_for

bp = Blueprint("calls", __name__)

# Regions of the patient file to refresh once a call of this service ends (its effects are shown there).
REFRESH = {"insi": "#identite,#entete,#dmp", "apcv": "#identite,#entete,#dmp",
           "dmp": "#dmp,#entete,#documents,#dmp-liste", "on": "#ordonnance,#documents",
           "mss": "#ordonnance,#documents,#boite", "annuaire": "#resultats-annuaire"}


def _runner() -> CallRunner:
    return current_app.config["RUNNER"]


@bp.get("/appels/<int:call_id>")
def fragment(call_id: int) -> Any:
    call = _runner().get(call_id)
    if call is None:
        abort(404)
    return render_template("_call.html", call=call)


@bp.post("/appels/<int:call_id>/relancer")
def retry(call_id: int) -> Any:
    runner = _runner()
    call = runner.get(call_id)
    if call is None:
        abort(404)
    db = current_app.config["DB"]
    sid = g.session_row["sid"] if g.session_row is not None else None
    params = dict(call.params)
    if call.patient_id is not None and call.service == "dmp":
        # The patient may have changed since (INS, consent): rebuild the DMP parameters.
        p = Records(db).get(call.patient_id)
        if p is None or not p.qualified:
            flash("Identité non qualifiée : appel au DMP impossible.", "error")
            return redirect(url_for("patients.show", patient_id=call.patient_id))
        params.update(current_app.config["OPERATIONS"]._dmp_params(p))
    new_id = runner.submit(call.service, call.operation, professional=professional_for(db, sid, g.user),
                           patient_id=call.patient_id, params=params, user_id=g.user["id"], sid=sid, retry_of=call.id)
    if request.headers.get("X-Requested-With") == "fetch":
        return fragment(new_id)
    if call.patient_id is not None:
        return redirect(url_for("patients.show", patient_id=call.patient_id))
    return redirect(request.referrer or url_for("patients.index"))
