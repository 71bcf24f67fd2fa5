"""The trainers' console: one French page and the small JSON API it calls, on the console's own origin.

The page talks only to this backend (same origin: no CORS, and the bench's control token never reaches the
browser); the backend calls the simulators' control API (bench.py). The console's own API is guarded like the
control API (simulators/core/control_guard.py, whose checks it reuses):

- a request whose `Origin` is not the console's own is refused (403): another site open in the trainer's
  browser cannot drive the bench through the console;
- on loopback, the `Host` must be a loopback name (403), against DNS rebinding;
- beyond loopback, every call needs the bench's control token: `Authorization: Bearer <token>`, or the session
  cookie that the login page (`/connexion`) sets once the token is typed in (401 otherwise);
- requests that change something also need the `X-Console-Csrf` header with the value embedded in the page
  (a cross-site form cannot send it), unless they carry the bearer token themselves.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from simulators.core.control_guard import LOOPBACK_NAMES, refusal
from simulators.core.problems import PROBLEM_CONTENT_TYPE, problem_bytes
from simulators.core.service import SimConfig

from .bench import BenchClient, BenchError, Service, iso_duration
from .feed import Filters, JournalFollower, detail_of

log = logging.getLogger("segur_bench.console")

HERE = Path(__file__).parent
SESSION_COOKIE = "console_session"
CSRF_HEADER = "x-console-csrf"
MAX_BODY = 64 * 1024
SECURITY_HEADERS = [
    # Everything is served from here: no CDN, no inline script; images may be data: URLs (the ApCV QR codes).
    ("content-security-policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
]

templates = Jinja2Templates(directory=HERE / "templates")  # autoescaped


class HttpError(HTTPException):
    """A refusal with its French detail, answered as problem JSON."""

    def __init__(self, status: int, detail: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status, detail, dict(headers or []))


def problem_response(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return Response(problem_bytes(status, detail), status, headers, PROBLEM_CONTENT_TYPE)


async def read_body(request: Request) -> bytes:
    """The body, refused beyond MAX_BODY. Not Starlette's `max_body_size`: it answers 413 in plain text."""
    chunks, size = [], 0
    with contextlib.suppress(ClientDisconnect):
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise HttpError(413, "corps de requête trop volumineux")
            chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> dict[str, Any]:
    try:
        value = json.loads(await read_body(request) or b"{}")
    except ValueError:
        raise HttpError(400, "le corps doit être un objet JSON") from None
    if not isinstance(value, dict):
        raise HttpError(400, "le corps doit être un objet JSON")
    return value


Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class ConsoleSettings:
    """How the console is reached and guarded."""

    host: str = "127.0.0.1"  # the address it listens on
    token: str | None = None  # the bench's control token: required from browsers beyond loopback
    bench: dict[str, Any] = field(default_factory=dict)  # what the page shows about the bench (data dir, CA…)
    # The bench as `segur-bench endpoints --json` describes it, served at /api/bench: how a test suite attached by
    # this console's URL (the pytest plugin's --segur-bench-url) finds every service and its control API.
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_NAMES

    @property
    def needs_login(self) -> bool:
        return not self.loopback


