"""Exchange journal: every request/response a simulator saw, for proofs and server-side assertions.

Entries are stored in the service's SQLite store with millisecond timestamps (received, responded),
the operation, both header sets and bodies (text, or base64 for binary), the status, the faults that
were applied and the run/correlation ids. Query by time window, run and operation; export as JSONL
or HAR 1.2 (see har.py). On the hot path an exchange is appended to a per-process segment file
(journal_log.py) before its answer leaves; every read first brings SQLite up to date with the segments.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from . import journal_log
from .clock import iso, parse_instant
from .ids import random_bits
from .journal_log import SegmentWriter, fields_of
from .store import Store

log = logging.getLogger("segur_bench.journal")

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
    # Exchanges answered on the hot path are appended to per-process segment files (journal_log.py); this
    # table says how far each segment has been ingested.
    "CREATE TABLE journal_segments (name TEXT PRIMARY KEY, ingested INTEGER NOT NULL)",
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
    # TLS facts of the connection (version, cipher, SNI, client certificate: subject, issuer, serial, SHA-256);
    # None over plain TCP
    tls: dict | None = None

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
            "client": self.client, "error": self.error, "tls": self.tls,
        }

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


@dataclass
class JournalFeed:
    entries: list[Exchange]
    cursor: str  # give it back as `after` to get what comes next
    more: bool  # more entries wait beyond `limit`
    restarted: bool  # the journal was cleared since the cursor: the feed started again from its beginning


class Journal:
    def __init__(self, store: Store, service: str, redact: Callable[[Exchange], Exchange] | None = None) -> None:
        self.store = store
        self.service = service
        # Applied to every entry before it is recorded: masks the secrets the service's exchanges carry (redact.py).
        self.redact = redact
        self._run: tuple[int, dict] | None = None
        store.migrate("journal", _MIGRATIONS)
        self.log_dir = store.sidecar("-jlog")
        self.segment = SegmentWriter(self.log_dir)
        self._known: dict[str, int] = {}  # segment name -> offset this process saw ingested (a cheap "nothing new")
        self._ingester: threading.Thread | None = None
        self._stop = threading.Event()
        weakref.finalize(self, self._stop.set)
        weakref.finalize(self, self.segment.close)

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

    def submit(self, exchange: Exchange) -> None:
        """Journal an exchange from the hot path, before its answer leaves: one append to this process's
        segment, ingested into SQLite by the next read (see journal_log.py). Never raises."""
        exchange = self._redacted(exchange)
        try:
            self.segment.append(exchange)
            if self._ingester is None:
                self._start_ingester()
            return
        except (OSError, ValueError) as exc:  # disk full, a value marshal cannot write: straight to SQLite
            log.error("journal segment append failed (%s); writing exchange %s directly", exc, exchange.id)
        try:
            self._insert([row_of(fields_of(exchange))])  # already redacted
        except Exception:
            log.exception("could not record exchange %s in the journal", exchange.id)

    def close(self) -> None:
        """Close this process's segment (its entries stay there until the next read ingests them)."""
        self._stop.set()
        self._ingester = None
        self.segment.close()

    def _start_ingester(self) -> None:
        self._stop = threading.Event()
        self._ingester = threading.Thread(target=_ingest_when_quiet, args=(weakref.ref(self), self._stop),
                                          name=f"journal-ingest-{self.service}", daemon=True)
        self._ingester.start()

    def record(self, exchange: Exchange) -> None:
        """Insert an entry into SQLite now (off the hot path: the MSSanté trace, tests, ingestion)."""
        self.record_many([exchange])

    def record_many(self, exchanges: Sequence[Exchange]) -> None:
        """Insert entries, up to _ROWS_PER_INSERT rows per statement (SQLite runs a whole batch without taking
        the GIL back after each row)."""
        self._insert(row_of(fields_of(self._redacted(exchange))) for exchange in exchanges)

    def _redacted(self, exchange: Exchange) -> Exchange:
        if self.redact is None:
            return exchange
        try:
            return self.redact(exchange)
        except Exception:  # never journal what could not be masked, and never break the exchange
            log.exception("masking secrets of exchange %s failed: headers and bodies not journaled", exchange.id)
            return without_bodies(exchange)

    def _insert(self, rows: Iterable[tuple]) -> None:
        conn = self.store.conn
        rows = list(rows)
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start:start + _ROWS_PER_INSERT]
            conn.execute(_insert_sql(len(chunk)), [value for row in chunk for value in row])

    def query(
        self,
        *,
        since: float | str | None = None,
        until: float | str | None = None,
        run: str | None = None,
        operation: str | None = None,
        limit: int | None = None,
    ) -> list[Exchange]:
        self.catch_up()  # whatever was answered before this query is in its result
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

    def feed(self, after: str | None, *, run: str | None = None, operation: str | None = None,
             limit: int = 200) -> JournalFeed:
        """The entries journaled after a cursor, in the order they were journaled, for a follower (the trainers'
        console). `query(since=)` filters on when a request was received: an exchange delayed 3 s is journaled
        after exchanges received later than it, so a follower reading `since` its last entry would miss it. The
        cursor is the row's number (SQLite writers take turns, so numbers grow in commit order) and its entry's
        id, so a number reused after a clear is not mistaken for the entry already read. Without a cursor: the
        last `limit` entries."""
        self.catch_up()
        filters, params = [], []
        for name, value in (("run", run), ("operation", operation)):
            if value is not None:
                filters.append(f"{name} = ?")
                params.append(value)
        top = self.store.execute("SELECT max(seq) FROM journal").fetchone()[0] or 0
        restarted = False
        if after is None:
            where = (" WHERE " + " AND ".join(filters)) if filters else ""
            rows = self.store.query("SELECT seq, entry, request_body, response_body FROM journal" + where
                                    + " ORDER BY seq DESC LIMIT ?", [*params, limit])[::-1]
        else:
            seq_text, _, last_id = after.partition("-")
            if not (seq_text.isascii() and seq_text.isdigit() and len(seq_text) <= 18):
                raise JournalQueryError(f"after must be a cursor returned by the feed, got {after[:40]!r}")
            seq = int(seq_text)
            if seq > top:  # the journal was cleared since: start again from its beginning
                seq, last_id, restarted = 0, "", True
            where = " AND ".join(["seq >= ?", "NOT (seq = ? AND id = ?)", *filters])
            rows = self.store.query("SELECT seq, entry, request_body, response_body FROM journal WHERE " + where
                                    + " ORDER BY seq LIMIT ?", [seq, seq, last_id, *params, limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        entries = [Exchange.from_dict(json.loads(r[1]), _blob(r[2]), _blob(r[3])) for r in rows]
        if rows:
            cursor = f"{rows[-1][0]}-{entries[-1].id}"
        elif after is not None and not restarted:
            cursor = after
        else:
            cursor = f"{top}-" if after is None else "0-"
        return JournalFeed(entries, cursor, more, restarted)

    def count(self) -> int:
        self.catch_up()
        return int(self.store.execute("SELECT count(*) FROM journal").fetchone()[0])

    def clear(self, run: str | None = None) -> int:
        """Delete every entry answered so far, or only those of `run`; returns how many. For a full clear, segment
        frames not yet ingested are skipped, not ingested (they would be deleted at once); a run's clear ingests
        them first, since the other runs' entries stay."""
        if run is not None:
            self._consume(insert=True)
            return self.store.execute("DELETE FROM journal WHERE run = ?", (run,)).rowcount
        skipped = self._consume(insert=False)
        return skipped + self.store.execute("DELETE FROM journal").rowcount

    def catch_up(self) -> int:
        """Ingest what the segments hold beyond what was already ingested; returns the entries added."""
        return self._consume(insert=True)

    def _consume(self, *, insert: bool) -> int:
        total = 0
        for path in journal_log.segments(self.log_dir):
            # Liveness first, then the size: a segment whose writer is gone is complete at that size.
            gone = journal_log.writer_gone(path)
            try:
                stop = path.stat().st_size
            except FileNotFoundError:
                continue  # another reader finished and removed it
            if not gone and self._known.get(path.name) == stop:
                continue  # nothing appended since this process last looked
            try:
                total += self._consume_segment(path, stop, gone, insert)
            except FileNotFoundError:
                continue
        return total

    def _consume_segment(self, path: Path, stop: int, gone: bool, insert: bool) -> int:
        total = 0
        while True:
            # One transaction per slice: the offset moves with the rows it covers, and concurrent readers
            # (other threads, other processes) take turns instead of ingesting the same frames twice.
            with self.store.transaction() as conn:
                row = conn.execute("SELECT ingested FROM journal_segments WHERE name = ?", (path.name,)).fetchone()
                start = row[0] if row else 0
                piece = journal_log.read_slice(path, start, stop, decode=insert) if start < stop else None
                end = start if piece is None else piece.end
                if piece is not None:
                    if insert and piece.frames:
                        self._insert(row_of(f) for f in piece.frames)
                    total += len(piece.frames)
                    conn.execute("INSERT INTO journal_segments (name, ingested) VALUES (?, ?) ON CONFLICT(name)"
                                 " DO UPDATE SET ingested = excluded.ingested", (path.name, end))
                finished = gone and (end >= stop or piece is None or piece.problem is not None or end == start)
            if finished:
                # Only once the rows are committed: a kill before this point leaves the segment and its offset, which
                # says it was all ingested (the next reader removes it); deleting the file inside the transaction
                # lost every row of it when the process died before COMMIT.
                if end < stop:
                    log.error("journal segment %s: %d byte(s) after offset %d could not be read and are lost",
                              path.name, stop - end, end)
                path.unlink(missing_ok=True)
                self.store.execute("DELETE FROM journal_segments WHERE name = ?", (path.name,))
            self._known[path.name] = end
            if piece is not None and piece.problem:
                log.error("journal segment: %s", piece.problem)
            if finished or piece is None or piece.problem or end == start or end >= stop:
                if finished:
                    self._known.pop(path.name, None)
                return total


_ROWS_PER_INSERT = 64  # 704 parameters, far below SQLite's limit; at most 64 statement texts cached


@functools.cache
def _insert_sql(rows: int) -> str:
    return ("INSERT INTO journal (id, service, protocol, operation, run, correlation, received_at, responded_at,"
            " entry, request_body, response_body) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows))


INGEST_EVERY_S = 0.25
BUSY_BYTES = 1024 * 1024  # segments growing faster than this per INGEST_EVERY_S (~1,000 exchanges/s): a load


def _ingest_when_quiet(ref: weakref.ref, stop: threading.Event) -> None:
    """Keep SQLite close behind the segments while the simulator is not under load, so that a journal read
    rarely has much to ingest; under load (a benchmark), leave the CPU to the answers: the read that follows
    ingests what piled up."""
    last = -1
    while not stop.wait(INGEST_EVERY_S):
        journal = ref()
        if journal is None:
            return
        try:
            size = sum(journal_log.sizes(journal_log.segments(journal.log_dir)).values())
            if last >= 0 and size - last < BUSY_BYTES:
                journal.catch_up()
            last = size
        except Exception:  # logged; the next read ingests instead
            log.exception("background ingestion of the %s journal failed", journal.service)
        del journal


def row_of(fields: tuple) -> tuple:
    """The journal row of an exchange given as `fields_of` (journal_log.py) gives it. The `entry` column is
    the JSON of as_dict without the bodies (BLOB columns) and without what from_dict recomputes (received,
    responded, duration_ms)."""
    (id_, service, protocol, operation, received_at, responded_at, method, url, http_version, status,
     req_headers, req_data, req_truncated, req_size, resp, faults, outcome, run, correlation, client, error,
     waited_ms, tls) = fields
    entry = _ENCODER.encode({
        "id": id_, "service": service, "protocol": protocol, "operation": operation,
        "received_at": received_at, "responded_at": responded_at, "waited_ms": waited_ms,
        "method": method, "url": url, "http_version": http_version, "status": status,
        "request": {"headers": req_headers, "truncated": req_truncated, "size": req_size},
        "response": None if resp is None else {"headers": resp[0], "truncated": resp[2], "size": resp[3]},
        "faults": faults, "outcome": outcome, "run": run, "correlation": correlation,
        "client": client, "error": error, "tls": tls,
    })
    return (id_, service, protocol, operation, run, correlation, received_at, responded_at, entry,
            _pack(req_data), None if resp is None else _pack(resp[1]))


def without_bodies(ex: Exchange) -> Exchange:
    """What the journal keeps of an exchange whose secrets could not be masked: no headers, bodies or query."""
    note = "journal : masquage des secrets en échec, en-têtes et corps non conservés"
    return replace(ex, url=ex.url.partition("?")[0], request=Message([], b"", False, ex.request.size),
                   response=Message([], b"", False, ex.response.size) if ex.response is not None else None,
                   error=f"{ex.error} ; {note}" if ex.error else note)


_ENCODER = json.JSONEncoder(check_circular=False)  # what json.dumps writes, minus its per-call set-up


def new_exchange_id() -> str:
    """A UUID version 7 (RFC 9562) as 32 hex digits: unique and time-ordered (random bits: see ids.py)."""
    rand = random_bits(74)
    value = ((time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | (rand >> 62) << 64
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


def to_jsonl(exchanges: Sequence[Exchange]) -> str:
    return "".join(json.dumps(e.as_dict(), ensure_ascii=False) + "\n" for e in exchanges)
