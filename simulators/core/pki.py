"""The bench PKI: a root and an intermediate CA shaped like the IGC-Santé test hierarchy, made with `cryptography`.

Generated once per data directory (`<data_dir>/pki/`) and kept there, so every simulator process, every
restart and every vendor's LGC sees the same CA. What it holds:

    root.crt, root.key        the trust anchor a vendor installs ("AC RACINE")
    ca.crt, ca.key            the intermediate that issues every server and client certificate
    ca-chain.pem              intermediate then root (what `segur-bench pki ca` writes)
    crl.pem                   CRLs of both CAs (servers check client certificates against it)
    index.json                every certificate issued: serial, name, kind, subject, fingerprint, revocation
    servers/<service>.pem     key + certificate + intermediate of each simulator's TLS port
    clients/<name>.{crt,key,p12}, clients/ca.pem   client certificates issued by `pki issue-client`

Every change is made under an exclusive lock (`.lock`), so several simulator processes starting at once
create one PKI, not several. Profiles (`PROFILES`) say what each kind of certificate carries; which values
follow the public IGC-Santé documents and which are the bench's own is in docs/pki.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import ipaddress
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_BITS = 2048
ROOT_DAYS = 20 * 365
CA_DAYS = 10 * 365
SERVER_DAYS = 397  # the longest validity browsers accept for a server certificate
CLIENT_DAYS = 3 * 365  # IGC-Santé end-entity certificates are issued for three years
CRL_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
BACKDATE = dt.timedelta(minutes=10)  # tolerate clocks a little behind the bench's

# Certificate policies. The bench never claims a real IGC-Santé policy: its certificates carry OIDs of its own
# under a UUID arc (2.25.<uuid>, ITU-T X.667: needs no registration), so a bench certificate can never pass for
# a real one. Invented, and documented as such in docs/pki.md.
BENCH_POLICY_ARC = "2.25.92462861474413702877899287845765078161"
POLICY_OIDS = {
    "server": f"{BENCH_POLICY_ARC}.1",
    "structure": f"{BENCH_POLICY_ARC}.2",
    "software": f"{BENCH_POLICY_ARC}.3",
    "person": f"{BENCH_POLICY_ARC}.4",
}


class PkiError(RuntimeError):
    pass


@dataclass(frozen=True)
class Profile:
    kind: str
    title: str  # French, shown by `pki show`
    eku: tuple[x509.ObjectIdentifier, ...]
    key_encipherment: bool = True
    content_commitment: bool = False


PROFILES: dict[str, Profile] = {
    "server": Profile("server", "serveur TLS (SSL serveur)", (ExtendedKeyUsageOID.SERVER_AUTH,)),
    "structure": Profile("structure", "authentification de structure (ORG AUTH_CLI)",
                         (ExtendedKeyUsageOID.CLIENT_AUTH,)),
    "software": Profile("software", "logiciel : authentification de structure nommée INSI-AUTO / INSI-MANU",
                        (ExtendedKeyUsageOID.CLIENT_AUTH,)),
    "person": Profile("person", "personne : authentification d'un professionnel (comme une CPS)",
                      (ExtendedKeyUsageOID.CLIENT_AUTH,), key_encipherment=False),
}
CLIENT_KINDS = ("structure", "software", "person")

# Subjects of the two CAs: the shape of the IGC-Santé test CAs (C, O, OU, CN), names that say they are the bench's.
ORGANISATION = "SEGUR-BENCH (TEST)"
ROOT_NAME = x509.Name([
    x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "IGC-SANTE TEST SEGUR-BENCH"),
    x509.NameAttribute(NameOID.COMMON_NAME, "TEST AC RACINE IGC-SANTE ELEMENTAIRE SEGUR-BENCH"),
])
CA_NAME = x509.Name([
    x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "IGC-SANTE TEST SEGUR-BENCH"),
    x509.NameAttribute(NameOID.COMMON_NAME, "TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS SEGUR-BENCH"),
])

# Identifiers a client certificate carries by default (docs/pki.md says which are invented): the structure is the
# flagship practice of the personas (structures.toml: "4" + RPPS + rang, as IGC-Santé subjects put a one-digit
# identifier type before the structure id in OU), in Paris.
DEFAULT_STRUCTURE_ID = "499700366240007"
DEFAULT_STRUCTURE_NAME = "CABINET M DOC0036624"
DEFAULT_DEPARTMENT = "Paris (75)"
DEFAULT_NATIONAL_ID = "899700366240"  # KIT DOC0036624, the flagship professional
# The policy seen on IGC-Santé TEST end-entity certificates (ORG SIGN and test CPS samples): leaf certificates
# carry it besides the bench's own profile OID, so a client that looks for it finds it.
IGC_SANTE_TEST_POLICY = "1.2.250.1.213.1.7.2.1.1.1.1"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, as colon-separated upper-case hex (what browsers and openssl print)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Atomic write (readers in other processes never see half a file); private files are 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _general_names(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in dict.fromkeys(n.strip().lower() for n in names if n and n.strip()):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name.strip("[]"))))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _key_usage(*, signing: bool, key_encipherment: bool = False, content_commitment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not signing, content_commitment=content_commitment,
                         key_encipherment=key_encipherment, data_encipherment=False, key_agreement=False,
                         key_cert_sign=signing, crl_sign=signing, encipher_only=False, decipher_only=False)


@dataclass(frozen=True)
class Issued:
    """One certificate issued by the bench, as index.json records it."""

    serial: str  # hex, upper case
    name: str
    kind: str
    subject: str
    fingerprint: str
    not_before: str
    not_after: str
    revoked_at: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ClientBundle:
    """What `issue-client` leaves for a vendor: certificate, key, PKCS#12 (with its password) and the CA."""

    name: str
    kind: str
    cert: x509.Certificate
    crt_path: Path
    key_path: Path
    p12_path: Path
    ca_path: Path
    password: str


