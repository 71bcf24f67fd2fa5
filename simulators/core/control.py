"""The control API every HTTP simulator serves under /_bench/ (described in openapi.py).

Scenarios, trainers, the CLI and a vendor's CI steer simulators only through these routes.
Every error is an RFC 9457 problem JSON with a message that says what to fix.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request

from .bounded_input import INT_MAX, InputError, parse_json, query_int
from .clock import ClockError
from .faults import EFFECTS, RuleError, run_id
from .har import to_har
from .incidents import IncidentCatalog, IncidentError
from .journal import JournalQueryError, to_jsonl
from .problems import PROBLEM_CONTENT_TYPE, problem_bytes
from .run_attribution import BindingError
from .run_state import using

if TYPE_CHECKING:
    from .service import ServiceContext

STARTED_AT = time.time()


class BadRequest(Exception):
    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class StateConflict(ValueError):
    """Raised by a service's state_post when the seed would overwrite state it was not explicitly asked to replace
    (e.g. a PSC client_id already registered): answered 409, nothing changed."""


def json_body(*, required: bool = True) -> Any:
    """The request's JSON body, read with the bounds of bounded_input.py (every control route uses it)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise BadRequest("a JSON body is required")
        return None
    try:
        return parse_json(raw)
    except InputError as exc:
        raise BadRequest(str(exc)) from None


SHAPE_ERRORS = (TypeError, KeyError, AttributeError, IndexError)
"""What a service's reader raises on a JSON value of the wrong type: the body's fault, not the simulator's."""


def shape_error(ctx: ServiceContext, exc: Exception, what: str) -> BadRequest:
    """A 400 for a body of the wrong shape, in words the client can act on (no Python message: issue 16)."""
    # With its traceback: a reader that trips on a well-shaped body is a bug of ours, and this is where it shows.
    ctx.logger.warning("%s refused (%r)", what, exc, exc_info=exc)
    missing = f" (missing field {exc.args[0]!r})" if isinstance(exc, KeyError) and exc.args else ""
    return BadRequest(f"{what} does not have the shape the {ctx.name} simulator expects{missing}; "
                      "see its README (control API) for the fields and their types")


