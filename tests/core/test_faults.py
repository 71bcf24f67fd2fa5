"""Fault engine, unit level: rule parsing and validation, selectors, frequencies, precedence, counters."""

from __future__ import annotations

import math
import statistics
import threading
import time
import types

import pytest

from simulators.core import faults as faults_mod
from simulators.core.faults import (
    EFFECTS,
    Dribble,
    Drop,
    FaultEngine,
    Hang,
    HttpStatus,
    Latency,
    Outcome,
    RequestFacts,
    RuleError,
    SoapFault,
)
from simulators.core.store import Store

OUTCOMES = {"refus": "refused", "inconnu": "unknown patient"}


@pytest.fixture
def engine() -> FaultEngine:
    return FaultEngine(Store(), "svc", outcomes=OUTCOMES)


def facts(operation: str = "POST /echo", **kw) -> RequestFacts:
    kw.setdefault("service", "svc")
    kw.setdefault("method", operation.split(" ", 1)[0] if " " in operation else "POST")
    kw.setdefault("path", operation.split(" ", 1)[1] if " " in operation else "/soap")
    return RequestFacts(operation=operation, **kw)


def applied(engine: FaultEngine, f: RequestFacts | None = None) -> bool:
    return not engine.decide(f or facts()).empty


def counters(engine: FaultEngine, rule_id: str) -> tuple[int, int]:
    (row,) = [r for r in engine.list() if r["id"] == rule_id]
    return row["matched"], row["applied"]


# --------------------------------------------------------------------------------------------- effects: valid


def test_effect_registry_has_every_documented_type():
    assert set(EFFECTS) == {"latency", "http_status", "soap_fault", "outcome", "drop", "hang", "dribble"}
    kinds = {name: cls.kind for name, cls in EFFECTS.items()}
    assert kinds == {"latency": "latency", "http_status": "terminal", "soap_fault": "terminal",
                     "outcome": "outcome", "drop": "terminal", "hang": "terminal", "dribble": "dribble"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"type": "latency", "ms": 250}, Latency("fixed", ms=250.0)),
        ({"type": "latency", "distribution": "fixed", "ms": 0}, Latency("fixed", ms=0.0)),
        ({"type": "latency", "distribution": "uniform", "min_ms": 10, "max_ms": 20},
         Latency("uniform", min_ms=10.0, max_ms=20.0)),
        ({"type": "latency", "distribution": "lognormal", "median_ms": 800, "sigma": 0.6, "max_ms": 10000},
         Latency("lognormal", median_ms=800.0, sigma=0.6, max_ms=10000.0)),
        ({"type": "latency", "distribution": "lognormal", "median_ms": 800, "sigma": 0.6},
         Latency("lognormal", median_ms=800.0, sigma=0.6, max_ms=float(faults_mod.MAX_LATENCY_MS))),
        ({"type": "http_status", "status": 503}, HttpStatus(503)),
        ({"type": "http_status", "status": 418, "body": "teapot", "content_type": "text/plain",
          "headers": {"Retry-After": "5", "A": "b"}},
         HttpStatus(418, "teapot", "text/plain", (("A", "b"), ("Retry-After", "5")))),
        ({"type": "soap_fault"}, SoapFault("Receiver", "Erreur simulée par le banc de test")),
        ({"type": "soap_fault", "code": "Sender", "subcode": "siram_40", "reason": "indispo",
          "detail_xml": '<e:E xmlns:e="urn:x">t</e:E>', "status": 503, "subcode_ns": "urn:other"},
         SoapFault("Sender", "indispo", "siram_40", "urn:other", '<e:E xmlns:e="urn:x">t</e:E>', 503)),
        ({"type": "outcome", "name": "refus"}, Outcome("refus")),
        ({"type": "drop"}, Drop()),
        ({"type": "hang"}, Hang(300.0)),
        ({"type": "hang", "max_s": 1.5}, Hang(1.5)),
        ({"type": "dribble"}, Dribble(64, 250.0)),
        ({"type": "dribble", "chunk_bytes": 10, "interval_ms": 5}, Dribble(10, 5.0)),
    ],
)
def test_valid_effects_parse(engine, spec, expected):
    rule = engine.add({"effect": spec})
    assert rule.effect == expected
    assert isinstance(rule.effect.describe(), str) and rule.effect.describe()
    (listed,) = engine.list()
    assert listed["effect"] == spec
    assert listed["description"] == expected.describe()


