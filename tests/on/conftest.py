from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lxml import etree
from siram_fault import Fault, read_fault

from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.on.app import SPEC

from .messages import ACTION_CONSULTER, SOAP_CT, consulter_body, creer_body, envelope

XSD_DIR = Path(__file__).resolve().parents[2] / "simulators" / "on" / "xsd"
NSMAP = {
    "soap": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "ep": "http://www.cnamts.fr/ePrescription/1/0",
    "siram": "urn:siram",
}
EP_XSD = etree.XMLSchema(etree.parse(str(XSD_DIR / "eprescription.xsd")))
ERREUR_XSD = etree.XMLSchema(etree.parse(str(XSD_DIR / "siram_erreur.xsd")))


def xp(root: etree._Element, path: str) -> str:
    return root.xpath(f"string({path})", namespaces=NSMAP)


@dataclass
class Created:
    numero: str
    payload: str
    png: bytes
    root: etree._Element


class Client:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def post(self, xml: str, headers: dict | None = None) -> httpx.Response:
        return self.http.post("/eprescription", content=xml.encode(), headers={"Content-Type": SOAP_CT,
                                                                                **(headers or {})})

    def ok(self, xml: str, response: str, headers: dict | None = None) -> etree._Element:
        resp = self.post(xml, headers)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("application/soap+xml")
        root = etree.fromstring(resp.content)
        found = root.xpath(f"/soap:Envelope/soap:Body/ep:{response}", namespaces=NSMAP)
        assert len(found) == 1, resp.text
        EP_XSD.assertValid(found[0])
        return root

    def fault(self, xml: str, headers: dict | None = None) -> Fault:
        resp = self.post(xml, headers)
        assert resp.status_code in (400, 401, 500), resp.text
        return read_fault(resp, ERREUR_XSD)

    def control(self, method: str, path: str, json: object | None = None) -> httpx.Response:
        resp = self.http.request(method, f"/_bench{path}", json=json)
        assert resp.status_code < 300, resp.text
        return resp

    def create(self, **kw: object) -> Created:
        root = self.ok(envelope(creer_body(**kw)), "CreerEPrescriptionResp")  # type: ignore[arg-type]
        assert xp(root, "//ep:CR/ep:CodeCR") == "00"
        png = base64.b64decode(xp(root, "//ep:EPrescription/ep:Code2D/ep:Image"))
        return Created(xp(root, "//ep:EPrescription/ep:NumeroPrescription"),
                       xp(root, "//ep:EPrescription/ep:Code2D/ep:Donnees"), png, root)

    def consult(self, numero: str) -> etree._Element:
        return self.ok(envelope(consulter_body(numero), action=ACTION_CONSULTER), "ConsulterEPrescriptionResp")


def start(settings: dict | None = None):
    return serve_in_thread(build_simulator(SPEC, SimConfig(settings=settings or {})))


@pytest.fixture(scope="session")
def on_server() -> Iterator[Client]:
    with start() as server:
        client = Client(server.url)
        yield client
        client.http.close()


@pytest.fixture
def on(on_server: Client) -> Client:
    on_server.control("POST", "/reset")
    return on_server
