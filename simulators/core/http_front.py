"""ASGI front end of every HTTP simulator: size limit, fault effects, journal, then the Flask app.

Why ASGI in front of a WSGI app: injected latency, hangs and slow dribbles are awaited on the event
loop and hold no worker thread, so a hundred 3-second calls run side by side; only the service's own
work runs on the thread pool that a2wsgi manages.
"""

from __future__ import annotations

import asyncio
import gc
import http
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from a2wsgi import WSGIMiddleware
from werkzeug.exceptions import HTTPException

from . import control_guard
from .app import OUTCOME_HEADER, RUN_HEADER_INTERNAL, TLS_HEADER
from .faults import RUN_HEADER, Decision, Drop, Hang, HttpStatus, RequestFacts, SoapFault
from .journal import Exchange, Message, new_exchange_id
from .problems import PROBLEM_CONTENT_TYPE, error_response, internal_error, problem_bytes
from .run_state import using
from .service import FastRequest, FastResponse
from .soap import SOAP_CONTENT_TYPE, SoapError, action_from_content_type, build_fault, parse_envelope
from .xmlsafe import parse_xml

if TYPE_CHECKING:
    from flask import Flask

    from .service import ServiceContext

TRANSPORT_KEY = "segur.transport"
TLS_KEY = "segur.tls"
SWITCH_INTERVAL_S = 0.001
_OUTCOME_HEADER_B = OUTCOME_HEADER.lower().encode("latin-1")
_TLS_HEADER_B = TLS_HEADER.lower().encode("latin-1")
_RUN_HEADER_B = RUN_HEADER_INTERNAL.lower().encode("latin-1")
_INTERNAL_HEADERS = (_OUTCOME_HEADER_B, _TLS_HEADER_B, _RUN_HEADER_B)

