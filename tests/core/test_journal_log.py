"""The journal's append-only segments: every exchange answered before a read is in it, once, whichever
process answered it; torn, corrupt and orphaned segments are handled without losing what is readable."""

from __future__ import annotations

import fcntl
import logging
import marshal
import os
import subprocess
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path

import pytest

from simulators.core import journal as journal_mod
from simulators.core import journal_log
from simulators.core.ids import uuid4
from simulators.core.journal import Exchange, Journal, Message
from simulators.core.store import Store

ROOT = Path(__file__).resolve().parents[2]


def _exchange(i: int, **kw) -> Exchange:
    return Exchange(id=f"id{i}", service="svc", protocol="http", operation="POST /echo",
                    received_at=1_800_000_000.0 + i, responded_at=1_800_000_000.25 + i, method="POST",
                    url=f"http://h/echo?i={i}", status=200,
                    request=Message.of([("content-type", "text/plain")], f"req{i}".encode()),
                    response=Message.of([("content-type", "text/plain")], f"res{i}".encode()), **kw)


def _ids(journal: Journal) -> list[str]:
    return [e.id for e in journal.query()]


def _segments(journal: Journal) -> list[Path]:
    return journal_log.segments(journal.log_dir)


def _frame(fields: tuple) -> bytes:
    # Written from the documented frame layout, not with the writer under test.
    payload = marshal.dumps(fields)
    return len(payload).to_bytes(4, "little") + zlib.crc32(payload).to_bytes(4, "little") + payload


def _fields(i: int) -> tuple:
    return (f"hand{i}", "svc", "http", "POST /echo", 1_900_000_000.0 + i, 1_900_000_000.5 + i, "POST",
            f"http://h/hand?i={i}", "1.1", 201, [("content-type", "text/plain")], b"in", False, 2,
            ([("content-type", "text/plain")], b"out", False, 3), [], None, "run-x", "corr", "127.0.0.1:1",
            None, None)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "svc.sqlite3"


def test_a_reader_of_the_same_store_sees_every_submitted_exchange_once(db: Path) -> None:
    writer, reader = Journal(Store(db), "svc"), Journal(Store(db), "svc")
    for i in range(3):
        writer.submit(_exchange(i))
    assert _ids(reader) == ["id0", "id1", "id2"]
    for i in range(3, 5):
        writer.submit(_exchange(i))
    assert _ids(reader) == [f"id{i}" for i in range(5)]  # read on from where it stopped: no duplicates
    assert _ids(writer) == [f"id{i}" for i in range(5)]
    entry = reader.query()[4]
    assert entry.request.raw() == b"req4" and entry.response.raw() == b"res4" and entry.status == 200
    assert len(_segments(reader)) == 1  # its writer is alive: kept
    writer.close()
    assert reader.count() == 5
    assert _segments(reader) == []  # writer gone and everything ingested: removed


def test_exchanges_of_a_process_that_died_are_found_and_its_segment_removed(db: Path) -> None:
    code = ("import os, sys; sys.path.insert(0, sys.argv[2]); from pathlib import Path;"
            "from simulators.core.store import Store; from simulators.core.journal import Journal, Exchange, Message;"
            "j = Journal(Store(Path(sys.argv[1])), 'svc');"
            "[j.submit(Exchange(id=f'child{i}', service='svc', protocol='http', operation='op', received_at=float(i),"
            " request=Message.of([], b'x'))) for i in range(4)];"
            "os._exit(0)")  # no close, no clean-up: as a killed worker
    subprocess.run([sys.executable, "-c", code, str(db), str(ROOT)], check=True, timeout=60)
    journal = Journal(Store(db), "svc")
    assert len(_segments(journal)) == 1
    assert _ids(journal) == [f"child{i}" for i in range(4)]
    assert _segments(journal) == []


def test_a_torn_frame_waits_for_its_live_writer_then_is_read(db: Path) -> None:
    journal = Journal(Store(db), "svc")
    journal.log_dir.mkdir(parents=True)
    path = journal.log_dir / f"999999-abcd{journal_log.SUFFIX}"
    second = _frame(_fields(2))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a live writer
    try:
        os.write(fd, journal_log.MAGIC + _frame(_fields(1)) + second[:10])
        assert _ids(journal) == ["hand1"]
        os.write(fd, second[10:])
        assert _ids(journal) == ["hand1", "hand2"]
        entry = journal.query()[1]
        assert (entry.status, entry.run, entry.request.raw(), entry.response.raw()) == (201, "run-x", b"in", b"out")
    finally:
        os.close(fd)
    assert journal.count() == 2 and not path.exists()


