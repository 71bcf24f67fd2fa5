"""Simulated clock: real time plus a persisted offset, so time-based rules can be tested.

Services read `clock.now()` for business time (6-month DMP authorisations, 3-month automatic
visibility, 4-year INS verification). The offset lives in SQLite so every worker process of a
service sees the same simulated time. Latency, TTLs and journal timestamps use real time.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dateutil.relativedelta import relativedelta

from .store import Store

_MIGRATIONS = [
    "CREATE TABLE clock (id INTEGER PRIMARY KEY CHECK (id = 1), offset_us INTEGER NOT NULL,"
    " frozen_at TEXT, updated_at TEXT NOT NULL)"
]

_DURATION = re.compile(
    r"^(?P<sign>[-+])?P(?!$)(?:(?P<years>\d+(?:\.\d+)?)Y)?(?:(?P<months>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


class ClockError(ValueError):
    """Bad clock instruction (unparsable duration or instant)."""


def parse_duration(text: str) -> relativedelta:
    """ISO-8601 duration (`P3M`, `P1Y2M10DT2H30M`, `-P1D`, `PT0.5S`) as a calendar-aware delta."""
    m = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if not m:
        raise ClockError(f"not an ISO-8601 duration: {text!r} (expected e.g. 'P3M', 'P6M', 'PT2H', 'P1Y2M10D')")
    parts = {k: float(v) for k, v in m.groupdict().items() if k != "sign" and v is not None}
    for unit in ("years", "months"):
        if unit in parts and not parts[unit].is_integer():
            raise ClockError(f"fractional {unit} are ambiguous in {text!r}; use whole {unit}")
    sign = -1 if m.group("sign") == "-" else 1
    try:
        delta = relativedelta(
            years=int(parts.get("years", 0)),
            months=int(parts.get("months", 0)),
            weeks=parts.get("weeks", 0.0),
            days=parts.get("days", 0.0),
            hours=parts.get("hours", 0.0),
            minutes=parts.get("minutes", 0.0),
            seconds=parts.get("seconds", 0.0),
        )
    except (ValueError, OverflowError):
        raise ClockError(f"duration out of range: {text!r}") from None
    return -delta if sign < 0 else delta


def parse_instant(text: str) -> datetime:
    """ISO-8601 instant; a naive value is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError) as exc:
        raise ClockError(f"not an ISO-8601 instant: {text!r} (expected e.g. '2027-01-15T09:30:00Z')") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(dt: datetime) -> str:
    """Millisecond-precision UTC ISO string, as written in journals and APIs."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ClockState:
    now: datetime
    real: datetime
    offset: timedelta
    frozen: bool

    def as_dict(self) -> dict:
        return {
            "now": iso(self.now),
            "real": iso(self.real),
            "offset_seconds": round(self.offset.total_seconds(), 3),
            "frozen": self.frozen,
        }


# The range every service's date arithmetic supports, with room to spare (a DMP authorisation or an ApCV context
# adds years or hours to "now"; 9999 overflowed them, year 1 broke the DMP's dates: issue 16). Invented bounds.
CLOCK_MIN = datetime(1970, 1, 1, tzinfo=UTC)
CLOCK_MAX = datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC)
_OUT_OF_RANGE = (f"the simulated clock stays between {CLOCK_MIN:%Y-%m-%d} and {CLOCK_MAX:%Y-%m-%d} (the range every "
                 "service's date arithmetic supports)")


class SimClock:
    # How long `recent_now` may reuse the offset it read: changes made in this process are seen at once, those of
    # another worker process within this delay.
    RECENT_S = 0.5

    def __init__(self, store: Store) -> None:
        self._store = store
        self._recent: tuple[float, timedelta, datetime | None] | None = None  # (monotonic read time, offset, frozen)
        store.migrate("clock", _MIGRATIONS)

    def _row(self) -> tuple[timedelta, datetime | None]:
        row = self._store.execute("SELECT offset_us, frozen_at FROM clock WHERE id = 1").fetchone()
        if row is None:
            return timedelta(0), None
        frozen = datetime.fromisoformat(row["frozen_at"]) if row["frozen_at"] else None
        return timedelta(microseconds=row["offset_us"]), frozen

    def now(self) -> datetime:
        return self.state().now

    def recent_now(self) -> datetime:
        """The simulated time without a store read on every call, for checks on the hot path of a service (a PS
        assertion's validity window on each INSi request): the offset is re-read at most every RECENT_S seconds."""
        mono = time.monotonic()
        recent = self._recent
        if recent is None or mono - recent[0] > self.RECENT_S:
            offset, frozen = self._row()
            self._recent = recent = (mono, offset, frozen)
        _, offset, frozen = recent
        return frozen if frozen is not None else datetime.now(UTC) + offset

    def state(self) -> ClockState:
        real = datetime.now(UTC)
        offset, frozen = self._row()
        now = frozen if frozen is not None else real + offset
        return ClockState(now=now, real=real, offset=now - real, frozen=frozen is not None)

    def _write(self, offset: timedelta, frozen_at: datetime | None) -> None:
        self._recent = None
        self._store.execute(
            "INSERT INTO clock (id, offset_us, frozen_at, updated_at) VALUES (1, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET offset_us = excluded.offset_us, frozen_at = excluded.frozen_at,"
            " updated_at = excluded.updated_at",
            (
                int(offset / timedelta(microseconds=1)),
                frozen_at.isoformat() if frozen_at else None,
                iso(datetime.now(UTC)),
            ),
        )

    def set(self, instant: datetime, *, freeze: bool | None = None) -> ClockState:
        if not CLOCK_MIN <= instant <= CLOCK_MAX:
            raise ClockError(_OUT_OF_RANGE)
        state = self.state()
        keep_frozen = state.frozen if freeze is None else freeze
        self._write(instant - state.real, instant if keep_frozen else None)
        return self.state()

    def advance(self, delta: relativedelta | timedelta) -> ClockState:
        state = self.state()
        try:
            target = state.now + delta
        except (ValueError, OverflowError):
            raise ClockError(_OUT_OF_RANGE) from None
        return self.set(target)

    def freeze(self, frozen: bool) -> ClockState:
        return self.set(self.state().now, freeze=frozen)

    def reset(self) -> ClockState:
        self._recent = None
        self._store.execute("DELETE FROM clock")
        return self.state()

    def apply(self, instruction: dict) -> ClockState:
        """Apply a control-API instruction: {"advance": "P3M"} | {"set": "…"} | {"freeze": bool} | {"reset": true}."""
        if not isinstance(instruction, dict) or not instruction:
            raise ClockError('expected a JSON object such as {"advance": "P3M"} or {"set": "2027-01-01T00:00:00Z"}')
        known = {"advance", "set", "freeze", "reset"}
        unknown = set(instruction) - known
        if unknown:
            raise ClockError(f"unknown clock field(s) {sorted(unknown)}; expected one of {sorted(known)}")
        if instruction.get("reset"):
            return self.reset()
        if "advance" in instruction and "set" in instruction:
            raise ClockError("give either 'advance' or 'set', not both")
        freeze = instruction.get("freeze")
        if freeze is not None and not isinstance(freeze, bool):
            raise ClockError("'freeze' must be true or false")
        if "advance" in instruction:
            state = self.advance(parse_duration(_str(instruction["advance"], "advance")))
            return self.freeze(freeze) if freeze is not None else state
        if "set" in instruction:
            return self.set(parse_instant(_str(instruction["set"], "set")), freeze=freeze)
        return self.freeze(bool(freeze))


def _str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ClockError(f"'{field}' must be a string")
    return value
