"""The durable DMP outbox against the DMP simulator (in-process; crash tests kill a child worker process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sims_dmp import BASE, CLERICO, KIT, SEED_AUTHOR, TEST_OID, Sim, cda, metadata, running_dmp

from reference_lgc import outbox as ob
from reference_lgc.db import Database
from reference_lgc.outbox import Outbox, OutboxError
from reference_lgc.services import dmp
from reference_lgc.services.context import Endpoint, Software

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SET_ID = "1.2.250.1.999.88.1"
OTHER = replace(KIT, national_id=SEED_AUTHOR, rpps=SEED_AUTHOR[1:], family_name="AUTRE", given_name="MEDECIN")


class Clock:
    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # the base keeps milliseconds

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def server() -> Iterator[Sim]:
    with running_dmp() as sim:
        yield sim


@pytest.fixture
def sim(server: Sim) -> Sim:
    server.reset()
    return server


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "lgc.db")


@pytest.fixture
def patient(db: Database) -> int:
    now = datetime.now(UTC).isoformat()
    cur = db.execute("INSERT INTO patients (birth_name, first_names, sex, birth_date, birthplace_cog, ins_matricule, "
                     "ins_oid, validated, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                     ("CLERICO", "PIERRE", "M", "1943-11-01", "95083", CLERICO, TEST_OID, 1, now, now))
    return int(cur.lastrowid)


def _box(db: Database, sim: Sim, clock: Callable[[], datetime] | None = None, timeout: float = 5.0,
         **kw: Any) -> Outbox:
    extra = {"clock": clock} if clock is not None else {}
    return Outbox(db, endpoint=Endpoint(sim.url + BASE, timeout=timeout), software=Software(), **extra, **kw)


_n = 0


def _document(db: Database, patient_id: int, *, version: int = 1) -> tuple[int, str, bytes]:
    global _n
    _n += 1
    uid = f"1.2.250.1.999.5151.{_n}.{time.monotonic_ns()}"
    content = cda(uid, set_id=SET_ID, version=version)
    cur = db.execute("INSERT INTO documents (patient_id, title, type_code, type_label, act_date, author, mime, "
                     "content, created_at, unique_id, level) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                     (patient_id, "CR de consultation", "11488-4", "CR de consultation", "2026-11-25", "KIT",
                      "text/xml", content, datetime.now(UTC).isoformat(), uid, "N1"))
    return int(cur.lastrowid), uid, content


def _enqueue(box: Outbox, db: Database, patient_id: int, *, defer_s: float = 0, **kw: Any) -> tuple[int, int, str]:
    doc_id, uid, content = _document(db, patient_id, version=kw.pop("version", 1))
    item = box.enqueue(doc_id, patient_id=patient_id, cda=content, metadata=metadata(uid), ins=CLERICO,
                       ins_oid=TEST_OID, professional=KIT, defer_s=defer_s, **kw)
    return item, doc_id, uid


def _iti41(sim: Sim, uid: str | None = None) -> list[dict]:
    entries = sim.control("GET", "/journal?operation=ITI-41")["entries"]
    return [e for e in entries if uid is None or uid in (e["request"].get("body") or "")]


def _successes(entries: list[dict]) -> list[dict]:
    return [e for e in entries
            if e["response"] and "ResponseStatusType:Success" in (e["response"].get("body") or "")]


def _in_dmp(sim: Sim, uid: str) -> list[dict]:
    return [d for d in sim.state(CLERICO)["documents"] if d["unique_id"] == uid]


def _authorise(sim: Sim) -> None:
    dmp.set_authorisation(sim.ctx(), CLERICO, TEST_OID)


def _wait(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- deferral, hold, cancel -------------------------------------------------------------------------------


def test_deferred_send_goes_only_after_due_time(sim: Sim, db: Database, patient: int) -> None:
    clock = Clock()
    box = _box(db, sim, clock)
    item, doc_id, uid = _enqueue(box, db, patient, defer_s=60)
    assert box.state(doc_id).state == "differe" and box.state(doc_id).label == "envoi différé"
    assert box.run_once() == 0
    clock.advance(59)
    assert box.run_once() == 0 and _iti41(sim, uid) == []
    clock.advance(2)
    assert box.run_once() == 1
    st = box.state(doc_id)
    assert (st.state, st.attempts, st.last_error, st.unique_id) == ("envoye", 1, "", uid)
    assert st.entry_uuid and st.entry_uuid.startswith("urn:uuid:") and st.sent_at == clock.now
    row = db.one("SELECT dmp_entry_uuid, dmp_sent_at, dmp_state, unique_id, cda FROM documents WHERE id=?", (doc_id,))
    assert (row["dmp_entry_uuid"], row["dmp_state"], row["unique_id"]) == (st.entry_uuid, "envoye", uid)
    assert row["dmp_sent_at"] and row["cda"]
    assert len(_successes(_iti41(sim, uid))) == 1
    [stored] = _in_dmp(sim, uid)
    assert stored["entry_uuid"] == st.entry_uuid and stored["author_nid"] == KIT.national_id
    assert [i.id for i in box.list(patient)] == [item]
    with pytest.raises(OutboxError, match="déjà envoyé"):
        box.cancel(item)
    with pytest.raises(OutboxError, match="déjà envoyé"):
        _ = box.enqueue(doc_id, patient_id=patient, cda=row["cda"], metadata=metadata(uid), ins=CLERICO,
                        ins_oid=TEST_OID, professional=KIT, defer_s=0)


def test_cancel_during_deferral_never_reaches_the_dmp(sim: Sim, db: Database, patient: int) -> None:
    clock = Clock()
    box = _box(db, sim, clock)
    item, doc_id, uid = _enqueue(box, db, patient, defer_s=30)
    assert box.cancel(item).state == "annule"
    clock.advance(3600)
    assert box.run_once() == 0
    assert _iti41(sim, uid) == [] and _in_dmp(sim, uid) == []
    assert box.state(doc_id).label == "envoi annulé"
    with pytest.raises(OutboxError, match="annulé"):
        box.release(item, now=True)
    # a cancelled document may be queued again later
    again = box.enqueue(doc_id, patient_id=patient, cda=cda(uid, set_id=SET_ID), metadata=metadata(uid), ins=CLERICO,
                        ins_oid=TEST_OID, professional=KIT, defer_s=0)
    assert again != item and box.run_once() == 1 and box.state(doc_id).state == "envoye"


def test_opposition_cancels_every_send_not_yet_started_and_names_the_others(sim: Sim, db: Database,
                                                                            patient: int) -> None:
    clock = Clock()
    box = _box(db, sim, clock)
    deferred, _, uid1 = _enqueue(box, db, patient, defer_s=30)
    held, _, uid2 = _enqueue(box, db, patient, defer_s=30, hold=True)
    sent, _, _ = _enqueue(box, db, patient)
    assert box.run_once() == 1 and box.get(sent).state == "envoye"
    # a row a worker has claimed (the ITI-41 may be on the wire): out of reach
    flying, _, _ = _enqueue(box, db, patient, defer_s=30)
    db.execute("UPDATE outbox SET state='envoi' WHERE id=?", (flying,))
    cancelled, beyond = box.cancel_pending_sends(patient)
    assert sorted(i.id for i in cancelled) == sorted([deferred, held]) and {i.state for i in cancelled} == {"annule"}
    assert [i.id for i in beyond] == [flying]
    assert box.get(sent).state == "envoye"  # what reached the DMP stays (deletion is the author's act)
    clock.advance(3600)
    db.execute("UPDATE outbox SET state='annule' WHERE id=?", (flying,))
    assert box.run_once() == 0 and _iti41(sim, uid1) == [] and _iti41(sim, uid2) == []
    assert box.cancel_pending_sends(patient) == ([], [])


def test_hold_then_release(sim: Sim, db: Database, patient: int) -> None:
    clock = Clock()
    box = _box(db, sim, clock)
    item, doc_id, uid = _enqueue(box, db, patient, defer_s=10)
    assert box.hold(item).state == "suspendu"
    clock.advance(20)
    assert box.run_once() == 0 and _iti41(sim, uid) == []
    assert box.release(item).state == "a_envoyer"  # due time passed: goes at once
    assert box.run_once() == 1 and box.state(doc_id).state == "envoye"
    # held at enqueue, released before its due time: waits for it; release(now=True) sends at once
    held, doc2, uid2 = _enqueue(box, db, patient, defer_s=60, hold=True)
    assert box.state(doc2).state == "suspendu"
    assert box.release(held).state == "differe"
    assert box.run_once() == 0
    assert box.release(held, now=True).state == "a_envoyer"
    assert box.run_once() == 1 and box.state(doc2).state == "envoye"
    assert {e["unique_id"] for e in sim.state(CLERICO)["documents"]} >= {uid, uid2}
    with pytest.raises(OutboxError, match="suspendre"):
        box.hold(held)


# --- DMP unavailable / refusals ----------------------------------------------------------------------------


def test_dmp_down_then_back_sent_exactly_once(sim: Sim, db: Database, patient: int) -> None:
    _authorise(sim)
    clock = Clock()
    box = _box(db, sim, clock)
    sim.fault({"type": "http_status", "status": 503}, service="dmp", operation="ITI-41")
    _item, doc_id, uid = _enqueue(box, db, patient)
    assert box.run_once() == 1
    st = box.state(doc_id)
    assert (st.state, st.attempts) == ("a_envoyer", 1)  # a 503: nothing reached the registry
    assert "503" in st.last_error and "nouvel essai automatique" in st.last_error
    assert st.due_at == clock.now + timedelta(seconds=1)
    clock.advance(1)
    assert box.run_once() == 1
    st = box.state(doc_id)
    assert (st.state, st.attempts, st.due_at) == ("a_envoyer", 2, clock.now + timedelta(seconds=2))
    assert box.run_once() == 0  # not due yet
    sim.control("DELETE", "/faults")
    clock.advance(2)
    assert box.run_once() == 1
    st = box.state(doc_id)
    assert (st.state, st.attempts) == ("envoye", 3)
    assert len(_successes(_iti41(sim, uid))) == 1 and len(_iti41(sim, uid)) == 3
    found = [e for e in dmp.find_documents(sim.ctx(), CLERICO, TEST_OID, statuses=ob.ALL_STATUSES)
             if e.unique_id == uid]
    assert [e.entry_uuid for e in found] == [st.entry_uuid]


def test_background_worker_sends_when_the_dmp_returns(sim: Sim, db: Database, patient: int) -> None:
    box = _box(db, sim, poll_interval=0.05, backoff=(0.2, 0.3))
    sim.fault({"type": "drop"}, service="dmp", operation="ITI-41", first=2)  # connection cut: outcome unknown
    box.start()
    try:
        item, doc_id, uid = _enqueue(box, db, patient)
        _wait(lambda: box.state(doc_id).attempts >= 1 and box.state(doc_id).state == "a_verifier", what="1st try")
        assert "RESEAU" in box.state(doc_id).last_error or "injoignable" in box.state(doc_id).last_error
        with pytest.raises(OutboxError, match="peut-être abouti"):
            box.cancel(item)
        _wait(lambda: box.state(doc_id).state == "envoye", what="sent")
    finally:
        box.stop()
    assert box.state(doc_id).attempts == 3 and len(_in_dmp(sim, uid)) == 1
    assert len(_successes(_iti41(sim, uid))) == 1


def test_refusal_is_a_failure_without_automatic_retry_then_manual_retry(sim: Sim, db: Database,
                                                                        patient: int) -> None:
    clock = Clock()
    box = _box(db, sim, clock)
    sim.fault({"type": "outcome", "name": "dmp.erreur.XDSRegistryMetadataError"}, service="dmp",
              operation="ITI-41", first=1)
    item, doc_id, uid = _enqueue(box, db, patient)
    assert box.run_once() == 1
    st = box.state(doc_id)
    assert st.state == "echec" and st.label == "échec"
    assert "Métadonnées du document refusées par le DMP" in st.last_error and "relancer" in st.last_error
    clock.advance(3600)
    assert box.run_once() == 0 and len(_iti41(sim, uid)) == 1
    assert box.retry(item).state == "a_envoyer"
    assert box.run_once() == 1 and box.state(doc_id).state == "envoye"
    assert len(_in_dmp(sim, uid)) == 1
    with pytest.raises(OutboxError, match="relancer"):
        box.retry(item)


def test_a_refused_item_can_be_cancelled(sim: Sim, db: Database, patient: int) -> None:
    box = _box(db, sim)
    sim.fault({"type": "outcome", "name": "dmp.ferme"}, service="dmp", operation="ITI-41")
    item, doc_id, _uid = _enqueue(box, db, patient)
    box.run_once()
    assert box.state(doc_id).state == "echec" and "fermé" in box.state(doc_id).last_error
    assert box.cancel(item).state == "annule"


def test_a_duplicate_refusal_naming_another_id_is_not_taken_for_a_success(sim: Sim, db: Database,
                                                                         patient: int) -> None:
    box = _box(db, sim)
    sim.fault({"type": "outcome", "name": "dmp.erreur.XDSDocumentUniqueIdError"}, service="dmp", operation="ITI-41")
    _item, doc_id, _uid = _enqueue(box, db, patient)
    box.run_once()
    assert box.state(doc_id).state == "echec" and "XDSDocumentUniqueIdError" in box.state(doc_id).last_error


# --- idempotency: crash recovery --------------------------------------------------------------------------


def _child(db: Database, sim: Sim, timeout: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(HERE / "outbox_worker.py"), str(db.path), sim.url + BASE,
                             str(timeout)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def _row(db: Database, item: int) -> Any:
    return db.one("SELECT * FROM outbox WHERE id=?", (item,))


def test_crash_mid_send_then_restart_sends_exactly_once(sim: Sim, db: Database, patient: int) -> None:
    _authorise(sim)
    # The first ITI-41 waits 2.5 s before the DMP processes it: the worker dies while it waits.
    sim.fault({"type": "latency", "ms": 2500}, service="dmp", operation="ITI-41", first=1)
    box = _box(db, sim)
    item, doc_id, uid = _enqueue(box, db, patient)
    proc = _child(db, sim, timeout=30)
    try:
        _wait(lambda: _row(db, item)["state"] == "envoi", what="child sending")
        time.sleep(0.4)
    finally:
        _kill(proc)
    assert _row(db, item)["state"] == "envoi" and _in_dmp(sim, uid) == []
    box.start()  # a new worker on the same base: recovers the row, checks the DMP, resends
    try:
        _wait(lambda: box.state(doc_id).state == "envoye", what="recovered send")
    finally:
        box.stop()
    # The killed request may still be processed by the DMP when its delay ends: refused as a duplicate.
    time.sleep(2.6)
    assert len(_in_dmp(sim, uid)) == 1
    assert len(_successes(_iti41(sim, uid))) == 1
    st = box.state(doc_id)
    assert st.entry_uuid == _in_dmp(sim, uid)[0]["entry_uuid"]
    assert db.one("SELECT dmp_entry_uuid FROM documents WHERE id=?", (doc_id,))[0] == st.entry_uuid


@pytest.mark.parametrize("authorised", [True, False])
def test_crash_after_the_dmp_stored_it_is_not_resent(sim: Sim, db: Database, patient: int,
                                                     authorised: bool) -> None:
    if authorised:
        _authorise(sim)
    # The DMP stores the document, then trickles its answer: the worker dies before it records the outcome.
    sim.fault({"type": "dribble", "chunk_bytes": 64, "interval_ms": 300}, service="dmp", operation="ITI-41", first=1)
    box = _box(db, sim)
    item, doc_id, uid = _enqueue(box, db, patient)
    proc = _child(db, sim, timeout=120)
    try:
        _wait(lambda: _in_dmp(sim, uid), what="document stored by the DMP")
    finally:
        _kill(proc)
    assert _row(db, item)["state"] == "envoi"
    stored = _in_dmp(sim, uid)[0]
    assert box.recover() == 1 and box.state(doc_id).state == "a_verifier"
    assert box.run_once() == 1
    st = box.state(doc_id)
    assert st.state == "envoye" and "déjà présent dans le DMP" in st.last_error
    # the killed exchange (still trickling to a dead socket) carries the dribble fault; any other is a resend
    resent = [e for e in _iti41(sim, uid) if not e["faults"]]
    if authorised:  # ITI-18 found it: no second ITI-41 at all
        assert st.entry_uuid == stored["entry_uuid"]
        assert resent == []
    else:  # ITI-18 refused (no authorisation): resent, the DMP refused the duplicate uniqueId
        assert st.entry_uuid is None
        assert len(resent) == 1 and _successes(resent) == []
        assert "XDSDocumentUniqueIdError" in resent[0]["response"]["body"]
    assert len(_in_dmp(sim, uid)) == 1
    assert db.one("SELECT dmp_state FROM documents WHERE id=?", (doc_id,))[0] == "envoye"
    # the killed exchange ends (journaled as a success nobody received) and changes nothing
    _wait(lambda: [e for e in _iti41(sim, uid) if e["faults"]], what="end of the trickled answer")
    assert len(_successes(_iti41(sim, uid))) == 1 and len(_in_dmp(sim, uid)) == 1


def test_recovery_of_a_hand_written_envoi_row(sim: Sim, db: Database, patient: int) -> None:
    """Same as above without a child process: the row says 'envoi' and the DMP already holds the document."""
    _authorise(sim)
    box = _box(db, sim)
    item, doc_id, uid = _enqueue(box, db, patient, hold=True)
    sub = dmp.provide_document(sim.ctx(), CLERICO, TEST_OID, cda(uid, set_id=SET_ID), metadata(uid))
    db.execute("UPDATE outbox SET state='envoi', attempts=1 WHERE id=?", (item,))
    sim.control("POST", "/reset", {"keep": ["state"]})  # clear the journal
    assert box.run_once() == 0  # a live worker's lease: not taken over by run_once
    box.start()
    try:
        _wait(lambda: box.state(doc_id).state == "envoye", what="recovered")
    finally:
        box.stop()
    assert box.state(doc_id).entry_uuid == sub.entry_uuid and _iti41(sim, uid) == []


def test_stale_envoi_row_is_taken_over_after_its_lease(sim: Sim, db: Database, patient: int) -> None:
    clock = Clock()
    box = _box(db, sim, clock, lease_s=30)
    item, doc_id, uid = _enqueue(box, db, patient, hold=True)
    db.execute("UPDATE outbox SET state='envoi', attempts=1 WHERE id=?", (item,))
    assert box.run_once() == 0
    clock.advance(31)
    assert box.run_once() == 1  # no authorisation for ITI-18, not in the DMP: resent
    assert box.state(doc_id).state == "envoye" and len(_in_dmp(sim, uid)) == 1


# --- concurrency ------------------------------------------------------------------------------------------


def test_concurrent_run_once_never_sends_an_item_twice(sim: Sim, db: Database, patient: int) -> None:
    sim.fault({"type": "latency", "ms": 30}, service="dmp", operation="ITI-41")
    box = _box(db, sim)
    items = [_enqueue(box, db, patient) for _ in range(12)]
    barrier = threading.Barrier(4)
    counts: list[int] = []

    def worker() -> None:
        other = _box(db, sim)  # distinct Outbox objects, like distinct processes (own connections per thread)
        barrier.wait()
        counts.append(other.run_once())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(counts) == 12 and max(counts) < 12  # shared out, each processed once
    for _item, doc_id, uid in items:
        st = box.state(doc_id)
        assert (st.state, st.attempts) == ("envoye", 1)
        assert len(_iti41(sim, uid)) == 1
    assert len([e for e in _iti41(sim) if any(uid in e["request"]["body"] for _i, _d, uid in items)]) == 12


# --- replacement, visibility, deletion ---------------------------------------------------------------------


def test_replacement_and_invisibility(sim: Sim, db: Database, patient: int) -> None:
    _authorise(sim)
    box = _box(db, sim)
    _item1, doc1, _uid1 = _enqueue(box, db, patient)
    box.run_once()
    v1 = box.state(doc1).entry_uuid
    item2, doc2, uid2 = _enqueue(box, db, patient, version=2, replaces_entry_uuid=v1, invisible_to_patient=True,
                                 hold=True)
    assert box.get(item2).invisible_to_patient
    box.set_invisible_to_patient(item2, False)
    box.set_invisible_to_patient(item2, True)
    box.release(item2)
    box.run_once()
    st = box.state(doc2)
    assert st.state == "envoye"
    current = [e for e in dmp.find_documents(sim.ctx(), CLERICO, TEST_OID) if e.lid == v1]
    assert [(e.entry_uuid, e.unique_id, e.version, e.invisible_to_patient) for e in current] == [
        (st.entry_uuid, uid2, 2, True)]
    assert db.one("SELECT dmp_state FROM documents WHERE id=?", (doc1,))[0] == "remplace"
    with pytest.raises(OutboxError, match="visibilité"):
        box.set_invisible_to_patient(item2, False)


def test_delete_from_dmp_author_only(sim: Sim, db: Database, patient: int) -> None:
    box = _box(db, sim)
    _item, doc_id, uid = _enqueue(box, db, patient)
    box.run_once()
    entry = box.state(doc_id).entry_uuid
    with pytest.raises(OutboxError, match="auteur"):
        box.delete_from_dmp(doc_id, OTHER)
    deletion = box.delete_from_dmp(doc_id, KIT)
    assert box.state(doc_id).label == "suppression en attente"
    with pytest.raises(OutboxError, match="en cours"):
        box.delete_from_dmp(doc_id, KIT)
    assert box.run_once() == 1
    st = box.get(deletion)
    assert (st.action, st.state, st.entry_uuid, st.label) == ("suppression", "envoye", entry, "supprimé du DMP")
    assert db.one("SELECT dmp_state FROM documents WHERE id=?", (doc_id,))[0] == "supprime"
    assert [d["status"].rsplit(":", 1)[-1] for d in _in_dmp(sim, uid)] == ["Deleted"]
    assert len(sim.control("GET", "/journal?operation=ITI-57")["entries"]) == 1
    with pytest.raises(OutboxError, match="déjà supprimé"):
        box.delete_from_dmp(doc_id, KIT)


def test_deletion_refused_by_the_dmp_for_a_non_author(sim: Sim, db: Database, patient: int) -> None:
    """Sent otherwise (no outbox row): the local author check cannot apply, the DMP's does."""
    box = _box(db, sim)
    doc_id, uid, content = _document(db, patient)
    sub = dmp.provide_document(sim.ctx(), CLERICO, TEST_OID, content, metadata(uid))
    db.execute("UPDATE documents SET dmp_entry_uuid=?, dmp_state='envoye' WHERE id=?", (sub.entry_uuid, doc_id))
    item = box.delete_from_dmp(doc_id, OTHER)
    box.run_once()
    st = box.get(item)
    assert st.state == "echec" and "Seul l'auteur" in st.last_error


