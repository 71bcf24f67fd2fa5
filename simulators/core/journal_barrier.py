"""Read-your-answers barrier for the journal, across the worker processes of one simulator.

Exchanges are answered first and committed to SQLite by a writer thread a moment later, many per
transaction (waiting for the commit before answering made every answer wait for a disk write, and
kept transactions as small as the number of open connections). What the journal promised still
holds: an exchange answered before a journal query is in that query's result. Each writer owns a
slot in a small file shared by the processes of the store (pid, entries submitted, entries settled);
a reader snapshots the submitted counts of the live slots and waits until every settled count has
caught up. Settled means committed, or given up after an error that was logged.

Each published count has a single writing thread (submitted: the thread that submits; settled: the writer
thread), and is an aligned 8-byte word written and read in one piece.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import struct
import threading
import time
from pathlib import Path

SLOTS = 256
_SLOT = struct.Struct("<qqq")  # pid, submitted, settled
_WORD = struct.Struct("<q")
_SIZE = SLOTS * _SLOT.size
_TABLE = struct.Struct(f"<{SLOTS * 3}q")
DEFAULT_TIMEOUT_S = 5.0

log = logging.getLogger("segur_bench.journal")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CommitBarrier:
    """The shared slot table of one store (file `path`, created if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(self._fd).st_size < _SIZE:
            os.ftruncate(self._fd, _SIZE)
        self._map = mmap.mmap(self._fd, _SIZE)
        self._lock = threading.Lock()
        self._closed = False

    # -- writers
    def claim(self) -> Slot | None:
        """A free slot for one writer (None when all are taken by live processes: no barrier then)."""
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                table = _TABLE.unpack_from(self._map)
                for i in range(SLOTS):
                    pid = table[3 * i]
                    if pid == 0 or not _alive(pid):  # free, or left by a process that is gone
                        _SLOT.pack_into(self._map, i * _SLOT.size, os.getpid(), 0, 0)
                        return Slot(self, i)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        log.warning("journal barrier %s: no free slot; answers may precede their journal entry", self.path)
        return None

    # -- readers
    def wait(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
        """Wait until every entry submitted so far, by any live process, is settled. False on timeout."""
        if self._closed:
            return True
        targets = self._pending()
        if not targets:
            return True
        deadline = time.monotonic() + timeout_s
        delay = 0.0005
        while True:
            table = _TABLE.unpack_from(self._map)
            targets = {i: (pid, want) for i, (pid, want) in targets.items()
                       if table[3 * i] == pid and table[3 * i + 2] < want and _alive(pid)}
            if not targets:
                return True
            if time.monotonic() >= deadline:
                log.warning("journal barrier %s: %d writer(s) still behind after %.1f s; reading anyway",
                            self.path, len(targets), timeout_s)
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def _pending(self) -> dict[int, tuple[int, int]]:
        table = _TABLE.unpack_from(self._map)
        return {i: (table[3 * i], table[3 * i + 1]) for i in range(SLOTS)
                if table[3 * i] and table[3 * i + 2] < table[3 * i + 1]}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError, OSError):
            self._map.close()
            os.close(self._fd)


class Slot:
    """One writer's place in the table: it publishes the writer's counts (submitted by the submitting thread,
    settled by the writer thread), it does not keep its own."""

    def __init__(self, barrier: CommitBarrier, index: int) -> None:
        self._barrier = barrier
        self._offset = index * _SLOT.size

    def publish_submitted(self, count: int) -> None:
        if not self._barrier._closed:
            _WORD.pack_into(self._barrier._map, self._offset + 8, count)

    def publish_settled(self, count: int) -> None:
        if not self._barrier._closed:
            _WORD.pack_into(self._barrier._map, self._offset + 16, count)

    def release(self) -> None:
        if not self._barrier._closed:
            with contextlib.suppress(ValueError):
                _SLOT.pack_into(self._barrier._map, self._offset, 0, 0, 0)
