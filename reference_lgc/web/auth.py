"""Login with Pro Santé Connect (authorization code + PKCE, as a confidential web client), first-login link
to a local account, the professional information message, logout through PSC's end-session endpoint.

Tokens stay server-side (table `sessions`); the browser cookie only carries a random session id.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for

from ..calls import now_iso
from ..db import Database
from ..services.context import Professional
from ..services.transport import TlsSettings, http_client

bp = Blueprint("auth", __name__)
INFO_MESSAGE = ("Toute consultation de ma part d'un DMP/MES s'effectue dans le respect des règles d'accès : "
                "je m'engage à ne consulter le dossier médical partagé (Mon espace santé) d'un patient que si je "
                "participe à sa prise en charge, avec son consentement, et dans la limite des informations utiles "
                "à cette prise en charge. Mes accès sont tracés et visibles par le patient.")
PUBLIC_ENDPOINTS = {"auth.login", "auth.start", "auth.callback", "auth.first_login", "auth.information",
                    "auth.logout", "static", "about", "health", "ciba.start", "ciba.wait", "ciba.cancel"}


def init_app(app: Any) -> None:
    cfg = app.config["LGC"]
    # One OAuth registry per application: authlib's registry keeps the first client made under a name, so a module-
    # wide one would send a second LGC application of the same process to the first one's PSC.
    oauth = OAuth(app)
    app.extensions["psc_oauth"] = oauth
    oauth.register(
        "psc", client_id=cfg.psc.client_id, client_secret=cfg.psc.client_secret,
        server_metadata_url=cfg.psc.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": cfg.psc.scope, "code_challenge_method": "S256",
                       "token_endpoint_auth_method": "client_secret_basic", "timeout": 15,
                       **_requests_tls(cfg.service("psc").tls)})
    app.register_blueprint(bp)
    app.before_request(_load_user)


def psc() -> Any:
    """This application's Pro Santé Connect client (authlib)."""
    return current_app.extensions["psc_oauth"].psc


def _requests_tls(tls: TlsSettings) -> dict[str, Any]:
    """The LGC's [tls] as `requests` (authlib's client) takes it: the CA bundle to verify PSC with, and a client
    certificate when one is set (PSC's token endpoint accepts tls_client_auth)."""
    out: dict[str, Any] = {}
    if not tls.verify:
        out["verify"] = False
    elif tls.ca_file:
        # requests lets REQUESTS_CA_BUNDLE from the environment override a session's own `verify` (its issue
        # #3829): the environment must not decide which CA the LGC trusts.
        out.update(verify=tls.ca_file, trust_env=False)
    if tls.cert_file:
        out["cert"] = (tls.cert_file, tls.key_file) if tls.key_file else tls.cert_file
    return out


def _db() -> Database:
    return current_app.config["DB"]


def _load_user() -> Any:
    g.user = None
    g.session_row = None
    sid = session.get("sid")
    if sid:
        row = _db().one("SELECT * FROM sessions WHERE sid=?", (sid,))
        if row is not None:
            g.session_row = row
            if row["user_id"]:
                g.user = _db().one("SELECT * FROM users WHERE id=?", (row["user_id"],))
    if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return None
    if g.session_row is None:
        return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
    if g.user is None:
        return redirect(url_for("auth.first_login"))
    if info_message_due(g.user["info_ack_at"], current_app.config["LGC"].info_message_days):
        return redirect(url_for("auth.information", next=request.full_path if request.method == "GET" else None))
    return None


def info_message_due(ack_at: str | None, days: int, now: datetime | None = None) -> bool:
    """Shown at first login and again every `days` days."""
    if not ack_at:
        return True
    now = now or datetime.now(UTC)
    return now - datetime.fromisoformat(ack_at) >= timedelta(days=days)


@bp.get("/connexion")
def login() -> Any:
    return render_template("login.html", next=request.args.get("next") or "")


def local_path(value: str | None) -> str:
    """`value` if it is a path of this site, else "". Browsers drop tabs and newlines from a URL and read a
    backslash as a slash, so a slash, a tab and '/evil.example', or a slash, a backslash and 'evil.example', would
    leave the site (an open redirect after login): any control character, space or backslash refuses the value,
    and what is left must have neither scheme nor host."""
    if not value or any(ch <= " " or ch in "\\\x7f" for ch in value):
        return ""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return ""
    return value


@bp.post("/connexion")
def start() -> Any:
    cfg = current_app.config["LGC"]
    nxt = local_path(request.form.get("next"))
    session["next"] = nxt
    try:
        return psc().authorize_redirect(cfg.base_url + url_for("auth.callback"), acr_values=cfg.psc.acr_values)
    except (httpx.HTTPError, OSError, ValueError) as exc:
        current_app.logger.warning("PSC discovery failed: %s", exc)
        flash(f"Pro Santé Connect injoignable ({type(exc).__name__}) : connexion impossible pour l'instant.",
              "error")
        return render_template("login.html", next=nxt, status_url=cfg.service_status_url), 503


