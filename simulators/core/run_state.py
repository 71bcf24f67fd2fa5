"""Runs with their own business state, when several runs share one bench.

By default every run sees the simulator's one state (the personas' DMP, their INS, prescriptions…): a pipeline
that feeds a DMP changes what the others find in it, and one that moves the clock six months ahead moves it for
all. A run declared with its own state (`PUT /_bench/runs/{run}` with `"state": "own"`) gets a partition: a
separate SQLite database beside the simulator's, seeded like a fresh simulator by the service's own model on
first use, with its own simulated clock. Every exchange attributed to that run (run_attribution.py) and every
control request naming it (`?run=` or `X-Bench-Run`) reads and writes that partition; the run's reset
(`POST /_bench/reset {"run": …}`) puts it back to the seed, leaving the other runs' state as it is.

What stays shared, by design: the journal, fault rules and run bindings (kept in the simulator's own database:
they are how runs are told apart), and services that do not opt in (`ServiceSpec.run_state`): Pro Santé Connect,
whose users reach it from a browser that presents no certificate, and MSSanté, whose mailboxes are addresses
other parties write to.

The partition in use is a context variable, set by the HTTP front end around a service call and by the Flask app
around a request (services read `ctx.store`, `ctx.clock` and `ctx.models`, which follow it).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .clock import SimClock, iso
from .store import Store

ACTIVE_RUN: ContextVar[str | None] = ContextVar("segur_bench_active_run", default=None)

_MIGRATIONS = [
    "CREATE TABLE run_states (run TEXT PRIMARY KEY, since TEXT NOT NULL)",
]


@dataclass
class Partition:
    run: str
    store: Store
    clock: SimClock
    models: dict[str, Any] = field(default_factory=dict)  # the service's model objects built on this store


class RunStates:
    MAX_OPEN = 32  # partitions kept per process; older ones are dropped (and reopened if used again)

    def __init__(self, base: Store, enabled: bool) -> None:
        self.base = base
        self.enabled = enabled
        self._cache: tuple[int, frozenset[str]] | None = None
        self._open: OrderedDict[str, Partition] = OrderedDict()
        self._lock = threading.Lock()
        base.migrate("run_states", _MIGRATIONS)

    # -- which runs have their own state (in the simulator's database, seen by every worker process)
    def owned(self) -> frozenset[str]:
        generation = self.base.generation()
        cached = self._cache
        if cached is None or cached[0] != generation:
            rows = self.base.query("SELECT run FROM run_states")
            cached = self._cache = (generation, frozenset(r["run"] for r in rows))
        return cached[1]

    def own(self, run: str) -> None:
        if not self.enabled:
            raise ValueError("this simulator's state is shared by every run (it keeps no per-run state)")
        self.base.execute("INSERT OR IGNORE INTO run_states (run, since) VALUES (?, ?)", (run, iso(datetime.now(UTC))))
        self.base.bump()

    def share(self, run: str) -> bool:
        """The run uses the shared state again. Its partition file stays (another worker process may still hold it
        open): the same run id declaring its own state again finds it as it was, until the run's reset."""
        deleted = self.base.execute("DELETE FROM run_states WHERE run = ?", (run,)).rowcount
        self.base.bump()
        return bool(deleted)

    # -- the partition in use
    def active(self) -> Partition | None:
        run = ACTIVE_RUN.get()
        if run is None or not self.enabled or run not in self.owned():
            return None
        return self.partition(run)

    def partition(self, run: str) -> Partition:
        with self._lock:
            part = self._open.get(run)
            if part is not None:
                self._open.move_to_end(run)
                return part
            name = hashlib.sha256(run.encode()).hexdigest()[:24]
            store = Store(self.base.sidecar("-runs") / f"{name}.sqlite3")
            part = self._open[run] = Partition(run, store, SimClock(store))
            while len(self._open) > self.MAX_OPEN:
                self._open.popitem(last=False)  # not closed: a request may still hold it; freed with it
            return part


@contextlib.contextmanager
def using(run: str | None) -> Iterator[None]:
    """Run the block in `run`'s partition (when it has one; the shared state otherwise)."""
    token = ACTIVE_RUN.set(run)
    try:
        yield
    finally:
        ACTIVE_RUN.reset(token)
