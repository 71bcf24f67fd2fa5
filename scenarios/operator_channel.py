"""The guided driver's line to the operator: a small web server the operator opens in their own browser (Chrome,
Edge, Firefox; on the vendor's computer, beside their LGC). It shows the current instruction, takes the answer,
and receives the operator's shared screen (scenarios/screen_share.py).

Every route is under a secret path prefix (`/<token>/`): the operator page is reachable from the LAN when the
vendor's computer is another machine, and a web page from another origin cannot post answers or pictures without
the token (an Origin that is not the page's own is refused too). Beyond loopback the page is served over HTTPS
with the bench PKI's certificate: browsers only offer screen sharing to secure pages (https, or localhost).

Routes (relative to the prefix): GET `` (the page), GET `etape` (JSON: run, fin, consigne), GET `horloge` (the
bench's clock, ms), POST `reponse`, POST `partage/debut|segment|fin|image|refus`. Errors are problem JSON."""

from __future__ import annotations

import json
import secrets
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from .screen_share import MAX_SEGMENT, ScreenShare, ShareError

TIMEOUT_S = 900  # an operator gets 15 minutes per step
PAGE = Path(__file__).with_name("operator_page.html")
MAX_JSON = 64 * 1024


@dataclass
class Instruction:
    id: int
    kind: str  # "action" | "question"
    action: str  # the reference driver's method the automated operator runs
    args: dict[str, Any]
    text: str  # French, for the operator
    choices: list[str] = field(default_factory=list)
    step: int = 0  # the scenario step that asked (its pictures belong to it)
    answer: Any = None
    answered_at: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


class Operator(Protocol):
    def pump(self) -> bool: ...


