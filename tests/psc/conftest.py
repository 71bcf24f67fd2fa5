from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.psc.app import SPEC

BASE = "/auth/realms/esante-wallet"
CLIENT_ID = "segur-bench-lgc"
CLIENT_SECRET = "segur-bench-lgc-secret"
REDIRECT_URI = "http://127.0.0.1:8000/auth/callback"
KIT = "899700366240"
ROBERT = "899700218896"


@dataclass
class Psc:
    url: str
    http: httpx.Client

    @property
    def issuer(self) -> str:
        return self.url + BASE

    def endpoint(self, name: str) -> str:
        return self.issuer + "/protocol/openid-connect/" + name

    def control(self, method: str, path: str, json: object | None = None) -> dict:
        resp = self.http.request(method, f"{self.url}/_bench{path}", json=json)
        assert resp.status_code < 300, resp.text
        return resp.json()

    def advance(self, duration: str) -> None:
        self.control("POST", "/clock", {"advance": duration})


@pytest.fixture(scope="session")
def psc_server() -> Iterator[Psc]:
    with serve_in_thread(build_simulator(SPEC, SimConfig(settings={}))) as server:
        http = httpx.Client(timeout=10)
        yield Psc(server.url, http)
        http.close()


@pytest.fixture
def psc(psc_server: Psc) -> Psc:
    psc_server.control("POST", "/reset")
    return psc_server