# --------------------------------------------------------------------------------------------- effects: invalid


@pytest.mark.parametrize(
    ("effect", "fragment"),
    [
        ({"type": "latency"}, "effect.ms is required"),
        ({"type": "latency", "ms": -1}, "effect.ms must be between"),
        ({"type": "latency", "ms": 600_001}, "effect.ms must be between"),
        ({"type": "latency", "ms": "100"}, "effect.ms must be a number"),
        ({"type": "latency", "ms": True}, "effect.ms must be a number"),
        ({"type": "latency", "ms": math.nan}, "effect.ms must be a number"),
        ({"type": "latency", "ms": 5, "sigma": 1}, "unknown effect field(s) ['sigma']"),
        ({"type": "latency", "distribution": "gauss", "ms": 5}, "effect.distribution"),
        ({"type": "latency", "distribution": "uniform", "min_ms": 20, "max_ms": 10}, "effect.max_ms"),
        ({"type": "latency", "distribution": "uniform", "max_ms": 10}, "effect.min_ms is required"),
        ({"type": "latency", "distribution": "uniform", "min_ms": 1, "max_ms": 2, "ms": 3},
         "unknown effect field(s) ['ms']"),
        ({"type": "latency", "distribution": "lognormal", "median_ms": 5, "sigma": 6}, "effect.sigma"),
        ({"type": "latency", "distribution": "lognormal", "sigma": 1}, "effect.median_ms is required"),
        ({"type": "http_status"}, "effect.status is required"),
        ({"type": "http_status", "status": 600}, "effect.status must be between"),
        ({"type": "http_status", "status": 99}, "effect.status must be between"),
        ({"type": "http_status", "status": "503"}, "effect.status must be a number"),
        ({"type": "http_status", "status": 503, "body": 5}, "effect.body"),
        ({"type": "http_status", "status": 503, "content_type": 1}, "effect.content_type"),
        ({"type": "http_status", "status": 503, "headers": {"X": "a\r\nSet-Cookie: x"}}, "effect.headers"),
        ({"type": "http_status", "status": 503, "headers": {"X": 1}}, "effect.headers"),
        ({"type": "http_status", "status": 503, "headers": ["X"]}, "effect.headers"),
        ({"type": "http_status", "status": 503, "reason": "x"}, "unknown effect field(s) ['reason']"),
        ({"type": "soap_fault", "code": "Client"}, "effect.code"),
        ({"type": "soap_fault", "subcode": "1bad"}, "effect.subcode must be an XML local name"),
        ({"type": "soap_fault", "subcode": "a b"}, "effect.subcode must be an XML local name"),
        ({"type": "soap_fault", "subcode": 40}, "effect.subcode must be a string"),
        ({"type": "soap_fault", "reason": ["x"]}, "effect.reason must be a string"),
        ({"type": "soap_fault", "subcode_ns": 3}, "effect.subcode_ns must be a string"),
        ({"type": "soap_fault", "detail_xml": "<a>"}, "effect.detail_xml is not a well-formed XML fragment"),
        ({"type": "soap_fault", "detail_xml": 7}, "effect.detail_xml must be a string"),
        ({"type": "soap_fault", "status": 100}, "effect.status must be between"),
        ({"type": "outcome", "name": "nope"}, "effect.name 'nope' is not an outcome of service svc"),
        ({"type": "outcome"}, "effect.name None is not an outcome"),
        ({"type": "outcome", "name": "refus", "x": 1}, "unknown effect field(s) ['x']"),
        ({"type": "drop", "after_ms": 5}, "unknown effect field(s) ['after_ms']"),
        ({"type": "hang", "max_s": -1}, "effect.max_s must be between"),
        ({"type": "hang", "max_s": 3601}, "effect.max_s must be between"),
        ({"type": "dribble", "chunk_bytes": 0}, "effect.chunk_bytes must be between"),
        ({"type": "dribble", "interval_ms": -5}, "effect.interval_ms must be between"),
        ({"type": "dribble", "interval_ms": "slow"}, "effect.interval_ms must be a number"),
        ({"type": "teleport"}, "unknown effect type 'teleport'"),
        ({"ms": 5}, "effect must be an object with a 'type'"),
    ],
)
def test_invalid_effects_are_rejected_with_the_field_named(engine, effect, fragment):
    with pytest.raises(RuleError) as info:
        engine.add({"effect": effect})
    assert fragment in str(info.value)
    assert engine.list() == []


