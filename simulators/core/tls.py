"""TLS on a simulator's TLS port: the server context, client certificates, and what the journal learns of each.

Each simulator keeps its plain HTTP port and gets a TLS port (registry.py: HTTP port + 300). The server
certificate comes from the bench PKI (pki.py) and covers the bench's names and the service's real
qualification host names. Client certificates are asked for according to the service's `client_cert`
setting:

- `required`: a connection without a valid certificate of the bench CA is refused in the handshake;
- `optional`: a certificate is asked for; none is fine, an invalid one is refused in the handshake;
- `off`: no certificate is asked for (a browser would otherwise show a certificate chooser).

"Invalid" is what OpenSSL checks against the bench CA and its CRL (reloaded when `pki revoke` re-signs it):
foreign CA, expired, not yet valid, revoked. The client gets the TLS alert OpenSSL sends for it
(unknown_ca, certificate_expired, certificate_revoked, certificate_required or handshake_failure). What a
service checks beyond that (e.g. INSi's INSI-AUTO/INSI-MANU common name) it checks on the request, with the
service's own fault, from `TlsInfo.client_cert`.

A refused handshake never reaches HTTP, so the context watches the TLS records it sends (`_msg_callback`)
and reports refusals to `on_refused`, which journals them: a vendor sees in the journal why the bench
refused their certificate.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .pki import BenchPki, describe_der

log = logging.getLogger("segur_bench.tls")

CLIENT_CERT_MODES = ("required", "optional", "off")

# TLS alert descriptions (RFC 8446 §6), in French for the journal.
ALERTS = {
    40: ("handshake_failure", "échec de la négociation (aucun certificat client présenté ?)"),
    42: ("bad_certificate", "certificat client invalide"),
    43: ("unsupported_certificate", "certificat client d'un type non accepté"),
    44: ("certificate_revoked", "certificat client révoqué (liste de révocation du banc)"),
    45: ("certificate_expired", "certificat client expiré ou pas encore valide"),
    46: ("certificate_unknown", "certificat client refusé"),
    48: ("unknown_ca", "certificat client émis par une autorité que le banc ne reconnaît pas"),
    51: ("decrypt_error", "signature de la poignée de main invalide"),
    70: ("protocol_version", "version de TLS non acceptée (TLS 1.2 ou 1.3 attendu)"),
    71: ("insufficient_security", "suites cryptographiques trop faibles"),
    80: ("internal_error", "erreur interne TLS"),
    112: ("unrecognized_name", "nom de serveur (SNI) inconnu"),
    116: ("certificate_required", "certificat client exigé mais absent"),
    120: ("no_application_protocol", "protocole applicatif (ALPN) non accepté"),
}


def check_mode(mode: Any, service: str) -> str:
    if mode not in CLIENT_CERT_MODES:
        raise ValueError(f"{service}: client_cert must be one of {', '.join(CLIENT_CERT_MODES)}, got {mode!r}")
    return str(mode)


@dataclass(frozen=True)
class Refusal:
    """A handshake the bench refused: the alert it sent, and the client certificate when one was presented."""

    alert: str
    reason: str
    sni: str | None
    client_cert: dict | None
    at: float


@functools.lru_cache(maxsize=256)
def describe_client_cert(der: bytes) -> dict:
    """The journal's view of a client certificate (cached: an LGC presents the same one on every connection)."""
    return describe_der(der)


def tls_info(ssl_object: Any) -> dict:
    """What the journal records of a TLS connection: version, cipher, SNI and the client certificate."""
    der = None
    with contextlib.suppress(ValueError, ssl.SSLError):
        der = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    return {
        "version": ssl_object.version(),
        "cipher": cipher[0] if cipher else None,
        "sni": getattr(ssl_object, "segur_sni", None),
        "client_cert": describe_client_cert(der) if der else None,
    }


class _BenchSSLObject(ssl.SSLObject):
    """SSLObject with room for what the hello callback learns (the SNI) and the refusal watcher sees, and a
    handshake failure that lets its alert out first.

    asyncio's (and uvloop's) SSL protocol closes the connection as soon as `do_handshake` raises, without sending
    what OpenSSL wrote meanwhile: the TLS alert that tells the client why (certificate_revoked, unknown_ca…) is
    lost and the client only sees a closed connection. So the first failure is held back and reported as "want
    read", which makes the protocol flush the alert; the next call (the client's next bytes, or its close)
    raises the real error."""

    segur_sni: str | None = None
    segur_cert_der: bytes | None = None
    segur_reported: bool = False
    segur_failure: ssl.SSLError | None = None

    def do_handshake(self) -> None:
        if self.segur_failure is not None:
            raise self.segur_failure
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            self.segur_failure = exc
            raise ssl.SSLWantReadError("handshake refused; alert sent") from exc


