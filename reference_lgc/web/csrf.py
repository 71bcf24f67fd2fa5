"""Cross-site request forgery: every state-changing request must come from a page of the LGC itself.

Two independent checks (issue 16). Every bench service listens on 127.0.0.1, so a page served by any of them is
*same-site* with the LGC and the browser sends the LGC's SameSite=Lax session cookie with its POSTs: SameSite
alone does not protect the doctor's session.

1. Origin: a POST whose `Origin` (or, when the browser sent none, `Referer`) names another origin than the LGC's
   own is refused. Flask-WTF only looks at the Referer, and only over HTTPS (WTF_CSRF_SSL_STRICT); the LGC is
   plain HTTP on loopback by default.
2. A synchroniser token (Flask-WTF's CSRFProtect): every form carries `csrf_token`, fetch() sends it as
   `X-CSRFToken` (from the page's <meta name="csrf-token">).

Either failure is a French 403 page, never a raw 400.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect

log = logging.getLogger("reference_lgc.csrf")
csrf = CSRFProtect()

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Flask-WTF's reasons (English) as the doctor reads them.
_REASONS = {
    "The CSRF token is missing.": "le jeton de sécurité du formulaire est absent",
    "The CSRF session token is missing.": "la session du navigateur ne contient pas de jeton de sécurité "
                                          "(cookies refusés, ou session terminée)",
    "The CSRF token is invalid.": "le jeton de sécurité du formulaire est invalide",
    "The CSRF tokens do not match.": "le jeton de sécurité ne correspond pas à la session en cours",
    "The CSRF token has expired.": "le formulaire a expiré",
    "The referrer header is missing.": "le navigateur n'a pas indiqué la page d'origine (en-tête Referer)",
    "The referrer does not match the host.": "la page d'origine n'est pas une page du LGC",
}
ADVICE = "Rechargez la page du LGC puis recommencez. Si le problème persiste, reconnectez-vous."


def init_app(app: Flask) -> None:
    """Origin check first, then Flask-WTF's token check (before_request hooks run in registration order): both
    run before the login hooks, so a forged request is refused before anything looks at it."""
    # The token lives as long as the session (it is bound to it, and logout clears it): a form left open during a
    # long consultation must still submit. Flask-WTF's default would expire it after an hour.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    app.before_request(check_origin)
    csrf.init_app(app)
    app.register_error_handler(CSRFError, _refused)


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL, default port filled in; None when it has no usable scheme and host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def own_origins() -> set[tuple[str, str, int]]:
    """The LGC as this request reached it (scheme and Host header), and as its settings publish it (public_url:
    a proxy in front may change the scheme)."""
    found = {origin_of(f"{request.scheme}://{request.host}")}
    cfg = current_app.config.get("LGC")
    if cfg is not None and cfg.public_url:
        found.add(origin_of(cfg.public_url))
    found.discard(None)
    return found  # type: ignore[return-value]


def check_origin() -> Any:
    if request.method not in UNSAFE_METHODS:
        return None
    claimed = request.headers.get("Origin")
    header = "Origin"
    if claimed is None:
        # Browsers omit Origin on some same-origin requests: the Referer says where the form was, when sent.
        claimed, header = request.headers.get("Referer"), "Referer"
    if claimed is None:
        return None  # neither header: the token check alone decides
    # "null" (a sandboxed or opaque origin) or anything unparsable is not the LGC.
    if origin_of(claimed) in own_origins():
        return None
    log.warning("cross-origin %s %s refused (%s: %s)", request.method, request.path, header, claimed[:200])
    return _page(f"la requête vient d'une autre origine que le LGC ({header} : {claimed[:200]})")


def _refused(exc: CSRFError) -> Any:
    log.warning("CSRF check failed on %s %s: %s", request.method, request.path, exc.description)
    return _page(_REASONS.get(exc.description or "", "le jeton de sécurité du formulaire est invalide"))


def _page(reason: str) -> Any:
    message = f"Action refusée par sécurité : {reason}. {ADVICE}"
    return render_template("error.html", code=403, message=message), 403