class Console:
    """The ASGI application: a Starlette app, its responses given the security headers."""

    def __init__(self, services: list[Service], settings: ConsoleSettings, *, bench_token: str | None = None,
                 client: BenchClient | None = None) -> None:
        self.services = services
        self.settings = settings
        if settings.needs_login and not settings.token:
            raise ValueError("a console listening beyond loopback needs the bench's control token")
        self._bench_token = bench_token if bench_token is not None else settings.token
        self.client = client
        self.follower: JournalFollower | None = None
        self.closing = asyncio.Event()  # set when the server stops: open event streams end
        self.loop: asyncio.AbstractEventLoop | None = None
        self.csrf = secrets.token_urlsafe(24)  # per process: embedded in the page, echoed by its scripts
        self._session = (hmac.new(settings.token.encode(), b"segur-bench console session", hashlib.sha256).hexdigest()
                         if settings.token else None)
        self.app = Starlette(routes=self._routes(), lifespan=self._lifespan, exception_handlers={
            HTTPException: self._http_error, BenchError: self._bench_error, Exception: self._internal_error})
        self.app.router.redirect_slashes = False  # `/api/clock/` is not found, as any other unknown path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers[name] = value
            await send(message)

        # Outside Starlette's own error middleware, so that even its last-resort 500 carries them
        await self.app(scope, receive, secured if scope["type"] == "http" else send)

    # ------------------------------------------------------------------ lifecycle
    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    def stopping(self) -> None:
        """Called by the server when it is asked to stop (any thread): event streams end at once."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.closing.set)

    def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.client is None:
            self.client = BenchClient(self.services, token=self._bench_token)
        self.follower = JournalFollower(self.client)

    async def shutdown(self) -> None:
        if self.follower is not None:
            await self.follower.stop()
        if self.client is not None:
            await self.client.aclose()

    # ------------------------------------------------------------------ errors, as problem JSON
    async def _http_error(self, request: Request, exc: HTTPException) -> Response:
        status, detail, headers = exc.status_code, exc.detail, dict(exc.headers or {})
        if status == 401 and request.method == "GET" and not request.scope["path"].startswith("/api/"):
            return RedirectResponse("/connexion", 303)  # a person: the login page
        if not isinstance(exc, HttpError) and status == 404:  # Starlette's: no route, no static file
            detail = f"rien à l'adresse {request.scope['path']}"
        elif not isinstance(exc, HttpError) and status == 405:  # Allow: every route of this path, not the first
            detail = f"méthode {request.method} non autorisée ici"
            allowed = [m for r in self.app.routes if r.matches(request.scope)[0] is Match.PARTIAL
                       for m in sorted(r.methods or ()) if m != "HEAD"]  # type: ignore[attr-defined]
            headers = {"allow": ", ".join(allowed)} if allowed else headers
        return problem_response(status, detail, headers)

    async def _bench_error(self, request: Request, exc: BenchError) -> Response:
        return problem_response(exc.status, exc.detail)

    async def _internal_error(self, request: Request, exc: Exception) -> Response:
        ref = secrets.token_hex(4)
        # Starlette re-raises it after this answer: uvicorn logs the traceback just below
        log.error("console: unhandled error on %s %s [ref %s]", request.method, request.scope["path"], ref)
        return problem_response(500, f"erreur interne de la console (référence {ref} dans son journal)")

    # ------------------------------------------------------------------ security
    def _refusal(self, request: Request) -> tuple[int, str, list[tuple[str, str]]] | None:
        """Origin and Host as the control API checks them; the console's own origin is the only one allowed."""
        own_origin = f"{request.scope.get('scheme', 'http')}://{request.headers.get('host', '')}"
        return refusal(request.scope, SimConfig(host=self.settings.host, control_origins=[own_origin]))

    def _guard(self, request: Request) -> None:
        """Origin and Host, then the token (beyond loopback), then, for a change, the page's anti-forgery header."""
        refused = self._refusal(request)
        if refused is not None:
            raise HttpError(*refused)
        bearer = self._bearer_ok(request)
        if self.settings.needs_login and not (bearer or self._session_ok(request)):
            raise HttpError(401, "cette console écoute au-delà de la boucle locale : connectez-vous avec le jeton du "
                                 "banc (/connexion) ou envoyez 'Authorization: Bearer <jeton>'",
                            [("www-authenticate", 'Bearer realm="segur-bench console"')])
        if request.method not in ("GET", "HEAD") and not bearer:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), self.csrf.encode()):
                raise HttpError(403, f"en-tête {CSRF_HEADER} absent ou périmé : rechargez la page de la console")

    def _bearer_ok(self, request: Request) -> bool:
        if not self.settings.token:
            return False
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.settings.token.encode())

    def _session_ok(self, request: Request) -> bool:
        cookie = request.cookies.get(SESSION_COOKIE)
        return bool(self._session and cookie and hmac.compare_digest(cookie.encode(), self._session.encode()))

    def _guarded(self, endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            self._guard(request)
            return await endpoint(request)

        return guarded

    # ------------------------------------------------------------------ routes
    def _routes(self) -> list[Route | Mount]:
        g = self._guarded
        return [
            # Open: what the login page and a health check need
            Route("/connexion", self.login_page),
            Route("/connexion", self.login, methods=["POST"]),
            Route("/sante", self.health),
            Route("/favicon.ico", self.favicon),
            Mount("/static", StaticFiles(directory=HERE / "static")),
            # Guarded
            Route("/", g(self.index)),
            Route("/api/services", g(self.overview)),
            Route("/api/bench", g(self.description)),
            Route("/api/incidents", g(self.incidents)),
            Route("/api/incidents/{name}", g(self.apply_incident), methods=["POST"]),
            Route("/api/incidents/{name}", g(self.clear_incident), methods=["DELETE"]),
            Route("/api/faults", g(self.clear_faults), methods=["DELETE"]),
            Route("/api/faults", g(self.add_rule), methods=["POST"]),
            Route("/api/faults/{service}/{rule_id}", g(self.delete_rule), methods=["DELETE"]),
            Route("/api/clock", g(self.clock)),
            Route("/api/clock", g(self.set_clock), methods=["POST"]),
            Route("/api/ciba", g(self.ciba)),
            Route("/api/ciba/{auth_req_id}", g(self.decide), methods=["POST"]),
            Route("/api/apcv/patients", g(self.apcv_patients)),
            Route("/api/apcv/{patient}/qr", g(self.apcv_qr)),
            Route("/api/mss/mailboxes", g(self.mailboxes)),
            Route("/api/mss/mailboxes/{address}", g(self.mailbox)),
            Route("/api/journal/stream", g(self.stream)),
            Route("/api/journal/{service}/{entry_id}", g(self.entry)),
        ]

    async def login_page(self, request: Request) -> Response:
        return templates.TemplateResponse(request, "connexion.html", {"error": None})

    async def login(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            raise HttpError(refused[0], refused[1])
        form = parse_qs((await read_body(request)).decode("utf-8", "replace"))
        token = (form.get("jeton") or [""])[0].strip()
        if self._session is None or not hmac.compare_digest(token.encode(), self.settings.token.encode()):
            return templates.TemplateResponse(request, "connexion.html",
                                              {"error": "Ce jeton n'est pas celui du banc."}, status_code=401)
        response = RedirectResponse("/", 303)
        response.set_cookie(SESSION_COOKIE, self._session, path="/", httponly=True, samesite="Strict")
        return response

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "services": [s.name for s in self.services]})

    async def favicon(self, request: Request) -> Response:
        return Response(status_code=204)  # none: spares the browser's log a 404 on every load

    async def index(self, request: Request) -> Response:
        return templates.TemplateResponse(request, "console.html", {
            "services": [s.as_dict() for s in self.services], "csrf": self.csrf, "bench": self.settings.bench})

    # -------------------------------------------------------------- services, faults, incidents
    async def description(self, request: Request) -> Response:
        return JSONResponse(self.settings.description)

    async def overview(self, request: Request) -> Response:
        return JSONResponse({"services": await self._client.overview()})

    async def incidents(self, request: Request) -> Response:
        return JSONResponse({"incidents": await self._client.incidents()})

    async def apply_incident(self, request: Request) -> Response:
        return self._per_service(await self._client.apply_incident(request.path_params["name"]))

    async def clear_incident(self, request: Request) -> Response:
        return self._per_service(await self._client.clear_incident(request.path_params["name"]))

    async def clear_faults(self, request: Request) -> Response:
        return self._per_service(await self._client.clear_faults())

    async def add_rule(self, request: Request) -> Response:
        service, rule = rule_from_form(await read_json(request), [s.name for s in self.services])
        return self._per_service(await self._client.add_rule(service, rule), status=201)

    async def delete_rule(self, request: Request) -> Response:
        await self._client.delete_rule(request.path_params["service"], request.path_params["rule_id"])
        return Response(status_code=204)

    # -------------------------------------------------------------- clock
    async def clock(self, request: Request) -> Response:
        return JSONResponse({"clocks": await self._client.clocks()})

    async def set_clock(self, request: Request) -> Response:
        body = await read_json(request)
        instruction: dict[str, Any] = {}
        if body.get("advance"):
            try:
                instruction["advance"] = iso_duration(str(body["advance"]))
            except ValueError as exc:
                raise HttpError(400, str(exc)) from None
        if isinstance(body.get("freeze"), bool):
            instruction["freeze"] = body["freeze"]
        if body.get("reset") is True:
            instruction = {"reset": True}
        if not instruction:
            raise HttpError(400, 'attendu {"advance": "+1h"}, {"freeze": true|false} ou {"reset": true}')
        return self._per_service(await self._client.set_clocks(instruction))

    # -------------------------------------------------------------- CIBA, ApCV, MSSanté
    async def ciba(self, request: Request) -> Response:
        return JSONResponse({"requests": await self._client.ciba()})

    async def decide(self, request: Request) -> Response:
        decision = (await read_json(request)).get("decision")
        if decision not in ("approve", "refuse"):
            raise HttpError(400, 'decision doit valoir "approve" ou "refuse"')
        return JSONResponse({"requests": await self._client.decide_ciba(request.path_params["auth_req_id"],
                                                                          decision)})

    async def apcv_patients(self, request: Request) -> Response:
        return JSONResponse({"patients": apcv_personas()})

    async def apcv_qr(self, request: Request) -> Response:
        patient = request.path_params["patient"]
        png, payload, expires = await self._client.apcv_qr(patient)
        return JSONResponse({"patient": patient, "payload": payload, "expires_at": expires,
                             "png": "data:image/png;base64," + base64.b64encode(png).decode("ascii")})

    async def mailboxes(self, request: Request) -> Response:
        return JSONResponse({"mailboxes": await self._client.mailboxes()})

    async def mailbox(self, request: Request) -> Response:
        return JSONResponse(await self._client.mailbox(request.path_params["address"]))

    # -------------------------------------------------------------- journal
    async def entry(self, request: Request) -> Response:
        found = self.follower.entry(request.path_params["service"], request.path_params["entry_id"]) \
            if self.follower else None
        if found is None:
            raise HttpError(404, "entrée inconnue de la console (trop ancienne ?) : lisez-la avec "
                                 "GET /_bench/journal du simulateur")
        return JSONResponse(detail_of(found))

    async def stream(self, request: Request) -> Response:
        """Server-sent events: the recent entries, then each new one, a comment every 15 s to keep it open.

        Starlette ends the stream when the page leaves; `closing` ends it when the console stops (uvicorn would
        wait for open responses)."""
        follower = self.follower
        if follower is None:
            raise HttpError(503, "la console démarre")
        q = request.query_params
        sub, backlog = follower.subscribe(Filters(service=q.get("service", ""), run=q.get("run", ""),
                                                  operation=q.get("operation", "")))

        def event(data: dict[str, Any]) -> str:
            return f"event: message\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

        async def events() -> AsyncIterator[str]:
            closing = asyncio.create_task(self.closing.wait())
            getter: asyncio.Task | None = None
            try:
                yield event({"type": "hello", "errors": follower.errors})
                for summary in backlog:
                    yield event({"type": "entry", "entry": summary})
                while not closing.done():
                    getter = asyncio.create_task(sub.queue.get())
                    done, _ = await asyncio.wait({getter, closing}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
                    if getter in done:
                        yield event(getter.result())
                        continue
                    getter.cancel()
                    if not done:
                        yield ": keep-alive\n\n"
            finally:
                follower.unsubscribe(sub)
                closing.cancel()
                if getter is not None:
                    getter.cancel()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    @property
    def _client(self) -> BenchClient:
        if self.client is None:
            raise HttpError(503, "la console démarre")
        return self.client

    @staticmethod
    def _per_service(results: dict[str, Any], status: int = 200) -> Response:
        """A change made on several simulators: 200/201 when each took it, 502 with the list when one failed."""
        failed = {name: r["error"] for name, r in results.items() if isinstance(r, dict) and "error" in r}
        if failed and len(failed) == len(results):
            status = 502
        return JSONResponse({"results": results, "failed": failed}, status)


EFFECT_TYPES = ("latency", "outcome", "http_status", "drop", "hang")


def rule_from_form(body: dict[str, Any], services: list[str]) -> tuple[str, dict[str, Any]]:
    """A fault rule (simulators/core/faults.py) from the console's form; the simulator checks it in full."""
    service = str(body.get("service") or "")
    if service != "*" and service not in services:
        raise HttpError(400, f"service inconnu : {service!r}")
    kind = body.get("effect")
    if kind == "latency":
        effect: dict[str, Any] = {"type": "latency", "ms": _number(body.get("ms"), "latence (ms)", integer=True)}
    elif kind == "outcome":
        if not body.get("outcome"):
            raise HttpError(400, "choisissez le résultat métier à forcer")
        effect = {"type": "outcome", "name": str(body["outcome"])}
    elif kind == "http_status":
        effect = {"type": "http_status", "status": _number(body.get("status"), "statut HTTP", integer=True)}
    elif kind in ("drop", "hang"):
        effect = {"type": kind}
    else:
        raise HttpError(400, f"effet inconnu : {kind!r} (attendu : {', '.join(EFFECT_TYPES)})")
    rule: dict[str, Any] = {"effect": effect, "label": "console"}
    if body.get("operation"):
        rule["operation"] = str(body["operation"]).strip()
    if body.get("probability") not in (None, ""):
        rule["probability"] = _number(body["probability"], "probabilité")
        rule["seed"] = 1  # a trainer's draw replays the same way
    if body.get("first") not in (None, ""):
        rule["first"] = _number(body["first"], "premiers N appels", integer=True)
    if body.get("ttl_s") not in (None, ""):
        rule["ttl_s"] = _number(body["ttl_s"], "durée (s)")
    return service, rule


def _number(value: Any, label: str, *, integer: bool = False) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise HttpError(400, f"{label} : un nombre est attendu") from None
    if integer:
        if not number.is_integer():
            raise HttpError(400, f"{label} : un nombre entier est attendu")
        return int(number)
    return number


def apcv_personas() -> list[dict[str, Any]]:
    """Patients with a carte Vitale (the ApCV shows theirs): the bench's shared dataset, shipped with it."""
    from simulators.personas import load_personas

    out = []
    for p in load_personas().patients:
        if p.carte_vitale is None:
            continue
        out.append({"id": p.id, "name": p.display_name, "ins": p.ins,
                    "birth_date": p.date_naissance.isoformat(), "rang": p.carte_vitale.rang_naissance,
                    "qr_path": f"/_bench/apcv/{quote(p.id, safe='')}/qr.png"})
    return out
