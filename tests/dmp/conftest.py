from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser

import httpx
import pytest
from lxml import etree

from simulators.core.server import serve_in_thread
from simulators.core.simulator import build_simulator
from simulators.dmp.app import SPEC

from .messages import SOAP_CT

BASE = "/si-dmp-server/v2/services"
NSMAP = {
    "soap": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "rs": "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0",
    "rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0",
    "query": "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0",
    "xds": "urn:ihe:iti:xds-b:2007",
    "xop": "http://www.w3.org/2004/08/xop/include",
    "hl7": "urn:hl7-org:v3",
    "hab": "urn:si-dmp-habilitations",
}
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"


@dataclass
class Fault:
    status: int
    code: str
    subcode: str
    reason: str


def xp(root: etree._Element, path: str) -> str:
    return root.xpath(f"string({path})", namespaces=NSMAP)


def errors(root: etree._Element) -> list[tuple[str, str]]:
    return [(e.get("errorCode"), e.get("codeContext")) for e in root.xpath("//rs:RegistryError", namespaces=NSMAP)]


def split_multipart(content: bytes, content_type: str) -> tuple[bytes, dict[str, bytes]]:
    msg = BytesParser(policy=policy.compat32).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + content)
    parts = msg.get_payload()
    root = parts[0].get_payload(decode=True)
    attachments = {p["Content-ID"].strip("<>"): p.get_payload(decode=True) for p in parts[1:]}
    return root, attachments


class Client:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=20)

    def post(self, service: str, data: str | bytes, content_type: str = SOAP_CT, **headers: str) -> httpx.Response:
        body = data.encode() if isinstance(data, str) else data
        return self.http.post(f"{BASE}/{service}", content=body, headers={"Content-Type": content_type, **headers})

    def ok(self, service: str, data: str | bytes, content_type: str = SOAP_CT) -> etree._Element:
        resp = self.post(service, data, content_type)
        assert resp.status_code == 200, resp.text
        return etree.fromstring(resp.content)

    def fault(self, service: str, data: str | bytes, content_type: str = SOAP_CT) -> Fault:
        resp = self.post(service, data, content_type)
        assert resp.status_code in (400, 404, 415, 500), resp.text  # 415: a media type the binding does not carry
        root = etree.fromstring(resp.content)
        assert root.xpath("//soap:Fault", namespaces=NSMAP), resp.text
        return Fault(resp.status_code, xp(root, "//soap:Fault/soap:Code/soap:Value"),
                     xp(root, "//soap:Fault/soap:Code/soap:Subcode/soap:Value"),
                     xp(root, "//soap:Fault/soap:Reason/soap:Text"))

    def control(self, method: str, path: str, json: object | None = None) -> dict:
        resp = self.http.request(method, f"/_bench{path}", json=json)
        assert resp.status_code < 300, resp.text
        return resp.json()

    def state(self, ins: str | None = None) -> dict:
        return self.control("GET", f"/state?ins={ins}" if ins else "/state")["state"]


@pytest.fixture(scope="session")
def dmp_server() -> Iterator[Client]:
    with serve_in_thread(build_simulator(SPEC)) as server:
        client = Client(server.url)
        yield client
        client.http.close()


@pytest.fixture
def dmp(dmp_server: Client) -> Client:
    dmp_server.control("POST", "/reset")
    return dmp_server
