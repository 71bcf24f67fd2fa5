"""Which run an exchange belongs to, when several runs (CI pipelines, parallel scenarios) share one bench.

In order:
1. the run the client names in an `X-Bench-Run` header (a test client, a scenario's own calls);
2. the run its TLS client certificate is bound to (`PUT /_bench/runs/{run}`): an unmodified LGC cannot name a
   run, but it cannot help presenting its workstation certificate on every TLS connection — HTTPS, SMTP after
   STARTTLS, IMAPS — so a pipeline that drives one workstation binds that workstation's certificate to its run;
3. else the simulator's current run (`POST /_bench/run`), the one-pipeline case.

The certificate was chosen over the other attributes an LGC sends on its own (software instance id in the LPS
context, PSC client id, a per-run port) because it is the only one present on every protocol the bench serves,
is already issued per workstation by the bench PKI, and needs no change to the LGC's configuration.

Bindings live in the simulator's SQLite store (every worker process sees them) and are cached until the store's
change counter moves, as the current run is: the lookup runs on every exchange.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .clock import iso
from .faults import run_id
from .journal import Journal
from .store import Store

_MIGRATIONS = [
    """
    CREATE TABLE run_bindings (
        fingerprint TEXT PRIMARY KEY,
        run TEXT NOT NULL,
        label TEXT,
        bound_at TEXT NOT NULL
    );
    CREATE INDEX run_bindings_by_run ON run_bindings (run);
    """,
]

_HEX = re.compile(r"[0-9A-Fa-f]{64}")
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----")


class BindingError(ValueError):
    """A binding request the control API answers with 400 (bad value) or 409 (certificate taken)."""

    def __init__(self, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict


def fingerprint(value: object) -> str:
    """A certificate's SHA-256 fingerprint as the journal shows it (`AB:CD:…`, upper case), from that same form,
    bare hex, or the certificate itself in PEM."""
    if not isinstance(value, str):
        raise BindingError("a client certificate is given as its SHA-256 fingerprint (hex) or as PEM")
    pem = _PEM.search(value)
    if pem:
        try:
            der = base64.b64decode("".join(pem.group(1).split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BindingError("the PEM certificate is not valid base64") from exc
        return hashlib.sha256(der).digest().hex(":").upper()
    bare = value.strip().replace(":", "")
    if not _HEX.fullmatch(bare):
        raise BindingError(f"not a SHA-256 fingerprint (64 hex digits, colons allowed) nor a PEM certificate: "
                           f"{value[:80]!r}")
    return bytes.fromhex(bare).hex(":").upper()


def client_fingerprint(tls: Mapping[str, Any] | None) -> str | None:
    """The SHA-256 fingerprint of the client certificate a connection presented (tls.tls_info), if any."""
    cert = (tls or {}).get("client_cert")
    value = cert.get("sha256") if isinstance(cert, Mapping) else None
    return value if isinstance(value, str) else None


class RunAttribution:
    def __init__(self, store: Store, journal: Journal) -> None:
        self.store = store
        self.journal = journal
        self._cache: tuple[int, dict[str, str]] | None = None
        store.migrate("run_bindings", _MIGRATIONS)

    def run_of(self, header: str | None = None, tls: Mapping[str, Any] | None = None) -> str | None:
        """The run of one exchange (see the module docstring for the order)."""
        named = run_id(header)
        if named is not None:
            return named
        fp = client_fingerprint(tls)
        if fp is not None:
            bound = self._bindings().get(fp)
            if bound is not None:
                return bound
        return self.journal.current_run()["run"]

    def _bindings(self) -> dict[str, str]:
        generation = self.store.generation()
        cached = self._cache
        if cached is None or cached[0] != generation:
            rows = self.store.query("SELECT fingerprint, run FROM run_bindings")
            cached = self._cache = (generation, {r["fingerprint"]: r["run"] for r in rows})
        return cached[1]

    def bind(self, run: str, certificates: list[object], label: str | None = None) -> dict:
        """Bind these client certificates to `run` (replacing the run's previous ones). A certificate already
        bound to another run is refused: two pipelines driving the same workstation would mix their exchanges."""
        if run_id(run) is None:
            raise BindingError("run must be a run id: 1 to 200 printable characters")
        if not isinstance(certificates, list) or not certificates:
            raise BindingError('expected {"client_certs": ["<SHA-256 fingerprint or PEM>", …]}')
        fps = sorted({fingerprint(c) for c in certificates})
        now = iso(datetime.now(UTC))
        with self.store.transaction() as conn:
            marks = ",".join("?" * len(fps))
            taken = conn.execute(f"SELECT fingerprint, run FROM run_bindings WHERE fingerprint IN ({marks}) "
                                 "AND run != ?", (*fps, run)).fetchall()
            if taken:
                raise BindingError(f"certificate {taken[0]['fingerprint']} is bound to run {taken[0]['run']!r}: "
                                   "release it first (DELETE /_bench/runs/{run})", conflict=True)
            conn.execute("DELETE FROM run_bindings WHERE run = ?", (run,))
            conn.executemany("INSERT INTO run_bindings (fingerprint, run, label, bound_at) VALUES (?, ?, ?, ?)",
                             [(fp, run, label, now) for fp in fps])
        self.store.bump()
        return self.binding(run)

    def unbind(self, run: str) -> int:
        with self.store.transaction() as conn:
            deleted = conn.execute("DELETE FROM run_bindings WHERE run = ?", (run,)).rowcount
        self.store.bump()
        return deleted

    def binding(self, run: str) -> dict:
        rows = self.store.query("SELECT fingerprint, label, bound_at FROM run_bindings WHERE run = ? "
                                "ORDER BY fingerprint", (run,))
        return {"run": run, "client_certs": [r["fingerprint"] for r in rows],
                "label": rows[0]["label"] if rows else None, "bound_at": rows[0]["bound_at"] if rows else None}

    def bindings(self) -> list[dict]:
        runs = [r["run"] for r in self.store.query("SELECT DISTINCT run FROM run_bindings ORDER BY run")]
        return [self.binding(run) for run in runs]
