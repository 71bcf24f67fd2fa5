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
import functools
import json
import logging
import os
import queue
import threading
import time
import weakref
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .clock import iso, parse_instant
from .journal_barrier import CommitBarrier
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
    # Cheaper inserts, thousands a second: a plain rowid (AUTOINCREMENT updates sqlite_sequence on every insert)
    # and no index on `id` (nothing looks entries up by id; UUIDv7 ids are unique by construction).
    """
    CREATE TABLE journal_v3 (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        service TEXT NOT NULL,
        protocol TEXT NOT NULL,
        operation TEXT NOT NULL,
        run TEXT,
        correlation TEXT,
        received_at REAL NOT NULL,
        responded_at REAL,
        entry TEXT NOT NULL,
        request_body BLOB,
        response_body BLOB
    );
    INSERT INTO journal_v3 SELECT seq, id, service, protocol, operation, run, correlation, received_at,
        responded_at, entry, request_body, response_body FROM journal;
    DROP TABLE journal;
    ALTER TABLE journal_v3 RENAME TO journal;
    CREATE INDEX journal_by_received ON journal (received_at);
    CREATE INDEX journal_by_run ON journal (run)
    """,
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
        self.barrier = CommitBarrier(store.sidecar("-jslots"))
        weakref.finalize(self, self.barrier.close)

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
        self.record_many([exchange])

    def record_many(self, exchanges: Sequence[Exchange]) -> None:
        """Insert entries, up to _ROWS_PER_INSERT per statement: SQLite then runs a whole batch without the
        GIL, where one statement per row would take it back after every row from the busy event loop."""
        conn = self.store.conn
        for start in range(0, len(exchanges), _ROWS_PER_INSERT):
            chunk = exchanges[start:start + _ROWS_PER_INSERT]
            params = [value for exchange in chunk for value in _row(exchange)]
            conn.execute(_insert_sql(len(chunk)), params)

    def query(
        self,
        *,
        since: float | str | None = None,
        until: float | str | None = None,
        run: str | None = None,
        operation: str | None = None,
        limit: int | None = None,
    ) -> list[Exchange]:
        self.barrier.wait()  # whatever was answered before this query is in its result
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
        self.barrier.wait()  # an entry still on its way would otherwise land after the clear
        return self.store.execute("DELETE FROM journal").rowcount


_ROWS_PER_INSERT = 64  # 704 parameters, far below SQLite's limit; at most 64 statement texts cached


@functools.cache
def _insert_sql(rows: int) -> str:
    return ("INSERT INTO journal (id, service, protocol, operation, run, correlation, received_at, responded_at,"
            " entry, request_body, response_body) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows))


def _row(exchange: Exchange) -> tuple:
    return (exchange.id, exchange.service, exchange.protocol, exchange.operation, exchange.run,
            exchange.correlation, exchange.received_at, exchange.responded_at,
            exchange.stored_entry(), _pack(exchange.request.data),
            _pack(exchange.response.data) if exchange.response is not None else None)


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
    """Writes a process's journal entries from one thread, many per transaction under load.

    `submit` never waits: the exchange is answered while its entry is on its way to SQLite, and the
    journal's read-your-answers barrier (journal_barrier.py) makes every query wait for what was
    submitted before it. The event loop never runs SQLite itself, so it never sleeps in SQLite's busy
    handler while another worker process holds the write lock. Entries submitted during one pass of a
    loop are handed over together at the end of that pass, and the thread commits whatever has piled up
    since its last commit in one transaction: every commit rewrites the pages it touched (table and index
    leaves), so fewer, larger commits cost much less per entry.
    """

    MAX_BATCH = 1024
    COMMIT_INTERVAL_S = 0.005
    FLUSH_TIMEOUT_S = 10.0

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._settled = threading.Condition()
        # Entries waiting for the end of their loop's current pass, per event loop (each loop touches its own).
        self._pending: dict[asyncio.AbstractEventLoop, list[Exchange]] = {}
        self._slot = journal.barrier.claim()
        self.submitted = 0
        self.settled = 0
        if self._slot is not None:
            weakref.finalize(self, self._slot.release)

    def submit(self, exchange: Exchange) -> None:
        """Queue an entry for the journal; readers of the journal will see it (see the class docstring)."""
        self.submitted += 1
        if self._slot is not None:
            self._slot.publish_submitted(self.submitted)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop: straight to the thread
            self._ensure_thread()
            self._queue.put([exchange])
            return
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        pending.append(exchange)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Hand over what the calling loop holds and wait until every submitted entry is settled
        (at shutdown: nothing answered is lost). False on timeout."""
        with contextlib.suppress(RuntimeError):
            self._hand_over(asyncio.get_running_loop())
        deadline = time.monotonic() + (self.FLUSH_TIMEOUT_S if timeout_s is None else timeout_s)
        with self._settled:
            while self.settled < self.submitted:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._settled.wait(left)
        return True

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, None)
        if batch:
            self._ensure_thread()
            self._queue.put(batch)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name=f"journal-{self.journal.service}",
                                                    daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        last_commit = 0.0
        while True:
            batch = list(self._queue.get())
            # Under load, let entries pile up for a few milliseconds: one commit per interval instead of one per
            # handful of entries. Nobody waits on it but a journal query, for at most this long.
            pause = last_commit + self.COMMIT_INTERVAL_S - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            last_commit = time.monotonic()
            while len(batch) < self.MAX_BATCH:
                try:
                    batch += self._queue.get_nowait()
                except queue.Empty:
                    break
            try:
                with self.journal.store.transaction():
                    self.journal.record_many(batch)
            except BaseException as exc:  # logged; the thread goes on, and the entries count as settled
                logging.getLogger(f"segur_bench.{self.journal.service}").error(
                    "could not record %d exchange(s) in the journal: %s", len(batch), exc)
            with self._settled:
                self.settled += len(batch)
                if self._slot is not None:
                    self._slot.publish_settled(self.settled)
                self._settled.notify_all()


def to_jsonl(exchanges: Sequence[Exchange]) -> str:
    return "".join(json.dumps(e.as_dict(), ensure_ascii=False) + "\n" for e in exchanges)
