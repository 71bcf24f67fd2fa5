"""Test PKI of the MSSanté simulator: a bench CA and a server certificate, made with `cryptography`.

The material is generated once per store and kept in SQLite, so every worker process of the service (and
every restart with the same data directory) presents the same certificate, and clients need to trust only
the CA, served at ``GET /_bench/mss/ca.pem``. Real MSSanté operators use IGC-Santé certificates and mutual
TLS; the bench does not ask for a client certificate (README: assumptions).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from simulators.core.store import Store

_MIGRATIONS = [
    "CREATE TABLE mss_tls (id INTEGER PRIMARY KEY CHECK (id = 1), ca_pem TEXT NOT NULL, cert_pem TEXT NOT NULL,"
    " key_pem TEXT NOT NULL, created_at TEXT NOT NULL)"
]

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1", "mss", "smtp.mss.bench", "imap.mss.bench")


@dataclass(frozen=True)
class TlsMaterial:
    ca_pem: str
    cert_pem: str
    key_pem: str

    def server_context(self) -> ssl.SSLContext:
        """A server-side context; ssl needs files, so the PEMs go through a private temporary file."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        fd, path = tempfile.mkstemp(prefix="mss-tls-", suffix=".pem")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(self.key_pem + self.cert_pem + self.ca_pem)
            ctx.load_cert_chain(path)
        finally:
            os.unlink(path)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting the bench CA (tests, probes)."""
        return ssl.create_default_context(cadata=self.ca_pem)


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "segur-bench (TEST, non IGC-Santé)"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def generate(names: tuple[str, ...] = DEFAULT_NAMES) -> TlsMaterial:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("AC de test segur-bench MSSanté")
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return TlsMaterial(
        ca_pem=ca.public_bytes(pem).decode(),
        cert_pem=cert.public_bytes(pem).decode(),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
    )


def material(store: Store, extra_names: tuple[str, ...] = ()) -> TlsMaterial:
    """The store's TLS material, generated on first use (atomically: several workers may race)."""
    store.migrate("mss_tls", _MIGRATIONS)
    row = store.execute("SELECT ca_pem, cert_pem, key_pem FROM mss_tls WHERE id = 1").fetchone()
    if row is None:
        fresh = generate(DEFAULT_NAMES + tuple(extra_names))
        store.execute(
            "INSERT OR IGNORE INTO mss_tls (id, ca_pem, cert_pem, key_pem, created_at) VALUES (1, ?, ?, ?, ?)",
            (fresh.ca_pem, fresh.cert_pem, fresh.key_pem, dt.datetime.now(dt.UTC).isoformat()),
        )
        row = store.execute("SELECT ca_pem, cert_pem, key_pem FROM mss_tls WHERE id = 1").fetchone()
    return TlsMaterial(row["ca_pem"], row["cert_pem"], row["key_pem"])
