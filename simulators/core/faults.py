"""Fault engine: rules that make a simulator slow, failing or odd, reproducibly.

A rule = selector (service, operation, request predicates) + one effect + frequency (probability
with a seed, first N matching calls, TTL). Rules live in the service's SQLite store so that every
worker process applies the same rules and counts calls together. The engine only *decides*; each
protocol front end (HTTP middleware, SMTP/IMAP handlers) carries the decision out, because dropping
a TCP connection or delaying an SMTP reply is protocol work.

Effects follow the mitmproxy-addon shape: one small class per effect, one registry.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import re2

from .store import Store

_MIGRATIONS = [
    """
    CREATE TABLE faults (
        id TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        spec TEXT NOT NULL,
        incident TEXT,
        created_at REAL NOT NULL,
        expires_at REAL,
        matched INTEGER NOT NULL DEFAULT 0,
        applied INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX faults_incident ON faults (incident)
    """
]

MAX_LATENCY_MS = 600_000
MAX_HANG_S = 3_600


class RuleError(ValueError):
    """A fault rule that cannot be accepted; the message names the field and the reason."""


# --------------------------------------------------------------------------------------------- effects


class Effect:
    """Base of every effect. `kind` says how a front end combines it with others."""

    type: ClassVar[str]
    kind: ClassVar[str]  # "latency" (adds up), "dribble", "outcome", "terminal" (replaces the response)
    fields: ClassVar[dict[str, str]] = {}

    @classmethod
    def parse(cls, spec: Mapping[str, Any], ctx: EffectContext) -> Effect:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class EffectContext:
    service: str
    outcomes: Mapping[str, str]
    # Outcomes that are really transport behaviour ("no answer", "slow answer") name a core effect, so they
    # are carried out on the event loop like any hang or latency instead of holding a worker thread.
    outcome_effects: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


EFFECTS: dict[str, type[Effect]] = {}


def effect(cls: type[Effect]) -> type[Effect]:
    EFFECTS[cls.type] = cls
    return cls


def _number(spec: Mapping[str, Any], name: str, *, lo: float, hi: float, default: float | None = None) -> float:
    value = spec.get(name, default)
    if value is None:
        raise RuleError(f"effect.{name} is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise RuleError(f"effect.{name} must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise RuleError(f"effect.{name} must be between {lo:g} and {hi:g}, got {value!r}")
    return float(value)


def _check_fields(spec: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = set(spec) - allowed - {"type"}
    if unknown:
        raise RuleError(f"unknown effect field(s) {sorted(unknown)} for effect '{spec['type']}'")


@effect
@dataclass(frozen=True)
class Latency(Effect):
    """Delay before the service answers: fixed, uniform or lognormal."""

    type: ClassVar[str] = "latency"
    kind: ClassVar[str] = "latency"
    fields: ClassVar[dict[str, str]] = {
        "ms": "fixed delay in milliseconds",
        "distribution": "fixed (default), uniform or lognormal",
        "min_ms, max_ms": "bounds of a uniform delay (max_ms also caps a lognormal one)",
        "median_ms, sigma": "parameters of a lognormal delay",
    }
    distribution: str
    ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0
    median_ms: float = 0.0
    sigma: float = 0.0

    @classmethod
    def parse(cls, spec, ctx):
        dist = spec.get("distribution", "fixed")
        if dist == "fixed":
            _check_fields(spec, {"ms", "distribution"})
            return cls("fixed", ms=_number(spec, "ms", lo=0, hi=MAX_LATENCY_MS))
        if dist == "uniform":
            _check_fields(spec, {"min_ms", "max_ms", "distribution"})
            lo = _number(spec, "min_ms", lo=0, hi=MAX_LATENCY_MS)
            hi = _number(spec, "max_ms", lo=0, hi=MAX_LATENCY_MS)
            if hi < lo:
                raise RuleError("effect.max_ms must be greater than or equal to effect.min_ms")
            return cls("uniform", min_ms=lo, max_ms=hi)
        if dist == "lognormal":
            _check_fields(spec, {"median_ms", "sigma", "max_ms", "distribution"})
            return cls(
                "lognormal",
                median_ms=_number(spec, "median_ms", lo=0, hi=MAX_LATENCY_MS),
                sigma=_number(spec, "sigma", lo=0, hi=5),
                max_ms=_number(spec, "max_ms", lo=0, hi=MAX_LATENCY_MS, default=MAX_LATENCY_MS),
            )
        raise RuleError(f"effect.distribution must be fixed, uniform or lognormal, got {dist!r}")

    def sample_ms(self, rng: random.Random) -> float:
        if self.distribution == "fixed":
            return self.ms
        if self.distribution == "uniform":
            return rng.uniform(self.min_ms, self.max_ms)
        return min(self.max_ms, self.median_ms * math.exp(self.sigma * rng.gauss(0.0, 1.0)))

    def describe(self) -> str:
        if self.distribution == "fixed":
            return f"latence {self.ms:g} ms"
        if self.distribution == "uniform":
            return f"latence uniforme {self.min_ms:g}–{self.max_ms:g} ms"
        return f"latence lognormale médiane {self.median_ms:g} ms σ={self.sigma:g}"


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


def _header_value_ok(value: str) -> bool:
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return len(raw) <= 8192 and not any((b < 0x20 and b != 0x09) or b == 0x7F for b in raw)


@effect
@dataclass(frozen=True)
class HttpStatus(Effect):
    """Answer with an HTTP status instead of calling the service (problem JSON body by default)."""

    type: ClassVar[str] = "http_status"
    kind: ClassVar[str] = "terminal"
    fields: ClassVar[dict[str, str]] = {
        "status": "HTTP status code (100-599)",
        "body": "response body (default: RFC 9457 problem JSON)",
        "content_type": "content type of body",
        "headers": "extra response headers",
    }
    status: int
    body: str | None = None
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, spec, ctx):
        _check_fields(spec, {"status", "body", "content_type", "headers"})
        status = int(_number(spec, "status", lo=100, hi=599))
        body = spec.get("body")
        if body is not None and not isinstance(body, str):
            raise RuleError("effect.body must be a string")
        ctype = spec.get("content_type")
        if ctype is not None and not (isinstance(ctype, str) and _header_value_ok(ctype)):
            raise RuleError("effect.content_type must be a header value: Latin-1 text without control characters")
        headers = spec.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in headers.items()):
            raise RuleError("effect.headers must be an object of strings")
        for name, value in headers.items():
            # Checked here, once: at answer time a bad header would be a 500 on every matching request.
            if not _HEADER_NAME.fullmatch(name):
                raise RuleError(f"effect.headers: {name[:40]!r} is not a header name (RFC 9110 token)")
            if name.lower() in _FRAMING_HEADERS:
                raise RuleError(f"effect.headers: {name} is set by the simulator (it frames the answer)")
            if not _header_value_ok(value):
                raise RuleError(f"effect.headers: the value of {name} must be Latin-1 text without control "
                                "characters (RFC 9110 §5.5)")
        return cls(status, body, ctype, tuple(sorted(headers.items())))

    def describe(self) -> str:
        return f"réponse HTTP {self.status}"


@effect
@dataclass(frozen=True)
class SoapFault(Effect):
    """Answer with a SOAP 1.2 fault (code, optional subcode QName, reason, optional detail XML)."""

    type: ClassVar[str] = "soap_fault"
    kind: ClassVar[str] = "terminal"
    fields: ClassVar[dict[str, str]] = {
        "code": "Sender or Receiver (default Receiver)",
        "subcode": "subcode local name, e.g. siram_40",
        "subcode_ns": "namespace of the subcode (default urn:siram)",
        "reason": "human-readable reason (French)",
        "detail_xml": "XML fragment placed in env:Detail",
        "status": "HTTP status override (default per SOAP 1.2 HTTP binding)",
    }
    code: str
    reason: str
    subcode: str | None = None
    subcode_ns: str = "urn:siram"
    detail_xml: str | None = None
    status: int | None = None

    @classmethod
    def parse(cls, spec, ctx):
        _check_fields(spec, {"code", "subcode", "subcode_ns", "reason", "detail_xml", "status"})
        code = spec.get("code", "Receiver")
        if code not in ("Sender", "Receiver"):
            raise RuleError(f"effect.code must be Sender or Receiver, got {code!r}")
        reason = spec.get("reason") or "Erreur simulée par le banc de test"
        subcode = spec.get("subcode")
        for name, value in (("reason", reason), ("subcode", subcode), ("subcode_ns", spec.get("subcode_ns"))):
            if value is not None and not isinstance(value, str):
                raise RuleError(f"effect.{name} must be a string")
        if subcode is not None and not re.fullmatch(r"[A-Za-z_][\w.-]*", subcode):
            raise RuleError(f"effect.subcode must be an XML local name, got {subcode!r}")
        detail = spec.get("detail_xml")
        if detail is not None:
            if not isinstance(detail, str):
                raise RuleError("effect.detail_xml must be a string")
            from .xmlsafe import XmlRejected, parse_xml

            try:
                parse_xml(f"<d>{detail}</d>", max_bytes=64 * 1024)
            except XmlRejected as exc:
                raise RuleError(f"effect.detail_xml is not a well-formed XML fragment: {exc}") from None
        status = spec.get("status")
        if status is not None:
            status = int(_number(spec, "status", lo=200, hi=599))
        return cls(code, reason, subcode, spec.get("subcode_ns") or "urn:siram", detail, status)

    def describe(self) -> str:
        return f"faute SOAP {self.code}" + (f"/{self.subcode}" if self.subcode else "")


@effect
@dataclass(frozen=True)
class Outcome(Effect):
    """A business outcome defined by the service (e.g. INSi `02`, DMP 'patient opposé')."""

    type: ClassVar[str] = "outcome"
    kind: ClassVar[str] = "outcome"
    fields: ClassVar[dict[str, str]] = {"name": "one of the service's outcomes (GET /_bench/faults lists them)"}
    name: str

    @classmethod
    def parse(cls, spec, ctx):
        _check_fields(spec, {"name"})
        name = spec.get("name")
        if name not in ctx.outcomes:
            known = ", ".join(sorted(ctx.outcomes)) or "none"
            raise RuleError(f"effect.name {name!r} is not an outcome of service {ctx.service} (known: {known})")
        alias = ctx.outcome_effects.get(name)
        if alias is not None:
            return EFFECTS[alias["type"]].parse(alias, ctx)
        return cls(name)

    def describe(self) -> str:
        return f"issue métier « {self.name} »"


@effect
@dataclass(frozen=True)
class Drop(Effect):
    """Close the connection without answering."""

    type: ClassVar[str] = "drop"
    kind: ClassVar[str] = "terminal"

    @classmethod
    def parse(cls, spec, ctx):
        _check_fields(spec, set())
        return cls()

    def describe(self) -> str:
        return "connexion coupée"


@effect
@dataclass(frozen=True)
class Hang(Effect):
    """Never answer: hold the request until the client gives up (or max_s, then drop)."""

    type: ClassVar[str] = "hang"
    kind: ClassVar[str] = "terminal"
    fields: ClassVar[dict[str, str]] = {"max_s": "give up and drop after this many seconds (default 300)"}
    max_s: float = 300.0

    @classmethod
    def parse(cls, spec, ctx):
        _check_fields(spec, {"max_s"})
        return cls(_number(spec, "max_s", lo=0, hi=MAX_HANG_S, default=300.0))

    def describe(self) -> str:
        return "aucune réponse (le client expire)"


@effect
@dataclass(frozen=True)
class Dribble(Effect):
    """Send the real response slowly, a few bytes at a time."""

    type: ClassVar[str] = "dribble"
    kind: ClassVar[str] = "dribble"
    fields: ClassVar[dict[str, str]] = {
        "chunk_bytes": "bytes per chunk (default 64)",
        "interval_ms": "pause between chunks (default 250)",
    }
    chunk_bytes: int = 64
    interval_ms: float = 250.0

    @classmethod
    def parse(cls, spec, ctx):
        _check_fields(spec, {"chunk_bytes", "interval_ms"})
        return cls(
            int(_number(spec, "chunk_bytes", lo=1, hi=1 << 20, default=64)),
            _number(spec, "interval_ms", lo=0, hi=60_000, default=250.0),
        )

    def describe(self) -> str:
        return f"réponse au goutte-à-goutte ({self.chunk_bytes} o / {self.interval_ms:g} ms)"


# --------------------------------------------------------------------------------------------- rules


@dataclass
class RequestFacts:
    """What a front end knows about one incoming exchange, for selectors and predicates."""

    service: str
    operation: str
    protocol: str = "http"
    method: str = ""
    path: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    attrs_loader: Callable[[], Mapping[str, str]] | None = None
    _attrs: Mapping[str, str] | None = None
    run: str | None = None  # the run the exchange belongs to (X-Bench-Run header, else the service's current run)
    envelope: Any = None  # the parsed SOAP envelope, when the body is one (parsed once, by the front end)
    envelope_error: Exception | None = None  # why it could not be parsed (the service answers with it)

    @property
    def attrs(self) -> Mapping[str, str]:
        # Service attributes (patient id, INS, …) may need XML parsing: computed only if a rule asks.
        if self._attrs is None:
            try:
                self._attrs = dict(self.attrs_loader()) if self.attrs_loader else {}
            except Exception:
                self._attrs = {}
        return self._attrs


_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
RUN_HEADER = "x-bench-run"  # a client names the run its exchange belongs to (several pipelines on one bench)


def run_id(value: object) -> str | None:
    """A run id as the control API takes it (1 to 200 printable characters), else None."""
    if isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable() and value.strip() == value:
        return value
    return None
_MATCH_KEYS = {"method", "path", "header", "query", "body_contains", "body_regex", "attrs"}


@dataclass(frozen=True)
class Rule:
    id: str
    effect: Effect
    effect_spec: dict
    services: tuple[str, ...] = ("*",)
    operation: str | None = None
    match: dict = field(default_factory=dict)
    probability: float = 1.0
    seed: int = 0
    first: int | None = None
    ttl_s: float | None = None
    incident: str | None = None
    label: str | None = None
    run: str | None = None  # only the exchanges of this run (several CI pipelines on one bench)

    def to_spec(self) -> dict:
        spec: dict[str, Any] = {
            "service": list(self.services) if len(self.services) > 1 else self.services[0],
            "effect": self.effect_spec,
            "probability": self.probability,
            "seed": self.seed,
        }
        for name in ("operation", "first", "ttl_s", "incident", "label", "run"):
            if getattr(self, name) is not None:
                spec[name] = getattr(self, name)
        if self.match:
            spec["match"] = self.match
        return spec

    def selects(self, facts: RequestFacts) -> bool:
        if "*" not in self.services and facts.service not in self.services:
            return False
        if self.run is not None and facts.run != self.run:
            return False
        if self.operation is not None and not fnmatch.fnmatchcase(facts.operation, self.operation):
            return False
        m = self.match
        if "method" in m and facts.method.upper() != m["method"].upper():
            return False
        if "path" in m and not fnmatch.fnmatchcase(facts.path, m["path"]):
            return False
        for name, pattern in m.get("header", {}).items():
            value = facts.headers.get(name.lower())
            if value is None or not fnmatch.fnmatchcase(value, pattern):
                return False
        for name, pattern in m.get("query", {}).items():
            if name not in facts.query or not fnmatch.fnmatchcase(facts.query[name], pattern):
                return False
        if "body_contains" in m and m["body_contains"].encode() not in facts.body:
            return False
        if "body_regex" in m and not _regex(m["body_regex"]).search(facts.body.decode("utf-8", "replace")):
            return False
        for name, pattern in m.get("attrs", {}).items():
            value = facts.attrs.get(name)
            if value is None or not fnmatch.fnmatchcase(str(value), pattern):
                return False
        return True


# body_regex runs on every request a rule sees, on the event loop: RE2 matches in time linear in the body, so a
# pattern such as (a+)+$ cannot freeze a worker as Python's backtracking engine did (issue 16). RE2 has no
# backreferences or lookaround; such patterns are refused when the rule is stored.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_REGEX_CACHE: dict[str, Any] = {}


def _compile_body_regex(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        why = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise RuleError(f"match.body_regex is not a regular expression RE2 accepts ({why}); the syntax is Python's "
                        "without backreferences or lookaround, matched in linear time") from None


def _regex(pattern: str) -> Any:
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        compiled = _REGEX_CACHE[pattern] = _compile_body_regex(pattern)
    return compiled


def parse_rule(spec: Any, ctx: EffectContext, *, rule_id: str | None = None) -> Rule:
    """Validate a rule given as JSON/TOML data; raise RuleError naming the faulty field."""
    if not isinstance(spec, Mapping):
        raise RuleError("a rule must be a JSON object")
    allowed = {"service", "operation", "match", "effect", "probability", "seed", "first", "ttl_s", "incident",
               "label", "id", "run"}
    unknown = set(spec) - allowed
    if unknown:
        raise RuleError(f"unknown rule field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")

    services = spec.get("service", "*")
    services = (services,) if isinstance(services, str) else services
    if not isinstance(services, list | tuple) or not services or not all(isinstance(s, str) for s in services):
        raise RuleError("service must be a service name, '*' or a list of names")
    if "*" not in services and ctx.service not in services:
        raise RuleError(f"this rule targets {', '.join(services)}, but this simulator is {ctx.service}")

    operation = spec.get("operation")
    if operation is not None and (not isinstance(operation, str) or not operation):
        raise RuleError("operation must be a non-empty string (glob patterns such as 'GET /fhir/*' are allowed)")

    match = spec.get("match") or {}
    if not isinstance(match, Mapping):
        raise RuleError("match must be an object")
    bad = set(match) - _MATCH_KEYS
    if bad:
        raise RuleError(f"unknown match predicate(s) {sorted(bad)}; allowed: {sorted(_MATCH_KEYS)}")
    for key in ("method", "path", "body_contains", "body_regex"):
        if key in match and not isinstance(match[key], str):
            raise RuleError(f"match.{key} must be a string")
    if "body_regex" in match:
        if len(match["body_regex"]) > 500:
            raise RuleError("match.body_regex is limited to 500 characters")
        _regex(match["body_regex"])
    for key in ("header", "query", "attrs"):
        value = match.get(key, {})
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise RuleError(f"match.{key} must be an object of string patterns")

    effect_spec = spec.get("effect")
    if not isinstance(effect_spec, Mapping) or "type" not in effect_spec:
        raise RuleError(f"effect must be an object with a 'type' among {sorted(EFFECTS)}")
    effect_cls = EFFECTS.get(effect_spec["type"])
    if effect_cls is None:
        raise RuleError(f"unknown effect type {effect_spec['type']!r}; known: {sorted(EFFECTS)}")
    eff = effect_cls.parse(effect_spec, ctx)

    probability = spec.get("probability", 1.0)
    if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 <= probability <= 1:
        raise RuleError(f"probability must be a number between 0 and 1, got {probability!r}")
    seed = spec.get("seed")
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)  # recorded, so the run can be replayed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise RuleError("seed must be an integer")
    first = spec.get("first")
    if first is not None and (isinstance(first, bool) or not isinstance(first, int) or first < 1):
        raise RuleError("first must be a positive integer (apply to the first N matching calls)")
    ttl = spec.get("ttl_s")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0):
        raise RuleError("ttl_s must be a positive number of seconds")
    for name in ("incident", "label"):
        if spec.get(name) is not None and not isinstance(spec[name], str):
            raise RuleError(f"{name} must be a string")
    if spec.get("run") is not None and run_id(spec["run"]) is None:
        raise RuleError("run must be a run id: 1 to 200 printable characters (the rule then applies to the "
                        "exchanges of that run only)")
    given_id = spec.get("id")
    if given_id is not None and (not isinstance(given_id, str) or not _ID_RE.fullmatch(given_id)):
        raise RuleError("id must be 1 to 64 characters among letters, digits, '.', '_' and '-'")

    return Rule(
        id=rule_id or spec.get("id") or uuid.uuid4().hex[:12],
        effect=eff,
        effect_spec=dict(effect_spec),
        services=tuple(services),
        operation=operation,
        match=json.loads(json.dumps(match)),
        probability=float(probability),
        seed=seed,
        first=first,
        ttl_s=float(ttl) if ttl is not None else None,
        incident=spec.get("incident"),
        label=spec.get("label"),
        run=spec.get("run"),
    )


# --------------------------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class AppliedFault:
    rule_id: str
    effect: str
    call: int
    description: str
    latency_ms: float | None = None
    incident: str | None = None

    def as_dict(self) -> dict:
        d = {"rule": self.rule_id, "effect": self.effect, "call": self.call, "description": self.description}
        if self.latency_ms is not None:
            d["latency_ms"] = round(self.latency_ms, 3)
        if self.incident:
            d["incident"] = self.incident
        return d


@dataclass
class Decision:
    latency_s: float = 0.0
    terminal: Effect | None = None
    dribble: Dribble | None = None
    outcome: str | None = None
    applied: list[AppliedFault] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.applied


def _unit(seed: int, call: int, salt: str) -> float:
    digest = hashlib.sha256(f"{seed}:{call}:{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / float(1 << 64)


class FaultEngine:
    """Stores the rules of one service and decides which apply to an exchange."""

    def __init__(self, store: Store, service: str, outcomes: Mapping[str, str] | None = None,
                 outcome_effects: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.store = store
        self.context = EffectContext(service, dict(outcomes or {}), dict(outcome_effects or {}))
        for name, alias in self.context.outcome_effects.items():  # a bad alias is a bug of the service: fail early
            if name not in self.context.outcomes or alias.get("type") not in EFFECTS:
                raise ValueError(f"outcome alias {name!r} of {service} must name a declared outcome and a core effect")
            EFFECTS[alias["type"]].parse(alias, self.context)
        self._cache: dict[tuple[str, str], Rule] = {}
        # (store generation, [(rule, matched, expires_at)]): the rules as last read, valid while no process
        # changed them (Store.bump after every write below).
        self._rows: tuple[int, list[tuple[Rule, int, float | None]]] | None = None
        store.migrate("faults", _MIGRATIONS)

    @property
    def service(self) -> str:
        return self.context.service

    def add(self, spec: Any, *, incident: str | None = None) -> Rule:
        return self.add_many([spec], incident=incident)[0]

    def add_many(self, specs: list[Any], *, incident: str | None = None, run: str | None = None) -> list[Rule]:
        """Store rules all together or not at all: a bad rule must not leave half an incident applied. `run`
        scopes every rule to that run's exchanges."""
        extra = {**({"incident": incident} if incident else {}), **({"run": run} if run else {})}
        rules = [parse_rule({**spec, **extra} if extra and isinstance(spec, Mapping) else spec, self.context)
                 for spec in specs]
        ids = [r.id for r in rules]
        if len(set(ids)) != len(ids):
            raise RuleError(f"the same rule id is given twice: {sorted({i for i in ids if ids.count(i) > 1})}")
        now = time.time()
        with self.store.transaction() as conn:
            position = conn.execute("SELECT COALESCE(MAX(position), 0) FROM faults").fetchone()[0]
            for rule in rules:
                if conn.execute("SELECT 1 FROM faults WHERE id = ?", (rule.id,)).fetchone():
                    raise RuleError(f"a rule with id {rule.id!r} already exists")
                position += 1
                conn.execute(
                    "INSERT INTO faults (id, position, spec, incident, created_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (rule.id, position, json.dumps(rule.to_spec()), rule.incident, now,
                     now + rule.ttl_s if rule.ttl_s else None),
                )
        self.store.bump()
        return rules

    def _parsed(self, rule_id: str, spec: str) -> Rule:
        # Rules are immutable once stored: parse each (id, spec) once per process.
        key = (rule_id, spec)
        rule = self._cache.get(key)
        if rule is None:
            if len(self._cache) > 1024:
                self._cache.clear()
            rule = self._cache[key] = parse_rule(json.loads(spec), self.context, rule_id=rule_id)
        return rule

    def _rules(self) -> list[tuple[Rule, dict]]:
        rows = self.store.query("SELECT * FROM faults ORDER BY position")
        return [(self._parsed(row["id"], row["spec"]), dict(row)) for row in rows]

    def list(self) -> list[dict]:
        now = time.time()
        result = []
        for rule, row in self._rules():
            expires = row["expires_at"]
            result.append({
                "id": rule.id,
                **rule.to_spec(),
                "description": rule.effect.describe(),
                "matched": row["matched"],
                "applied": row["applied"],
                "created_at": row["created_at"],
                "expires_in_s": None if expires is None else max(0.0, round(expires - now, 3)),
                "active": (expires is None or expires > now) and (rule.first is None or row["matched"] < rule.first),
            })
        return result

    def delete(self, rule_id: str) -> bool:
        try:
            return self.store.execute("DELETE FROM faults WHERE id = ?", (rule_id,)).rowcount > 0
        finally:
            self.store.bump()

    def clear(self, incident: str | None = None, *, run: str | None = None) -> int:
        """Delete the rules (of one incident, of one run's scope, or both); returns how many."""
        where, params = [], []
        if incident is not None:
            where.append("incident = ?")
            params.append(incident)
        if run is not None:
            where.append("json_extract(spec, '$.run') = ?")
            params.append(run)
        try:
            return self.store.execute("DELETE FROM faults" + (" WHERE " + " AND ".join(where) if where else ""),
                                      tuple(params)).rowcount
        finally:
            self.store.bump()

    def incidents(self) -> list[str]:
        return [r[0] for r in self.store.query(
            "SELECT DISTINCT incident FROM faults WHERE incident IS NOT NULL ORDER BY incident")]

    def decide(self, facts: RequestFacts) -> Decision:
        return self.claim(self.select(facts))

    def _current(self) -> list[tuple[Rule, int, float | None]]:
        """Every stored rule with its call count and expiry, re-read only when some process changed them."""
        generation = self.store.generation()  # before the read: a change committed meanwhile bumps it again
        cached = self._rows
        if cached is not None and cached[0] == generation:
            return cached[1]
        rows = [(self._parsed(row["id"], row["spec"]), row["matched"], row["expires_at"])
                for row in self.store.query("SELECT id, spec, matched, expires_at FROM faults ORDER BY position")]
        self._rows = (generation, rows)
        return rows

    def has_rules(self) -> bool:
        """Whether any rule is stored for this service (one memory read while nothing changed)."""
        return bool(self._current())

    def select(self, facts: RequestFacts) -> list[Rule]:
        """The active rules whose selector matches (a read: never waits for another process's write lock).

        With no rule stored this costs one memory read. Call counts are as of the last change: claim(),
        which numbers the call in SQLite, has the final word on `first`.
        """
        rows = self._current()
        if not rows:
            return []
        now = time.time()
        selected = []
        for rule, matched, expires_at in rows:
            if expires_at is not None and expires_at <= now:
                continue
            if (rule.first is None or matched < rule.first) and rule.selects(facts):
                selected.append(rule)
        return selected

    def claim(self, selected: list[Rule]) -> Decision:
        """Count the call against each selected rule and fold their effects into a decision (a write)."""
        decision = Decision()
        if not selected:
            return decision
        # One write transaction per exchange. Call numbers are claimed atomically, so counting is exact
        # across worker processes and seeded draws depend only on (seed, call number): runs replay identically.
        with self.store.transaction() as conn:
            for rule in selected:
                call = conn.execute(
                    "UPDATE faults SET matched = matched + 1 WHERE id = ? RETURNING matched", (rule.id,)
                ).fetchone()
                if call is None:  # deleted meanwhile
                    continue
                call = call[0]
                if rule.first is not None and call > rule.first:
                    continue
                if rule.probability < 1.0 and _unit(rule.seed, call, "p") >= rule.probability:
                    continue
                applied = self._combine(decision, rule, call)
                if applied is not None:
                    conn.execute("UPDATE faults SET applied = applied + 1 WHERE id = ?", (rule.id,))
                    decision.applied.append(applied)
        self.store.bump()  # call counts changed: `first` rules must see them
        return decision

    @staticmethod
    def _combine(decision: Decision, rule: Rule, call: int) -> AppliedFault | None:
        """Fold one rule's effect into the decision; None when an earlier rule's effect of the same kind wins."""
        eff = rule.effect
        latency_ms = None
        if isinstance(eff, Latency):
            latency_ms = eff.sample_ms(random.Random(f"{rule.seed}:{call}:latency"))
            decision.latency_s += latency_ms / 1000.0
        elif eff.kind == "terminal":
            if decision.terminal is not None:
                return None
            decision.terminal = eff
        elif isinstance(eff, Dribble):
            if decision.dribble is not None:
                return None
            decision.dribble = eff
        elif isinstance(eff, Outcome):
            if decision.outcome is not None:
                return None
            decision.outcome = eff.name
        return AppliedFault(rule.id, eff.type, call, eff.describe(), latency_ms, rule.incident)
