"""Exchange journal: every request/response a simulator saw, for proofs and server-side assertions.

Entries are stored in the service's SQLite store with millisecond timestamps (received, responded),
the operation, both header sets and bodies (text, or base64 for binary), the status, the faults that
were applied and the run/correlation ids. Query by time window, run and operation; export as JSONL
or HAR 1.2 (see har.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import queue
import threading
import time
import zlib
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
    """,
    # Bodies as BLOBs beside the JSON entry: a 300 kB XDS answer is stored as it is, not escaped into JSON.
    "ALTER TABLE journal ADD COLUMN request_body BLOB; ALTER TABLE journal ADD COLUMN response_body BLOB",
]

MAX_STORED_BODY = 4 * 1024 * 1024


@dataclass
class Message:
    """Headers and body of one side of an exchange. The body is kept as bytes (capped at MAX_STORED_BODY);
    its text form (UTF-8, or base64 for binary) is computed only when someone asks for it."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    data: bytes = b""
    truncated: bool = False
    size: int = 0

    @classmethod
    def of(cls, headers: Iterable[tuple[str, str]], body: bytes) -> Message:
        return cls(list(headers), bytes(body[:MAX_STORED_BODY]), len(body) > MAX_STORED_BODY, len(body))

    def _text(self) -> tuple[str, str | None]:
        try:
            return self.data.decode("utf-8"), None
        except UnicodeDecodeError:
            return base64.b64encode(self.data).decode("ascii"), "base64"

    @property
    def body(self) -> str:
        return self._text()[0]

    @property
    def encoding(self) -> str | None:
        """None for text, "base64" for a binary body."""
        return self._text()[1]

    def meta(self) -> dict:
        return {"headers": [list(h) for h in self.headers], "truncated": self.truncated, "size": self.size}

    def as_dict(self) -> dict:
        text, encoding = self._text()
        return {**self.meta(), "body": text, "encoding": encoding}

    @classmethod
    def from_dict(cls, d: Mapping, data: bytes | None = None) -> Message:
        if data is None:
            body = d.get("body") or ""
            data = base64.b64decode(body) if d.get("encoding") == "base64" else body.encode("utf-8")
        return cls([tuple(h) for h in d["headers"]], data, bool(d.get("truncated")), int(d.get("size", len(data))))

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def raw(self) -> bytes:
        return self.data


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

    def as_dict(self, *, bodies: bool = True) -> dict:
        # Hand-written rather than dataclasses.asdict: this runs once per exchange, on the hot path.
        side = (lambda m: m.as_dict()) if bodies else (lambda m: m.meta())
        return {
            "id": self.id, "service": self.service, "protocol": self.protocol, "operation": self.operation,
            "received_at": self.received_at, "responded_at": self.responded_at,
            "received": iso(datetime.fromtimestamp(self.received_at, UTC)),
            "responded": iso(datetime.fromtimestamp(self.responded_at, UTC)) if self.responded_at else None,
            "duration_ms": self.duration_ms, "waited_ms": self.waited_ms,
            "method": self.method, "url": self.url, "http_version": self.http_version, "status": self.status,
            "request": side(self.request),
            "response": side(self.response) if self.response is not None else None,
            "faults": self.faults, "outcome": self.outcome, "run": self.run, "correlation": self.correlation,
            "client": self.client, "error": self.error,
        }

    def stored_entry(self) -> str:
        """The JSON kept in the journal's `entry` column: as_dict without the bodies (BLOB columns) and
        without what from_dict recomputes (received, responded, duration_ms). Written once per exchange."""
        req, resp = self.request, self.response
        return _ENCODER.encode({
            "id": self.id, "service": self.service, "protocol": self.protocol, "operation": self.operation,
            "received_at": self.received_at, "responded_at": self.responded_at, "waited_ms": self.waited_ms,
            "method": self.method, "url": self.url, "http_version": self.http_version, "status": self.status,
            "request": {"headers": req.headers, "truncated": req.truncated, "size": req.size},
            "response": {"headers": resp.headers, "truncated": resp.truncated, "size": resp.size}
            if resp is not None else None,
            "faults": self.faults, "outcome": self.outcome, "run": self.run, "correlation": self.correlation,
            "client": self.client, "error": self.error,
        })

    @classmethod
    def from_dict(cls, d: Mapping, request_body: bytes | None = None, response_body: bytes | None = None) -> Exchange:
        d = dict(d)
        for key in ("received", "responded", "duration_ms"):
            d.pop(key, None)
        d["request"] = Message.from_dict(d["request"], request_body)
        if d.get("response") is not None:
            d["response"] = Message.from_dict(d["response"], response_body)
        return cls(**d)


class JournalQueryError(ValueError):
    pass


class Journal:
    def __init__(self, store: Store, service: str) -> None:
        self.store = store
        self.service = service
        self._run: tuple[int, dict] | None = None
        store.migrate("journal", _MIGRATIONS)

    # -- runs: entries are stamped with the run that is current when they are received
    def current_run(self) -> dict:
        generation = self.store.generation()  # read on every exchange: cached until a process changes it
        cached = self._run
        if cached is None or cached[0] != generation:
            row = self.store.execute("SELECT run, label, started_at FROM journal_run WHERE id = 1").fetchone()
            run = dict(row) if row and row["run"] else {"run": None, "label": None, "started_at": None}
            cached = self._run = (generation, run)
        return dict(cached[1])

    def set_run(self, run: str | None, label: str | None = None) -> dict:
        self.store.execute(
            "INSERT INTO journal_run (id, run, label, started_at) VALUES (1, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET run = excluded.run, label = excluded.label,"
            " started_at = excluded.started_at",
            (run, label, iso(datetime.now(UTC)) if run else None),
        )
        self.store.bump()
        return self.current_run()

    def record(self, exchange: Exchange) -> None:
        self.store.execute(
            "INSERT INTO journal (id, service, protocol, operation, run, correlation, received_at, responded_at,"
            " entry, request_body, response_body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (exchange.id, exchange.service, exchange.protocol, exchange.operation, exchange.run,
             exchange.correlation, exchange.received_at, exchange.responded_at,
             exchange.stored_entry(), _pack(exchange.request.data),
             _pack(exchange.response.data) if exchange.response is not None else None),
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
        sql = "SELECT entry, request_body, response_body FROM journal"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY received_at, seq"
        if limit is not None:
            if limit < 1:
                raise JournalQueryError("limit must be a positive integer")
            sql += f" LIMIT {int(limit)}"
        return [Exchange.from_dict(json.loads(r[0]), _blob(r[1]), _blob(r[2])) for r in self.store.query(sql, params)]

    def clear(self) -> int:
        return self.store.execute("DELETE FROM journal").rowcount


_ENCODER = json.JSONEncoder(check_circular=False)  # what json.dumps writes, minus its per-call set-up


def new_exchange_id() -> str:
    """A UUID version 7 (RFC 9562) as 32 hex digits: unique and time-ordered, so the journal's unique index on
    `id` grows at its end instead of touching a random page per entry."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = ((time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | (rand >> 64 & 0xFFF) << 64
             | 0b10 << 62 | rand & ((1 << 62) - 1))
    return f"{value:032x}"