@bp.get("/auth/callback")
def callback() -> Any:
    if request.args.get("error"):
        why = request.args.get("error_description") or request.args["error"]
        flash(f"Connexion refusée par Pro Santé Connect : {why}", "error")
        return redirect(url_for("auth.login"))
    try:
        token = psc().authorize_access_token()
        info = psc().userinfo(token=token)
    except Exception as exc:  # authlib raises its own errors, httpx its own: one message for the user
        current_app.logger.warning("PSC callback failed: %s", exc)
        flash(f"Échec de la connexion Pro Santé Connect : {exc}", "error")
        return redirect(url_for("auth.login"))
    return open_session(token, info, session.pop("next", "") or url_for("patients.index"))


def open_session(token: dict[str, Any], info: dict[str, Any], target: str) -> Any:
    """The LGC's session for a professional PSC has authenticated (code flow or CIBA): tokens kept server-side,
    the first login sent to the local-account link."""
    national_id = info.get("SubjectNameID") or info.get("preferred_username") or ""
    if not national_id:
        flash("Pro Santé Connect n'a pas renvoyé d'identifiant national (SubjectNameID)", "error")
        return redirect(url_for("auth.login"))
    user = _db().one("SELECT id FROM users WHERE national_id=?", (national_id,))
    sid = secrets.token_urlsafe(24)
    _db().execute(
        "INSERT INTO sessions (sid, user_id, national_id, userinfo, access_token, refresh_token, id_token, "
        "expires_at, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (sid, user["id"] if user else None, national_id, json.dumps(info), token.get("access_token"),
         token.get("refresh_token"), token.get("id_token"), token.get("expires_at") or time.time() + 300,
         now_iso()))
    session["sid"] = sid
    if user is None:
        return redirect(url_for("auth.first_login"))
    return redirect(target)


def _userinfo() -> dict[str, Any]:
    return json.loads(g.session_row["userinfo"]) if g.session_row is not None else {}


def _exercise(info: dict[str, Any]) -> dict[str, Any]:
    exercices = (info.get("SubjectRefPro") or {}).get("exercices") or [{}]
    return exercices[0] or {}


@bp.route("/premiere-connexion", methods=["GET", "POST"])
def first_login() -> Any:
    if g.session_row is None:
        return redirect(url_for("auth.login"))
    if g.user is not None:
        return redirect(url_for("patients.index"))
    info = _userinfo()
    ex = _exercise(info)
    activity = (ex.get("activities") or [{}])[0] or {}
    unlinked = _db().all("SELECT id, login, family_name, given_name FROM users WHERE national_id IS NULL")
    if request.method == "POST":
        national_id = g.session_row["national_id"]
        if request.form.get("mode") == "link":
            target = _db().one("SELECT id FROM users WHERE id=? AND national_id IS NULL",
                               (request.form.get("user_id", type=int),))
            if target is None:
                flash("Compte local introuvable ou déjà associé à un autre professionnel", "error")
                return redirect(url_for("auth.first_login"))
            user_id = target["id"]
            # PSC is the reference for the identity and the structure; billing data stay the local account's.
            _db().execute(
                "UPDATE users SET national_id=?, rpps=?, family_name=?, given_name=?, profession=?, speciality=?, "
                "sector=?, structure_id=?, structure_name=? WHERE id=?",
                (national_id, national_id[1:], info.get("family_name", ""), info.get("given_name", ""),
                 ex.get("codeProfession") or "10", ex.get("codeSavoirFaire") or "SM26",
                 activity.get("codeSecteurDactivite") or "SA07", info.get("SubjectOrganizationID") or "",
                 info.get("SubjectOrganization") or "", user_id))
            _set_address(user_id, activity)
        else:
            login_name = (request.form.get("login") or "").strip()
            if not login_name:
                flash("Identifiant du compte local : obligatoire", "error")
                return redirect(url_for("auth.first_login"))
            if _db().one("SELECT 1 FROM users WHERE login=?", (login_name,)):
                flash(f"L'identifiant « {login_name} » est déjà pris", "error")
                return redirect(url_for("auth.first_login"))
            cur = _db().execute(
                "INSERT INTO users (login, family_name, given_name, national_id, rpps, profession, speciality, "
                "sector, structure_id, structure_name, billing_id, amo_speciality, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (login_name, info.get("family_name", ""), info.get("given_name", ""), national_id, national_id[1:],
                 ex.get("codeProfession") or "10", ex.get("codeSavoirFaire") or "SM26",
                 activity.get("codeSecteurDactivite") or "SA07", info.get("SubjectOrganizationID") or "",
                 info.get("SubjectOrganization") or "", (request.form.get("billing_id") or "").strip(),
                 (request.form.get("amo_speciality") or "01").strip(), now_iso()))
            user_id = int(cur.lastrowid)
            _db().execute("UPDATE users SET mss_address=? WHERE id=?",
                          ((request.form.get("mss_address") or "").strip(), user_id))
            _set_address(user_id, activity)
        _db().execute("UPDATE sessions SET user_id=? WHERE sid=?", (user_id, g.session_row["sid"]))
        return redirect(url_for("auth.information"))
    return render_template("first_login.html", info=info, exercise=ex, unlinked=unlinked,
                           default_login=(info.get("given_name", "") + "." + info.get("family_name", "")).lower())


