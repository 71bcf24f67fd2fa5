"""Serving simulators with uvicorn: several worker processes, one event loop each, a plain and a TLS port.

The protocol subclass hands the connection's transport to the app (scope extension
`segur.transport`), which is what lets the fault engine drop a connection without answering —
plain ASGI has no way to say "close without a response" — uvicorn's request/response cycle
(`segur.cycle`), so a fast route's answer leaves in one write instead of two ASGI messages, and what
the TLS handshake established (`segur.tls`: version, SNI, client certificate) for the journal and the
services that check a client certificate.

`BenchServer` is uvicorn's server with a second listener: the same protocol behind TLS (tls.py). Worker
processes (`serve` with workers > 1) are started here rather than by uvicorn's supervisor, which knows
one SSL setting for all its sockets: the parent binds both ports, each worker serves both.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .http_front import CYCLE_KEY, TLS_KEY, TRANSPORT_KEY, BenchASGI, answer_bytes, lean_cycle_supported
from .read_limits import REQUEST_TIMEOUT, TOO_MANY_CONNECTIONS, ReadDeadline, ReadLimits
from .service import SimConfig
from .simulator import Simulator
from .tls import tls_info

log = logging.getLogger("segur_bench.server")

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
    _tls: dict | None = None
    _read: ReadDeadline | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._bench = bench = _bench_front(self.app)
        limits = bench.ctx.config.limits if bench is not None else ReadLimits()
        if len(self.connections) > limits.max_connections:
            log.warning("%d connections open: refusing one from %s (max_connections)", len(self.connections) - 1,
                        self.client)
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            return
        self._read = read = ReadDeadline(limits, self.loop, self._request_timed_out)
        read.paused = lambda: self.flow.read_paused
        # uvicorn arms its keep-alive timer only between requests: a connection that never sends a byte
        # would stay open for ever.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:  # asyncio calls connection_made once the handshake is complete
            self._tls = tls_info(ssl_object)
        # Sockets inherited by uvicorn's worker processes lose asyncio's TCP_NODELAY: without it,
        # Nagle's algorithm and delayed ACKs add ~40 ms to every exchange.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._read is not None:
            self._read.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._read is None:  # refused (max_connections): read nothing
            return
        super().data_received(data)
        if not self.transport.is_closing():
            self._read.after_read()  # arms the deadline only when the read ended inside a request

    def on_message_begin(self) -> None:
        super().on_message_begin()
        assert self._read is not None
        self._read.head_started()

    def _request_timed_out(self, phase: str) -> None:
        """The request missed its read deadline (read_limits.py): 408, then close."""
        log.info("request from %s not received in time (%s): 408 and close", self.client, phase)
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not getattr(cycle, "response_started", False):
            self.transport.write(REQUEST_TIMEOUT)
        if cycle is not None:
            cycle.keep_alive = False
        self.transport.close()

    def on_headers_complete(self) -> None:
        # An inline answer may arm the keep-alive timer while the parser still holds a pipelined request
        # (data_received only disarms it before feeding): disarm it for every request that starts.
        self._unset_keepalive_if_required()
        self._read.body_started()  # type: ignore[union-attr]
        if self._start_inline():
            return
        super().on_headers_complete()
        # The transport (to drop a connection without answering) and, when it has the attributes the front end
        # relies on, uvicorn's request/response cycle (to write a whole answer in one go, without the ASGI send
        # round trip) ride in the scope's extensions.
        extensions = self.scope.setdefault("extensions", {})
        extensions[TRANSPORT_KEY] = self.transport
        if self._tls is not None:
            extensions[TLS_KEY] = self._tls
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and lean_cycle_supported(cycle):
            extensions[CYCLE_KEY] = cycle

    def on_body(self, body: bytes) -> None:
        self._read.body_received(len(body))  # type: ignore[union-attr]
        inline = self._inline
        if inline is not None and inline is self.cycle:
            inline.body.append(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._read.complete()  # type: ignore[union-attr]
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
        if self._tls is not None:
            scope["extensions"] = {TLS_KEY: self._tls}
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
        timeout_keep_alive=config.limits.idle_timeout_s,
        timeout_graceful_shutdown=3,  # hung requests must not hold Ctrl-C
        backlog=2048,
    )


def uvicorn_config(app: Any, config: SimConfig) -> uvicorn.Config:
    return uvicorn.Config(app, **server_options(config))


TLS_HANDSHAKE_TIMEOUT_S = 10.0


class BenchServer(uvicorn.Server):
    """uvicorn's server, serving the plain socket(s) it is given and, behind TLS, the simulator's TLS socket.

    `run(sockets=[plain, tls])`: the TLS context is built in the serving process (an SSLContext does not cross
    processes), after the app's start-up, from the simulator's `ServerTls`."""

    def __init__(self, config: uvicorn.Config, sim: Simulator | None = None, tls_sockets: int = 0) -> None:
        super().__init__(config)
        self.sim = sim
        self.tls_sockets = tls_sockets

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        plain = sockets[:len(sockets) - self.tls_sockets] if sockets is not None else None
        await super().startup(sockets=plain)
        if not self.tls_sockets or sockets is None or not self.started:
            return
        self.started = False  # until the TLS listener serves too
        sim = self.sim
        if sim is None or sim.ctx.tls is None:
            raise RuntimeError("a TLS socket was given to a simulator without TLS settings")
        context = sim.ctx.tls.context()
        loop = asyncio.get_running_loop()
        config = self.config

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(config=config, server_state=self.server_state,  # type: ignore[call-arg]
                                              app_state=self.lifespan.state, _loop=_loop)

        for sock in sockets[len(sockets) - self.tls_sockets:]:
            self.servers.append(await loop.create_server(create_protocol, sock=sock, ssl=context,
                                                         backlog=config.backlog,
                                                         ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S))
        self.started = True


def bind(host: str, port: int) -> socket.socket:
    """A listening socket as uvicorn binds it (SO_REUSEADDR, inheritable by worker processes)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def simulator_from_env() -> Simulator:
    """Rebuild the simulator a worker process serves from the environment `serve` set."""
    from simulators.registry import load_spec

    from .simulator import build_simulator

    data = json.loads(os.environ[ENV_CONFIG])
    return build_simulator(load_spec(data["service"]), SimConfig.from_json(data["config"]))


