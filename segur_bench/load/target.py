"""What a simulated practitioner does, and through what: the `LoadTarget` a load profile drives.

The cabinet profile (cabinet.py) decides *when* a practitioner acts (think times, which consultation needs a
prescription, a DMP feed, a letter); a target decides *how*. The default target (`SimulatorTarget`) calls the
bench's simulators directly with the reference LGC's own wire clients. A SaaS vendor writes a target that calls
their LGC's API instead (`--target module:Class`, template in template_target.py), and the same profile, think
times and incidents load their LGC — which in turn calls the bench.

This module imports neither Locust nor gevent: a vendor's class, and the tests, can use it on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

# fire(request_type, name, response_time_ms, response_length, exception): Locust's events.request.fire in the
# profile, a list in tests.
Reporter = Callable[[str, str, float, int, BaseException | None], None]

OPERATIONS = ("search_identity", "consult_dmp", "feed_dmp", "prescribe", "send_message")


class CallFailed(Exception):
    """A call failed and was already reported to Locust by `LoadTarget.call` (not to be reported twice)."""


@dataclass(frozen=True)
class Patient:
    """A synthetic patient of the bench's personas, as a practitioner's LGC knows them once identified."""

    ins: str  # 15 characters (matricule + key)
    oid: str  # INS assigning authority (1.2.250.1.213.1.4.8 INS-NIR)
    dmp_oid: str  # the OID the DMP test platforms use for that INS (1.2.250.1.213.1.4.10)
    birth_name: str
    first_names: tuple[str, ...]
    sex: str  # M | F
    birth_date: date
    birthplace: str | None  # COG code
    display_name: str


@dataclass(frozen=True)
class Practitioner:
    """One simulated practitioner: a physician of the personas (identity, structure, MSSanté mailbox)."""

    index: int  # 0, 1, 2 … in spawn order (per Locust process)
    national_id: str
    rpps: str
    family_name: str
    given_name: str
    profession: str
    speciality: str
    sector: str
    structure_id: str
    structure_name: str
    billing_id: str
    amo_speciality: str
    mailbox: str
    correspondents: tuple[str, ...] = field(default=())  # other practitioners' mailboxes (letters)


@dataclass
class CallRecord:
    """Filled by the body of a `call` block when it knows the answer's size (bytes)."""

    length: int = 0


class LoadTarget:
    """The system a simulated practitioner works with. One instance per simulated practitioner (Locust user).

    Override the five operations; report every network call of theirs with `with self.call(service,
    operation):` so that Locust counts it under "service operation" with its time and its failure. An exception
    leaving a `call` block is reported once and re-raised as `CallFailed`; the profile then goes on with the
    next step of the consultation, as a practitioner would."""

    def __init__(self, practitioner: Practitioner, report: Reporter) -> None:
        self.practitioner = practitioner
        self._report = report

    # -- the practitioner's day ------------------------------------------------------------------------

    def start(self) -> None:
        """Once, when the practitioner starts working (log in)."""

    def search_identity(self, patient: Patient) -> None:
        """Identity check of the patient (INSi search by traits)."""
        raise NotImplementedError

    def consult_dmp(self, patient: Patient) -> None:
        """Open the patient's DMP (existence and rights, then the list of documents)."""
        raise NotImplementedError

    def feed_dmp(self, patient: Patient) -> None:
        """Send the consultation report to the DMP."""
        raise NotImplementedError

    def prescribe(self, patient: Patient) -> None:
        """Register an Ordonnance numérique."""
        raise NotImplementedError

    def send_message(self, patient: Patient) -> None:
        """Send a letter about the patient over MSSanté."""
        raise NotImplementedError

    def stop(self) -> None:
        """Once, when the practitioner stops (close clients)."""

    # -- reporting -------------------------------------------------------------------------------------

    @contextmanager
    def call(self, service: str, operation: str) -> Iterator[CallRecord]:
        record = CallRecord()
        started = time.perf_counter()
        try:
            yield record
        except Exception as exc:
            stopped = _interruption(exc)
            if stopped is not None:  # Locust stopped the user mid-call: not the service's failure
                raise stopped from None
            self._report(service, f"{service} {operation}", (time.perf_counter() - started) * 1000, record.length,
                         exc)
            raise CallFailed(f"{service} {operation}: {exc}") from exc
        self._report(service, f"{service} {operation}", (time.perf_counter() - started) * 1000, record.length, None)


def _interruption(exc: BaseException) -> BaseException | None:
    """The GreenletExit (or KeyboardInterrupt) behind an ordinary exception, if any. A client's clean-up can
    replace it: smtplib's `with` block sends QUIT on the way out, which fails and raises SMTPServerDisconnected,
    then the client turns that into ServiceUnavailable — and the killed practitioner would carry on working."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if not isinstance(current, Exception):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