def test_enqueue_checks(db: Database, patient: int, sim: Sim) -> None:
    box = _box(db, sim)
    doc_id, uid, content = _document(db, patient)
    db.execute("UPDATE documents SET cda=? WHERE id=?", (content, doc_id))
    with pytest.raises(OutboxError, match="diffère"):
        box.enqueue(doc_id, patient_id=patient, cda=content + b" ", metadata=metadata(uid), ins=CLERICO,
                    ins_oid=TEST_OID, professional=KIT, defer_s=0)
    with pytest.raises(OutboxError, match="incohérent"):
        box.enqueue(doc_id, patient_id=patient, cda=content, metadata=metadata(uid + ".9"), ins=CLERICO,
                    ins_oid=TEST_OID, professional=KIT, defer_s=0)
    with pytest.raises(OutboxError, match="inconnu"):
        box.enqueue(doc_id + 99, patient_id=patient, cda=content, metadata=metadata(uid), ins=CLERICO,
                    ins_oid=TEST_OID, professional=KIT, defer_s=0)
    item = box.enqueue(doc_id, patient_id=patient, cda=content, metadata=replace(metadata(uid), unique_id=None),
                       ins=CLERICO, ins_oid=TEST_OID, professional=replace(KIT, access_token="tok", id_token="id"),
                       defer_s=5)
    row = db.one("SELECT * FROM outbox WHERE id=?", (item,))
    assert row["unique_id"] == uid  # taken from the document (the CDA id)
    assert "tok" in row["professional"] and "id_token" not in row["professional"]
    meta, extra = ob.metadata_from_json(row["metadata"])
    assert meta == replace(metadata(uid), unique_id=uid) and extra["_cda_sha256"]
    with pytest.raises(OutboxError, match="déjà dans la file"):
        box.enqueue(doc_id, patient_id=patient, cda=content, metadata=metadata(uid), ins=CLERICO,
                    ins_oid=TEST_OID, professional=KIT, defer_s=0)
    assert ob.cda_unique_id(content) == uid