def test_outcome_error_lists_known_outcomes(engine):
    with pytest.raises(RuleError, match=r"known: inconnu, refus"):
        engine.add({"effect": {"type": "outcome", "name": "x"}})
    bare = FaultEngine(Store(), "bare")
    with pytest.raises(RuleError, match=r"known: none"):
        bare.add({"effect": {"type": "outcome", "name": "x"}})


# --------------------------------------------------------------------------------------------- rules: invalid

DROP = {"type": "drop"}


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ([DROP], "a rule must be a JSON object"),
        ({"effect": DROP, "servce": "svc"}, "unknown rule field(s) ['servce']"),
        ({"effect": DROP, "service": "other"}, "this rule targets other, but this simulator is svc"),
        ({"effect": DROP, "service": []}, "service must be"),
        ({"effect": DROP, "service": [1]}, "service must be"),
        ({"effect": DROP, "operation": ""}, "operation must be a non-empty string"),
        ({"effect": DROP, "operation": 5}, "operation must be a non-empty string"),
        ({"effect": DROP, "match": "x"}, "match must be an object"),
        ({"effect": DROP, "match": {"verb": "GET"}}, "unknown match predicate(s) ['verb']"),
        ({"effect": DROP, "match": {"method": 1}}, "match.method must be a string"),
        ({"effect": DROP, "match": {"path": ["/a"]}}, "match.path must be a string"),
        ({"effect": DROP, "match": {"body_contains": 1}}, "match.body_contains must be a string"),
        ({"effect": DROP, "match": {"body_regex": "("}}, "match.body_regex is not a regular expression RE2 accepts"),
        # Backreferences and lookaround cannot be matched in linear time: refused when the rule is stored
        ({"effect": DROP, "match": {"body_regex": r"(a)\1"}}, "match.body_regex is not a regular expression RE2"),
        ({"effect": DROP, "match": {"body_regex": r"a(?=b)"}}, "without backreferences or lookaround"),
        ({"effect": DROP, "match": {"body_regex": "a" * 501}}, "match.body_regex is limited to 500"),
        ({"effect": DROP, "match": {"header": {"x": 1}}}, "match.header must be an object of string patterns"),
        ({"effect": DROP, "match": {"query": "a=b"}}, "match.query must be an object of string patterns"),
        ({"effect": DROP, "match": {"attrs": {"ins": None}}}, "match.attrs must be an object of string patterns"),
        ({}, "effect must be an object"),
        ({"effect": "drop"}, "effect must be an object"),
        ({"effect": DROP, "probability": 1.5}, "probability must be a number between 0 and 1, got 1.5"),
        ({"effect": DROP, "probability": -0.1}, "probability must be a number between 0 and 1"),
        ({"effect": DROP, "probability": True}, "probability must be a number between 0 and 1"),
        ({"effect": DROP, "probability": "0.5"}, "probability must be a number between 0 and 1"),
        ({"effect": DROP, "seed": "42"}, "seed must be an integer"),
        ({"effect": DROP, "seed": True}, "seed must be an integer"),
        ({"effect": DROP, "seed": 1.5}, "seed must be an integer"),
        ({"effect": DROP, "first": 0}, "first must be a positive integer"),
        ({"effect": DROP, "first": True}, "first must be a positive integer"),
        ({"effect": DROP, "first": 2.0}, "first must be a positive integer"),
        ({"effect": DROP, "ttl_s": 0}, "ttl_s must be a positive number"),
        ({"effect": DROP, "ttl_s": -3}, "ttl_s must be a positive number"),
        ({"effect": DROP, "ttl_s": "10"}, "ttl_s must be a positive number"),
        ({"effect": DROP, "incident": 3}, "incident must be a string"),
        ({"effect": DROP, "label": {}}, "label must be a string"),
    ],
)
def test_invalid_rules_are_rejected_with_the_field_named(engine, spec, fragment):
    with pytest.raises(RuleError) as info:
        engine.add(spec)
    assert fragment in str(info.value)
    assert engine.list() == []