def create_control_blueprint(ctx: ServiceContext) -> Blueprint:
    bp = Blueprint("bench_control", __name__)

    def catalog() -> IncidentCatalog:
        return IncidentCatalog(ctx.config.incidents_dir)

    @bp.errorhandler(BadRequest)
    def bad_request(exc: BadRequest) -> Response:
        return Response(problem_bytes(exc.status, exc.detail), status=exc.status, content_type=PROBLEM_CONTENT_TYPE)

    for error_type in (RuleError, ClockError, JournalQueryError, IncidentError, InputError):
        bp.register_error_handler(error_type, lambda exc: bad_request(BadRequest(str(exc))))

    @bp.get("/health")
    def health():
        return jsonify({
            "status": "ok",
            "service": ctx.name,
            "title": ctx.spec.title,
            "version": _version(),
            "pid": os.getpid(),
            "uptime_s": round(time.time() - STARTED_AT, 3),
            "clock": ctx.clock.state().as_dict(),
            "faults": len(ctx.faults.list()),
            "incidents": ctx.faults.incidents(),
            "run": ctx.journal.current_run()["run"],
        })

    def pki_file(name: str) -> Response:
        if ctx.tls is None:
            return Response(problem_bytes(404, f"{ctx.name} serves no TLS (no bench PKI)"), status=404,
                            content_type=PROBLEM_CONTENT_TYPE)
        return Response((ctx.tls.pki.directory / name).read_bytes(), content_type="application/x-pem-file")

    @bp.get("/pki/ca.pem")
    def pki_ca():
        return pki_file("ca-chain.pem")

    @bp.get("/pki/crl.pem")
    def pki_crl():
        return pki_file("crl.pem")

    @bp.get("/faults")
    def list_faults():
        return jsonify({
            "service": ctx.name,
            "rules": ctx.faults.list(),
            "effects": {name: dict(cls.fields) for name, cls in sorted(EFFECTS.items())},
            "outcomes": dict(ctx.spec.outcomes),
            "incidents": ctx.faults.incidents(),
        })

    @bp.post("/faults")
    def add_faults():
        body = json_body()
        specs = body.get("rules") if isinstance(body, dict) and "rules" in body else body
        specs = specs if isinstance(specs, list) else [specs]
        if not specs:
            raise BadRequest("no rule given")
        try:
            rules = ctx.faults.add_many(specs)
        except RuleError as exc:
            raise BadRequest(f"rule rejected: {exc}") from None
        created = {r.id for r in rules}
        return jsonify({"rules": [r for r in ctx.faults.list() if r["id"] in created]}), 201

    def run_arg(value: object) -> str | None:
        if value is None:
            return None
        run = run_id(value)
        if run is None:
            raise BadRequest("run must be a run id: 1 to 200 printable characters")
        return run

    @bp.delete("/faults")
    def clear_faults():
        return jsonify({"deleted": ctx.faults.clear(request.args.get("incident"),
                                                    run=run_arg(request.args.get("run")))})

    @bp.delete("/faults/<rule_id>")
    def delete_fault(rule_id: str):
        if not ctx.faults.delete(rule_id):
            raise BadRequest(f"no fault rule with id {rule_id!r}", 404)
        return Response(status=204)

    @bp.get("/incidents")
    def list_incidents():
        available = []
        for name in catalog().names():
            try:
                available.append(catalog().get(name).as_dict())
            except IncidentError as exc:
                available.append({"name": name, "error": str(exc)})
        return jsonify({"available": available, "active": ctx.faults.incidents()})

    @bp.post("/incidents/<name>")
    def apply_incident(name: str):
        incident = catalog().get(name)
        run = run_arg(request.args.get("run"))  # ?run=…: only that run's exchanges see the incident
        ctx.faults.clear(incident.name, run=run)  # re-applying replaces, never stacks
        rules = ctx.faults.add_many(incident.rules_for(ctx.name), incident=incident.name, run=run)
        created = {r.id for r in rules}
        return jsonify({
            "incident": incident.name,
            "title": incident.title,
            "rules": [r for r in ctx.faults.list() if r["id"] in created],
        }), 201 if rules else 200

    @bp.delete("/incidents/<name>")
    def clear_incident(name: str):
        return jsonify({"incident": name, "deleted": ctx.faults.clear(name, run=run_arg(request.args.get("run")))})

    @bp.get("/journal")
    def journal():
        args = request.args
        entries = ctx.journal.query(
            since=args.get("since"), until=args.get("until"), run=args.get("run"),
            operation=args.get("operation"), limit=query_int(args, "limit", maximum=INT_MAX),
        )
        fmt = args.get("format", "json")
        if fmt == "json":
            return jsonify({"service": ctx.name, "count": len(entries), "entries": [e.as_dict() for e in entries]})
        if fmt == "jsonl":
            return Response(to_jsonl(entries), content_type="application/x-ndjson; charset=utf-8")
        if fmt == "har":
            return jsonify(to_har(entries, base_urls={ctx.name: ctx.config.base_url}))
        raise BadRequest(f"format must be json, jsonl or har, got {fmt!r}")

    @bp.post("/reset")
    def reset():
        body = json_body(required=False)
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise BadRequest("the body, when given, must be a JSON object")
        if body.get("run") is not None:
            # One run's reset (a pipeline among several on one bench): its fault rules and journal entries only.
            # The clock and the business state (documents, mailboxes…) are shared by every run and stay.
            if set(body) - {"run"}:
                raise BadRequest('a run\'s reset takes {"run": "<id>"} only')
            run = run_arg(body["run"])
            done: dict[str, Any] = {"faults": ctx.faults.clear(run=run), "journal": ctx.journal.clear(run)}
            kept = ["the other runs' fault rules, journal and state"]
            if run is not None and run in ctx.states.owned():
                with using(run):  # its own state back to the seed, its own clock back to now
                    ctx.clock.reset()
                    if ctx.spec.reset:
                        ctx.spec.reset(ctx)
                done.update(clock=True, state=True)
            else:
                kept[:0] = ["clock", "state (shared by the runs that have no state of their own)"]
            return jsonify({"service": ctx.name, "run": run, "reset": done, "kept": kept})
        keep = body.get("keep", [])
        parts = {"faults", "journal", "clock", "state", "run"}
        if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep) or set(keep) - parts:
            raise BadRequest(f"keep must be a list among {sorted(parts)}")
        done = {}
        if "faults" not in keep:
            done["faults"] = ctx.faults.clear()
        if "journal" not in keep:
            done["journal"] = ctx.journal.clear()
        if "clock" not in keep:
            ctx.clock.reset()
            done["clock"] = True
        if "run" not in keep:
            ctx.journal.set_run(None)
            done["run"] = True
        if "state" not in keep and ctx.spec.reset:
            ctx.spec.reset(ctx)
            done["state"] = True
        return jsonify({"service": ctx.name, "reset": done})

    @bp.get("/clock")
    def get_clock():
        return jsonify(ctx.clock.state().as_dict())

    @bp.post("/clock")
    def set_clock():
        return jsonify(ctx.clock.apply(json_body()).as_dict())

    @bp.get("/state")
    def get_state():
        state = ctx.spec.state_get(ctx) if ctx.spec.state_get else {}
        return jsonify({"service": ctx.name, "state": state})

    @bp.post("/state")
    def post_state():
        if ctx.spec.state_post is None:
            raise BadRequest(f"the {ctx.name} simulator has no state to seed", 501)
        body = json_body()
        try:
            result = ctx.spec.state_post(ctx, body)
        except StateConflict as exc:
            raise BadRequest(str(exc), 409) from None
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        except SHAPE_ERRORS as exc:
            raise shape_error(ctx, exc, "the state body") from None
        return jsonify({"service": ctx.name, "state": result})

    @bp.get("/run")
    def get_run():
        return jsonify(ctx.journal.current_run())

    @bp.post("/run")
    def set_run():
        body = json_body()
        if not isinstance(body, dict) or "run" not in body:
            raise BadRequest('expected {"run": "<id>", "label": "…"} (run null ends the current run)')
        run, label = body["run"], body.get("label")
        if run is not None and (not isinstance(run, str) or not run or len(run) > 200):
            raise BadRequest("run must be a non-empty string of at most 200 characters, or null")
        if label is not None and not isinstance(label, str):
            raise BadRequest("label must be a string")
        return jsonify(ctx.journal.set_run(run, label))

    @bp.get("/runs")
    def get_runs():
        return jsonify({"current": ctx.journal.current_run(), "bindings": ctx.runs.bindings(),
                        "own_state": sorted(ctx.states.owned()), "own_state_supported": ctx.states.enabled})

    @bp.get("/runs/<path:run>")
    def get_run_binding(run: str):
        return jsonify(run_view(run_arg(run) or ""))

    def run_view(run: str) -> dict:
        own = run in ctx.states.owned()
        return {**ctx.runs.binding(run), "state": "own" if own else "shared"}

    @bp.put("/runs/<path:run>")
    def bind_run(run: str):
        body = json_body()
        shape = ('expected {"client_certs": ["<SHA-256 fingerprint or PEM>", …], "state": "own"|"shared", '
                 '"label": "…"} (client_certs or state at least)')
        if not isinstance(body, dict) or set(body) - {"client_certs", "label", "state"} \
                or not {"client_certs", "state"} & set(body):
            raise BadRequest(shape)
        label, state = body.get("label"), body.get("state", "shared")
        if label is not None and not isinstance(label, str):
            raise BadRequest("label must be a string")
        if state not in ("own", "shared"):
            raise BadRequest('state must be "own" (the run gets its own business state) or "shared"')
        if state == "own" and not ctx.states.enabled:
            raise BadRequest(f"the {ctx.name} simulator keeps no per-run state: its state is shared by every run "
                             '(use "state": "shared")')
        run = run_arg(run) or ""
        if "client_certs" in body:
            try:
                ctx.runs.bind(run, body["client_certs"], label)
            except BindingError as exc:
                raise BadRequest(str(exc), 409 if exc.conflict else 400) from None
        if state == "own":
            ctx.states.own(run)
        elif ctx.states.enabled:
            ctx.states.share(run)
        return jsonify(run_view(run))

    @bp.delete("/runs/<path:run>")
    def unbind_run(run: str):
        run = run_arg(run) or ""
        shared_again = ctx.states.share(run) if ctx.states.enabled else False
        return jsonify({"run": run, "released": ctx.runs.unbind(run), "state_dropped": shared_again})

    @bp.get("/openapi.json")
    def openapi():
        from .openapi import control_openapi

        return jsonify(control_openapi(ctx))

    _register_journal_feed(bp, ctx)
    return bp


FEED_LIMIT = 200


def _register_journal_feed(bp: Blueprint, ctx: ServiceContext) -> None:
    """`GET /_bench/journal/feed?after=<cursor>`: the entries journaled after a cursor, in the order they were
    journaled, for a follower such as the trainers' console (console/README.md; Journal.feed says why not
    `since`)."""

    @bp.get("/journal/feed")
    def journal_feed():
        args = request.args
        limit = query_int(args, "limit", FEED_LIMIT, maximum=1000) or FEED_LIMIT
        feed = ctx.journal.feed(args.get("after"), run=args.get("run"), operation=args.get("operation"),
                                limit=limit)
        return jsonify({"service": ctx.name, "cursor": feed.cursor, "more": feed.more, "restarted": feed.restarted,
                        "count": len(feed.entries), "entries": [e.as_dict() for e in feed.entries]})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("segur-bench")
    except PackageNotFoundError:
        return "0+unknown"
