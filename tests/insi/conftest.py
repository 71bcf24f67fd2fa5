from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree
from siram_fault import Fault, read_fault

from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.insi.app import SPEC

from .messages import SOAP_CT

XSD_DIR = Path(__file__).resolve().parents[2] / "simulators" / "insi" / "xsd"
FIXTURES = Path(__file__).parent / "fixtures"
NSMAP = {
    "soap": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "r": "http://www.cnamts.fr/INSiResultat",
    "siram": "urn:siram",
}


def schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_DIR / name)))


RESULTAT_XSD = schema("insi_resultat.xsd")


class Client:
    def __init__(self, url: str, verify: ssl.SSLContext | bool = True) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10, verify=verify)

    def post(self, xml: str | bytes, content_type: str = SOAP_CT) -> httpx.Response:
        data = xml.encode() if isinstance(xml, str) else xml
        return self.http.post("/lps", content=data, headers={"Content-Type": content_type})

    def result(self, xml: str | bytes, content_type: str = SOAP_CT) -> etree._Element:
        """POST, expect 200 + RESULTAT valid against our XSD; return the envelope root."""
        resp = self.post(xml, content_type)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("application/soap+xml")
        root = etree.fromstring(resp.content)
        resultat = root.xpath("/soap:Envelope/soap:Body/r:RESULTAT", namespaces=NSMAP)
        assert len(resultat) == 1, resp.text
        RESULTAT_XSD.assertValid(resultat[0])
        code = root.xpath("string(//r:RESULTAT/r:CR/r:CodeCR)", namespaces=NSMAP)
        assert bool(root.xpath("//r:RESULTAT/r:INDIVIDU", namespaces=NSMAP)) == (code == "00")
        return root

    def fault(self, xml: str | bytes, content_type: str = SOAP_CT) -> Fault:
        resp = self.post(xml, content_type)
        assert resp.status_code in (400, 500), resp.text
        return read_fault(resp)

    def control(self, method: str, path: str, json: object | None = None) -> httpx.Response:
        resp = self.http.request(method, f"/_bench{path}", json=json)
        assert resp.status_code < 300, resp.text
        return resp


def code_of(root: etree._Element) -> str:
    return root.xpath("string(//r:RESULTAT/r:CR/r:CodeCR)", namespaces=NSMAP)


def xp(root: etree._Element, path: str) -> str:
    return root.xpath(f"string({path})", namespaces=NSMAP)


@pytest.fixture(scope="session")
def insi_server() -> Iterator[Client]:
    with serve_in_thread(build_simulator(SPEC)) as server:
        client = Client(server.url)
        yield client
        client.http.close()


@pytest.fixture
def insi(insi_server: Client) -> Client:
    insi_server.control("POST", "/reset")
    return insi_server


@pytest.fixture(scope="session")
def insi_mtls_server(test_pki) -> Iterator[object]:
    """INSi in mutual-TLS mode on a TLS port of the test PKI (client certificate required)."""
    config = SimConfig(settings={"auth_mode": "mtls", "authorised_idam": ["SIMUL-LGC-0001", "AUTRE-LGC"]},
                       tls_port=0, pki_dir=test_pki.pki.directory)
    with serve_in_thread(build_simulator(SPEC, config)) as server:
        yield server


@pytest.fixture(scope="session")
def insi_mtls(insi_mtls_server, test_pki) -> Iterator[Client]:
    """A client of INSi's mutual-TLS mode presenting the INSI-AUTO software certificate."""
    client = Client(insi_mtls_server.tls_url, verify=test_pki.context("software"))
    yield client
    client.http.close()
