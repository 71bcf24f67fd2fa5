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
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from jinja2 import Environment, FileSystemLoader, select_autoescape

from simulators.core.control_guard import LOOPBACK_NAMES, refusal
from simulators.core.problems import PROBLEM_CONTENT_TYPE, problem_bytes
from simulators.core.service import SimConfig

from .bench import BenchClient, BenchError, Service, iso_duration
from .feed import Filters, JournalFollower, detail_of

log = logging.getLogger("segur_bench.console")

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
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

_templates = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]))


class HttpError(Exception):
    def __init__(self, status: int, detail: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or []


@dataclass
class Request:
    scope: dict[str, Any]
    receive: Callable[[], Awaitable[dict[str, Any]]]
    params: dict[str, str] = field(default_factory=dict)
    _body: bytes | None = None

    @property
    def method(self) -> str:
        return self.scope["method"]

    @property
    def path(self) -> str:
        return self.scope["path"]

    def header(self, name: str) -> str | None:
        name_b = name.lower().encode()
        for key, value in self.scope["headers"]:
            if key.lower() == name_b:
                return value.decode("latin-1")
        return None

    def query(self, name: str) -> str:
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get(name)
        return values[0] if values else ""

    def cookie(self, name: str) -> str | None:
        for part in (self.header("cookie") or "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return None

    async def body(self) -> bytes:
        if self._body is None:
            chunks, size = [], 0
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY:
                    raise HttpError(413, "corps de requête trop volumineux")
                chunks.append(chunk)
                if not message.get("more_body"):
                    break
            self._body = b"".join(chunks)
        return self._body

    async def json(self) -> dict[str, Any]:
        raw = await self.body()
        try:
            value = json.loads(raw or b"{}")
        except ValueError:
            raise HttpError(400, "le corps doit être un objet JSON") from None
        if not isinstance(value, dict):
            raise HttpError(400, "le corps doit être un objet JSON")
        return value


@dataclass
class Response:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value, ensure_ascii=False).encode("utf-8"), status)


Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class ConsoleSettings:
    """How the console is reached and guarded."""

    host: str = "127.0.0.1"  # the address it listens on
    token: str | None = None  # the bench's control token: required from browsers beyond loopback
    bench: dict[str, Any] = field(default_factory=dict)  # what the page shows about the bench (data dir, CA…)

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_NAMES

    @property
    def needs_login(self) -> bool:
        return not self.loopback


