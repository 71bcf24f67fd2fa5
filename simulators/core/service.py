"""What a simulator is made of.

A service declares a `ServiceSpec` (name, default port, its Flask routes, its business outcomes,
how to name an operation and what request attributes rules may test); a running simulator's parts
are its `ServiceContext`. `simulator.build_simulator` assembles them with the Flask app and the
ASGI front end (this module imports neither: they build on it). No module-level state: tests build
many isolated simulators side by side.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask

from .clock import SimClock
from .faults import FaultEngine, RequestFacts
from .journal import Exchange, Journal
from .read_limits import ReadLimits
from .run_attribution import RunAttribution
from .run_state import RunStates
from .store import Store
from .tls import ServerTls

DEFAULT_MAX_REQUEST_BYTES = 20 * 1024 * 1024


@dataclass
class SimConfig:
    """Run-time settings of one simulator; every field has a sensible default."""

    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path | None = None  # None: ephemeral state (a temporary store, deleted on exit)
    workers: int = 1
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    incidents_dir: Path | None = None
    public_url: str | None = None  # how clients reach it (e.g. through the network proxy)
    settings: dict[str, Any] = field(default_factory=dict)  # service-specific switches
    tls_port: int | None = None  # the TLS listener (None: plain HTTP only; 0: any free port, in tests)
    pki_dir: Path | None = None  # the bench PKI (default: <data_dir>/pki, or a temporary one)
    tls_names: list[str] = field(default_factory=list)  # host names and addresses the server certificate covers
    control_token: str | None = None  # when set, the control API (/_bench/*) wants it as a bearer token
    control_origins: list[str] = field(default_factory=list)  # browser origins allowed to call the control API
    limits: ReadLimits = field(default_factory=ReadLimits)  # slow clients: read deadlines, connection cap

    def to_json(self) -> dict:
        return {
            "host": self.host, "port": self.port,
            "data_dir": str(self.data_dir) if self.data_dir else None,
            "workers": self.workers, "max_request_bytes": self.max_request_bytes,
            "incidents_dir": str(self.incidents_dir) if self.incidents_dir else None,
            "public_url": self.public_url, "settings": self.settings,
            "tls_port": self.tls_port, "pki_dir": str(self.pki_dir) if self.pki_dir else None,
            "tls_names": self.tls_names, "control_token": self.control_token,
            "control_origins": self.control_origins, "limits": dataclasses.asdict(self.limits),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SimConfig:
        d = dict(d)
        for key in ("data_dir", "incidents_dir", "pki_dir"):
            d[key] = Path(d[key]) if d.get(key) else None
        d["limits"] = ReadLimits(**d.get("limits", {}))
        return cls(**d)

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


@dataclass
class ServiceContext:
    """Everything a service's handlers may use; passed to its hooks."""

    spec: ServiceSpec
    config: SimConfig
    base_store: Store  # the simulator's database: journal, fault rules, run bindings, and the shared state
    base_clock: SimClock
    faults: FaultEngine
    journal: Journal
    runs: RunAttribution  # which run an exchange belongs to (header, bound client certificate, current run)
    states: RunStates  # runs with their own business state (run_state.py)
    logger: logging.Logger
    extras: dict[str, Any] = field(default_factory=dict)  # process-wide objects (listeners, ports, validators)
    base_models: dict[str, Any] = field(default_factory=dict)  # the service's model objects on the shared state
    tls: ServerTls | None = None  # the TLS port's settings, when the simulator has one

    # The business state a handler works on: the active run's own partition when it has one, else the shared one.
    @property
    def store(self) -> Store:
        part = self.states.active()
        return part.store if part is not None else self.base_store

    @property
    def clock(self) -> SimClock:
        part = self.states.active()
        return part.clock if part is not None else self.base_clock

    @property
    def models(self) -> dict[str, Any]:
        """Where a service keeps its model objects (built on `store`): one set per state partition."""
        part = self.states.active()
        return part.models if part is not None else self.base_models

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class FastRequest:
    """An HTTP request handed to a fast route: already read, its SOAP envelope already parsed."""

    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str]
    body: bytes
    outcome: str | None  # business outcome chosen by the fault engine
    envelope: Any = None
    envelope_error: Exception | None = None
    tls: Mapping[str, Any] | None = None  # the connection's TLS facts (tls.tls_info), None over plain HTTP

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass
class FastResponse:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