Finish = Callable[[], Awaitable[None]]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The client left (or was timed out) before its request body was complete."""


def short_action(action: str) -> str:
    """`urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite` → `rechercherInsAvecTraitsIdentite`."""
    action = action.strip().strip('"')
    for sep in ("/", ":"):
        if sep in action:
            action = action.rsplit(sep, 1)[1] or action
    return action


def _is_soap(content_type: str) -> bool:
    ct = content_type.lower()
    return "soap+xml" in ct or "xop+xml" in ct or "text/xml" in ct


class BenchASGI:
    def __init__(self, ctx: ServiceContext, flask_app: Flask) -> None:
        self.ctx = ctx
        self.flask = flask_app
        threads = int(ctx.config.settings.get("threads", 16))
        self.wsgi = WSGIMiddleware(flask_app, workers=threads)
        self.journal = ctx.journal

    # ------------------------------------------------------------------------------------ entry point
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        received_at = time.time()
        # Only our front end may choose a business outcome or state what TLS established.
        if any(k.lower() in _INTERNAL_HEADERS for k, _ in scope["headers"]):
            scope = dict(scope, headers=[(k, v) for k, v in scope["headers"] if k.lower() not in _INTERNAL_HEADERS])
        control = scope["path"].startswith("/_bench")
        if control:
            refused = control_guard.refusal(scope, self.ctx.config)
            if refused is not None:
                status, detail, extra = refused
                await _send_simple(send, status, PROBLEM_CONTENT_TYPE, problem_bytes(status, detail), close=True,
                                   extra=extra)
                return
        try:
            body = await self._read_body(scope, receive)
        except ClientGone:
            return
        except BodyTooLarge:
            fmt = "problem" if control else self.ctx.spec.error_format
            limit = self.ctx.config.max_request_bytes
            status, ctype, err = error_response(fmt, 413, f"request body larger than {limit} bytes")
            if not control:
                ex = self._exchange(scope, b"", received_at, operation="(trop volumineux)")
                ex.status, ex.responded_at = status, time.time()
                ex.response = Message.of([("content-type", ctype)], err)
                ex.error = f"corps de requête au-delà de {limit} octets"
                self._record(ex)
            await _send_simple(send, status, ctype, err, close=True)
            return
        if control:
            await self.wsgi(*_buffered(scope, body, receive), send)
            return
        await self._exchange_with_faults(scope, receive, send, body, received_at)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        spec = self.ctx.spec
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The event loop shares the GIL with the WSGI threads: a 1 ms switch interval (default 5 ms)
                # lets a latency timer that fires while Flask work runs resume within about a millisecond.
                sys.setswitchinterval(SWITCH_INTERVAL_S)
                try:
                    if spec.startup:
                        await spec.startup(self.ctx)
                    # What start-up built (personas, parsers, Flask) lives as long as the process: keep it out of
                    # the cyclic GC's full collections, whose pauses would show as latency-injection error.
                    gc.collect()
                    gc.freeze()
                except Exception as exc:
                    self.ctx.logger.exception("start-up of %s failed", self.ctx.name)
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if spec.shutdown:
                        await spec.shutdown(self.ctx)
                finally:
                    self.journal.close()  # what was answered is in its segment, for the next journal read
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.ctx.config.max_request_bytes
        for name, value in scope["headers"]:
            if name.lower() == b"content-length" and value.isdigit() and int(value) > limit:
                raise BodyTooLarge
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":  # a partial body is not a request: serve nothing of it
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    # ------------------------------------------------------------------------------------ exchanges
    def _facts(self, scope: Scope, body: bytes) -> tuple[RequestFacts, str | None]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        path = scope["path"]
        raw_query = scope.get("query_string", b"")
        query = dict(parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True)) if raw_query else {}
        facts = RequestFacts(service=self.ctx.name, operation="", method=method, path=path, headers=headers,
                             query=query, body=body, run=self._run(headers.get(RUN_HEADER), scope))
        if self.ctx.spec.attrs_of:
            facts.attrs_loader = lambda: self.ctx.spec.attrs_of(facts)
        correlation = headers.get("x-request-id") or headers.get("x-correlation-id")
        operation = self.ctx.spec.operation_of(facts) if self.ctx.spec.operation_of else None
        ctype = headers.get("content-type", "")
        if not operation and _is_soap(ctype):
            action = _action_of(ctype) or headers.get("soapaction", "").strip('"') or None
            if "soap+xml" in ctype.lower() and body:
                try:
                    env = parse_envelope(body, max_bytes=self.ctx.config.max_request_bytes)
                    facts.envelope = env
                    action = action or env.action
                    correlation = correlation or env.message_id
                except (SoapError, ValueError) as exc:
                    facts.envelope_error = exc  # the service answers the malformed envelope with its own fault
            if action:
                operation = short_action(action)
        if not operation:
            operation = self._route(method, path)
        facts.operation = operation
        return facts, correlation

    def _run(self, header: str | None, scope: Scope) -> str | None:
        """The run an exchange belongs to: named by its client (X-Bench-Run), else bound to its TLS client
        certificate, else the service's current run (run_attribution.py)."""
        return self.ctx.runs.run_of(header, scope.get("extensions", {}).get(TLS_KEY) if "extensions" in scope
                                    else None)

    def _route(self, method: str, path: str) -> str:
        adapter = self.flask.url_map.bind("localhost")
        try:
            rule, _ = adapter.match(path, method, return_rule=True)
            return f"{method} {rule.rule}"
        except HTTPException:
            return f"{method} {path}"

    def _exchange(self, scope: Scope, body: bytes, received_at: float, operation: str) -> Exchange:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        host = next((v for k, v in headers if k.lower() == "host"), None)
        if host is None and scope.get("server"):
            host = f"{scope['server'][0]}:{scope['server'][1]}"
        url = f"{scope.get('scheme', 'http')}://{host or 'localhost'}{scope.get('root_path', '')}{scope['path']}"
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        client = scope.get("client")
        return Exchange(
            id=new_exchange_id(),
            service=self.ctx.name,
            protocol="http",
            operation=operation,
            received_at=received_at,
            method=scope["method"],
            url=url,
            http_version=scope.get("http_version", "1.1"),
            request=Message.of(headers, body),
            run=self._run(next((v for k, v in headers if k.lower() == RUN_HEADER), None), scope),
            client=f"{client[0]}:{client[1]}" if client else None,
            tls=scope.get("extensions", {}).get(TLS_KEY) if "extensions" in scope else None,
        )

    async def _exchange_with_faults(self, scope: Scope, receive: Receive, send: Send, body: bytes,
                                    received_at: float) -> None:
        arrived = time.perf_counter()
        facts, correlation = self._facts(scope, body)
        # Only SQLite reads run on the event loop. Writes go to threads: when the other worker process holds
        # the write lock, SQLite's busy handler sleeps (1, 2, 5… ms), which would delay every pending timer.
        selected = self.ctx.faults.select(facts)
        decision: Decision = await asyncio.to_thread(self.ctx.faults.claim, selected) if selected else Decision()
        ex = self._exchange(scope, body, received_at, facts.operation)
        ex.correlation = correlation
        ex.faults = [a.as_dict() for a in decision.applied]
        ex.outcome = decision.outcome
        recorded = False

        async def finish() -> None:
            # Called just before the last bytes leave: a client that reads the journal as soon as it has
            # its answer must find the exchange there.
            nonlocal recorded
            if not recorded:
                recorded = True
                if ex.responded_at is None and ex.status is not None:
                    ex.responded_at = time.time()
                self._record(ex)

        try:
            if decision.latency_s > 0:
                # Counted from the request's arrival, so the time spent deciding is part of the delay.
                await asyncio.sleep(max(0.0, arrived + decision.latency_s - time.perf_counter()))
                ex.waited_ms = round((time.perf_counter() - arrived) * 1000.0, 3)
            terminal = decision.terminal
            if isinstance(terminal, HttpStatus):
                await self._answer_status(terminal, ex, send, finish)
            elif isinstance(terminal, SoapFault):
                await self._answer_soap_fault(terminal, ex, send, facts, finish)
            elif isinstance(terminal, Drop):
                ex.error = "connexion coupée par le simulateur (incident injecté)"
                await _drop(scope)
            elif isinstance(terminal, Hang):
                await self._hang(terminal, ex, scope, receive)
            elif (facts.method, facts.path) in self.ctx.spec.fast_routes:
                await self._call_fast(facts, decision, ex, send, finish, _lean_cycle(scope))
            else:
                await self._call_service(scope, receive, send, body, decision, ex, finish)
        finally:
            await finish()

    async def _answer_status(self, eff: HttpStatus, ex: Exchange, send: Send,
                             finish: Finish) -> None:
        if eff.body is not None:
            body, ctype = eff.body.encode("utf-8"), eff.content_type or "text/plain; charset=utf-8"
        else:
            body = problem_bytes(eff.status, f"réponse {eff.status} injectée par le banc de test",
                                 service=self.ctx.name)
            ctype = eff.content_type or PROBLEM_CONTENT_TYPE
        headers = [("content-type", ctype), *eff.headers]
        ex.status = eff.status
        ex.response = Message.of([*headers, ("content-length", str(len(body)))], body)
        await _send_simple(send, eff.status, ctype, body, extra=list(eff.headers), before_body=finish)

    async def _answer_soap_fault(self, eff: SoapFault, ex: Exchange, send: Send, facts: RequestFacts,
                                 finish: Finish) -> None:
        detail = list(parse_xml(f"<d>{eff.detail_xml}</d>")) if eff.detail_xml else None
        relates_to = ex.correlation if ex.correlation and facts.headers else None
        body = build_fault(
            eff.code, eff.reason,
            subcode=(eff.subcode_ns, eff.subcode) if eff.subcode else None,
            detail=detail, relates_to=relates_to,
        )
        status = eff.status or (400 if eff.code == "Sender" else 500)
        ex.status = status
        ex.response = Message.of([("content-type", SOAP_CONTENT_TYPE), ("content-length", str(len(body)))], body)
        await _send_simple(send, status, SOAP_CONTENT_TYPE, body, before_body=finish)

    async def _hang(self, eff: Hang, ex: Exchange, scope: Scope, receive: Receive) -> None:
        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            await asyncio.wait_for(client_gone(), timeout=eff.max_s)
            ex.error = "aucune réponse : le client a abandonné la requête"
        except TimeoutError:
            ex.error = f"aucune réponse pendant {eff.max_s:g} s, connexion coupée"
            await _drop(scope)
        ex.responded_at = time.time()

    def _run_fast(self, facts: RequestFacts, outcome: str | None, tls: dict | None) -> FastResponse:
        handler = self.ctx.spec.fast_routes[(facts.method, facts.path)]
        request = FastRequest(facts.method, facts.path, facts.headers, facts.query, facts.body, outcome,
                              facts.envelope, facts.envelope_error, tls)
        try:
            with using(facts.run):  # the run's own state, when it has one (run_state.py)
                return handler(self.ctx, request)
        except Exception:
            text = internal_error(self.ctx.logger, self.ctx.name, f"{facts.method} {facts.path}")
            status, ctype, err = error_response(self.ctx.spec.error_format, 500, text)
            return FastResponse(status, ctype, err)

    async def _call_fast(self, facts: RequestFacts, decision: Decision, ex: Exchange, send: Send,
                         finish: Finish, cycle: Any = None) -> None:
        resp = self._run_fast(facts, decision.outcome, ex.tls)
        headers = [("content-type", resp.content_type), *resp.headers]
        ex.status = resp.status
        ex.response = Message.of([*headers, ("content-length", str(len(resp.body)))], resp.body)
        if cycle is not None and decision.dribble is None:
            # The common case: one write of the whole answer, straight to the transport, once journaled.
            await finish()
            await _write_whole(cycle, resp.status, ex.response.headers, resp.body)
            return
        await self._send_answer(send, resp.status, headers, resp.body, decision, finish)

    # ------------------------------------------------------------------------------------ inline fast path
    def inline_route(self, method: str, path: str) -> bool:
        """True when a request may be served inline by the HTTP protocol (see server.py): a fast route, and
        no fault rule stored for this service, so the exchange has nothing to wait for but its journal entry.
        Anything else takes the ASGI path above, which applies every effect."""
        return (method, path) in self.ctx.spec.fast_routes and not self.ctx.faults.has_rules()

    def serve_inline(self, scope: Scope, body: bytes, received_at: float) -> tuple[int, list[tuple[str, str]], bytes]:
        """Answer a fast route from a protocol callback, without an ASGI task or message round trips: the
        same exchange as `_call_fast` when no fault applies. Returns (status, headers, body) to write."""
        facts, correlation = self._facts(scope, body)
        ex = self._exchange(scope, body, received_at, facts.operation)
        ex.correlation = correlation
        resp = self._run_fast(facts, None, ex.tls)
        headers = [("content-type", resp.content_type), *resp.headers,
                   ("content-length", str(len(resp.body)))]
        ex.status = resp.status
        ex.response = Message.of(headers, resp.body)
        ex.responded_at = time.time()
        self._record(ex)
        return resp.status, headers, resp.body

    async def _call_service(self, scope: Scope, receive: Receive, send: Send, body: bytes, decision: Decision,
                            ex: Exchange, finish: Finish) -> None:
        if decision.outcome:
            scope = dict(scope, headers=[*scope["headers"], (_OUTCOME_HEADER_B, decision.outcome.encode())])
        if ex.tls is not None:
            scope = dict(scope, headers=[*scope["headers"], (_TLS_HEADER_B, tls_header_value(ex.tls))])
        if ex.run is not None and self.ctx.states.enabled:
            scope = dict(scope, headers=[*scope["headers"], (_RUN_HEADER_B, quote(ex.run).encode("ascii"))])
        status: int | None = None
        resp_headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        # The answer is buffered (simulator answers are small): it is journaled before its first byte
        # leaves, so a client reading the journal as soon as it has the answer finds the exchange there.
        async def capture(message: dict) -> None:
            nonlocal status, resp_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                resp_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.wsgi(*_buffered(scope, body, receive), capture)
        if status is None:
            return
        payload = b"".join(chunks)
        ex.status, ex.response = status, Message.of(resp_headers, payload)
        headers = [(k, v) for k, v in resp_headers if k.lower() not in ("content-length", "transfer-encoding")]
        await self._send_answer(send, status, headers, payload, decision, finish)

    @staticmethod
    async def _send_answer(send: Send, status: int, headers: list[tuple[str, str]], payload: bytes, decision: Decision,
                       finish: Finish) -> None:
        """Send an answer whole, or a few bytes at a time when a dribble effect applies; journal it first."""
        headers = [*headers, ("content-length", str(len(payload)))]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]})
        step = decision.dribble.chunk_bytes if decision.dribble else max(len(payload), 1)
        pieces = [payload[i:i + step] for i in range(0, len(payload), step)] or [b""]
        for n, piece in enumerate(pieces, start=1):
            last = n == len(pieces)
            if last:
                await finish()
            await send({"type": "http.response.body", "body": piece, "more_body": not last})
            if not last and decision.dribble:
                await asyncio.sleep(decision.dribble.interval_ms / 1000.0)

    def _record(self, ex: Exchange) -> None:
        self.journal.submit(ex)  # never raises: a journal failure must not break the exchange itself