class Console:
    """The ASGI application."""

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
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._add_routes()

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            if request.path == "/api/journal/stream" and request.method == "GET":
                self._guard(request)
                await self._stream(request, send)
                return
            response = await self._dispatch(request)
        except HttpError as exc:
            response = self._problem(exc.status, exc.detail, exc.headers)
            if exc.status == 401 and request.method == "GET" and not request.path.startswith("/api/"):
                response = Response(b"", 303, "text/plain", [("location", "/connexion")])  # a person: the login
        except BenchError as exc:
            response = self._problem(exc.status, exc.detail)
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("console: unhandled error on %s %s [ref %s]", request.method, request.path, ref)
            response = self._problem(500, f"erreur interne de la console (référence {ref} dans son journal)")
        await self._send(send, response)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

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

    @staticmethod
    async def _send(send: Any, response: Response) -> None:
        headers = [("content-type", response.content_type), ("content-length", str(len(response.body))),
                   *SECURITY_HEADERS, *response.headers]
        await send({"type": "http.response.start", "status": response.status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]})
        await send({"type": "http.response.body", "body": response.body})

    @staticmethod
    def _problem(status: int, detail: str, headers: list[tuple[str, str]] | None = None) -> Response:
        return Response(problem_bytes(status, detail), status, PROBLEM_CONTENT_TYPE, headers or [])

    # ------------------------------------------------------------------ security
    def _own_origin(self, request: Request) -> str:
        return f"{request.scope.get('scheme', 'http')}://{request.header('host') or ''}"

    def _guard(self, request: Request) -> None:
        """Origin and Host as the control API checks them, then the token (beyond loopback), then, for a change,
        the page's anti-forgery header."""
        config = SimConfig(host=self.settings.host, control_origins=[self._own_origin(request)])
        refused = refusal(request.scope, config)
        if refused is not None:
            status, detail, headers = refused
            raise HttpError(status, detail, headers)
        bearer = self._bearer_ok(request)
        if self.settings.needs_login and not (bearer or self._session_ok(request)):
            raise HttpError(401, "cette console écoute au-delà de la boucle locale : connectez-vous avec le jeton du "
                                 "banc (/connexion) ou envoyez 'Authorization: Bearer <jeton>'",
                            [("www-authenticate", 'Bearer realm="segur-bench console"')])
        if request.method not in ("GET", "HEAD") and not bearer:
            given = request.header(CSRF_HEADER) or ""
            if not hmac.compare_digest(given.encode(), self.csrf.encode()):
                raise HttpError(403, f"en-tête {CSRF_HEADER} absent ou périmé : rechargez la page de la console")

    def _bearer_ok(self, request: Request) -> bool:
        if not self.settings.token:
            return False
        scheme, _, value = (request.header("authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.settings.token.encode())

    def _session_ok(self, request: Request) -> bool:
        cookie = request.cookie(SESSION_COOKIE)
        return bool(self._session and cookie and hmac.compare_digest(cookie.encode(), self._session.encode()))

    # ------------------------------------------------------------------ routing
    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

        def add(handler: Handler) -> Handler:
            self.routes.append((method, regex, handler))
            return handler

        return add

    async def _dispatch(self, request: Request) -> Response:
        allowed = []
        # Matched on the path as sent (percent-encoded): a rule id or mail address with %2F stays one segment
        raw = (request.scope.get("raw_path") or request.path.encode()).decode("latin-1").partition("?")[0]
        for method, regex, handler in self.routes:
            m = regex.match(raw)
            if m is None:
                continue
            if method != request.method and not (method == "GET" and request.method == "HEAD"):
                allowed.append(method)
                continue
            request.params = {k: unquote(v) for k, v in m.groupdict().items()}
            if not getattr(handler, "public", False):
                self._guard(request)
            return await handler(request)
        if allowed:
            raise HttpError(405, f"méthode {request.method} non autorisée ici", [("allow", ", ".join(allowed))])
        raise HttpError(404, f"rien à l'adresse {request.path}")

    def _add_routes(self) -> None:
        route = self.route

        def public(handler: Handler) -> Handler:
            handler.public = True  # type: ignore[attr-defined]
            return handler

        @route("GET", "/")
        async def index(request: Request) -> Response:
            return self._page("console.html", services=[s.as_dict() for s in self.services],
                              csrf=self.csrf, bench=self.settings.bench)

        @route("GET", "/static/{name}")
        @public
        async def static(request: Request) -> Response:
            name = request.params["name"]
            path = STATIC / name
            if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
                raise HttpError(404, f"pas de fichier statique {name!r}")
            return Response(path.read_bytes(), content_type=STATIC_TYPES[path.suffix])

        @route("GET", "/favicon.ico")
        @public
        async def favicon(request: Request) -> Response:
            return Response(b"", 204, "text/plain")  # none: spares the browser's log a 404 on every load

        @route("GET", "/sante")
        @public
        async def health(request: Request) -> Response:
            return json_response({"status": "ok", "services": [s.name for s in self.services]})

        @route("GET", "/connexion")
        @public
        async def login_page(request: Request) -> Response:
            return self._page("connexion.html", error=None)

        @route("POST", "/connexion")
        @public
        async def login(request: Request) -> Response:
            config = SimConfig(host=self.settings.host, control_origins=[self._own_origin(request)])
            refused = refusal(request.scope, config)
            if refused is not None:
                raise HttpError(refused[0], refused[1])
            form = parse_qs((await request.body()).decode("utf-8", "replace"))
            token = (form.get("jeton") or [""])[0].strip()
            if not self.settings.token or not hmac.compare_digest(token.encode(), self.settings.token.encode()):
                return self._page("connexion.html", status=401, error="Ce jeton n'est pas celui du banc.")
            cookie = f"{SESSION_COOKIE}={self._session}; Path=/; HttpOnly; SameSite=Strict"
            return Response(b"", 303, "text/plain", [("location", "/"), ("set-cookie", cookie)])

        # -------------------------------------------------------------- services, faults, incidents
        @route("GET", "/api/services")
        async def services(request: Request) -> Response:
            return json_response({"services": await self._client.overview()})

        @route("GET", "/api/incidents")
        async def incidents(request: Request) -> Response:
            return json_response({"incidents": await self._client.incidents()})

        @route("POST", "/api/incidents/{name}")
        async def apply_incident(request: Request) -> Response:
            return self._per_service(await self._client.apply_incident(request.params["name"]))

        @route("DELETE", "/api/incidents/{name}")
        async def clear_incident(request: Request) -> Response:
            return self._per_service(await self._client.clear_incident(request.params["name"]))

        @route("DELETE", "/api/faults")
        async def clear_faults(request: Request) -> Response:
            return self._per_service(await self._client.clear_faults())

        @route("POST", "/api/faults")
        async def add_rule(request: Request) -> Response:
            service, rule = rule_from_form(await request.json(), [s.name for s in self.services])
            return self._per_service(await self._client.add_rule(service, rule), status=201)

        @route("DELETE", "/api/faults/{service}/{rule_id}")
        async def delete_rule(request: Request) -> Response:
            await self._client.delete_rule(request.params["service"], request.params["rule_id"])
            return Response(b"", 204)

        # -------------------------------------------------------------- clock
        @route("GET", "/api/clock")
        async def clock(request: Request) -> Response:
            return json_response({"clocks": await self._client.clocks()})

        @route("POST", "/api/clock")
        async def set_clock(request: Request) -> Response:
            body = await request.json()
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
        @route("GET", "/api/ciba")
        async def ciba(request: Request) -> Response:
            return json_response({"requests": await self._client.ciba()})

        @route("POST", "/api/ciba/{auth_req_id}")
        async def decide(request: Request) -> Response:
            decision = (await request.json()).get("decision")
            if decision not in ("approve", "refuse"):
                raise HttpError(400, 'decision doit valoir "approve" ou "refuse"')
            return json_response({"requests": await self._client.decide_ciba(request.params["auth_req_id"],
                                                                               decision)})

        @route("GET", "/api/apcv/patients")
        async def apcv_patients(request: Request) -> Response:
            return json_response({"patients": apcv_personas()})

        @route("GET", "/api/apcv/{patient}/qr")
        async def apcv_qr(request: Request) -> Response:
            png, payload, expires = await self._client.apcv_qr(request.params["patient"])
            return json_response({"patient": request.params["patient"], "payload": payload, "expires_at": expires,
                                  "png": "data:image/png;base64," + base64.b64encode(png).decode("ascii")})

        @route("GET", "/api/mss/mailboxes")
        async def mailboxes(request: Request) -> Response:
            return json_response({"mailboxes": await self._client.mailboxes()})

        @route("GET", "/api/mss/mailboxes/{address}")
        async def mailbox(request: Request) -> Response:
            return json_response(await self._client.mailbox(request.params["address"]))

        # -------------------------------------------------------------- journal
        @route("GET", "/api/journal/{service}/{entry_id}")
        async def entry(request: Request) -> Response:
            found = self.follower.entry(request.params["service"], request.params["entry_id"]) \
                if self.follower else None
            if found is None:
                raise HttpError(404, "entrée inconnue de la console (trop ancienne ?) : lisez-la avec "
                                     "GET /_bench/journal du simulateur")
            return json_response(detail_of(found))

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
        return json_response({"results": results, "failed": failed}, status)

    def _page(self, name: str, status: int = 200, **values: Any) -> Response:
        html = _templates.get_template(name).render(**values)
        return Response(html.encode("utf-8"), status, "text/html; charset=utf-8")

    # ------------------------------------------------------------------ server-sent events
    async def _stream(self, request: Request, send: Any) -> None:
        follower = self.follower
        if follower is None:
            raise HttpError(503, "la console démarre")
        filters = Filters(service=request.query("service"), run=request.query("run"),
                          operation=request.query("operation"))
        sub, backlog = follower.subscribe(filters)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"), (b"x-accel-buffering", b"no"),
            *((k.encode(), v.encode()) for k, v in SECURITY_HEADERS)]})

        async def event(data: dict[str, Any], name: str = "message") -> None:
            text = json.dumps(data, ensure_ascii=False)
            await send({"type": "http.response.body", "more_body": True,
                        "body": f"event: {name}\ndata: {text}\n\n".encode()})

        async def gone() -> None:  # the page left
            while (await request.receive())["type"] != "http.disconnect":
                pass

        # The stream ends when the page leaves or the console stops (uvicorn waits for open responses).
        ending = {asyncio.create_task(gone()), asyncio.create_task(self.closing.wait())}
        try:
            await event({"type": "hello", "errors": follower.errors})
            for summary in backlog:
                await event({"type": "entry", "entry": summary})
            while True:
                getter = asyncio.create_task(sub.queue.get())
                done, _ = await asyncio.wait({getter, *ending}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    if done:
                        break
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                    continue
                await event(getter.result())
        except OSError:
            pass
        finally:
            follower.unsubscribe(sub)
            for task in ending:
                task.cancel()
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


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
