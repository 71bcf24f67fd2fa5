"""How the LGC authenticates to INSi, the DMP and the Ordonnance numérique: by the PS assertion (VIHF for the DMP)
alone, or through the API Pro Santé Connectée (an API token exchanged at PSC, on top of the assertion; services/
api_psc.py). The configuration's ``auth`` of each service is the default; the choice made on the "À propos" page
(an administrator's setting, stored in the base so that every process on it sees it) takes precedence."""

from __future__ import annotations

from dataclasses import replace

from .db import Database
from .services.api_psc import MODE as API_PSC
from .services.context import Endpoint

SERVICES = ("insi", "dmp", "on")  # the teleservices the DSR opens to the API PSC first (seed 001)
KEY = "auth_teleservices"
ASSERTION = "assertion"
CHOICES = {ASSERTION: "Assertion du professionnel (CPS ou Pro Santé Connect)",
           API_PSC: "API Pro Santé Connectée (jeton d'API obtenu par échange de jeton, avec l'assertion)"}


def chosen(db: Database) -> str | None:
    row = db.one("SELECT value FROM settings WHERE key=?", (KEY,))
    return row["value"] if row else None


def choose(db: Database, mode: str) -> None:
    if mode not in CHOICES:
        raise ValueError(f"mode d'authentification inconnu : {mode!r}")
    db.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
               (KEY, mode))


def endpoint_for(db: Database, service: str, endpoint: Endpoint) -> Endpoint:
    """The endpoint as a call to `service` uses it: with the chosen authentication mode, if one was chosen."""
    mode = chosen(db) if service in SERVICES else None
    if mode is None:
        return endpoint
    extra = {k: v for k, v in endpoint.extra.items() if k != "auth"}
    if mode == API_PSC:
        extra["auth"] = API_PSC
    return replace(endpoint, extra=extra)


def effective(db: Database, service: str, endpoint: Endpoint) -> str:
    """The mode a call to `service` uses now, as the page shows it."""
    auth = endpoint_for(db, service, endpoint).extra.get("auth", ASSERTION)
    return API_PSC if auth == API_PSC else ASSERTION
