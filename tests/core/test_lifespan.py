"""Service start-up and shutdown hooks run in the server's event loop (used for SMTP/IMAP listeners)."""

from __future__ import annotations

import asyncio

import httpx

from simulators.core.server import serve_in_thread
from simulators.core.service import build_simulator
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
