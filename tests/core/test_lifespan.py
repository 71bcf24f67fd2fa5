"""Service start-up and shutdown hooks run in the server's event loop (used for SMTP/IMAP listeners)."""

from __future__ import annotations

import asyncio

import httpx

from simulators.core.server import serve_in_thread
from simulators.core.simulator import build_simulator
from simulators.core.testing import echo_spec


def test_startup_and_shutdown_hooks_run_once_in_the_serving_loop() -> None:
    events: list[tuple[str, bool]] = []
    spec = echo_spec()

    async def startup(ctx) -> None:
        events.append(("startup", asyncio.get_running_loop().is_running()))

    async def shutdown(ctx) -> None:
        events.append(("shutdown", asyncio.get_running_loop().is_running()))

    spec.startup, spec.shutdown = startup, shutdown
    with serve_in_thread(build_simulator(spec)) as server:
        assert httpx.get(server.url + "/_bench/health").status_code == 200
        assert events == [("startup", True)]
    assert events == [("startup", True), ("shutdown", True)]


def test_a_failing_startup_hook_stops_the_server_from_starting() -> None:
    spec = echo_spec()

    async def startup(ctx) -> None:
        raise OSError("port 2587 already in use")

    spec.startup = startup
    try:
        with serve_in_thread(build_simulator(spec)):
            raise AssertionError("the server started although its start-up hook failed")
    except RuntimeError as exc:
        assert "failed to start" in str(exc)


def test_outcome_aliases_become_core_effects_and_bad_aliases_fail_at_start() -> None:
    import pytest

    from simulators.core.faults import FaultEngine, Hang, Latency
    from simulators.core.store import Store

    outcomes = {"x.sans-reponse": "no answer", "x.lent": "slow", "x.ko": "KO"}
    engine = FaultEngine(Store(), "x", outcomes, {"x.sans-reponse": {"type": "hang", "max_s": 7},
                                                 "x.lent": {"type": "latency", "ms": 250}})
    hang = engine.add({"effect": {"type": "outcome", "name": "x.sans-reponse"}})
    assert isinstance(hang.effect, Hang) and hang.effect.max_s == 7
    slow = engine.add({"effect": {"type": "outcome", "name": "x.lent"}})
    assert isinstance(slow.effect, Latency) and slow.effect.ms == 250
    plain = engine.add({"effect": {"type": "outcome", "name": "x.ko"}})
    assert plain.effect.type == "outcome"
    with pytest.raises(ValueError, match="outcome alias"):
        FaultEngine(Store(), "x", outcomes, {"x.unknown": {"type": "hang"}})
    with pytest.raises(ValueError):
        FaultEngine(Store(), "x", outcomes, {"x.lent": {"type": "latency", "ms": -5}})