def _set_address(user_id: int, activity: dict[str, Any]) -> None:
    """The practice's address as PSC gives it (printed on prescriptions)."""
    street = " ".join(x for x in (activity.get("numeroVoie"), activity.get("libelleVoie")) if x)
    city = (activity.get("bureauCedex") or "").removeprefix(activity.get("codePostal") or "").strip()
    _db().execute("UPDATE users SET structure_street=?, structure_postal_code=?, structure_city=?, structure_phone=? "
                  "WHERE id=?", (street, activity.get("codePostal") or "", city, activity.get("telephone") or "",
                                 user_id))


@bp.route("/information", methods=["GET", "POST"])
def information() -> Any:
    if g.user is None:
        return redirect(url_for("auth.login"))
    nxt = request.values.get("next") or ""
    if request.method == "POST":
        if request.form.get("compris") != "oui":
            flash("Cochez « J'ai compris » pour continuer", "error")
            return render_template("information.html", message=INFO_MESSAGE, next=nxt), 400
        _db().execute("UPDATE users SET info_ack_at=? WHERE id=?", (now_iso(), g.user["id"]))
        return redirect(local_path(nxt) or url_for("patients.index"))
    return render_template("information.html", message=INFO_MESSAGE, next=nxt,
                           days=current_app.config["LGC"].info_message_days)


@bp.post("/deconnexion")
def logout() -> Any:
    cfg = current_app.config["LGC"]
    row = g.session_row
    session.clear()
    if row is None:
        return redirect(url_for("auth.login"))
    _db().execute("DELETE FROM sessions WHERE sid=?", (row["sid"],))
    try:
        end = psc().load_server_metadata().get("end_session_endpoint")
    except Exception:  # PSC unreachable: the local session is closed anyway
        end = None
    if not end:
        return redirect(url_for("auth.login"))
    query = {"post_logout_redirect_uri": cfg.base_url + "/", "client_id": cfg.psc.client_id}
    if row["id_token"]:
        query["id_token_hint"] = row["id_token"]
    return redirect(f"{end}?{urlencode(query)}")


# ------------------------------------------------------------------------------------ professional context


def professional_for(db: Database, sid: str | None, user: Any) -> Professional:
    """The calling professional for a service call: local account data + the session's PSC tokens."""
    row = db.one("SELECT * FROM sessions WHERE sid=?", (sid,)) if sid else None
    return Professional(
        national_id=user["national_id"] or "", rpps=user["rpps"] or "", family_name=user["family_name"],
        given_name=user["given_name"], profession=user["profession"], speciality=user["speciality"],
        role=user["profession"], sector=user["sector"], structure_id=user["structure_id"],
        structure_name=user["structure_name"], billing_id=user["billing_id"], amo_speciality=user["amo_speciality"],
        access_token=row["access_token"] if row else None, id_token=row["id_token"] if row else None)


def refresh_tokens(db: Database, sid: str, token_endpoint: str, client_id: str, client_secret: str,
                   timeout: float = 10.0, tls: TlsSettings | None = None) -> str | None:
    """A fresh access token for a session (refresh grant when the current one is about to expire)."""
    row = db.one("SELECT * FROM sessions WHERE sid=?", (sid,))
    if row is None:
        return None
    if row["expires_at"] and row["expires_at"] > time.time() + 20:
        return row["access_token"]
    if not row["refresh_token"]:
        return None
    with http_client(tls or TlsSettings(), timeout=timeout) as http:
        resp = http.post(token_endpoint, data={"grant_type": "refresh_token", "refresh_token": row["refresh_token"]},
                         auth=(client_id, client_secret))
    if resp.status_code != 200:
        return None
    tok = resp.json()
    db.execute("UPDATE sessions SET access_token=?, refresh_token=?, expires_at=? WHERE sid=?",
               (tok["access_token"], tok.get("refresh_token") or row["refresh_token"],
                time.time() + float(tok.get("expires_in", 300)), sid))
    return tok["access_token"]


def authenticated() -> bool:
    """PSC authentication still usable: a live access token, or a refresh token to get one."""
    row = g.session_row
    return row is not None and bool(row["access_token"]) and (
        (row["expires_at"] or 0) > time.time() or bool(row["refresh_token"]))