def serve(service: str, config: SimConfig) -> None:
    """Run one simulator in the foreground until interrupted: its HTTP port, and its TLS port when it has one."""
    if config.workers > 1 and config.data_dir is None:
        raise ValueError("several workers need a data directory: ephemeral state is not shared by processes")
    sockets = [bind(config.host, config.port)]
    if config.tls_port is not None:
        sockets.append(bind(config.host, config.tls_port))
    os.environ[ENV_CONFIG] = json.dumps({"service": service, "config": config.to_json()})
    if config.workers == 1:
        _serve_worker(sockets, len(sockets) - 1)
        return
    _Workers(config.workers, sockets, len(sockets) - 1).run()


def _serve_worker(sockets: list[socket.socket], tls_sockets: int) -> None:
    """One serving process: build the simulator, serve its sockets until SIGINT/SIGTERM."""
    sim = simulator_from_env()
    server = BenchServer(uvicorn_config(sim.asgi, sim.ctx.config), sim, tls_sockets)
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(3)  # start-up failed (logged): the supervisor reports it


def _worker_main(sockets: list[socket.socket], tls_sockets: int, parent: int) -> None:
    if sys.platform == "linux":  # die with the parent, even when it is killed with SIGKILL
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        return
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _serve_worker(sockets, tls_sockets)


