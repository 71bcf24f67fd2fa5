"""Exchange journal: every request/response a simulator saw, for proofs and server-side assertions.

Entries are stored in the service's SQLite store with millisecond timestamps (received, responded),
the operation, both header sets and bodies (text, or base64 for binary), the status, the faults that
were applied and the run/correlation ids. Query by time window, run and operation; export as JSONL
or HAR 1.2 (see har.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .clock import iso, parse_instant
from .store import Store

_MIGRATIONS = [
    """
    CREATE TABLE journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        service TEXT NOT NULL,
        protocol TEXT NOT NULL,
        operation TEXT NOT NULL,
        run TEXT,
        correlation TEXT,
        received_at REAL NOT NULL,
        responded_at REAL,
        entry TEXT NOT NULL
    );
    CREATE INDEX journal_by_received ON journal (received_at);
    CREATE INDEX journal_by_run ON journal (run);
    CREATE TABLE journal_run (id INTEGER PRIMARY KEY CHECK (id = 1), run TEXT, label TEXT, started_at TEXT)
    """
]

MAX_STORED_BODY = 4 * 1024 * 1024


def encode_body(data: bytes, content_type: str = "") -> tuple[str, str | None, bool]:
    """Body as (text, encoding, truncated): UTF-8 text when it decodes, base64 otherwise."""
    truncated = len(data) > MAX_STORED_BODY
    data = data[:MAX_STORED_BODY]
    try:
        return data.decode("utf-8"), None, truncated
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64", truncated


@dataclass
class Message:
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""
    encoding: str | None = None  # None = text, "base64"
    truncated: bool = False
    size: int = 0

    @classmethod
    def of(cls, headers: Iterable[tuple[str, str]], body: bytes) -> Message:
        text, enc, trunc = encode_body(body)
        return cls(list(headers), text, enc, trunc, len(body))

    def as_dict(self) -> dict:
        return {"headers": [list(h) for h in self.headers], "body": self.body, "encoding": self.encoding,
                "truncated": self.truncated, "size": self.size}

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def raw(self) -> bytes:
        return base64.b64decode(self.body) if self.encoding == "base64" else self.body.encode("utf-8")


@dataclass
class Exchange:
    """One journal entry. `protocol` is http, smtp or imap; HTTP fields are empty for the others."""

    id: str
    service: str
    protocol: str
    operation: str
    received_at: float  # epoch seconds, real time
    responded_at: float | None = None
    method: str = ""
    url: str = ""
    http_version: str = "1.1"
    status: int | None = None  # None: no response (dropped, hung)
    request: Message = field(default_factory=Message)
    response: Message | None = None
    faults: list[dict] = field(default_factory=list)
    outcome: str | None = None
    run: str | None = None
    correlation: str | None = None
    client: str | None = None
    error: str | None = None  # what went wrong on the wire, in words
    waited_ms: float | None = None  # injected latency actually waited, measured

    @property
    def duration_ms(self) -> float | None:
        if self.responded_at is None:
            return None
        return round((self.responded_at - self.received_at) * 1000.0, 3)

    def as_dict(self) -> dict:
        # Hand-written rather than dataclasses.asdict: this runs once per exchange, on the hot path.
        return {
            "id": self.id, "service": self.service, "protocol": self.protocol, "operation": self.operation,
            "received_at": self.received_at, "responded_at": self.responded_at,
            "received": iso(datetime.fromtimestamp(self.received_at, UTC)),
            "responded": iso(datetime.fromtimestamp(self.responded_at, UTC)) if self.responded_at else None,
            "duration_ms": self.duration_ms, "waited_ms": self.waited_ms,
            "method": self.method, "url": self.url, "http_version": self.http_version, "status": self.status,
            "request": self.request.as_dict(),
            "response": self.response.as_dict() if self.response is not None else None,
            "faults": self.faults, "outcome": self.outcome, "run": self.run, "correlation": self.correlation,
            "client": self.client, "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Exchange:
        d = dict(d)
        for key in ("received", "responded", "duration_ms"):
            d.pop(key, None)
        d["request"] = Message(**{**d["request"], "headers": [tuple(h) for h in d["request"]["headers"]]})
        if d.get("response") is not None:
            d["response"] = Message(**{**d["response"], "headers": [tuple(h) for h in d["response"]["headers"]]})
        return cls(**d)


class JournalQueryError(ValueError):
    pass


class Journal:
    def __init__(self, store: Store, service: str) -> None:
        self.store = store
        self.service = service
        store.migrate("journal", _MIGRATIONS)

    # -- runs: entries are stamped with the run that is current when they are received
    def current_run(self) -> dict:
        row = self.store.execute("SELECT run, label, started_at FROM journal_run WHERE id = 1").fetchone()
        return dict(row) if row and row["run"] else {"run": None, "label": None, "started_at": None}

    def set_run(self, run: str | None, label: str | None = None) -> dict:
        self.store.execute(
            "INSERT INTO journal_run (id, run, label, started_at) VALUES (1, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET run = excluded.run, label = excluded.label,"
            " started_at = excluded.started_at",
            (run, label, iso(datetime.now(UTC)) if run else None),
        )
        return self.current_run()

    def record(self, exchange: Exchange) -> None:
        self.store.execute(
            "INSERT INTO journal (id, service, protocol, operation, run, correlation, received_at, responded_at,"
            " entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (exchange.id, exchange.service, exchange.protocol, exchange.operation, exchange.run,
             exchange.correlation, exchange.received_at, exchange.responded_at, json.dumps(exchange.as_dict())),
        )

    def query(
        self,
        *,
        since: float | str | None = None,
        until: float | str | None = None,
        run: str | None = None,
        operation: str | None = None,
        limit: int | None = None,
    ) -> list[Exchange]:
        clauses, params = [], []
        if since is not None:
            clauses.append("received_at >= ?")
            params.append(_instant(since, "since"))
        if until is not None:
            clauses.append("received_at <= ?")
            params.append(_instant(until, "until"))
        if run is not None:
            clauses.append("run = ?")
            params.append(run)
        if operation is not None:
            clauses.append("operation = ?")
            params.append(operation)
        sql = "SELECT entry FROM journal"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY received_at, seq"
        if limit is not None:
            if limit < 1:
                raise JournalQueryError("limit must be a positive integer")
            sql += f" LIMIT {int(limit)}"
        return [Exchange.from_dict(json.loads(r[0])) for r in self.store.query(sql, params)]

    def clear(self) -> int:
        return self.store.execute("DELETE FROM journal").rowcount


def _instant(value: float | str, name: str) -> float:
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parse_instant(value).timestamp()
    except ValueError:
        raise JournalQueryError(
            f"{name} must be an ISO-8601 instant (e.g. 2026-11-25T09:00:00Z) or epoch seconds, got {value!r}"
        ) from None


def to_jsonl(exchanges: Sequence[Exchange]) -> str:
    return "".join(json.dumps(e.as_dict(), ensure_ascii=False) + "\n" for e in exchanges)
