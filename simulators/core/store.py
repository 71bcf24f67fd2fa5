"""SQLite state helper shared by every simulator.

One database file per service (WAL, so readers never block the writer and several worker
processes can share it). An ephemeral store (`Store()`, for tests and `segur-bench sim` without a
data directory) is a temporary file in RAM when /dev/shm exists, deleted on close: a shared-cache
`:memory:` database would answer "table is locked" at once under concurrent access instead of
waiting, and lose journal entries. Connections are per thread because sqlite3 connections must
not cross threads; each component declares its schema as numbered migrations applied once.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

MEMORY = ":memory:"


class Store:
    """A SQLite database shared by the threads (and processes, when file-backed) of one service."""

    def __init__(self, path: str | Path = MEMORY, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = str(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._lock = threading.Lock()
        self._tmpdir: str | None = None
        file = Path(self.path)
        if self.path == MEMORY:
            shm = Path("/dev/shm")
            self._tmpdir = tempfile.mkdtemp(prefix="segur-bench-", dir=shm if shm.is_dir() else None)
            weakref.finalize(self, shutil.rmtree, self._tmpdir, True)
            file = Path(self._tmpdir) / "store.sqlite3"
        file.parent.mkdir(parents=True, exist_ok=True)
        self.file = file.resolve()
        self._uri = self.file.as_uri()
        # Change counter shared by every process of this store (an mmap'd 8-byte file beside the database):
        # state that every request reads (fault rules, current run, a service's identities) is cached per
        # process and re-read only when a writer bumped the counter, instead of one SQLite query per request.
        self._gen_fd = os.open(file.with_name(file.name + "-gen"), os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(self._gen_fd).st_size < 8:
            os.ftruncate(self._gen_fd, 8)
        self._gen = mmap.mmap(self._gen_fd, 8)
        self._anchor = self._connect()
        self._anchor.execute("PRAGMA journal_mode=WAL")
        self._anchor.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        self._anchor.commit()

    def sidecar(self, suffix: str) -> Path:
        """A file beside the database (e.g. shared counters), removed with an ephemeral store."""
        return self.file.with_name(self.file.name + suffix)

    def generation(self) -> int:
        """The shared change counter: read it *before* reading the state it guards, cache both together."""
        return int.from_bytes(self._gen[:8], "little")

    def bump(self) -> None:
        """Call after committing a change to cached state (every process then re-reads it)."""
        fcntl.flock(self._gen_fd, fcntl.LOCK_EX)
        try:
            self._gen[:8] = ((self.generation() + 1) & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little")
        finally:
            fcntl.flock(self._gen_fd, fcntl.LOCK_UN)

    @property
    def in_memory(self) -> bool:
        return self.path == MEMORY

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self, *, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, so read-modify-write sequences are atomic across processes."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence | dict = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Sequence | dict = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def migrate(self, component: str, migrations: Sequence[str]) -> None:
        """Apply the not-yet-applied scripts of `component`, in order (index + 1 = version)."""
        with self._lock, self.transaction() as conn:
            row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
            current = row[0] if row else 0
            for version, script in enumerate(migrations, start=1):
                if version <= current:
                    continue
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                    "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                    (component, version),
                )

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        self._anchor.close()
        with contextlib.suppress(ValueError, OSError):
            self._gen.close()
            os.close(self._gen_fd)
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction; split on ';' instead (our scripts hold no literals with ';').
    return [s.strip() for s in script.split(";") if s.strip()]
