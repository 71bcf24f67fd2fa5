"""The reference LGC's Flask application factory."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import httpx
from flask import Flask, flash, g, redirect, render_template, request, url_for
from werkzeug.routing import IntegerConverter

from . import __version__, service_auth
from .calls import CallRunner
from .config import SERVICES, LgcConfig
from .db import Database
from .demo import load_demo_data
from .operations import Operations
from .outbox import Outbox
from .records import Records
from .services.api_psc import ApiPsc
from .web import auth, calls, ciba, csrf, dmp, documents, messaging, patients, prescriptions
from .web.auth import refresh_tokens

log = logging.getLogger("reference_lgc")


class RowId(IntegerConverter):
    """<int:…> in a URL, bounded to what a SQLite row id can hold: a longer number is a 404 (no such page), not an
    OverflowError inside a query (the internal-error page, issue 16)."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(url_map, *args, **kwargs)


def create_app(config: LgcConfig | None = None) -> Flask:
    config = config or LgcConfig()
    app = Flask(__name__)
    app.url_map.converters["int"] = RowId  # before any route is added: every <int:…> is bounded
    db = Database(config.data_dir / "lgc.sqlite3")
    app.config.update(LGC=config, DB=db, SESSION_COOKIE_NAME="lgc_session", SESSION_COOKIE_SAMESITE="Lax",
                      MAX_CONTENT_LENGTH=5 * 1024 * 1024, SECRET_KEY=_secret_key(db))
    records = Records(db)
    runner = CallRunner(db, config)
    interrupted = runner.recover()
    if interrupted:
        log.warning("%d service call(s) interrupted by the previous stop marked as failed", interrupted)
    # The DMP outbox: validated documents wait their deferral, then go out in the background, once.
    outbox = Outbox(db, endpoint=config.service("dmp").endpoint(), software=config.software)
    # API Pro Santé Connectée, for the services configured with auth = "api_psc": one token exchange client, the
    # calls' PSC session tokens refreshed at PSC when they are about to expire
    token_endpoint = config.psc.issuer.rstrip("/") + "/protocol/openid-connect/token"
    psc_tls = config.service("psc").tls
    runner.api_psc = outbox.api_psc = ApiPsc(token_endpoint, config.psc.client_id, config.psc.client_secret,
                                             tls=psc_tls)

    def session_token(sid: str) -> str | None:
        try:
            return refresh_tokens(db, sid, token_endpoint, config.psc.client_id, config.psc.client_secret,
                                  tls=psc_tls)
        except httpx.HTTPError:  # PSC unreachable: the exchange will say so with the token the call has
            return None

    runner.session_token = session_token
    app.config.update(RECORDS=records, RUNNER=runner, OUTBOX=outbox,
                      OPERATIONS=Operations(db, records, runner, config, outbox))
    if config.demo_data:
        load_demo_data(db, records)
    csrf.init_app(app)  # before the login hooks: a forged request is refused before anything else looks at it
    auth.init_app(app)
    app.register_blueprint(ciba.bp)
    app.register_blueprint(patients.bp)
    app.register_blueprint(calls.bp)
    app.register_blueprint(dmp.bp)
    app.register_blueprint(documents.bp)
    app.register_blueprint(prescriptions.bp)
    app.register_blueprint(messaging.bp)

    @app.context_processor
    def globals_() -> dict[str, Any]:
        return {"version": __version__, "user": g.get("user"), "services": SERVICES,
                "status_url": config.service_status_url, "software": config.software}

    @app.get("/a-propos")
    def about() -> Any:
        modes = {name: service_auth.effective(db, name, config.service(name).endpoint())
                 for name in service_auth.SERVICES}
        return render_template("about.html", config=config, schema=db.version, auth_modes=modes,
                               auth_choices=service_auth.CHOICES, auth_chosen=service_auth.chosen(db))

    @app.post("/a-propos/authentification")
    def choose_auth() -> Any:
        try:
            service_auth.choose(db, request.form.get("mode", ""))
        except ValueError as exc:
            flash(str(exc), "error")
        else:
            flash("Mode d'authentification aux téléservices enregistré : "
                  f"{service_auth.CHOICES[request.form['mode']]}", "info")
        return redirect(url_for("about"))

    @app.get("/sante")
    def health() -> Any:
        return {"status": "ok", "version": __version__, "schema": db.version}

    @app.errorhandler(404)
    def not_found(exc: Any) -> Any:
        return render_template("error.html", code=404, message=getattr(exc, "description", "Page introuvable")), 404

    @app.errorhandler(413)
    def too_large(exc: Any) -> Any:
        return render_template("error.html", code=413, message="Fichier trop volumineux (5 Mo au plus)"), 413

    @app.errorhandler(500)
    def internal(exc: Any) -> Any:
        log.exception("error on %s %s", request.method, request.path)
        return render_template("error.html", code=500, message="Erreur interne : l'incident est journalisé."), 500

    app.jinja_env.globals["refresh_for"] = lambda call: calls.REFRESH.get(call.service, "")
    app.jinja_env.globals["static_url"] = lambda name: url_for("static", filename=name, v=__version__)
    return app


def _secret_key(db: Database) -> str:
    """One signing key per installation, kept in the base so sessions survive a restart."""
    row = db.one("SELECT value FROM settings WHERE key='secret_key'")
    if row:
        return row["value"]
    key = secrets.token_hex(32)
    db.execute("INSERT OR IGNORE INTO settings (key, value) VALUES ('secret_key', ?)", (key,))
    return db.one("SELECT value FROM settings WHERE key='secret_key'")["value"]
