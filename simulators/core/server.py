"""Serving simulators with uvicorn: several worker processes, one event loop each.

The protocol subclass hands the connection's transport to the app (scope extension
`segur.transport`), which is what lets the fault engine drop a connection without answering —
plain ASGI has no way to say "close without a response" — and uvicorn's request/response cycle
(`segur.cycle`), so a fast route's answer leaves in one write instead of two ASGI messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .http_front import CYCLE_KEY, TRANSPORT_KEY, lean_cycle_supported
from .service import SimConfig, Simulator

ENV_CONFIG = "SEGUR_BENCH_SIM"


class TransportAwareProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Sockets inherited by uvicorn's worker processes lose asyncio's TCP_NODELAY: without it,
        # Nagle's algorithm and delayed ACKs add ~40 ms to every exchange.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # The transport (to drop a connection without answering) and, when it has the attributes the front end
        # relies on, uvicorn's request/response cycle (to write a whole answer in one go, without the ASGI send
        # round trip) ride in the scope's extensions.
        extensions = self.scope.setdefault("extensions", {})
        extensions[TRANSPORT_KEY] = self.transport
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and lean_cycle_supported(cycle):
            extensions[CYCLE_KEY] = cycle


def server_options(config: SimConfig) -> dict[str, Any]:
    return dict(
        host=config.host,
        port=config.port,
        http=TransportAwareProtocol,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=3,  # hung requests must not hold Ctrl-C
        backlog=2048,
    )


def uvicorn_config(app: Any, config: SimConfig) -> uvicorn.Config:
    return uvicorn.Config(app, **server_options(config))


def app_from_env() -> Any:
    """uvicorn factory for worker processes: rebuild the simulator from the environment."""
    from simulators.registry import load_spec

    from .service import build_simulator

    data = json.loads(os.environ[ENV_CONFIG])
    return build_simulator(load_spec(data["service"]), SimConfig.from_json(data["config"])).asgi


def serve(service: str, config: SimConfig) -> None:
    """Run one simulator in the foreground until interrupted."""
    if config.workers > 1 and config.data_dir is None:
        raise ValueError("several workers need a data directory: ephemeral state is not shared by processes")
    if config.workers > 1:
        os.environ[ENV_CONFIG] = json.dumps({"service": service, "config": config.to_json()})
        uvicorn.run("simulators.core.server:app_from_env", factory=True, workers=config.workers,
                    **server_options(config))
    else:
        from simulators.registry import load_spec

        from .service import build_simulator

        sim = build_simulator(load_spec(service), config)
        uvicorn.Server(uvicorn_config(sim.asgi, config)).run()


class ThreadedServer:
    """A simulator served on a background thread (tests, benchmarks, embedding in a pytest plugin)."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        sim.ctx.config.host, sim.ctx.config.port = self.host, self.port
        self.server = uvicorn.Server(uvicorn_config(sim.asgi, sim.ctx.config))
        self.thread = threading.Thread(target=self._run, name=f"sim-{sim.name}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        # uvicorn exits when start-up fails; start() reports it from this thread's death.
        with contextlib.suppress(SystemExit):
            self.server.run(sockets=[self.sock])

    def start(self) -> ThreadedServer:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            if not self.thread.is_alive():
                raise RuntimeError(f"simulator {self.sim.name} failed to start")
            threading.Event().wait(0.01)
        raise RuntimeError(f"simulator {self.sim.name} did not start within 5 s")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@contextlib.contextmanager
def serve_in_thread(sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> Iterator[ThreadedServer]:
    server = ThreadedServer(sim, host, port).start()
    try:
        yield server
    finally:
        server.stop()