class _Workers:
    """Worker processes sharing the bound sockets; a worker that dies is replaced, SIGINT/SIGTERM stop them all.

    uvicorn's own supervisor does the same for one socket set, but builds uvicorn's plain Server in each worker,
    which gives every socket the same SSL setting."""

    RESTART_WINDOW_S = 30.0
    MAX_QUICK_DEATHS = 5

    def __init__(self, count: int, sockets: list[socket.socket], tls_sockets: int) -> None:
        self.count = count
        self.sockets = sockets
        self.tls_sockets = tls_sockets
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[Any] = []
        self.stopping = threading.Event()
        self.deaths: list[float] = []

    def _spawn(self) -> Any:
        proc = self.context.Process(target=_worker_main, args=(self.sockets, self.tls_sockets, os.getpid()),
                                    name="segur-bench-worker", daemon=False)
        proc.start()
        return proc

    def run(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        self.processes = [self._spawn() for _ in range(self.count)]
        code = 0
        while not self.stopping.wait(0.5):
            for i, proc in enumerate(self.processes):
                if proc.is_alive():
                    continue
                now = time.monotonic()
                self.deaths = [t for t in self.deaths if now - t < self.RESTART_WINDOW_S] + [now]
                if len(self.deaths) > self.MAX_QUICK_DEATHS or proc.exitcode == 3:
                    log.error("worker %s exited with code %s; stopping", proc.pid, proc.exitcode)
                    code = 1
                    self.stopping.set()
                    break
                log.warning("worker %s exited with code %s; starting another", proc.pid, proc.exitcode)
                self.processes[i] = self._spawn()
        for proc in self.processes:
            if proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for proc in self.processes:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        for sock in self.sockets:
            sock.close()
        if code:
            sys.exit(code)


class ThreadedServer:
    """A simulator served on a background thread (tests, benchmarks, embedding in a pytest plugin).

    With `tls=True` (the simulator built with a `tls_port`), a second listener serves TLS: `tls_url`."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0, *, tls: bool | None = None) -> None:
        self.sim = sim
        self.sock = bind(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        sim.ctx.config.host, sim.ctx.config.port = self.host, self.port
        self.tls_sock: socket.socket | None = None
        self.tls_port: int | None = None
        if tls if tls is not None else sim.ctx.tls is not None:
            if sim.ctx.tls is None:
                raise ValueError("tls=True needs a simulator built with a tls_port (SimConfig.tls_port=0)")
            self.tls_sock = bind(host, sim.ctx.config.tls_port or 0)
            self.tls_port = self.tls_sock.getsockname()[1]
            sim.ctx.config.tls_port = self.tls_port
        self.server = BenchServer(uvicorn_config(sim.asgi, sim.ctx.config), sim, 1 if self.tls_sock else 0)
        self.thread = threading.Thread(target=self._run, name=f"sim-{sim.name}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        if self.tls_port is None:
            raise ValueError(f"simulator {self.sim.name} has no TLS port")
        return f"https://{self.host}:{self.tls_port}"

    def _run(self) -> None:
        # uvicorn exits when start-up fails; start() reports it from this thread's death.
        with contextlib.suppress(SystemExit):
            self.server.run(sockets=[self.sock, *([self.tls_sock] if self.tls_sock else [])])

    def start(self) -> ThreadedServer:
        self.thread.start()
        for _ in range(1000):
            if self.server.started:
                return self
            if not self.thread.is_alive():
                raise RuntimeError(f"simulator {self.sim.name} failed to start")
            threading.Event().wait(0.01)
        raise RuntimeError(f"simulator {self.sim.name} did not start within 10 s")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
        if self.tls_sock is not None:
            self.tls_sock.close()


@contextlib.contextmanager
def serve_in_thread(sim: Simulator, host: str = "127.0.0.1", port: int = 0, *,
                    tls: bool | None = None) -> Iterator[ThreadedServer]:
    server = ThreadedServer(sim, host, port, tls=tls).start()
    try:
        yield server
    finally:
        server.stop()