def test_rule_spec_is_normalised_and_seed_recorded(engine):
    rule = engine.add({"effect": DROP, "operation": "GET /*", "label": "x", "first": 2, "ttl_s": 60,
                       "match": {"method": "get"}})
    (listed,) = engine.list()
    assert listed["id"] == rule.id and len(rule.id) == 12
    assert listed["service"] == "*"
    assert listed["operation"] == "GET /*"
    assert listed["label"] == "x"
    assert listed["first"] == 2
    assert listed["match"] == {"method": "get"}
    assert isinstance(listed["seed"], int)  # drawn when absent, recorded so the run can be replayed
    assert listed["probability"] == 1.0
    assert listed["active"] is True
    assert 59.0 < listed["expires_in_s"] <= 60.0
    assert listed["matched"] == listed["applied"] == 0


def test_explicit_id_and_duplicate_id(engine):
    engine.add({"id": "mine", "effect": DROP})
    with pytest.raises(RuleError, match="a rule with id 'mine' already exists"):
        engine.add({"id": "mine", "effect": DROP})
    assert [r["id"] for r in engine.list()] == ["mine"]


def test_add_many_is_all_or_nothing(engine):
    with pytest.raises(RuleError, match=r"effect\.ms"):
        engine.add_many([{"effect": DROP}, {"effect": {"type": "latency", "ms": -1}}])
    assert engine.list() == []


def test_add_many_with_duplicate_ids_in_batch_stores_nothing(engine):
    with pytest.raises(RuleError, match="given twice"):
        engine.add_many([{"id": "dup", "effect": DROP}, {"id": "dup", "effect": DROP}])
    assert engine.list() == []


def test_non_string_rule_id_is_a_rule_error(engine):
    with pytest.raises(RuleError, match="id"):
        engine.add({"id": ["x"], "effect": DROP})


# --------------------------------------------------------------------------------------------- selectors


def test_service_selector(engine):
    star = engine.add({"effect": DROP})
    listed = engine.add({"service": ["svc", "other"], "effect": {"type": "latency", "ms": 1}})
    own = engine.add({"service": "svc", "effect": {"type": "latency", "ms": 2}})
    d = engine.decide(facts(service="other"))
    assert [a.rule_id for a in d.applied] == [star.id, listed.id]
    d = engine.decide(facts(service="third"))
    assert [a.rule_id for a in d.applied] == [star.id]
    d = engine.decide(facts())
    assert [a.rule_id for a in d.applied] == [star.id, listed.id, own.id]


@pytest.mark.parametrize(
    ("pattern", "operation", "hit"),
    [
        ("POST /echo", "POST /echo", True),
        ("POST /echo", "POST /echo2", False),
        ("GET /fhir/*", "GET /fhir/Practitioner", True),
        ("GET /fhir/*", "POST /fhir/Practitioner", False),
        ("rechercher*", "rechercherInsAvecTraitsIdentite", True),
        ("rechercher*", "RechercherInsAvecTraitsIdentite", False),  # case-sensitive
        ("*Ins?vec*", "rechercherInsAvecCarteVitale", True),
        ("[lr]ire", "lire", True),
        ("[lr]ire", "dire", False),
    ],
)
def test_operation_glob(engine, pattern, operation, hit):
    engine.add({"operation": pattern, "effect": DROP})
    assert applied(engine, facts(operation)) is hit


