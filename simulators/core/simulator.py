"""The factory that assembles a simulator: a service's `ServiceSpec` plus the shared core — SQLite store,
simulated clock, fault engine, journal, control API, and the ASGI front end that applies faults and records
exchanges.

Imports go one way: this module builds on `app` (Flask routes and control API) and `http_front` (ASGI), which
build on `service` (what a simulator is made of); none of them imports this one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask

from .app import create_flask
from .clock import SimClock
from .faults import FaultEngine
from .http_front import BenchASGI
from .journal import Journal
from .redact import journal_redactor
from .run_attribution import RunAttribution
from .run_state import RunStates
from .service import DEFAULT_TLS_NAMES, ServiceContext, ServiceSpec, SimConfig, pki_dir_of, refused_exchange
from .store import MEMORY, Store
from .tls import ServerTls


@dataclass
class Simulator:
    ctx: ServiceContext
    flask: Flask
    asgi: Any

    @property
    def name(self) -> str:
        return self.ctx.name


def build_simulator(spec: ServiceSpec, config: SimConfig | None = None) -> Simulator:
    config = config or SimConfig()
    path = (config.data_dir / f"{spec.name}.sqlite3") if config.data_dir else MEMORY
    store = Store(path)
    journal = Journal(store, spec.name, redact=journal_redactor(spec.redact, config.settings, spec.name))
    ctx = ServiceContext(
        spec=spec,
        config=config,
        base_store=store,
        base_clock=SimClock(store),
        faults=FaultEngine(store, spec.name, spec.outcomes, spec.outcome_effects),
        journal=journal,
        runs=RunAttribution(store, journal),
        states=RunStates(store, spec.run_state),
        logger=logging.getLogger(f"segur_bench.{spec.name}"),
    )
    if config.tls_port is not None:
        ctx.tls = ServerTls(pki_dir_of(config), spec.name, config.tls_names or list(DEFAULT_TLS_NAMES),
                            spec.client_cert_mode(config.settings),
                            on_refused=lambda refusal: ctx.journal.submit(refused_exchange(ctx, refusal)))
    flask_app = create_flask(ctx)
    return Simulator(ctx=ctx, flask=flask_app, asgi=BenchASGI(ctx, flask_app))


