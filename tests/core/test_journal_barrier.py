"""The journal's read-your-answers barrier: a reader waits for what every live writer submitted."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from simulators.core.journal import Exchange, Journal, JournalWriter, Message
from simulators.core.journal_barrier import SLOTS, CommitBarrier
from simulators.core.store import Store


def test_reader_waits_until_every_writer_has_settled(tmp_path):
    path = tmp_path / "db-jslots"
    writer_a, writer_b, reader = CommitBarrier(path), CommitBarrier(path), CommitBarrier(path)
    a, b = writer_a.claim(), writer_b.claim()
    assert a is not None and b is not None
    a.publish_submitted(2)
    b.publish_submitted(1)
    assert reader.wait(timeout_s=0.05) is False  # nothing settled yet
    a.publish_settled(2)
    assert reader.wait(timeout_s=0.05) is False  # b still behind
    threading.Timer(0.1, b.publish_settled, args=(1,)).start()
    started = time.monotonic()
    assert reader.wait(timeout_s=3) is True
    assert 0.05 < time.monotonic() - started < 2


def test_entries_submitted_after_the_snapshot_do_not_hold_the_reader(tmp_path):
    barrier = CommitBarrier(tmp_path / "db-jslots")
    slot = barrier.claim()
    assert slot is not None
    slot.publish_submitted(1)
    # The writer keeps receiving while settling the first entry: the reader only waits for that one.
    threading.Timer(0.05, lambda: (slot.publish_submitted(6), slot.publish_settled(1))).start()
    assert barrier.wait(timeout_s=2) is True


def test_slots_of_dead_processes_are_ignored_and_reused(tmp_path):
    path = tmp_path / "db-jslots"
    code = ("import sys; from simulators.core.journal_barrier import CommitBarrier; from pathlib import Path;"
            "s = CommitBarrier(Path(sys.argv[1])).claim(); s.publish_submitted(3)")  # dies with 3 entries unsettled
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    barrier = CommitBarrier(path)
    assert barrier.wait(timeout_s=0.5) is True  # its writer is gone: nothing will ever settle them
    slots = [barrier.claim() for _ in range(SLOTS)]
    assert all(s is not None for s in slots)  # the dead process's slot was free again
    assert barrier.claim() is None  # all taken by this live process


def test_released_slot_is_free_again(tmp_path):
    barrier = CommitBarrier(tmp_path / "db-jslots")
    slots = [barrier.claim() for _ in range(SLOTS)]
    assert barrier.claim() is None
    slots[7].release()
    assert barrier.claim() is not None


def test_writer_from_a_plain_thread_and_flush(tmp_path):
    store = Store(tmp_path / "svc.sqlite3")
    journal = Journal(store, "svc")
    writer = JournalWriter(journal)
    for i in range(5):
        writer.submit(Exchange(id=f"id{i}", service="svc", protocol="http", operation="POST /echo",
                               received_at=time.time(), method="POST", url=f"/echo?i={i}", status=200,
                               request=Message.of([], b"x"), response=Message.of([], b"y")))
    assert writer.flush(timeout_s=5) is True
    assert writer.settled == writer.submitted == 5
    assert len(journal.query()) == 5