@pytest.mark.parametrize(
    ("match", "kw", "hit"),
    [
        ({"method": "post"}, {"method": "POST"}, True),
        ({"method": "GET"}, {"method": "POST"}, False),
        ({"path": "/items/*"}, {"path": "/items/42"}, True),
        ({"path": "/items/*"}, {"path": "/echo"}, False),
        ({"header": {"X-Client": "lgc-*"}}, {"headers": {"x-client": "lgc-7"}}, True),
        ({"header": {"X-Client": "lgc-*"}}, {"headers": {"x-client": "other"}}, False),
        ({"header": {"X-Client": "lgc-*"}}, {"headers": {}}, False),
        ({"header": {"a": "1", "b": "2"}}, {"headers": {"a": "1", "b": "2"}}, True),
        ({"header": {"a": "1", "b": "2"}}, {"headers": {"a": "1", "b": "3"}}, False),
        ({"query": {"ins": "1*"}}, {"query": {"ins": "123"}}, True),
        ({"query": {"ins": "1*"}}, {"query": {"ins": "223"}}, False),
        ({"query": {"ins": "*"}}, {"query": {}}, False),
        ({"query": {"ins": ""}}, {"query": {"ins": ""}}, True),
        ({"body_contains": "Dupont"}, {"body": b"<nom>Dupont</nom>"}, True),
        ({"body_contains": "Dupont"}, {"body": b"<nom>Martin</nom>"}, False),
        ({"body_contains": "é"}, {"body": "<nom>Hélène</nom>".encode()}, True),
        ({"body_regex": r"<nir>1\d{12}</nir>"}, {"body": b"<nir>1234567890123</nir>"}, True),
        ({"body_regex": r"<nir>1\d{12}</nir>"}, {"body": b"<nir>2234567890123</nir>"}, False),
        ({"body_regex": "^x"}, {"body": b"\xff\xfex"}, False),
        ({"method": "POST", "path": "/echo", "body_contains": "a"}, {"body": b"abc"}, True),
        ({"method": "POST", "path": "/echo", "body_contains": "z"}, {"body": b"abc"}, False),
    ],
)
def test_request_predicates(engine, match, kw, hit):
    engine.add({"match": match, "effect": DROP})
    assert applied(engine, facts(**kw)) is hit


def test_attrs_predicate_is_lazy_and_matches(engine):
    calls = []

    def loader():
        calls.append(1)
        return {"ins": "1234567890123", "item": "abc"}

    engine.add({"effect": {"type": "latency", "ms": 1}})
    assert applied(engine, facts(attrs_loader=loader))
    assert calls == []  # no rule asked for attributes: the (possibly costly) loader is never called

    engine.clear()
    engine.add({"match": {"attrs": {"ins": "123*", "item": "a?c"}}, "effect": DROP})
    f = facts(attrs_loader=loader)
    assert applied(engine, f)
    assert applied(engine, f)
    assert calls == [1]  # computed once per exchange
    assert not applied(engine, facts(attrs_loader=lambda: {"ins": "999"}))
    assert not applied(engine, facts(attrs_loader=lambda: {}))
    assert not applied(engine, facts())


def test_attrs_loader_failure_means_no_match(engine):
    def broken():
        raise RuntimeError("unparsable body")

    engine.add({"match": {"attrs": {"ins": "*"}}, "effect": DROP})
    assert not applied(engine, facts(attrs_loader=broken))


def test_header_predicate_requires_the_header(engine):
    engine.add({"match": {"header": {"x-request-id": "*"}}, "effect": DROP})
    assert not applied(engine, facts(headers={}))


