"""The service-call framework: every national-service call runs off the request thread, with a visible status.

A call is a row in `service_calls` (*en_cours* → *reussi* | *echec*) and a job on a worker pool. Pages render
the row as a status element that polls until the call ends; the request that started it returns at once,
so the UI stays usable while calls are in flight. Retries (per service) cover network failures and 5xx only:
a refusal is shown as is. A call left *en_cours* by a stopped process is marked failed on start-up, with a retry.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .config import SERVICES, LgcConfig
from .db import Database
from .endpoint_settings import effective
from .services.api_psc import ApiPsc, access_for
from .services.context import CallContext, Professional, ServiceError, ServiceRefused, ServiceUnavailable

log = logging.getLogger("reference_lgc.calls")

EN_COURS, REUSSI, ECHEC = "en_cours", "reussi", "echec"
STATUS_LABELS = {EN_COURS: "en cours", REUSSI: "réussi", ECHEC: "échec"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Job:
    id: int
    service: str
    operation: str
    patient_id: int | None
    params: dict[str, Any]
    ctx: CallContext
    user_id: int | None
    sid: str | None
    runner: CallRunner
    notes: list[str] = field(default_factory=list)  # French lines shown with the result (e.g. "relance avec COG")


Handler = Callable[[Job], dict[str, Any]]
AfterHook = Callable[[Job, dict[str, Any] | None, ServiceError | None], None]


@dataclass(frozen=True)
class Operation:
    service: str
    name: str
    label: str  # French, shown next to the status ("Recherche INS (INSi)")
    handler: Handler
    after: AfterHook | None = None  # runs once the outcome is stored (chain calls, update the patient…)


class CallRunner:
    def __init__(self, db: Database, config: LgcConfig) -> None:
        self.db = db
        self.config = config
        self.operations: dict[tuple[str, str], Operation] = {}
        self._pool = ThreadPoolExecutor(max_workers=config.call_workers, thread_name_prefix="service-call")
        self._stopping = threading.Event()
        # API Pro Santé Connectée (services/api_psc.py): the LGC's API tokens, and how a call's PSC session token
        # is kept fresh (a refresh at PSC when it is about to expire), both set by the application
        self.api_psc: ApiPsc | None = None
        self.session_token: Callable[[str], str | None] | None = None

    def register(self, op: Operation) -> None:
        self.operations[(op.service, op.name)] = op

    def recover(self) -> int:
        """Calls a previous process left in flight can't be resumed blindly (a send may have happened): failed."""
        cur = self.db.execute(
            "UPDATE service_calls SET status=?, reason=?, finished_at=? WHERE status=?",
            (ECHEC, "Appel interrompu par l'arrêt du logiciel ; relancer si nécessaire", now_iso(), EN_COURS))
        return cur.rowcount

    def submit(self, service: str, operation: str, *, professional: Professional, patient_id: int | None = None,
               params: dict[str, Any] | None = None, user_id: int | None = None, sid: str | None = None,
               retry_of: int | None = None, endpoint_extra: dict[str, str] | None = None) -> int:
        op = self.operations[(service, operation)]
        params = params or {}
        cur = self.db.execute(
            "INSERT INTO service_calls (service, operation, patient_id, status, params, user_id, sid, retry_of, "
            "created_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (service, operation, patient_id, EN_COURS, json.dumps(params), user_id, sid, retry_of, now_iso()))
        call_id = int(cur.lastrowid)
        settings = self.config.service(service)
        endpoint = settings.endpoint()
        if endpoint_extra:  # per-call settings (e.g. the user's own MSSanté mailbox)
            endpoint = replace(endpoint, extra={**endpoint.extra, **endpoint_extra})
        endpoint = effective(self.db, service, endpoint)  # with what was set in the LGC (auth mode, mail servers)
        ctx = CallContext(software=self.config.software, professional=professional, endpoint=endpoint,
                          api=access_for(self.api_psc, endpoint, professional.national_id,
                                         lambda: self._session_token(sid) or professional.access_token))
        job = Job(call_id, service, operation, patient_id, params, ctx, user_id, sid, self)
        self._pool.submit(self._run, op, job, settings.retries)
        return call_id

    def _session_token(self, sid: str | None) -> str | None:
        return self.session_token(sid) if sid and self.session_token is not None else None

    def _run(self, op: Operation, job: Job, retries: int) -> None:
        self.db.execute("UPDATE service_calls SET started_at=? WHERE id=?", (now_iso(), job.id))
        result: dict[str, Any] | None = None
        error: ServiceError | None = None
        attempts = 0
        for attempt in range(retries + 1):
            attempts = attempt + 1
            try:
                result = op.handler(job)
                error = None
                break
            except ServiceRefused as exc:
                error = exc
                break
            except ServiceUnavailable as exc:
                error = exc
                if attempt < retries and not self._stopping.is_set():
                    time.sleep(min(0.5 * (2 ** attempt), 5.0))
            except Exception as exc:  # a bug must still end the call visibly, never leave it "en cours"
                log.exception("call %s %s/%s crashed", job.id, job.service, job.operation)
                error = ServiceError(f"Erreur interne du logiciel ({type(exc).__name__})")
                break
        if result is not None:
            result.setdefault("notes", job.notes)
        # The after-hook (apply the result, chain the next call) runs before the status turns final, so a page
        # that refreshes on "réussi" already sees its effects and any chained call in flight.
        if op.after is not None:
            try:
                op.after(job, result, error)
            except Exception:
                log.exception("after-hook of call %s failed", job.id)
        self.db.execute(
            "UPDATE service_calls SET status=?, reason=?, code=?, attempts=?, result=?, finished_at=? WHERE id=?",
            (REUSSI if error is None else ECHEC, error.reason if error else "", (error.code or "") if error else "",
             attempts, json.dumps(result) if result is not None else None, now_iso(), job.id))

    def get(self, call_id: int) -> CallView | None:
        row = self.db.one("SELECT * FROM service_calls WHERE id=?", (call_id,))
        return self._view(row) if row else None

    def latest(self, patient_id: int, service: str, operation: str | None = None) -> CallView | None:
        if operation:
            row = self.db.one("SELECT * FROM service_calls WHERE patient_id=? AND service=? AND operation=? "
                              "ORDER BY id DESC LIMIT 1", (patient_id, service, operation))
        else:
            row = self.db.one("SELECT * FROM service_calls WHERE patient_id=? AND service=? ORDER BY id DESC "
                              "LIMIT 1", (patient_id, service))
        return self._view(row) if row else None

    def _view(self, row: Any) -> CallView:
        op = self.operations.get((row["service"], row["operation"]))
        return CallView(
            id=row["id"], service=row["service"], operation=row["operation"], patient_id=row["patient_id"],
            status=row["status"], reason=row["reason"], code=row["code"], attempts=row["attempts"],
            params=json.loads(row["params"]), result=json.loads(row["result"]) if row["result"] else None,
            created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
            label=op.label if op else f"{row['service']} / {row['operation']}")

    def shutdown(self, wait: bool = False) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)


@dataclass(frozen=True)
class CallView:
    id: int
    service: str
    operation: str
    patient_id: int | None
    status: str
    reason: str
    code: str
    attempts: int
    params: dict[str, Any]
    result: dict[str, Any] | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    label: str

    @property
    def service_label(self) -> str:
        return SERVICES.get(self.service, (self.service,))[0]

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def in_flight(self) -> bool:
        return self.status == EN_COURS

    @property
    def duration_s(self) -> float | None:
        if not self.finished_at:
            return None
        return (datetime.fromisoformat(self.finished_at) - datetime.fromisoformat(self.created_at)).total_seconds()