_PLAIN, _ZLIB = b"\x00", b"\x01"
_COMPRESS_ABOVE = 16 * 1024


def _pack(data: bytes) -> bytes:
    # Large answers (a DMP FindDocuments is ~300 kB of XML) are deflated at the fastest level: ~10x less
    # to write and checkpoint, for ~1 ms of CPU; small ones are stored as they are.
    if len(data) > _COMPRESS_ABOVE:
        return _ZLIB + zlib.compress(data, 1)
    return _PLAIN + data


def _blob(value: bytes | None) -> bytes | None:
    if value is None:
        return None
    value = bytes(value)
    if value[:1] == _ZLIB:
        return zlib.decompress(value[1:])
    return value[1:]


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


class JournalWriter:
    """Writes a process's journal entries from one thread, several per transaction under load.

    The event loop hands entries over and awaits their futures: it never runs SQLite itself, so it never
    sleeps in SQLite's busy handler while another worker process holds the write lock. Entries recorded
    during one pass of the loop are handed over together, at the end of that pass (no added delay), and a
    burst costs one commit instead of one each: every commit rewrites the pages it touched (table and index
    leaves), so fewer, larger commits are much cheaper.
    """

    MAX_BATCH = 256

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Entries waiting for the end of their loop's current pass, per event loop (each loop touches its own).
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[Exchange, asyncio.Future]]] = {}

    async def record(self, exchange: Exchange) -> None:
        """Record and wait until the entry is committed."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        pending.append((exchange, done))
        await done

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, None)
        if batch:
            self._ensure_thread()
            self._queue.put((loop, batch))

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name=f"journal-{self.journal.service}",
                                                    daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            handed = [self._queue.get()]
            size = len(handed[0][1])
            while size < self.MAX_BATCH:
                try:
                    handed.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                size += len(handed[-1][1])
            error: BaseException | None = None
            try:
                with self.journal.store.transaction():
                    for _, batch in handed:
                        for exchange, _ in batch:
                            self.journal.record(exchange)
            except BaseException as exc:  # reported to every waiting exchange; the thread goes on
                error = exc
            if error is not None:
                logging.getLogger(f"segur_bench.{self.journal.service}").error(
                    "could not record %d exchange(s) in the journal: %s", size, error)
            for loop, batch in handed:
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                    loop.call_soon_threadsafe(_settle_all, [done for _, done in batch], error)


def _settle_all(futures: list[asyncio.Future], error: BaseException | None) -> None:
    for done in futures:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


def to_jsonl(exchanges: Sequence[Exchange]) -> str:
    return "".join(json.dumps(e.as_dict(), ensure_ascii=False) + "\n" for e in exchanges)
