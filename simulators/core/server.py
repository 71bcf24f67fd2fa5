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
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .http_front import CYCLE_KEY, TRANSPORT_KEY, BenchASGI, answer_bytes, lean_cycle_supported
from .service import SimConfig, Simulator

ENV_CONFIG = "SEGUR_BENCH_SIM"


class TransportAwareProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the transport in the scope and an inline path for fast routes.

    Inline path: a request to a fast route (e.g. INSi's POST /lps) while no fault rule is stored is
    answered from the parser's callbacks — read, handled, journaled, written — without the ASGI task,
    scope and message round trips, which cost more than the INSi search itself. Everything else
    (control API, Flask routes, any request while a rule exists, chunked bodies, pipelined requests
    behind a pending one) goes through uvicorn and the ASGI front end unchanged.
    """

    _bench: BenchASGI | None = None
    _inline: _InlineCycle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Sockets inherited by uvicorn's worker processes lose asyncio's TCP_NODELAY: without it,
        # Nagle's algorithm and delayed ACKs add ~40 ms to every exchange.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._bench = _bench_front(self.app)

    def on_headers_complete(self) -> None:
        # An inline answer may arm the keep-alive timer while the parser still holds a pipelined request
        # (data_received only disarms it before feeding): disarm it for every request that starts.
        self._unset_keepalive_if_required()
        if self._start_inline():
            return
        super().on_headers_complete()
        # The transport (to drop a connection without answering) and, when it has the attributes the front end
        # relies on, uvicorn's request/response cycle (to write a whole answer in one go, without the ASGI send
        # round trip) ride in the scope's extensions.
        extensions = self.scope.setdefault("extensions", {})
        extensions[TRANSPORT_KEY] = self.transport
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and lean_cycle_supported(cycle):
            extensions[CYCLE_KEY] = cycle

    def on_body(self, body: bytes) -> None:
        inline = self._inline
        if inline is not None and inline is self.cycle:
            inline.body.append(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        inline = self._inline
        if inline is None or inline is not self.cycle:
            super().on_message_complete()
            return
        self._inline = None  # the parser may now start the next (pipelined) request; self.cycle stays
        bench = self._bench
        assert bench is not None
        try:
            status, headers, body = bench.serve_inline(inline.scope, b"".join(inline.body), inline.received_at)
            answer = self._answer_bytes(inline, status, headers, body)
        except Exception:  # serve_inline answers the handler's own errors; this is a bug of ours
            bench.ctx.logger.exception("inline exchange failed")
            answer = self._answer_bytes(inline, 500, [("content-type", "text/plain; charset=utf-8"),
                                                      ("content-length", str(len(_INTERNAL_ERROR)))],
                                        _INTERNAL_ERROR)
        self._respond_inline(inline, answer)

    def _start_inline(self) -> bool:
        """Take this request on the inline path if it qualifies (see the class docstring)."""
        bench = self._bench
        if bench is None or self.expect_100_continue or self.limit_concurrency is not None:
            return False
        if self.cycle is not None and not self.cycle.response_complete:
            return False  # pipelined behind an unanswered request: uvicorn queues it, in order
        parser = self.parser
        if parser.should_upgrade():
            return False
        url = self.url
        if b"?" in url or b"%" in url or not url.startswith(b"/"):
            return False
        try:
            method, path = parser.get_method().decode("ascii"), url.decode("ascii")
        except UnicodeDecodeError:
            return False
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding" or name.startswith(b"x-forwarded"):
                return False  # chunked bodies, and what uvicorn's proxy-headers middleware would rewrite
        if length is None or not length.isdigit() or int(length) > bench.ctx.config.max_request_bytes:
            return False
        if not bench.inline_route(method, path):
            return False
        http_version = parser.get_http_version()
        scope = {
            "type": "http", "http_version": http_version, "method": method, "path": path, "raw_path": url,
            "query_string": b"", "root_path": "", "headers": self.headers, "server": self.server,
            "client": self.client, "scheme": self.scheme,
        }
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        self.cycle = self._inline = _InlineCycle(scope, keep_alive)  # type: ignore[assignment]
        return True

    def _answer_bytes(self, inline: _InlineCycle, status: int, headers: list[tuple[str, str]], body: bytes) -> bytes:
        answer, inline.keep_alive = answer_bytes(status, self.server_state.default_headers, headers, body,
                                                 inline.keep_alive)
        return answer

    def _respond_inline(self, inline: _InlineCycle, answer: bytes) -> None:
        inline.response_complete = True
        if inline.disconnected or self.transport.is_closing():
            return
        self.transport.write(answer)
        if not inline.keep_alive:
            self.transport.close()
            return
        self.on_response_complete()  # uvicorn's bookkeeping: next pipelined request, or the keep-alive timer


_INTERNAL_ERROR = b"internal error of the simulator; see its log"


class _NoEvent:
    """uvicorn sets its cycle's message_event when the connection is lost; an inline cycle has nobody to wake."""

    def set(self) -> None:
        pass


class _InlineCycle:
    """Stands as the connection's current cycle while an inline request is read and answered: uvicorn's
    protocol looks at `response_complete` (pipelining), `keep_alive` (shutdown) and `disconnected`."""

    __slots__ = ("body", "disconnected", "keep_alive", "received_at", "response_complete", "scope")
    message_event = _NoEvent()

    def __init__(self, scope: dict[str, Any], keep_alive: bool) -> None:
        self.scope = scope
        self.keep_alive = keep_alive
        self.body: list[bytes] = []
        self.received_at = time.time()
        self.response_complete = False
        self.disconnected = False


def _bench_front(app: Any) -> BenchASGI | None:
    """Our ASGI front end under uvicorn's wrappers (proxy headers…), if that is what is served."""
    for _ in range(8):
        if isinstance(app, BenchASGI):
            return app
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


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