@dataclass
class Verdict:
    """What the bench thinks of a certificate (`pki show`)."""

    subject: str
    issuer: str
    serial: str
    fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime
    kind: str | None  # a bench profile, when the certificate carries one of the bench's policies
    trusted: bool
    problems: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    issued_as: str | None = None  # the name it was issued under, when the bench issued it
    revoked: bool = False

    @property
    def ok(self) -> bool:
        return self.trusted and not self.problems


class BenchPki:
    """The PKI of one data directory. `BenchPki.open(dir)` creates it on first use (idempotent)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    # ---------------------------------------------------------------------------------------------- files
    @property
    def root_path(self) -> Path:
        return self.directory / "root.crt"

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def chain_path(self) -> Path:
        return self.directory / "ca-chain.pem"

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    @property
    def index_path(self) -> Path:
        return self.directory / "index.json"

    def server_path(self, service: str) -> Path:
        return self.directory / "servers" / f"{service}.pem"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ---------------------------------------------------------------------------------------------- creation
    @classmethod
    def open(cls, directory: Path) -> BenchPki:
        """The PKI in `directory`, created when missing; its CRL is renewed when it nears its next update."""
        pki = cls(directory)
        if pki.exists() and not pki._crl_due():
            return pki
        with pki._locked():
            if not pki.exists():
                pki._create()
            elif pki._crl_due():
                pki._write_crl()
        return pki

    def exists(self) -> bool:
        return all(p.is_file() for p in (self.root_path, self.ca_path, self.directory / "root.key",
                                         self.directory / "ca.key", self.chain_path, self.crl_path))

    def _create(self) -> None:
        now = _now() - BACKDATE
        root_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
        root = (
            x509.CertificateBuilder().subject_name(ROOT_NAME).issuer_name(ROOT_NAME)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=ROOT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(signing=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        ca = (
            x509.CertificateBuilder().subject_name(CA_NAME).issuer_name(ROOT_NAME)
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(signing=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .add_extension(x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(oid), None)
                                                     for oid in POLICY_OIDS.values()]), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        _write(self.directory / "root.key", _key_pem(root_key), private=True)
        _write(self.directory / "ca.key", _key_pem(ca_key), private=True)
        _write(self.root_path, pem(root))
        _write(self.ca_path, pem(ca))
        _write(self.chain_path, pem(ca) + pem(root))
        if not self.index_path.is_file():
            _write(self.index_path, b"[]\n")
        self._write_crl()

    # ---------------------------------------------------------------------------------------------- reading
    def root(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.root_path.read_bytes())

    def ca(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_path.read_bytes())

    def _ca_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key((self.directory / "ca.key").read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def _root_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key((self.directory / "root.key").read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def index(self) -> list[Issued]:
        try:
            rows = json.loads(self.index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        return [Issued(**row) for row in rows]

    def _save_index(self, rows: list[Issued]) -> None:
        _write(self.index_path, (json.dumps([r.as_dict() for r in rows], ensure_ascii=False, indent=1) + "\n")
               .encode("utf-8"))

    def revoked_serials(self) -> set[int]:
        return {int(r.serial, 16) for r in self.index() if r.revoked_at}

    def find(self, name_or_serial: str) -> list[Issued]:
        key = name_or_serial.strip().upper().replace(":", "")
        return [r for r in self.index() if r.name == name_or_serial or r.serial == key]

    # ---------------------------------------------------------------------------------------------- CRL
    def _crl_due(self) -> bool:
        try:
            crls = _load_crls(self.crl_path.read_bytes())
        except (FileNotFoundError, ValueError):
            return True
        return any(c.next_update_utc is None or c.next_update_utc - _now() < RENEW_BEFORE for c in crls)

    def _write_crl(self) -> None:
        now = _now() - BACKDATE
        # Servers keep every CRL they loaded and use the one with the latest lastUpdate: make it increase.
        try:
            previous = max(c.last_update_utc for c in _load_crls(self.crl_path.read_bytes()))
            now = max(now, previous + dt.timedelta(seconds=1))
        except (FileNotFoundError, ValueError):
            pass
        revoked = {int(r.serial, 16): r for r in self.index() if r.revoked_at}
        ca_key, root_key = self._ca_key(), self._root_key()
        ca, root = self.ca(), self.root()
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject).last_update(now)
                   .next_update(now + dt.timedelta(days=CRL_DAYS))
                   .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        for serial, row in sorted(revoked.items()):
            entry = (x509.RevokedCertificateBuilder().serial_number(serial)
                     .revocation_date(dt.datetime.fromisoformat(row.revoked_at or now.isoformat())))
            if row.reason and row.reason != "unspecified":
                with contextlib.suppress(ValueError):
                    entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags(row.reason)), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        ca_crl = builder.sign(ca_key, hashes.SHA256())
        root_crl = (x509.CertificateRevocationListBuilder().issuer_name(root.subject).last_update(now)
                    .next_update(now + dt.timedelta(days=CRL_DAYS))
                    .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
                    .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                                   critical=False)
                    .sign(root_key, hashes.SHA256()))
        enc = serialization.Encoding.PEM
        _write(self.crl_path, ca_crl.public_bytes(enc) + root_crl.public_bytes(enc))

    # ---------------------------------------------------------------------------------------------- issuing
    def _issue(self, *, name: str, kind: str, subject: x509.Name, sans: list[x509.GeneralName],
               days: int, not_before: dt.datetime | None = None,
               not_after: dt.datetime | None = None) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        """Sign a certificate of profile `kind` and record it in the index (caller holds the lock)."""
        profile = PROFILES[kind]
        ca, ca_key = self.ca(), self._ca_key()
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        start = not_before or (_now() - BACKDATE)
        end = not_after or (start + dt.timedelta(days=days))
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signing=False, key_encipherment=profile.key_encipherment,
                                      content_commitment=profile.content_commitment), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(profile.eku)), critical=False)
            .add_extension(x509.CertificatePolicies([
                x509.PolicyInformation(x509.ObjectIdentifier(IGC_SANTE_TEST_POLICY), None),
                x509.PolicyInformation(x509.ObjectIdentifier(POLICY_OIDS[kind]), None)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        rows = self.index()
        rows.append(Issued(serial=f"{cert.serial_number:X}", name=name, kind=kind,
                           subject=cert.subject.rfc4514_string(), fingerprint=fingerprint(cert),
                           not_before=cert.not_valid_before_utc.isoformat(),
                           not_after=cert.not_valid_after_utc.isoformat()))
        self._save_index(rows)
        return cert, key

    def server_material(self, service: str, names: Iterable[str]) -> Path:
        """The PEM (key, certificate, intermediate) of `service`'s TLS port, covering at least `names`.

        Reused while it covers them and is not near expiry; otherwise re-issued with the union of the names it
        had and the names asked for (so two callers asking for different names do not re-issue in turn)."""
        wanted = {n.strip().lower().strip("[]") for n in names if n and n.strip()}
        path = self.server_path(service)
        current = _covered_names(path)
        if current is not None and wanted <= current[0] and current[1] - _now() > RENEW_BEFORE:
            return path
        with self._locked():
            current = _covered_names(path)
            if current is not None and wanted <= current[0] and current[1] - _now() > RENEW_BEFORE:
                return path
            all_names = sorted((current[0] if current else set()) | wanted, key=_name_order)
            subject = x509.Name([
                x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"simulateur {service}"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{service}.segur-bench.test"),
            ])
            cert, key = self._issue(name=f"server-{service}", kind="server", subject=subject,
                                    sans=_general_names(all_names), days=SERVER_DAYS)
            _write(path, _key_pem(key) + pem(cert) + pem(self.ca()), private=True)
        return path

    def issue_client(self, name: str, out_dir: Path, *, kind: str = "structure", cn: str | None = None,
                     structure_id: str = DEFAULT_STRUCTURE_ID, structure_name: str = DEFAULT_STRUCTURE_NAME,
                     department: str = DEFAULT_DEPARTMENT, national_id: str = DEFAULT_NATIONAL_ID,
                     days: int = CLIENT_DAYS, password: str | None = None,
                     not_before: dt.datetime | None = None, not_after: dt.datetime | None = None) -> ClientBundle:
        """Issue a client certificate and leave NAME.crt, NAME.key, NAME.p12 and ca.pem in `out_dir`."""
        if kind not in CLIENT_KINDS:
            raise PkiError(f"unknown certificate kind {kind!r}; expected one of {', '.join(CLIENT_KINDS)}")
        if not name or any(c in name for c in "/\\\0") or name in (".", ".."):
            raise PkiError(f"invalid certificate name {name!r} (it names the files: no slash)")
        subject = client_subject(kind, name=name, cn=cn, structure_id=structure_id, structure_name=structure_name,
                                 department=department, national_id=national_id)
        password = password or secrets.token_urlsafe(12)
        with self._locked():
            cert, key = self._issue(name=name, kind=kind, subject=subject, sans=[], days=days,
                                    not_before=not_before, not_after=not_after)
        out_dir = Path(out_dir)
        crt, key_path, p12, ca = (out_dir / f"{name}.crt", out_dir / f"{name}.key", out_dir / f"{name}.p12",
                                  out_dir / "ca.pem")
        _write(crt, pem(cert) + pem(self.ca()))
        _write(key_path, _key_pem(key), private=True)
        # PKCS#12 as Windows and Java key stores import it (AES-256, SHA-256 MAC), with the chain.
        encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                      .kdf_rounds(50000).key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                      .hmac_hash(hashes.SHA256()).build(password.encode()))
        _write(p12, pkcs12.serialize_key_and_certificates(name.encode(), key, cert, [self.ca(), self.root()],
                                                          encryption), private=True)
        _write(ca, self.chain_path.read_bytes())
        return ClientBundle(name, kind, cert, crt, key_path, p12, ca, password)

    def revoke(self, name_or_serial: str, reason: str = "unspecified") -> list[Issued]:
        """Revoke every certificate issued under that name (or that serial); the CRL is re-signed at once."""
        reasons = {f.value: f.value for f in x509.ReasonFlags} | {f.name: f.value for f in x509.ReasonFlags}
        if reason not in reasons:
            raise PkiError(f"unknown revocation reason {reason!r}; expected one of "
                           f"{', '.join(f.value for f in x509.ReasonFlags)}")
        reason = reasons[reason]
        with self._locked():
            targets = {r.serial for r in self.find(name_or_serial) if not r.revoked_at}
            if not targets and not self.find(name_or_serial):
                raise PkiError(f"no certificate issued under {name_or_serial!r} (see `segur-bench pki list`)")
            rows = [Issued(**{**r.as_dict(), "revoked_at": _now().isoformat(), "reason": reason})
                    if r.serial in targets else r for r in self.index()]
            self._save_index(rows)
            self._write_crl()
        return [r for r in rows if r.serial in targets]

    # ---------------------------------------------------------------------------------------------- judging
    def verdict(self, cert: x509.Certificate, *, at: dt.datetime | None = None) -> Verdict:
        """Is `cert` one the bench's servers accept as a client (or serve as a server)? Why not?"""
        at = at or _now()
        ca, root = self.ca(), self.root()
        problems: list[str] = []
        trusted = False
        if cert.issuer == ca.subject:
            try:
                cert.verify_directly_issued_by(ca)
                trusted = True
            except (ValueError, TypeError, x509.InvalidSignature):
                problems.append("signature invalide : ce certificat n'a pas été émis par l'AC de ce banc")
        elif cert.subject == root.subject or cert.subject == ca.subject:
            trusted = cert.fingerprint(hashes.SHA256()) in (root.fingerprint(hashes.SHA256()),
                                                           ca.fingerprint(hashes.SHA256()))
        else:
            problems.append(f"émetteur inconnu du banc ({cert.issuer.rfc4514_string()}) : AC étrangère")
        if at < cert.not_valid_before_utc:
            problems.append(f"pas encore valide (à partir du {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC)")
        if at > cert.not_valid_after_utc:
            problems.append(f"expiré depuis le {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
        issued = next((r for r in self.index() if r.serial == f"{cert.serial_number:X}"
                       and r.fingerprint == fingerprint(cert)), None)
        revoked = bool(trusted and issued and issued.revoked_at)
        if revoked and issued:
            problems.append(f"révoqué le {issued.revoked_at[:16].replace('T', ' ')} UTC ({issued.reason})")
        return Verdict(subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
                       serial=f"{cert.serial_number:X}", fingerprint=fingerprint(cert),
                       not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                       kind=profile_of(cert), trusted=trusted, problems=problems, names=san_names(cert),
                       issued_as=issued.name if issued else None, revoked=revoked)


def client_subject(kind: str, *, name: str, cn: str | None = None, structure_id: str = DEFAULT_STRUCTURE_ID,
                   structure_name: str = DEFAULT_STRUCTURE_NAME, department: str = DEFAULT_DEPARTMENT,
                   national_id: str = DEFAULT_NATIONAL_ID) -> x509.Name:
    """The subject of a client certificate of `kind`, in the shape of IGC-Santé subjects:

    - structure (ORG AUTH_CLI): C, ST (department), O (legal name), OU (type digit + structure id), CN (a name);
    - software: the same, with CN INSI-AUTO unless told (INSi's mutual-TLS mode wants INSI-AUTO or INSI-MANU);
    - person (PS, like a CPS authentication certificate): C, title, SN, GN and CN = the national id.
    """
    if kind == "person":
        family, _, given = (cn or name).upper().partition(" ")
        return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                          x509.NameAttribute(NameOID.TITLE, "Médecin"),
                          x509.NameAttribute(NameOID.SURNAME, family),
                          x509.NameAttribute(NameOID.GIVEN_NAME, given or family),
                          x509.NameAttribute(NameOID.COMMON_NAME, national_id)])
    common = cn or ("INSI-AUTO" if kind == "software" else name)
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                      x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, department),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, structure_name),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, structure_id),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def profile_of(cert: x509.Certificate) -> str | None:
    """The bench profile a certificate was issued under (from its policy OID), or None."""
    try:
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return None
    oids = {p.policy_identifier.dotted_string for p in policies}
    return next((kind for kind, oid in POLICY_OIDS.items() if oid in oids), None)


