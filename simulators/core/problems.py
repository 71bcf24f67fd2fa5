"""Error bodies in each protocol's own shape: RFC 9457 problem JSON, or a SOAP 1.2 fault."""

from __future__ import annotations

import json
import logging
import secrets

PROBLEM_CONTENT_TYPE = "application/problem+json"

_TITLES = {
    400: "Requête invalide",
    404: "Ressource inconnue",
    405: "Méthode non autorisée",
    409: "Conflit",
    413: "Requête trop volumineuse",
    415: "Type de contenu non pris en charge",
    422: "Contenu non traitable",
    500: "Erreur interne du simulateur",
    501: "Non pris en charge par ce simulateur",
    502: "Erreur simulée",
    503: "Service indisponible",
    504: "Délai dépassé",
}


def problem(status: int, detail: str, *, title: str | None = None, type_: str = "about:blank",
            **extra: object) -> dict:
    body: dict = {"type": type_, "title": title or _TITLES.get(status, "Erreur"), "status": status,
                  "detail": detail}
    body.update(extra)
    return body


def problem_bytes(status: int, detail: str, **extra: object) -> bytes:
    return json.dumps(problem(status, detail, **extra), ensure_ascii=False).encode("utf-8")


def error_response(error_format: str, status: int, detail: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of an error answered outside the service's own handlers."""
    if error_format == "soap":
        from .soap import SOAP_CONTENT_TYPE, build_fault

        code = "Sender" if 400 <= status < 500 else "Receiver"
        return status, SOAP_CONTENT_TYPE, build_fault(code, detail)
    return status, PROBLEM_CONTENT_TYPE, problem_bytes(status, detail)


def log_internal_error(logger: logging.Logger, what: str) -> str:
    """Log the exception being handled under a short reference, returned for the client's answer.

    The client learns that the simulator failed and how to find it in the log, not which Python exception it was
    (issue 16): class names and messages are ours to read, not part of any protocol."""
    ref = secrets.token_hex(4)
    logger.exception("unhandled error on %s [ref %s]", what, ref)
    return ref


def internal_error(logger: logging.Logger, service: str, what: str) -> str:
    """`log_internal_error`, and the text of an HTTP answer."""
    ref = log_internal_error(logger, what)
    return f"erreur interne du simulateur {service} (référence {ref} dans son journal)"
