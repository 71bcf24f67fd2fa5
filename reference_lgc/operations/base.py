"""Shared plumbing of the LGC's operations: starting a background call for a patient, the calling user."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from ..calls import CallRunner
from ..config import LgcConfig
from ..db import Database
from ..records import Patient, Records
from ..web.auth import professional_for


class OpsBase:
    def __init__(self, db: Database, records: Records, runner: CallRunner, config: LgcConfig) -> None:
        self.db, self.records, self.runner, self.config = db, records, runner, config

    def _submit(self, service: str, operation: str, p: Patient, user: Any, sid: str | None,
                params: dict[str, Any], endpoint_extra: dict[str, str] | None = None) -> int:
        params = {"user_label": user_label(user), **params}
        return self.runner.submit(service, operation, professional=professional_for(self.db, sid, user),
                                  patient_id=p.id, params=params, user_id=user["id"] if user else None, sid=sid,
                                  endpoint_extra=endpoint_extra)

    def _in_flight(self, patient_id: int, service: str, operation: str) -> bool:
        last = self.runner.latest(patient_id, service, operation)
        return last is not None and last.in_flight

    def _session_alive(self, sid: str | None) -> bool:
        row = self.db.one("SELECT access_token, refresh_token, expires_at FROM sessions WHERE sid=?", (sid,)) \
            if sid else None
        return row is not None and bool(row["access_token"]) and (
            (row["expires_at"] or 0) > time.time() or bool(row["refresh_token"]))


def iso_date(value: date | str | None) -> str:
    return value.isoformat() if isinstance(value, date) else (value or "")




def user_label(user: Any) -> str:
    if user is None:
        return "système"
    return f"{user['family_name']} {user['given_name']} ({user['national_id'] or user['login']})"


def load_user(db: Database, user_id: int | None) -> Any:
    return db.one("SELECT * FROM users WHERE id=?", (user_id,)) if user_id else None


