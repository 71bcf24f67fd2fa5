"""Helpers for the reference LGC's INSi / ApCV client tests: run a simulator in-process (ephemeral store, free
port), steer it through its control API, and build the LGC's CallContext for the flagship GP (KIT DOC0036624).

Only the tests touch the simulators; `reference_lgc` itself never imports them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from reference_lgc.services.context import CallContext, Endpoint, Professional, Software
from simulators.core.server import serve_in_thread
from simulators.core.service import ServiceSpec, SimConfig
from simulators.core.simulator import build_simulator

# The PSC sandbox card the personas reuse (simulators/personas/data/professionals.toml).
KIT = Professional(national_id="899700366240", rpps="99700366240", family_name="DOC0036624", given_name="KIT",
                   billing_id="999990013", amo_speciality="01")


@dataclass
class Sim:
    url: str  # base URL, e.g. http://127.0.0.1:41234
    path: str  # SOAP endpoint path (/lps, /apcv)
    http: httpx.Client

    def control(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        resp = self.http.request(method, f"/_bench{path}", json=json)
        assert resp.status_code < 300, resp.text
        return resp.json() if resp.content else {}

    def reset(self) -> None:
        self.control("POST", "/reset")

    def fault(self, effect: dict[str, Any], **selector: Any) -> None:
        """Add a fault rule (`effect` + optional selector: operation, match, first...)."""
        self.control("POST", "/faults", {"effect": effect, **selector})

    def ctx(self, *, software: Software | None = None, professional: Professional = KIT,
            timeout: float = 5.0) -> CallContext:
        return CallContext(software or Software(), professional, Endpoint(self.url + self.path, timeout=timeout))


@contextmanager
def running(spec: ServiceSpec, path: str, **settings: Any) -> Iterator[Sim]:
    with serve_in_thread(build_simulator(spec, SimConfig(settings=settings))) as server, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        yield Sim(server.url, path, http)