CYCLE_KEY = "segur.cycle"
_CYCLE_ATTRS = ("transport", "flow", "default_headers", "keep_alive", "disconnected", "response_started",
                "response_complete", "waiting_for_100_continue", "message_event", "on_response")


def tls_header_value(tls: dict) -> bytes:
    """The connection's TLS facts as the internal request header Flask routes read (app.current_tls)."""
    return json.dumps(tls, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _lean_cycle(scope: Scope) -> Any:
    """uvicorn's request/response cycle, when our protocol exposed it and the request allows a direct write."""
    cycle = scope.get("extensions", {}).get(CYCLE_KEY)
    if cycle is None or scope["method"] == "HEAD" or cycle.response_started:
        return None
    return cycle


def lean_cycle_supported(cycle: Any) -> bool:
    return all(hasattr(cycle, name) for name in _CYCLE_ATTRS)


async def _write_whole(cycle: Any, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    """Send a whole answer in one write, as uvicorn's send() would for start + body (same status line, same
    default headers, keep-alive and pipelining bookkeeping), without the ASGI message round trip."""
    if cycle.flow.write_paused and not cycle.disconnected:
        await cycle.flow.drain()
    if cycle.disconnected:
        return
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    answer, cycle.keep_alive = answer_bytes(status, cycle.default_headers, headers, body, cycle.keep_alive)
    cycle.transport.write(answer)
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()


def answer_bytes(status: int, default_headers: list[tuple[bytes, bytes]], headers: list[tuple[str, str]],
                 body: bytes, keep_alive: bool) -> tuple[bytes, bool]:
    """A whole HTTP/1.1 answer as one buffer, and whether the connection stays open after it (the app's own
    `connection: close` header ends it; when it must end, the header is added)."""
    parts = [status_line(status)]
    for name, value in default_headers:
        parts += (name, b": ", value, b"\r\n")
    has_close = False
    for name, value in headers:
        name_b, _, value_b = header_field(name, value)
        if name_b == b"connection" and b"close" in [t.strip().lower() for t in value_b.split(b",")]:
            keep_alive = False
            has_close = True
        parts += (name_b, b": ", value_b, b"\r\n")
    if not keep_alive and not has_close:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    return b"".join(parts), keep_alive


def header_field(name: str, value: str) -> tuple[bytes, bytes, bytes]:
    """(name, b": ", value) of a response header, lower-cased name; refuses what would split the answer."""
    name_b, value_b = name.lower().encode("latin-1"), value.encode("latin-1")
    if _BAD_NAME.search(name_b) or _BAD_VALUE.search(value_b):
        raise RuntimeError(f"invalid HTTP header {name!r}")
    return name_b, b": ", value_b


_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = http.HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b""
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
    return line


_ACTIONS: dict[str, str | None] = {}


def _action_of(content_type: str) -> str | None:
    """action_from_content_type, memoised: clients send the same few content types over and over."""
    try:
        return _ACTIONS[content_type]
    except KeyError:
        action = action_from_content_type(content_type)
        if len(_ACTIONS) < 1024:
            _ACTIONS[content_type] = action
        return action


def _buffered(scope: Scope, body: bytes, receive: Receive) -> tuple[Scope, Receive]:
    """The request as the WSGI app must see it. The front end has read the whole body, chunked or not; WSGI apps
    read a body only as long as its Content-Length (Werkzeug reads none without one, so a chunked request arrived
    empty): the app gets the body's length and no Transfer-Encoding."""
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"content-length", b"transfer-encoding")]
    headers.append((b"content-length", str(len(body)).encode()))
    return dict(scope, headers=headers), _replay(body, receive)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the already-read body to the app, then defers to the real one."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_simple(send: Send, status: int, content_type: str, body: bytes, *, close: bool = False,
                       extra: list[tuple[str, str]] | None = None,
                       before_body: Callable[[], Awaitable[None]] | None = None) -> None:
    headers = [(b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra or []]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if before_body is not None:
        await before_body()
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _drop(scope: Scope) -> None:
    transport = scope.get("extensions", {}).get(TRANSPORT_KEY)
    if transport is None:
        raise ConnectionAbortedError("connection dropped by an injected fault")
    transport.abort()
    # Let the server see the connection loss before the app returns, so it sends nothing.
    for _ in range(3):
        await asyncio.sleep(0)