class OperatorChannel:
    """Current instruction + answer, and the shared screen, over HTTP(S)."""

    def __init__(self, run_id: str, share: ScreenShare, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, certificate: Path | None = None, public_host: str | None = None) -> None:
        self.run_id = run_id
        self.share = share
        self.token = token or secrets.token_urlsafe(12)
        self.operator: Operator | None = None  # CI: answers in the scenario thread (Playwright is thread-bound)
        self.current: Instruction | None = None
        self.asked: dict[int, Instruction] = {}
        self.seq = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        scheme = "http"
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(certificate)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        shown = public_host or ("127.0.0.1" if host in ("0.0.0.0", "", "::") else host)
        shown = f"[{shown}]" if ":" in shown else shown
        self.url = f"{scheme}://{shown}:{self.server.server_address[1]}/{self.token}/"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="operator-channel").start()

    @classmethod
    def for_run(cls, env: Any, run_id: str, share: ScreenShare) -> OperatorChannel:
        """The channel as `segur-bench run` set it up for its scenarios (scenarios/runtime.BenchEnv: operator_listen,
        operator_token, operator_certificate, operator_public_host). Raises OSError when the address is taken."""
        host, _, port = env.operator_listen.rpartition(":") if env.operator_listen else ("127.0.0.1", "", "0")
        return cls(run_id, share, host=host.strip("[]") or "127.0.0.1", port=int(port or 0),
                   token=env.operator_token or None,
                   certificate=Path(env.operator_certificate) if env.operator_certificate else None,
                   public_host=env.operator_public_host or None)

    def ask(self, kind: str, action: str, args: dict[str, Any], text: str, choices: list[str] | None = None,
            *, step: int = 0) -> Any:
        with self.lock:
            self.seq += 1
            ins = Instruction(self.seq, kind, action, args, text, choices or [], step)
            self.current = self.asked[ins.id] = ins
        if self.operator is not None:
            self.operator.pump()
        else:
            print(f"\n[opérateur] {text}  → répondre sur {self.url}", file=sys.__stderr__, flush=True)
        if not ins.done.wait(TIMEOUT_S):
            raise AssertionError(f"pas de réponse de l'opérateur en {TIMEOUT_S // 60} min : {text}")
        if isinstance(ins.answer, dict) and "error" in ins.answer:
            raise AssertionError(f"l'opérateur n'a pas pu : {text} ({ins.answer['error']})")
        return ins.answer

    def answer(self, instruction_id: object, value: Any) -> bool:
        """Records the answer to the current instruction; False when it is not the current one (a late click)."""
        ins = self.current
        if ins is None or ins.done.is_set() or str(instruction_id) != str(ins.id):
            return False
        ins.answer = value if value is not None else "fait"
        ins.answered_at = time.time()
        self.share.confirmed(ins.id, ins.step, ins.answered_at)  # the step's picture: the screen at this instant
        ins.done.set()
        return True

    def state(self) -> dict[str, Any]:
        ins = self.current
        pending = None if ins is None or ins.done.is_set() else {
            "id": ins.id, "kind": ins.kind, "action": ins.action, "args": ins.args, "text": ins.text,
            "choices": ins.choices}
        return {"run": self.run_id, "fin": self.share.stop_requested, "consigne": pending}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(channel: OperatorChannel) -> type[BaseHTTPRequestHandler]:
    prefix = f"/{channel.token}/"

    class Handler(BaseHTTPRequestHandler):
        server_version = "segur-bench-operateur"
        sys_version = ""

        def log_message(self, *args: Any) -> None:
            pass

        def _route(self) -> tuple[str, dict[str, str]] | None:
            url = urlsplit(self.path)
            if not url.path.startswith(prefix):
                self._problem(404, "Page inconnue", "adresse de la page de l'opérateur incomplète : reprenez "
                                                    "l'adresse affichée par le banc (elle contient un jeton)")
                return None
            return url.path[len(prefix):], {k: v[0] for k, v in parse_qs(url.query).items()}

        def do_GET(self) -> None:
            route = self._route()
            if route is None:
                return
            path, _ = route
            if path == "":
                self._send(200, "text/html; charset=utf-8", PAGE.read_bytes())
            elif path == "etape":
                self._json(200, channel.state())
            elif path == "horloge":
                self._json(200, {"ms": round(time.time() * 1000)})
            else:
                self._problem(404, "Page inconnue", path)

        def do_POST(self) -> None:
            route = self._route()
            if route is None:
                return
            path, query = route
            origin = self.headers.get("Origin")  # browsers send it on POST: only the page's own origin may post
            own = (channel.url.split(prefix)[0], f"{_scheme(self)}://{self.headers.get('Host')}")
            if origin and origin not in own:
                self._problem(403, "Origine refusée", f"requête venue de {origin}")
                return
            try:
                length = int(self.headers.get("Content-Length") or "")
            except ValueError:
                self._problem(411, "Longueur requise", "en-tête Content-Length absent ou invalide")
                return
            limit = MAX_SEGMENT if path.startswith(("partage/segment", "partage/image")) else MAX_JSON
            if length < 0 or length > limit:
                self.close_connection = True
                self._problem(413, "Corps trop gros", f"{length} octets, au plus {limit}")
                return
            body = self.rfile.read(length)
            try:
                self._post(path, query, body)
            except ShareError as exc:
                self._problem(exc.status, "Envoi refusé", str(exc))
            except (ValueError, KeyError, TypeError) as exc:
                self._problem(400, "Requête invalide", str(exc) or type(exc).__name__)

        def _post(self, path: str, query: dict[str, str], body: bytes) -> None:
            share = channel.share
            is_json = self.headers.get("Content-Type", "").startswith("application/json")
            if is_json:
                data = _json_object(body)
            elif path == "reponse":  # a plain form, for a browser without JavaScript
                data = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
            else:
                data = {}
            run = data.get("run", query.get("run"))
            if run is not None and run != channel.run_id:  # a page still busy with the previous scenario
                raise ShareError(409, f"l'exécution {run} est terminée ; l'exécution en cours est {channel.run_id}")
            if path == "reponse":
                accepted = channel.answer(data.get("id"), data.get("answer"))
                if is_json:
                    self._json(200 if accepted else 409, {"acceptee": accepted})
                else:
                    self.send_response(303)
                    self.send_header("Location", prefix)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
            elif path == "partage/debut":
                capture = share.begin(data)
                self._json(201, {"partage": capture.n})
            elif path == "partage/segment":
                share.segment(int(query["partage"]), int(query["n"]), body, _number(query.get("t")))
                self._json(200, {"recu": len(body)})
            elif path == "partage/fin":
                share.end(int(data["partage"]), str(data.get("raison") or ""))
                self._json(200, {"termine": True})
            elif path == "partage/image":
                ins = channel.current
                instruction = int(query.get("consigne") or (ins.id if ins else 0))
                asked = channel.asked.get(instruction)
                if asked is None:
                    raise ShareError(404, f"consigne inconnue : {instruction}")
                share.picture(instruction, body, query.get("source", "partage"), step=asked.step,
                              method=query.get("methode", ""))
                self._json(201, {"recue": True})
            elif path == "partage/refus":
                share.refused(str(data.get("raison") or ""))
                self._json(200, {"note": True})
            else:
                self._problem(404, "Page inconnue", path)

        def _json(self, status: int, data: Any) -> None:
            self._send(status, "application/json", json.dumps(data, ensure_ascii=False).encode())

        def _problem(self, status: int, title: str, detail: str) -> None:
            self._send(status, "application/problem+json", json.dumps(
                {"type": "about:blank", "title": title, "status": status, "detail": detail},
                ensure_ascii=False).encode())

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")  # the token is in the URL
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _scheme(handler: BaseHTTPRequestHandler) -> str:
    return "https" if isinstance(handler.connection, ssl.SSLSocket) else "http"


def _json_object(body: bytes) -> dict[str, Any]:
    data = json.loads(body or b"{}")
    if not isinstance(data, dict):
        raise ValueError("objet JSON attendu")
    return data


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
