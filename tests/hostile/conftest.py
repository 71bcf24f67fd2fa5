"""The hostile campaign's bench: every simulator in this process, with short read deadlines so the slow-client
cases end in about a second, MSSanté trusting a key of ours, INSi serving TLS too."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from simulators import registry
from simulators.core.read_limits import ReadLimits
from simulators.core.server import ThreadedServer, serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator

ISSUER = "http://psc.hostile.test/auth/realms/esante-wallet"
KEY = RSAKey.generate_key(2048, private=True)
KEY.ensure_kid()
KIT = "899700366240"
KIT_BAL = "kit.doc0036624@medecin.mssante.fr"
ROBERT_BAL = "robert.specialiste0021889@medecin.mssante.fr"

# The documented deadlines, shortened: what a late request gets does not depend on their length.
LIMITS = ReadLimits(header_timeout_s=1.0, body_timeout_s=1.0, idle_timeout_s=2.0)


def mss_token(national_id: str = KIT) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": f"f:hostile:{national_id}", "aud": "segur-bench-lgc", "exp": now + 3600,
            "iat": now, "azp": "segur-bench-lgc", "scope": "openid scope_all", "preferred_username": national_id}
    return jwt.encode({"alg": "RS256", "kid": KEY.kid}, body, KEY)


@dataclass
class Bench:
    servers: dict[str, ThreadedServer]
    http: httpx.Client
    mss_ca: ssl.SSLContext

    def url(self, service: str) -> str:
        return self.servers[service].url

    def base(self, service: str) -> str:
        return self.servers[service].url + registry.info(service).base_path

    @property
    def smtp_port(self) -> int:
        return self.servers["mss"].sim.ctx.extras["mss_ports"]["smtp"]

    @property
    def imap_port(self) -> int:
        return self.servers["mss"].sim.ctx.extras["mss_ports"]["imap"]


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    settings = {"mss": {"psc_issuer": ISSUER, "psc_jwks": KeySet([KEY]).as_dict(private=False), "smtp_port": 0,
                        "imap_port": 0}}
    with contextlib.ExitStack() as stack:
        servers = {}
        for spec in registry.available():
            config = SimConfig(settings=dict(settings.get(spec.name, {})), limits=LIMITS,
                               tls_port=0 if spec.name == "insi" else None)
            servers[spec.name] = stack.enter_context(serve_in_thread(build_simulator(registry.load_spec(spec.name),
                                                                                     config)))
        # TCP_NODELAY: httpx writes headers and body separately, and Nagle's algorithm would hold the body until
        # the server's delayed ACK (40 ms per request).
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        http = stack.enter_context(httpx.Client(timeout=10.0, transport=transport))
        ca = ssl.create_default_context(cadata=http.get(servers["mss"].url + "/_bench/mss/ca.pem").text)
        yield Bench(servers, http, ca)
