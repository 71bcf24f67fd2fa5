"""Simulated clock (durations, calendar arithmetic, shared offset) and the SQLite store."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from dateutil.relativedelta import relativedelta

from simulators.core.clock import ClockError, SimClock, iso, parse_duration, parse_instant
from simulators.core.store import Store

# --------------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P3M", relativedelta(months=3)),
        ("P6M", relativedelta(months=6)),
        ("P4Y", relativedelta(years=4)),
        ("P1Y2M10DT2H30M", relativedelta(years=1, months=2, days=10, hours=2, minutes=30)),
        ("PT0.5S", relativedelta(microseconds=500_000)),
        ("PT2H", relativedelta(hours=2)),
        ("PT1M", relativedelta(minutes=1)),  # M after T is minutes, not months
        ("P1M", relativedelta(months=1)),
        ("P2W", relativedelta(days=14)),
        ("P1DT12H", relativedelta(days=1, hours=12)),
        ("P0D", relativedelta()),
        ("-P1D", relativedelta(days=-1)),
        ("-P1Y6M", relativedelta(years=-1, months=-6)),
        ("+P1D", relativedelta(days=1)),
        ("p3m", relativedelta(months=3)),
        (" P3M ", relativedelta(months=3)),
        ("P1.5D", relativedelta(days=1, hours=12)),
    ],
)
def test_parse_duration(text, expected):
    delta = parse_duration(text)
    assert isinstance(delta, relativedelta)
    for ref in (datetime(2027, 1, 15, 12, tzinfo=UTC), datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC)):
        assert ref + delta == ref + expected
        assert ref - delta == ref - expected


@pytest.mark.parametrize(
    "text",
    ["", "P", "PT", "3M", "P3", "P1H", "PT1D", "P-1D", "P1M2Y", "P1Y2M10DT", "P1.5M", "P0.5Y", "3 months",
     "P1DT", "PP1D", "P1D ago", None, 3, ["P1D"]],
)
def test_parse_duration_rejects(text):
    with pytest.raises(ClockError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


def test_fractional_months_message():
    with pytest.raises(ClockError, match="fractional months are ambiguous"):
        parse_duration("P1.5M")


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        (datetime(2027, 1, 31), "P1M", datetime(2027, 2, 28)),
        (datetime(2028, 1, 31), "P1M", datetime(2028, 2, 29)),  # leap year
        (datetime(2027, 8, 31), "P6M", datetime(2028, 2, 29)),
        (datetime(2027, 3, 31), "-P1M", datetime(2027, 2, 28)),
        (datetime(2027, 5, 31), "P3M", datetime(2027, 8, 31)),
        (datetime(2027, 11, 30), "P3M", datetime(2028, 2, 29)),
        (datetime(2028, 2, 29), "P1Y", datetime(2029, 2, 28)),
        (datetime(2024, 2, 29), "P4Y", datetime(2028, 2, 29)),
        (datetime(2027, 12, 31, 23), "PT1H", datetime(2028, 1, 1)),
        (datetime(2027, 1, 31), "P1M1D", datetime(2027, 3, 1)),
    ],
)
def test_month_end_arithmetic(start, duration, expected):
    assert start + parse_duration(duration) == expected


# --------------------------------------------------------------------------------------------- instants


def test_parse_instant():
    assert parse_instant("2027-01-15T09:30:00Z") == datetime(2027, 1, 15, 9, 30, tzinfo=UTC)
    assert parse_instant("2027-01-15T09:30:00") == datetime(2027, 1, 15, 9, 30, tzinfo=UTC)
    paris = parse_instant("2027-01-15T10:30:00+01:00")
    assert paris == datetime(2027, 1, 15, 9, 30, tzinfo=UTC)
    assert paris.utcoffset() == timedelta(hours=1)
    for bad in ("demain", "", "2027-02-30T00:00:00Z", None):
        with pytest.raises(ClockError, match="not an ISO-8601 instant"):
            parse_instant(bad)


def test_iso_is_millisecond_utc():
    assert iso(datetime(2027, 1, 15, 10, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1)))) \
        == "2027-01-15T09:30:00.123Z"
    assert iso(datetime(2027, 1, 15, tzinfo=UTC)) == "2027-01-15T00:00:00.000Z"


# --------------------------------------------------------------------------------------------- SimClock


def test_clock_starts_at_real_time():
    state = SimClock(Store()).state()
    assert not state.frozen
    assert abs(state.now - datetime.now(UTC)) < timedelta(seconds=2)
    assert abs(state.offset) < timedelta(seconds=1)


def test_clock_advance_set_freeze_reset():
    clock = SimClock(Store())
    state = clock.advance(parse_duration("P3M"))
    expected = datetime.now(UTC) + relativedelta(months=3)
    assert abs(state.now - expected) < timedelta(seconds=2)
    assert not state.frozen

    frozen = clock.set(datetime(2027, 1, 31, 10, tzinfo=UTC), freeze=True)
    assert frozen.frozen and frozen.now == datetime(2027, 1, 31, 10, tzinfo=UTC)
    assert clock.advance(parse_duration("P1M")).now == datetime(2027, 2, 28, 10, tzinfo=UTC)
    assert clock.now() == datetime(2027, 2, 28, 10, tzinfo=UTC)  # still frozen

    thawed = clock.freeze(False)
    assert not thawed.frozen
    assert abs(thawed.now - datetime(2027, 2, 28, 10, tzinfo=UTC)) < timedelta(seconds=1)
    assert clock.now() >= thawed.now  # moving again

    assert abs(clock.reset().offset) < timedelta(seconds=1)


def test_clock_apply_instructions():
    clock = SimClock(Store())
    assert clock.apply({"set": "2027-06-30T12:00:00Z", "freeze": True}).now == datetime(2027, 6, 30, 12, tzinfo=UTC)
    assert clock.apply({"advance": "P2M"}).now == datetime(2027, 8, 30, 12, tzinfo=UTC)
    assert clock.apply({"advance": "-P1Y", "freeze": True}).now == datetime(2026, 8, 30, 12, tzinfo=UTC)
    assert clock.apply({"freeze": False}).frozen is False
    assert clock.apply({"freeze": True}).frozen is True
    assert clock.apply({"reset": True}).frozen is False
    d = clock.state().as_dict()
    assert set(d) == {"now", "real", "offset_seconds", "frozen"}
    assert d["frozen"] is False and abs(d["offset_seconds"]) < 1


@pytest.mark.parametrize(
    ("instruction", "fragment"),
    [
        ({}, "expected a JSON object"),
        ("P1D", "expected a JSON object"),
        ({"advance": "P1D", "set": "2027-01-01T00:00:00Z"}, "either 'advance' or 'set'"),
        ({"advance": 5}, "'advance' must be a string"),
        ({"set": 5}, "'set' must be a string"),
        ({"freeze": 1}, "'freeze' must be true or false"),
        ({"speed": 2}, "unknown clock field(s) ['speed']"),
        ({"advance": "soon"}, "not an ISO-8601 duration"),
    ],
)
def test_clock_apply_errors(instruction, fragment):
    clock = SimClock(Store())
    with pytest.raises(ClockError) as info:
        clock.apply(instruction)
    assert fragment in str(info.value)
    assert abs(clock.state().offset) < timedelta(seconds=1)


def test_clock_offset_is_shared_through_the_file_store(tmp_path):
    path = tmp_path / "svc.sqlite3"
    a, b = SimClock(Store(path)), SimClock(Store(path))  # two worker processes
    a.advance(parse_duration("P6M"))
    expected = datetime.now(UTC) + relativedelta(months=6)
    assert abs(b.now() - expected) < timedelta(seconds=2)
    b.set(datetime(2030, 1, 1, tzinfo=UTC), freeze=True)
    assert a.state().frozen and a.now() == datetime(2030, 1, 1, tzinfo=UTC)
    a.reset()
    assert not b.state().frozen and abs(b.state().offset) < timedelta(seconds=1)
    # survives a restart
    a.advance(relativedelta(days=10))
    assert abs(SimClock(Store(path)).state().offset - timedelta(days=10)) < timedelta(seconds=1)


# --------------------------------------------------------------------------------------------- Store


def versions(store: Store) -> dict[str, int]:
    return {r["component"]: r["version"] for r in store.query("SELECT component, version FROM schema_versions")}


def test_migrate_is_idempotent_and_versioned(tmp_path):
    path = tmp_path / "m.sqlite3"
    store = Store(path)
    v1 = ["CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT)"]
    store.migrate("things", v1)
    store.migrate("things", v1)  # a second worker starting: nothing re-applied
    assert versions(store) == {"things": 1}
    store.execute("INSERT INTO things (name) VALUES ('a')")

    v2 = [*v1, "ALTER TABLE things ADD COLUMN colour TEXT; CREATE INDEX things_by_colour ON things (colour)"]
    Store(path).migrate("things", v2)  # another process upgrades
    assert versions(store) == {"things": 2}
    row = store.execute("SELECT name, colour FROM things").fetchone()
    assert (row["name"], row["colour"]) == ("a", None)
    store.migrate("things", v2)
    assert versions(store) == {"things": 2}

    store.migrate("other", ["CREATE TABLE other (x)"])
    assert versions(store) == {"things": 2, "other": 1}


def test_failed_migration_rolls_back():
    store = Store()
    store.migrate("c", ["CREATE TABLE a (x)"])
    with pytest.raises(sqlite3.OperationalError):
        store.migrate("c", ["CREATE TABLE a (x)", "CREATE TABLE b (x); CREATE TABLE broken ("])
    assert versions(store) == {"c": 1}
    tables = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "b" not in tables and "a" in tables


def test_transaction_commits_and_rolls_back():
    store = Store()
    store.migrate("t", ["CREATE TABLE t (x INTEGER)"])
    with store.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), store.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("abort")
    assert [r[0] for r in store.query("SELECT x FROM t")] == [1]


def test_in_memory_store_is_shared_by_threads_and_private_to_the_store():
    store, other = Store(), Store()
    assert store.in_memory and other.in_memory
    store.migrate("t", ["CREATE TABLE t (x INTEGER)"])
    other.migrate("t", ["CREATE TABLE t (x INTEGER)"])

    def write(i: int) -> None:
        store.execute("INSERT INTO t VALUES (?)", (i,))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen: list[int] = []
    reader = threading.Thread(target=lambda: seen.extend(r[0] for r in store.query("SELECT x FROM t ORDER BY x")))
    reader.start()
    reader.join()
    assert seen == list(range(8))
    assert other.query("SELECT x FROM t") == []  # two in-memory stores never share data


def test_file_store_is_shared_by_instances(tmp_path):
    path = tmp_path / "sub" / "dir" / "s.sqlite3"
    a = Store(path)
    assert path.is_file() and not a.in_memory
    assert a.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    a.migrate("t", ["CREATE TABLE t (x)"])
    a.execute("INSERT INTO t VALUES ('from a')")
    b = Store(path)
    assert b.query("SELECT x FROM t")[0]["x"] == "from a"
    a.close()
    b.close()


@pytest.mark.parametrize("memory", [True, False], ids=["ephemeral", "file"])
def test_write_while_another_thread_reads(tmp_path, memory):
    store = Store() if memory else Store(tmp_path / "s.sqlite3")
    store.migrate("t", ["CREATE TABLE t (x INTEGER)"])
    for i in range(3):
        store.execute("INSERT INTO t VALUES (?)", (i,))
    reading, release = threading.Event(), threading.Event()

    def reader() -> None:
        cursor = store.execute("SELECT x FROM t")
        cursor.fetchone()  # statement still running: a read is in progress
        reading.set()
        release.wait(5)
        cursor.fetchall()

    thread = threading.Thread(target=reader)
    thread.start()
    assert reading.wait(5)
    try:
        store.execute("INSERT INTO t VALUES (9)")
    finally:
        release.set()
        thread.join()
    assert store.query("SELECT count(*) FROM t")[0][0] == 4


def test_recent_now_follows_changes_made_here_at_once(tmp_path):
    """recent_now reuses the offset it read for a moment, but a change through this clock is seen immediately."""
    clock = SimClock(Store(tmp_path / "state.sqlite"))
    before = clock.recent_now()
    clock.advance(parse_duration("P2D"))
    assert clock.recent_now() - before > timedelta(days=1, hours=23)
    clock.reset()
    assert abs(clock.recent_now() - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize("instruction", [
    {"set": "0001-01-01T00:00:00Z"}, {"set": "9999-12-31T00:00:00Z"}, {"set": "1969-12-31T23:59:59Z"},
    {"set": "2200-01-01T00:00:00Z"}, {"advance": "P200Y"}, {"advance": "-P100Y"}, {"advance": "P8000Y"},
])
def test_the_clock_stays_in_the_range_every_service_supports(tmp_path, instruction):
    """Years 1 and 9999 broke the DMP, ApCV and MSSanté's date arithmetic (issue 16): refused, clock unchanged."""
    clock = SimClock(Store(tmp_path / "state.sqlite"))
    before = clock.state().offset
    with pytest.raises(ClockError, match="stays between 1970-01-01 and 2199-12-31"):
        clock.apply(instruction)
    assert abs(clock.state().offset - before) < timedelta(seconds=1)
    assert clock.apply({"set": "2199-12-31T00:00:00Z"}).now.year == 2199  # the bounds themselves are fine