def test_a_dead_writers_torn_tail_is_reported_and_the_rest_kept(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = Journal(Store(db), "svc")
    journal.log_dir.mkdir(parents=True)
    path = journal.log_dir / f"999998-abcd{journal_log.SUFFIX}"
    path.write_bytes(journal_log.MAGIC + _frame(_fields(1)) + _frame(_fields(2))[:7])
    with caplog.at_level(logging.ERROR, logger="segur_bench.journal"):
        assert _ids(journal) == ["hand1"]
    assert "could not be read" in caplog.text
    assert not path.exists()


def test_a_corrupt_frame_is_reported_and_skipped(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = Journal(Store(db), "svc")
    journal.log_dir.mkdir(parents=True)
    bad = bytearray(_frame(_fields(2)))
    bad[-1] ^= 0xFF
    (journal.log_dir / f"999997-abcd{journal_log.SUFFIX}").write_bytes(
        journal_log.MAGIC + _frame(_fields(1)) + bytes(bad))
    (journal.log_dir / f"999996-abcd{journal_log.SUFFIX}").write_bytes(b"not a segment at all")
    (journal.log_dir / f"999995-abcd{journal_log.SUFFIX}").write_bytes(
        journal_log.MAGIC + _frame(("short", "tuple")) + _frame(_fields(3)))
    with caplog.at_level(logging.ERROR, logger="segur_bench.journal"):
        assert _ids(journal) == ["hand1"]
    assert "CRC mismatch" in caplog.text and "not a journal segment" in caplog.text
    assert "not an exchange of this version" in caplog.text
    assert _segments(journal) == []


def test_concurrent_readers_ingest_each_exchange_once(db: Path) -> None:
    writer = Journal(Store(db), "svc")
    for i in range(300):
        writer.submit(_exchange(i))
    readers = [Journal(Store(db), "svc") for _ in range(4)]
    threads = [threading.Thread(target=r.catch_up) for r in readers for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert readers[0].count() == 300
    assert len(set(_ids(readers[1]))) == 300


def test_clear_skips_what_is_not_ingested_yet(db: Path) -> None:
    journal = Journal(Store(db), "svc")
    journal.record(_exchange(0))  # already in SQLite
    for i in range(1, 4):
        journal.submit(_exchange(i))  # still in the segment
    assert journal.clear() == 4
    assert journal.query() == []
    journal.submit(_exchange(9))
    assert _ids(journal) == ["id9"]


def test_an_append_that_fails_goes_straight_to_sqlite(db: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    journal = Journal(Store(db), "svc")

    def full(_exchange: Exchange) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal.segment, "append", full)
    with caplog.at_level(logging.ERROR, logger="segur_bench.journal"):
        journal.submit(_exchange(1))
    assert "No space left" in caplog.text
    assert journal.store.query("SELECT id FROM journal")[0]["id"] == "id1"


class _Label(str):
    """A str subclass: JSON writes it, marshal refuses it."""


def test_a_value_marshal_cannot_write_goes_straight_to_sqlite(db: Path) -> None:
    journal = Journal(Store(db), "svc")
    journal.submit(_exchange(1, faults=[{"rule": _Label("r")}]))
    assert _segments(journal) == []  # nothing half-written
    assert journal.store.query("SELECT count(*) AS n FROM journal")[0]["n"] == 1


def test_segments_rotate_and_finished_ones_are_removed(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_log, "ROTATE_BYTES", 600)
    journal = Journal(Store(db), "svc")
    for i in range(10):
        journal.submit(_exchange(i))
    assert len(_segments(journal)) > 2
    assert _ids(journal) == [f"id{i}" for i in range(10)]
    assert len(_segments(journal)) == 1  # only the one still open


def test_a_quiet_simulator_catches_up_in_the_background(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_mod, "INGEST_EVERY_S", 0.05)
    journal = Journal(Store(db), "svc")
    for i in range(3):
        journal.submit(_exchange(i))
    deadline = time.monotonic() + 10
    while journal.store.query("SELECT count(*) AS n FROM journal")[0]["n"] < 3:  # no journal read involved
        assert time.monotonic() < deadline, "the background ingester never caught up"
        time.sleep(0.05)
    journal.close()


def test_hot_path_ids_are_well_formed_and_unique() -> None:
    seen = {uuid4() for _ in range(2000)}
    assert len(seen) == 2000
    for value in list(seen)[:50]:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, value)
    ids = [journal_mod.new_exchange_id() for _ in range(200)]
    assert len(set(ids)) == 200 and all(uuid.UUID(i).version == 7 for i in ids)


def test_a_reader_killed_before_its_commit_loses_no_segment(db: Path) -> None:
    """A reader ingesting a finished segment dies after reading it but before its COMMIT (a SIGKILL at the wrong
    moment): the rows were not committed, so the segment file must still be there for the next reader."""
    journal = Journal(Store(db), "svc")
    journal.log_dir.mkdir(parents=True)
    path = journal.log_dir / f"999998-dead{journal_log.SUFFIX}"
    path.write_bytes(journal_log.MAGIC + _frame(_fields(1)) + _frame(_fields(2)))  # no lock held: writer gone
    code = ("import contextlib, os, sys; sys.path.insert(0, sys.argv[2]); from pathlib import Path;"
            "from simulators.core.store import Store; from simulators.core.journal import Journal;"
            "store = Store(Path(sys.argv[1])); j = Journal(store, 'svc'); begin = store.transaction\n"
            "@contextlib.contextmanager\n"
            "def dying(**kw):\n"
            "    with begin(**kw) as conn:\n"
            "        yield conn\n"
            "        os._exit(0)  # killed after the work of the transaction, before its COMMIT\n"
            "store.transaction = dying; j.catch_up()")
    subprocess.run([sys.executable, "-c", code, str(db), str(ROOT)], check=True, timeout=60)
    assert path.exists()
    assert _ids(journal) == ["hand1", "hand2"]
    assert not path.exists()
