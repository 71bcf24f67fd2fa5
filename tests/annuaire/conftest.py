"""Annuaire santé simulator served over real HTTP for the tests: one server per module, state reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from simulators.annuaire.app import SPEC
from simulators.core.server import serve_in_thread
from simulators.core.simulator import build_simulator

KEY = "segur-bench-annuaire"


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve_in_thread(build_simulator(SPEC)) as server:
        yield server.url + "/fhir/v2"


@pytest.fixture
def client(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, headers={"ESANTE-API-KEY": KEY}, timeout=10) as c:
        c.post(base.replace("/fhir/v2", "/_bench/reset"))
        yield c