def san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in san.get_values_for_type(x509.DNSName)] + \
           [str(v) for v in san.get_values_for_type(x509.IPAddress)]


def _covered_names(path: Path) -> tuple[set[str], dt.datetime] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        cert = x509.load_pem_x509_certificates(data)[0]
    except ValueError:
        return None
    return {n.lower() for n in san_names(cert)}, cert.not_valid_after_utc


def _load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    end = b"-----END X509 CRL-----"
    blocks = [b + end for b in data.split(end) if b"-----BEGIN X509 CRL-----" in b]
    if not blocks:
        raise ValueError("no CRL in the file")
    return [x509.load_pem_x509_crl(b.strip() + b"\n") for b in blocks]


def _name_order(name: str) -> tuple[int, str]:
    try:
        ipaddress.ip_address(name)
        return (1, name)
    except ValueError:
        return (0, name)


def load_certificate(data: bytes, password: str | None = None) -> x509.Certificate:
    """The (first) certificate of a PEM, DER or PKCS#12 file."""
    if b"-----BEGIN" in data:
        certs = x509.load_pem_x509_certificates(data)
        if certs:
            return certs[0]
    with contextlib.suppress(ValueError):
        return x509.load_der_x509_certificate(data)
    try:
        _, cert, _ = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError as exc:
        raise PkiError(f"not a certificate (PEM, DER or PKCS#12{' with this password' if password else ''}): "
                       f"{exc}") from None
    if cert is None:
        raise PkiError("the PKCS#12 file holds no certificate")
    return cert


def describe_der(der: bytes) -> dict:
    """What the journal records of a peer certificate: subject, issuer, serial, SHA-256 fingerprint, validity."""
    cert = x509.load_der_x509_certificate(der)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:X}",
        "sha256": hashlib.sha256(der).digest().hex(":").upper(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "cn": next((a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)), None),
        "profile": profile_of(cert),
    }
