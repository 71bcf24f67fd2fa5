"""Login with Pro Santé Connect by CIBA, poll mode (SC.PSC.13: the thick-client profile; CIBA Core 1.0).

The professional gives their national id; the LGC sends a backchannel authentication request (client
authentication, scope, acr_values, login_hint); PSC asks the professional on their phone (e-CPS app); the LGC polls
the token endpoint no sooner than the `interval` PSC gave, adding 5 s on `slow_down` (§11), until tokens, a refusal
(`access_denied`) or the request's expiry (`expired_token`). The waiting page reloads itself at each poll time: the
browser needs no script, and the poll happens server-side, where the client secret is.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for

from ..services.transport import http_client
from .auth import local_path, open_session, psc

bp = Blueprint("ciba", __name__)
GRANT = "urn:openid:params:grant-type:ciba"
NATIONAL_ID = re.compile(r"[0-9A-Za-z]{8,20}")  # 8 + RPPS (12), 0 + ADELI, 3 + FINESS/n° … (no separators)


def _psc() -> tuple[Any, dict[str, Any]]:
    cfg = current_app.config["LGC"]
    return cfg, psc().load_server_metadata()


def _post(url: str, data: dict[str, str]) -> httpx.Response:
    cfg = current_app.config["LGC"]
    with http_client(cfg.service("psc").tls, timeout=15) as http:
        return http.post(url, data=data, auth=(cfg.psc.client_id, cfg.psc.client_secret))


def _error(resp: httpx.Response) -> tuple[str, str]:
    try:
        body = resp.json()
    except ValueError:
        return "", resp.text[:200]
    return str(body.get("error", "")), str(body.get("error_description") or "")


@bp.post("/connexion/ciba")
def start() -> Any:
    national_id = (request.form.get("national_id") or "").strip()
    if not NATIONAL_ID.fullmatch(national_id):
        flash("Identifiant national : 8 à 20 chiffres ou lettres, sans espace (ex. 899700366240)", "error")
        return redirect(url_for("auth.login"))
    try:
        cfg, meta = _psc()
        resp = _post(meta["backchannel_authentication_endpoint"], {
            "scope": cfg.psc.scope, "acr_values": cfg.psc.acr_values, "login_hint": national_id,
            "binding_message": "LGC de reference"})
    except (httpx.HTTPError, OSError, KeyError, ValueError) as exc:
        current_app.logger.warning("PSC CIBA request failed: %s", exc)
        flash(f"Pro Santé Connect injoignable ({type(exc).__name__}) : connexion impossible pour l'instant.", "error")
        return redirect(url_for("auth.login"))
    if resp.status_code != 200:
        code, why = _error(resp)
        known = {"unknown_user_id": "identifiant national inconnu de Pro Santé Connect"}
        flash(f"Demande de connexion refusée par Pro Santé Connect : {known.get(code, why or code)}", "error")
        return redirect(url_for("auth.login"))
    answer = resp.json()
    now = time.time()
    interval = int(answer.get("interval") or 5)  # §7.3: 5 s when PSC gives none
    session["ciba"] = {"auth_req_id": answer["auth_req_id"], "national_id": national_id, "interval": interval,
                       "expires_at": now + int(answer.get("expires_in") or 120), "next_poll": now + interval,
                       "next": local_path(request.form.get("next"))}
    return redirect(url_for("ciba.wait"))


@bp.get("/connexion/ciba")
def wait() -> Any:
    pending = session.get("ciba")
    if not pending:
        return redirect(url_for("auth.login"))
    now = time.time()
    if now < pending["next_poll"]:
        return _waiting(pending, pending["next_poll"] - now)
    try:
        cfg, meta = _psc()
        resp = _post(meta["token_endpoint"], {"grant_type": GRANT, "auth_req_id": pending["auth_req_id"]})
    except (httpx.HTTPError, OSError, KeyError, ValueError) as exc:  # a network hiccup: try again at the next turn
        current_app.logger.warning("PSC CIBA poll failed: %s", exc)
        pending["next_poll"] = now + pending["interval"]
        session["ciba"] = pending
        return _waiting(pending, pending["interval"], problem="Pro Santé Connect ne répond pas : nouvel essai…")
    if resp.status_code == 200:
        session.pop("ciba", None)
        token = resp.json()
        token.setdefault("expires_at", time.time() + float(token.get("expires_in", 300)))
        try:
            with http_client(cfg.service("psc").tls, timeout=15) as http:
                info = http.get(meta["userinfo_endpoint"],
                                headers={"Authorization": f"Bearer {token['access_token']}"}).raise_for_status().json()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            flash(f"Échec de la connexion Pro Santé Connect : {exc}", "error")
            return redirect(url_for("auth.login"))
        return open_session(token, info, pending.get("next") or url_for("patients.index"))
    code, why = _error(resp)
    if code == "authorization_pending":
        pending["next_poll"] = now + pending["interval"]
    elif code == "slow_down":  # CIBA Core §11: the interval grows by at least 5 s, for good
        pending["interval"] += 5
        pending["next_poll"] = now + pending["interval"]
    else:
        session.pop("ciba", None)
        reasons = {"access_denied": "la connexion a été refusée sur le téléphone",
                   "expired_token": "la demande a expiré sans réponse : recommencez"}
        flash(f"Connexion Pro Santé Connect (CIBA) : {reasons.get(code, why or code or resp.status_code)}", "error")
        return redirect(url_for("auth.login"))
    session["ciba"] = pending
    return _waiting(pending, pending["interval"])


@bp.post("/connexion/ciba/annuler")
def cancel() -> Any:
    session.pop("ciba", None)
    flash("Demande de connexion CIBA abandonnée", "info")
    return redirect(url_for("auth.login"))


def _waiting(pending: dict[str, Any], after_s: float, problem: str = "") -> Any:
    left = max(0, int(pending["expires_at"] - time.time()))
    return render_template("ciba_wait.html", national_id=pending["national_id"], refresh=max(1, round(after_s)),
                           left=left, problem=problem)