class ServerTls:
    """The TLS side of one simulator. `context()` builds the server context in the worker that serves it."""

    def __init__(self, pki_dir: Path, service: str, names: list[str], client_cert: str,
                 on_refused: Callable[[Refusal], None] | None = None) -> None:
        self.pki_dir = Path(pki_dir)
        self.service = service
        self.names = list(names)
        self.client_cert = check_mode(client_cert, service)
        self.on_refused = on_refused
        self._crl_key: tuple[int, int] | None = None
        self._crl_checked = 0.0
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._ctx: ssl.SSLContext | None = None
        self._pid = 0

    @property
    def pki(self) -> BenchPki:
        return BenchPki.open(self.pki_dir)

    def context(self) -> ssl.SSLContext:
        """This process's server context (built once per process: every listener of the service shares it, so a
        re-signed CRL reaches them all)."""
        with self._lock:
            if self._ctx is None or self._pid != os.getpid():
                self._ctx = self._build()
                self._pid = os.getpid()
            return self._ctx

    def _build(self) -> ssl.SSLContext:
        pki = BenchPki.open(self.pki_dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(pki.server_material(self.service, self.names))
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.sslobject_class = _BenchSSLObject
        if self.client_cert != "off":
            ctx.verify_mode = ssl.CERT_REQUIRED if self.client_cert == "required" else ssl.CERT_OPTIONAL
            ctx.load_verify_locations(cafile=str(pki.chain_path))
            self._load_crl(ctx, pki.crl_path)
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        ctx.sni_callback = self._on_hello
        _watch_records(ctx, self._on_record)
        self._ctx = ctx  # (the CRL reload below works on it)
        return ctx

    # -- revocation: a CRL re-signed by `pki revoke` is loaded for the next handshakes, in every worker
    def _load_crl(self, ctx: ssl.SSLContext, path: Path) -> None:
        st = os.stat(path)
        # OpenSSL keeps every CRL loaded and uses the one with the latest lastUpdate (pki.py makes it increase).
        ctx.load_verify_locations(cafile=str(path))
        self._crl_key = (st.st_mtime_ns, st.st_size)

    def _refresh_crl(self) -> None:
        now = time.monotonic()
        if self._ctx is None or self.client_cert == "off" or now - self._crl_checked < 0.5:
            return
        self._crl_checked = now
        path = self.pki_dir / "crl.pem"
        try:
            st = os.stat(path)
        except OSError:
            return
        if (st.st_mtime_ns, st.st_size) != self._crl_key:
            with self._reload_lock:
                try:
                    self._load_crl(self._ctx, path)
                    log.info("%s: revocation list reloaded", self.service)
                except (OSError, ssl.SSLError) as exc:  # half-written by hand: keep the previous one
                    log.warning("%s: could not reload the revocation list %s: %s", self.service, path, exc)

    # -- callbacks (OpenSSL calls them in the handshake, on the event loop's thread)
    def _on_hello(self, ssl_object: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        ssl_object.segur_sni = server_name
        self._refresh_crl()
        return None

    def _on_record(self, conn: Any, direction: str, _version: Any, content_type: Any, msg_type: Any,
                   data: bytes) -> None:
        try:
            if content_type == _HANDSHAKE and msg_type == _CERTIFICATE and direction == "read":
                conn.segur_cert_der = _first_certificate(data)
            elif content_type == _ALERT and direction == "write" and len(data) >= 2 \
                    and data[0] == 2 and not conn.segur_reported:  # a fatal alert we send
                conn.segur_reported = True
                name, reason = ALERTS.get(data[1], (f"alert_{data[1]}", f"alerte TLS {data[1]}"))
                der = conn.segur_cert_der
                cert = None
                if der:
                    try:
                        cert = describe_client_cert(der)
                    except ValueError:
                        cert = None
                if self.on_refused is not None:
                    self.on_refused(Refusal(name, reason, conn.segur_sni, cert, time.time()))
        except Exception:  # never break a handshake because of the journal
            log.exception("TLS record watcher failed")


_HANDSHAKE, _ALERT, _CERTIFICATE = 22, 21, 11  # TLS content types and handshake message type (RFC 8446)


def _watch_records(ctx: ssl.SSLContext, callback: Callable[..., None]) -> None:
    """Install `callback` as the context's record hook (CPython's `_msg_callback`), with plain ints.

    ssl.py's setter wraps the callback in a function that turns version, content type and message type into enums
    on every record, application data included: three enum constructions per call, a measurable share of each
    TLS exchange (bench/insi_tls.py). The C-level attribute takes the callback as it is."""
    raw = getattr(super(ssl.SSLContext, ssl.SSLContext), "_msg_callback", None)
    if raw is not None and hasattr(raw, "__set__"):
        raw.__set__(ctx, callback)
    elif hasattr(ctx, "_msg_callback"):
        ctx._msg_callback = callback  # another ssl module: enums compare equal to the ints above
    # without either, refusals are not journaled (the handshake still refuses)


def _first_certificate(message: bytes) -> bytes | None:
    """The leaf certificate (DER) of a TLS Certificate handshake message, TLS 1.2 or 1.3 layout."""
    # message: type(1) length(3) body. TLS 1.3 body: context length(1) + context, list length(3), then entries of
    # cert length(3) + cert + extensions length(2) + extensions. TLS 1.2 body: list length(3), cert length(3)+cert.
    body = message[4:]
    for offset in (1 + (body[0] if body else 0), 0):  # try the TLS 1.3 layout first, then 1.2
        try:
            total = int.from_bytes(body[offset:offset + 3], "big")
            if total == 0 or offset + 3 + total != len(body):
                continue
            size = int.from_bytes(body[offset + 3:offset + 6], "big")
            der = body[offset + 6:offset + 6 + size]
            if len(der) == size and der[:1] == b"\x30":
                return bytes(der)
        except IndexError:
            continue
    return None