FastHandler = Callable[["ServiceContext", FastRequest], FastResponse]


@dataclass
class ServiceSpec:
    name: str
    title: str  # French, shown in tables and reports
    default_port: int
    register: Callable[[Flask, ServiceContext], None]
    outcomes: Mapping[str, str] = field(default_factory=dict)  # name -> French description
    # Outcomes carried out by a core effect (e.g. {"on.sans-reponse": {"type": "hang", "max_s": 120}}).
    outcome_effects: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    error_format: str = "problem"  # "problem" (RFC 9457 JSON) or "soap" (SOAP 1.2 fault)
    operation_of: Callable[[RequestFacts], str | None] | None = None
    attrs_of: Callable[[RequestFacts], Mapping[str, str]] | None = None
    state_get: Callable[[ServiceContext], dict] | None = None
    state_post: Callable[[ServiceContext, Any], dict] | None = None
    reset: Callable[[ServiceContext], None] | None = None
    description: str = ""
    health_path: str = "/_bench/health"
    # Run in each worker process's event loop at start and stop: non-HTTP listeners (SMTP, IMAP) are
    # started here, with SO_REUSEPORT so every worker shares the port, like the HTTP socket.
    # Hot endpoints served straight on the event loop, without the WSGI thread hop and Flask: for short,
    # CPU-bound handlers (a SOAP search over SQLite and the personas). Keyed by (METHOD, path).
    fast_routes: Mapping[tuple[str, str], FastHandler] = field(default_factory=dict)
    startup: Callable[[ServiceContext], Awaitable[None]] | None = None
    shutdown: Callable[[ServiceContext], Awaitable[None]] | None = None
    # Whether the TLS port asks for a client certificate when the `client_cert` setting is not given:
    # "required" | "optional" | "off", or a function of the settings (INSi: required in mutual-TLS mode).
    client_cert: str | Callable[[Mapping[str, Any]], str] = "off"
    # Whether a run may have its own business state (run_state.py): the service's models must then reach their
    # state only through ctx.store, ctx.clock and ctx.models.
    run_state: bool = False
    # Masks the secrets this service's exchanges carry (client secrets, live tokens) in a copy of each exchange
    # before the journal records it: entries leave the machine in proof bundles (redact.py; setting
    # journal_secrets = "clair" keeps them, for debugging).
    redact: Callable[[Exchange], Exchange] | None = None

    def client_cert_mode(self, settings: Mapping[str, Any]) -> str:
        from .tls import check_mode

        mode = settings.get("client_cert")
        if mode is None:
            mode = self.client_cert(settings) if callable(self.client_cert) else self.client_cert
        return check_mode(mode, self.name)


DEFAULT_TLS_NAMES = ("localhost", "127.0.0.1", "::1")


def pki_dir_of(config: SimConfig) -> Path:
    """The PKI a simulator uses: the configured one, `<data_dir>/pki`, or a temporary one (ephemeral state)."""
    if config.pki_dir is not None:
        return config.pki_dir
    if config.data_dir is not None:
        return config.data_dir / "pki"
    global _EPHEMERAL_PKI
    if _EPHEMERAL_PKI is None or _EPHEMERAL_PKI[0] != os.getpid():
        # One per process: its root key takes a second to make, and ephemeral simulators (tests) are many.
        path = Path(tempfile.mkdtemp(prefix="segur-bench-pki-"))
        atexit.register(shutil.rmtree, path, True)
        _EPHEMERAL_PKI = (os.getpid(), path)
    config.pki_dir = _EPHEMERAL_PKI[1]
    return config.pki_dir


_EPHEMERAL_PKI: tuple[int, Path] | None = None


def refused_exchange(ctx: ServiceContext, refusal: Any) -> Any:
    """The journal entry of a TLS handshake the simulator refused (it never reached HTTP)."""
    from .journal import Exchange, new_exchange_id

    return Exchange(id=new_exchange_id(), service=ctx.name, protocol="tls", operation="TLS poignée de main",
                    received_at=refusal.at, responded_at=refusal.at,
                    run=ctx.runs.run_of(tls={"client_cert": refusal.client_cert}),
                    error=f"poignée de main TLS refusée ({refusal.alert}) : {refusal.reason}",
                    tls={"version": None, "cipher": None, "sni": refusal.sni, "client_cert": refusal.client_cert,
                         "alert": refusal.alert})
