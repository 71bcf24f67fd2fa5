"""Append-only journal segments: how an exchange is journaled on the hot path, and how SQLite catches up.

Answering must not wait for SQLite, and a thread committing behind the answers (the previous design) cost
more CPU than the exchange itself: GIL hand-offs with the event loop, a JSON entry built per row, pages
written twice (WAL, then checkpoint). Instead each process appends every exchange to a segment file of its
own, in one write(2), *before* the answer leaves. Every journal read (query, count, clear) first ingests
what the segments hold beyond what was already ingested, in SQLite transactions that also advance each
segment's offset. So an exchange answered before a query is in that query's result, whichever process
answered it, with nothing to wait for; the cost of indexing moves from every answer to the (rare) reads.

Segment files live in a directory beside the database (`<db>-jlog/`), named `<pid>-<token>.seg`. A
writer holds an exclusive flock on its open segment for as long as it writes to it: a segment whose lock
can be taken has no writer any more (closed, rotated, or its process died), and is deleted once ingested.

File: MAGIC, then frames. Frame: payload length (4 bytes, little-endian), CRC-32 of the payload (4 bytes),
payload = marshal of a tuple (`fields_of`). marshal is fast and version-stable since Python 3.4; like the
database beside them, segments are trusted files of this bench, never data from the network.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import marshal
import os
import secrets
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .journal import Exchange

MAGIC = b"SBJLOG1\n"
_HEAD = 8  # length + CRC
ROTATE_BYTES = 64 * 1024 * 1024  # a writer starts a new segment beyond this size
MAX_FRAME = 64 * 1024 * 1024  # bodies are capped at 4 MiB each: a larger length is corruption
INGEST_SLICE = 4 * 1024 * 1024  # bytes of frames per ingest transaction: bounded memory and lock time
SUFFIX = ".seg"

log = logging.getLogger("segur_bench.journal")


class SegmentWriter:
    """This process's segment: `append` writes one exchange in one write(2). Thread-safe; opened on first
    use (and again in a forked child, which must not share its parent's file)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0
        self._size = 0
        self.path: Path | None = None

    def append(self, exchange: Exchange) -> None:
        """Raises OSError/ValueError when the exchange could not be written; the segment is left whole."""
        payload = marshal.dumps(fields_of(exchange))
        frame = b"".join((len(payload).to_bytes(4, "little"), zlib.crc32(payload).to_bytes(4, "little"), payload))
        with self._lock:
            fd = self._fd if self._pid == os.getpid() else None
            if fd is None or self._size >= ROTATE_BYTES:
                fd = self._open()
            try:
                written = os.write(fd, frame)
            except OSError:
                self._undo(fd)
                raise
            if written != len(frame):  # disk full: never leave half a frame for the readers
                self._undo(fd)
                raise OSError(f"journal segment {self.path}: short write ({written} of {len(frame)} bytes)")
            self._size += written

    def _undo(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, self._size)

    def _open(self) -> int:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)  # rotation: the lock goes with it, readers may now finish this segment
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, MAGIC)
        self._fd, self._pid, self._size, self.path = fd, os.getpid(), len(MAGIC), path
        return fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None


def fields_of(ex: Exchange) -> tuple:
    """An exchange as a flat tuple of plain values (what a segment frame holds; see journal.row_of)."""
    req, resp = ex.request, ex.response
    return (ex.id, ex.service, ex.protocol, ex.operation, ex.received_at, ex.responded_at, ex.method, ex.url,
            ex.http_version, ex.status, req.headers, req.data, req.truncated, req.size,
            None if resp is None else (resp.headers, resp.data, resp.truncated, resp.size),
            ex.faults, ex.outcome, ex.run, ex.correlation, ex.client, ex.error, ex.waited_ms, ex.tls)


FIELD_COUNT = 23  # len(fields_of(...)): a frame of another shape is reported, never inserted
PREVIOUS_FIELD_COUNT = 22  # frames written before TLS facts were journaled: read with tls = None


# --------------------------------------------------------------------------------------------- reading


@dataclass
class Slice:
    """Complete frames read from one segment, up to `end` (the offset to store next): their field tuples
    (`fields_of`), or None per frame when counting only."""

    frames: list[Any]
    end: int
    problem: str | None = None  # set when the rest of the segment is unreadable (logged by the caller)


def segments(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX))
    except FileNotFoundError:
        return []


def writer_gone(path: Path) -> bool:
    """True when no process writes to `path` any more (its writer's exclusive lock can be taken)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases the lock we may have taken
    return True


def read_slice(path: Path, start: int, stop: int, *, decode: bool = True,
               limit: int = INGEST_SLICE) -> Slice:
    """The complete frames of `path` between `start` (0: the file's beginning) and `stop`, about `limit`
    bytes of them at most. A torn frame at the end is left for later (its writer may still be writing it);
    a bad length or CRC ends the slice with a problem. With decode=False, frames are counted, not decoded."""
    out: list = []
    with open(path, "rb") as f:
        if start == 0:
            if stop < len(MAGIC):
                return Slice([], 0)  # just created: its writer has not written the magic yet
            if f.read(len(MAGIC)) != MAGIC:
                return Slice([], stop, f"{path.name}: not a journal segment of this version, ignored")
            start = len(MAGIC)
        f.seek(start)
        pos = start
        while pos + _HEAD <= stop and pos - start < limit:
            head = f.read(_HEAD)
            length = int.from_bytes(head[:4], "little")
            if length > MAX_FRAME:
                return Slice(out, stop, f"{path.name}: bad frame length at offset {pos}")
            if pos + _HEAD + length > stop:
                break  # torn: the rest is still being written (or beyond this ingest's snapshot)
            if not decode:
                f.seek(length, os.SEEK_CUR)
                out.append(None)
                pos += _HEAD + length
                continue
            payload = f.read(length)
            if len(payload) != length or zlib.crc32(payload) != int.from_bytes(head[4:], "little"):
                return Slice(out, stop, f"{path.name}: CRC mismatch at offset {pos}")
            try:
                fields = marshal.loads(payload)
            except (ValueError, EOFError, TypeError) as exc:
                return Slice(out, stop, f"{path.name}: unreadable frame at offset {pos} ({exc})")
            if isinstance(fields, tuple) and len(fields) == PREVIOUS_FIELD_COUNT:
                fields = (*fields, None)
            if not isinstance(fields, tuple) or len(fields) != FIELD_COUNT:
                return Slice(out, stop, f"{path.name}: frame at offset {pos} is not an exchange of this version")
            out.append(fields)
            pos += _HEAD + length
    return Slice(out, pos)


def sizes(paths: list[Path]) -> dict[Path, int]:
    """A snapshot of the segments' sizes: what an ingest takes in (frames appended later wait for the next)."""
    found = {}
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            found[path] = path.stat().st_size
    return found

