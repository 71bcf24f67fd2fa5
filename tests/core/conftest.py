"""Fixtures of the core tests: echo simulators served on real loopback ports (helpers: core_support.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import jsonschema
import pytest
from core_support import _SIM_BASE, HAR_SCHEMA_PATH, make_sim

from simulators.core.server import ThreadedServer, serve_in_thread
from simulators.core.simulator import Simulator


@pytest.fixture(scope="session", autouse=True)
def _sim_base(tmp_path_factory: pytest.TempPathFactory) -> None:
    _SIM_BASE.append(tmp_path_factory.mktemp("sims"))


@pytest.fixture
def serve() -> Iterator[Callable[..., ThreadedServer]]:
    """Factory: serve(sim) starts the simulator on a free port; every server is stopped at teardown."""
    stack = []

    def _serve(sim: Simulator | None = None) -> ThreadedServer:
        cm = serve_in_thread(sim or make_sim())
        server = cm.__enter__()
        stack.append(cm)
        return server

    yield _serve
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


@pytest.fixture
def server(serve) -> ThreadedServer:
    return serve()


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10.0) as c:
        yield c


@pytest.fixture(scope="session")
def har_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(HAR_SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    assert cls is jsonschema.Draft202012Validator
    return cls(schema, format_checker=cls.FORMAT_CHECKER)