# --------------------------------------------------------------------------------------------- latency sampling


def test_fixed_latency(engine):
    rule = engine.add({"effect": {"type": "latency", "ms": 120}})
    d = engine.decide(facts())
    assert d.latency_s == pytest.approx(0.12)
    assert d.terminal is None and d.outcome is None and d.dribble is None
    (a,) = d.applied
    assert (a.rule_id, a.effect, a.call, a.latency_ms) == (rule.id, "latency", 1, 120.0)
    assert a.as_dict() == {"rule": rule.id, "effect": "latency", "call": 1, "description": "latence 120 ms",
                           "latency_ms": 120.0}


def test_uniform_latency_within_bounds_and_spread(engine):
    engine.add({"effect": {"type": "latency", "distribution": "uniform", "min_ms": 100, "max_ms": 200}, "seed": 3})
    samples = [engine.decide(facts()).latency_s * 1000 for _ in range(200)]
    assert all(100 <= s <= 200 for s in samples)
    assert min(samples) < 110 and max(samples) > 190
    assert 135 < statistics.mean(samples) < 165
    assert len(set(samples)) > 190


def test_lognormal_latency_median_and_cap(engine):
    engine.add({"effect": {"type": "latency", "distribution": "lognormal", "median_ms": 100, "sigma": 0.5},
                "seed": 11})
    samples = [engine.decide(facts()).latency_s * 1000 for _ in range(300)]
    assert all(s > 0 for s in samples)
    assert 80 < statistics.median(samples) < 125
    assert max(samples) > 150  # a real spread, not a constant

    capped = FaultEngine(Store(), "svc")
    capped.add({"effect": {"type": "latency", "distribution": "lognormal", "median_ms": 100, "sigma": 2,
                           "max_ms": 150}, "seed": 11})
    samples = [capped.decide(facts()).latency_s * 1000 for _ in range(200)]
    assert all(0 < s <= 150 for s in samples)
    assert samples.count(150.0) > 20


def test_zero_sigma_lognormal_is_the_median(engine):
    engine.add({"effect": {"type": "latency", "distribution": "lognormal", "median_ms": 40, "sigma": 0}})
    assert [engine.decide(facts()).latency_s for _ in range(5)] == [pytest.approx(0.04)] * 5


def test_latency_samples_replay_with_the_seed():
    def run(seed: int) -> list[float]:
        e = FaultEngine(Store(), "svc")
        e.add({"effect": {"type": "latency", "distribution": "uniform", "min_ms": 0, "max_ms": 1000}, "seed": seed})
        return [e.decide(facts()).latency_s for _ in range(30)]

    assert run(5) == run(5)
    assert run(5) != run(6)


# --------------------------------------------------------------------------------------------- frequency


def _pattern(seed: int, p: float = 0.3, n: int = 200) -> list[bool]:
    e = FaultEngine(Store(), "svc")
    e.add({"effect": DROP, "probability": p, "seed": seed})
    return [applied(e) for _ in range(n)]


def test_seeded_probability_is_reproducible():
    first = _pattern(42)
    assert first == _pattern(42)
    assert first != _pattern(43)
    assert 0.2 <= sum(first) / len(first) <= 0.4
    big = _pattern(7, p=0.05, n=2000)
    assert 0.03 <= sum(big) / len(big) <= 0.07


def test_probability_counters(engine):
    rule = engine.add({"effect": DROP, "probability": 0.5, "seed": 1})
    hits = sum(applied(engine) for _ in range(100))
    assert 30 <= hits <= 70
    assert counters(engine, rule.id) == (100, hits)


def test_probability_zero_and_one(engine):
    never = engine.add({"effect": {"type": "latency", "ms": 1}, "probability": 0})
    always = engine.add({"effect": {"type": "latency", "ms": 2}, "probability": 1})
    for _ in range(50):
        d = engine.decide(facts())
        assert [a.rule_id for a in d.applied] == [always.id]
    assert counters(engine, never.id) == (50, 0)
    assert counters(engine, always.id) == (50, 50)


