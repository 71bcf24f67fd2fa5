from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lxml import etree
from siram_fault import Fault, read_fault

from simulators.apcv.app import SPEC
from simulators.core.server import serve_in_thread
from simulators.core.simulator import build_simulator

from .messages import (
    ACTION_DETRUIRE,
    ACTION_RESTITUER,
    SOAP_CT,
    auth_body,
    detruire_body,
    envelope,
    restituer_body,
)

XSD_DIR = Path(__file__).resolve().parents[2] / "simulators" / "apcv" / "xsd"
NSMAP = {
    "soap": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "a": "http://www.sesam-vitale.fr/apcv/auth/1/0",
    "siram": "urn:siram",
}


def schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_DIR / name)))


AUTH_XSD = schema("apcv_auth.xsd")
ERREUR_XSD = schema("siram_erreur.xsd")


def xp(root: etree._Element, path: str) -> str:
    return root.xpath(f"string({path})", namespaces=NSMAP)


@dataclass
class Presented:
    patient_id: str
    payload: str
    png: bytes
    expires_at: str
    raw: dict


class Client:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def post(self, xml: str | bytes, content_type: str = SOAP_CT) -> httpx.Response:
        data = xml.encode() if isinstance(xml, str) else xml
        return self.http.post("/apcv", content=data, headers={"Content-Type": content_type})

    def ok(self, xml: str | bytes, response: str, content_type: str = SOAP_CT) -> etree._Element:
        """POST, expect 200 + a body element ``response`` valid against our XSD; return the envelope root."""
        resp = self.post(xml, content_type)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("application/soap+xml")
        root = etree.fromstring(resp.content)
        found = root.xpath(f"/soap:Envelope/soap:Body/a:{response}", namespaces=NSMAP)
        assert len(found) == 1, resp.text
        AUTH_XSD.assertValid(found[0])
        return root

    def fault(self, xml: str | bytes, content_type: str = SOAP_CT) -> Fault:
        resp = self.post(xml, content_type)
        assert resp.status_code in (400, 500), resp.text
        return read_fault(resp, ERREUR_XSD)

    def control(self, method: str, path: str, json: object | None = None) -> httpx.Response:
        resp = self.http.request(method, f"/_bench{path}", json=json)
        assert resp.status_code < 300, resp.text
        return resp

    # -- flow helpers -------------------------------------------------------------------------------

    def present(self, patient: str) -> Presented:
        state = self.control("POST", "/state", {"present": patient}).json()["state"]
        p = state["presented"]
        return Presented(p["patient_id"], p["payload"], base64.b64decode(p["png_base64"]), p["expires_at"], p)

    def authenticate(self, payload: str, **kw: object) -> str:
        root = self.ok(envelope(auth_body(payload), **kw), "AuthentifierUtilisateurProximiteResp")  # type: ignore[arg-type]
        return xp(root, "//a:AuthentifierUtilisateurProximiteResp/a:ContexteApCV/a:Identifiant")

    def restituer(self, context_id: str, **kw: object) -> etree._Element:
        return self.ok(envelope(restituer_body(context_id), action=ACTION_RESTITUER, **kw),  # type: ignore[arg-type]
                       "RestituerContexteApCVResp")

    def detruire(self, context_id: str, **kw: object) -> etree._Element:
        return self.ok(envelope(detruire_body(context_id), action=ACTION_DETRUIRE, **kw),  # type: ignore[arg-type]
                       "DetruireContexteApCVResp")


@pytest.fixture(scope="session")
def apcv_server() -> Iterator[Client]:
    with serve_in_thread(build_simulator(SPEC)) as server:
        client = Client(server.url)
        yield client
        client.http.close()


@pytest.fixture
def apcv(apcv_server: Client) -> Client:
    apcv_server.control("POST", "/reset")
    return apcv_server

