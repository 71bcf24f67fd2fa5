"""How the LGC's clients reach a national service over HTTPS: the CAs it trusts and the client certificate it
presents (`[tls]` and `[services.<name>.tls]` of its settings).

The real services are HTTPS with IGC-Santé certificates, INSi's mutual-TLS mode and the DMP with a client
certificate of the structure; the bench's simulators are the same with the bench PKI. One SSL context per set
of files, built once (loading a CA bundle and a key costs milliseconds), shared by every call.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass

import httpx

TLS_KEYS = ("ca_file", "cert_file", "key_file", "key_password", "verify")


@dataclass(frozen=True)
class TlsSettings:
    ca_file: str | None = None  # PEM bundle of the CAs to trust (None: the system's)
    cert_file: str | None = None  # client certificate (PEM, chain after the leaf), for mutual TLS
    key_file: str | None = None  # its private key (PEM); None: in cert_file
    key_password: str | None = None
    verify: bool = True  # False: no server verification at all (never against a real service)


@functools.lru_cache(maxsize=32)
def ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=tls.ca_file or None)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file or None, tls.key_password or None)
    return ctx


def http_client(tls: TlsSettings, **kwargs: object) -> httpx.Client:
    """An httpx client that trusts `tls.ca_file` and presents `tls.cert_file` (no redirects unless asked)."""
    kwargs.setdefault("follow_redirects", False)
    return httpx.Client(verify=ssl_context(tls), **kwargs)  # type: ignore[arg-type]


# TLS alerts a service sends about the LGC's client certificate, in the words a user can act on.
_CLIENT_CERT_ALERTS = {
    "certificate required": "le service exige un certificat client et aucun n'a été présenté",
    "unknown ca": "le service ne reconnaît pas l'autorité qui a émis le certificat client",
    "certificate expired": "le certificat client est expiré",
    "certificate revoked": "le certificat client est révoqué",
    "bad certificate": "le service refuse le certificat client",
    "handshake failure": "la négociation TLS a échoué (certificat client absent ou refusé ?)",
}


def network_reason(exc: Exception) -> str:
    """Why a call failed on the network, in French: the TLS cases explained, the rest named by their type."""
    text = str(exc).lower().replace("_", " ")
    if "certificate verify failed" in text:
        if "hostname" in text or "ip address mismatch" in text:
            return "certificat du serveur émis pour un autre nom (vérifiez l'adresse du service)"
        return "certificat du serveur non reconnu (installez l'autorité de certification du service)"
    for words, reason in _CLIENT_CERT_ALERTS.items():
        if words in text:
            return reason
    if "wrong version number" in text or "record layer failure" in text:
        return "le service ne parle pas TLS à cette adresse (http au lieu de https ?)"
    return type(exc).__name__