def test_first_n(engine):
    rule = engine.add({"effect": DROP, "first": 3})
    results = [applied(engine) for _ in range(10)]
    assert results == [True] * 3 + [False] * 7
    assert counters(engine, rule.id) == (3, 3)
    (listed,) = engine.list()
    assert listed["active"] is False


def test_first_counts_matching_calls_only(engine):
    rule = engine.add({"effect": DROP, "first": 2, "operation": "POST /echo"})
    assert not applied(engine, facts("GET /items/<item_id>"))
    assert applied(engine, facts("POST /echo"))
    assert not applied(engine, facts("GET /items/<item_id>"))
    assert applied(engine, facts("POST /echo"))
    assert not applied(engine, facts("POST /echo"))
    assert counters(engine, rule.id) == (2, 2)


def test_first_with_probability_counts_matches(engine):
    rule = engine.add({"effect": DROP, "first": 20, "probability": 0.5, "seed": 9})
    hits = sum(applied(engine) for _ in range(60))
    matched, applied_count = counters(engine, rule.id)
    assert matched == 20
    assert applied_count == hits
    assert 3 <= hits <= 17


def test_ttl_expiry_with_a_fake_clock(engine, monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr(faults_mod, "time", types.SimpleNamespace(time=lambda: now[0]))
    rule = engine.add({"effect": DROP, "ttl_s": 30})
    assert applied(engine)
    now[0] += 29.9
    assert applied(engine)
    (listed,) = engine.list()
    assert listed["expires_in_s"] == pytest.approx(0.1, abs=1e-6)
    assert listed["active"] is True
    now[0] += 0.2
    assert not applied(engine)
    (listed,) = engine.list()
    assert listed["active"] is False
    assert listed["expires_in_s"] == 0.0
    assert counters(engine, rule.id) == (2, 2)


def test_ttl_expiry_real_time(engine):
    engine.add({"effect": DROP, "ttl_s": 0.15})
    engine.add({"effect": {"type": "latency", "ms": 5}})
    assert engine.decide(facts()).terminal == Drop()
    time.sleep(0.25)
    d = engine.decide(facts())
    assert d.terminal is None
    assert [a.effect for a in d.applied] == ["latency"]


# --------------------------------------------------------------------------------------------- precedence


def test_first_terminal_wins_and_latencies_add_up(engine):
    l1 = engine.add({"effect": {"type": "latency", "ms": 100}})
    status = engine.add({"effect": {"type": "http_status", "status": 503}})
    drop = engine.add({"effect": DROP})
    l2 = engine.add({"effect": {"type": "latency", "ms": 50}})
    d = engine.decide(facts())
    assert d.terminal == HttpStatus(503)
    assert d.latency_s == pytest.approx(0.15)
    assert [a.rule_id for a in d.applied] == [l1.id, status.id, l2.id]
    assert counters(engine, drop.id) == (1, 0)  # matched, but overridden by the earlier terminal
    assert counters(engine, status.id) == (1, 1)
    assert counters(engine, l2.id) == (1, 1)
    assert not d.empty


def test_rule_order_decides_terminal_precedence(engine):
    engine.add({"effect": DROP, "operation": "ping"})
    engine.add({"effect": {"type": "hang", "max_s": 1}})
    assert engine.decide(facts("ping")).terminal == Drop()
    assert engine.decide(facts("pong")).terminal == Hang(1.0)


def test_first_outcome_and_first_dribble_win(engine):
    o1 = engine.add({"effect": {"type": "outcome", "name": "refus"}})
    o2 = engine.add({"effect": {"type": "outcome", "name": "inconnu"}})
    d1 = engine.add({"effect": {"type": "dribble", "chunk_bytes": 1, "interval_ms": 1}})
    d2 = engine.add({"effect": {"type": "dribble", "chunk_bytes": 2, "interval_ms": 2}})
    d = engine.decide(facts())
    assert d.outcome == "refus"
    assert d.dribble == Dribble(1, 1.0)
    assert d.terminal is None
    assert [a.rule_id for a in d.applied] == [o1.id, d1.id]
    assert counters(engine, o2.id) == (1, 0)
    assert counters(engine, d2.id) == (1, 0)


def test_no_rule_gives_an_empty_decision(engine):
    d = engine.decide(facts())
    assert d.empty and d.latency_s == 0 and d.terminal is None and d.outcome is None and d.dribble is None


def test_call_numbers_and_incident_in_applied(engine):
    engine.add({"effect": {"type": "latency", "ms": 1}}, incident="lent")
    calls = [engine.decide(facts()).applied[0] for _ in range(3)]
    assert [a.call for a in calls] == [1, 2, 3]
    assert all(a.incident == "lent" and a.as_dict()["incident"] == "lent" for a in calls)


# --------------------------------------------------------------------------------------------- clear / delete


def test_clear_by_incident_and_delete(engine):
    a1 = engine.add({"effect": DROP}, incident="a")
    engine.add({"effect": DROP, "incident": "a"})
    b = engine.add({"effect": DROP}, incident="b")
    free = engine.add({"effect": DROP})
    assert a1.incident == "a"
    assert engine.incidents() == ["a", "b"]
    assert engine.clear("zzz") == 0
    assert engine.clear("a") == 2
    assert {r["id"] for r in engine.list()} == {b.id, free.id}
    assert engine.incidents() == ["b"]
    assert engine.delete(free.id) is True
    assert engine.delete(free.id) is False
    assert engine.delete("unknown") is False
    assert engine.clear() == 1
    assert engine.list() == [] and engine.incidents() == []


def test_deleted_rule_no_longer_applies(engine):
    rule = engine.add({"effect": DROP})
    assert applied(engine)
    engine.delete(rule.id)
    assert not applied(engine)


def test_add_incident_overrides_spec_incident(engine):
    rule = engine.add({"effect": DROP, "incident": "spec"}, incident="arg")
    assert rule.incident == "arg"
    assert engine.list()[0]["incident"] == "arg"


# --------------------------------------------------------------------------------------------- shared store


def test_two_engines_on_one_file_store_count_together(tmp_path):
    path = tmp_path / "svc.sqlite3"
    a = FaultEngine(Store(path), "svc")
    b = FaultEngine(Store(path), "svc")  # another worker process, its own connection
    rule = a.add({"effect": DROP, "first": 5})
    assert [r["id"] for r in b.list()] == [rule.id]
    results = [applied(a if i % 2 else b) for i in range(10)]
    assert results == [True] * 5 + [False] * 5
    assert counters(a, rule.id) == counters(b, rule.id) == (5, 5)


def test_two_engines_share_the_seeded_sequence(tmp_path):
    path = tmp_path / "svc.sqlite3"
    a, b = FaultEngine(Store(path), "svc"), FaultEngine(Store(path), "svc")
    a.add({"effect": DROP, "probability": 0.4, "seed": 42})
    shared = [applied(a if i % 3 else b) for i in range(100)]
    assert shared == _pattern(42, p=0.4, n=100)  # call numbers are global, so the draws are too


def test_concurrent_decisions_are_counted_exactly(tmp_path):
    path = tmp_path / "svc.sqlite3"
    engines = [FaultEngine(Store(path), "svc") for _ in range(4)]
    rule = engines[0].add({"effect": {"type": "latency", "ms": 1}})
    seen: list[int] = []
    lock = threading.Lock()

    def work(e: FaultEngine) -> None:
        for _ in range(25):
            call = e.decide(facts()).applied[0].call
            with lock:
                seen.append(call)

    threads = [threading.Thread(target=work, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 101))  # every call number claimed exactly once
    assert counters(engines[1], rule.id) == (100, 100)
    engines[3].clear()
    assert engines[0].list() == []

