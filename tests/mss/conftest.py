"""MSSanté fixtures: one simulator (SMTP + IMAP on free ports), tokens signed here with joserfc, XDM archives
built by hand with zipfile."""

from __future__ import annotations

import base64
import io
import ssl
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from simulators.core.server import ThreadedServer, serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.mss.app import SPEC

ISSUER = "http://psc.test/auth/realms/esante-wallet"
KEY = RSAKey.generate_key(2048, private=True)
KEY.ensure_kid()
KIT = "899700366240"
ROBERT = "899700218896"
KIT_BAL = "kit.doc0036624@medecin.mssante.fr"
KIT_ORG = "cabinet.doc0036624@medecin.mssante.fr"
ROBERT_BAL = "robert.specialiste0021889@medecin.mssante.fr"
CLERICO_INS = "143110095083713"
CLERICO_BAL = f"{CLERICO_INS}@patient.mssante.fr"
CSE = "certificatsdesante@plateformecse.mssante.fr"
SUBJECT = "XDM/1.0/DDM+COMPTE RENDU DE CONSULTATION CLERICO COME 07/11/1943"
BASE_SETTINGS = {"psc_issuer": ISSUER, "psc_jwks": KeySet([KEY]).as_dict(private=False), "smtp_port": 0,
                 "imap_port": 0}


def token(national_id: str = KIT, *, exp_in: float = 600, now: float | None = None, **claims: object) -> str:
    now = time.time() if now is None else now
    body = {"iss": ISSUER, "sub": f"f:550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd:{national_id}", "aud": "segur-bench-lgc",
            "exp": int(now + exp_in), "iat": int(now), "azp": "segur-bench-lgc", "scope": "openid scope_all",
            "preferred_username": national_id, **claims}
    return jwt.encode({"alg": "RS256", "kid": KEY.kid}, body, KEY)


def xoauth2(user: str, tok: str) -> str:
    return f"user={user}\x01auth=Bearer {tok}\x01\x01"


def oauthbearer(user: str, tok: str, host: str = "127.0.0.1", port: int = 0) -> str:
    return f"n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {tok}\x01\x01"


def cda(*, ins: str = CLERICO_INS, oid: str = "1.2.250.1.213.1.4.8", code: str = "11488-4",
        title: str = "COMPTE RENDU DE CONSULTATION", family: str = "CLERICO", given: str = "COME",
        birth: str = "19431107", related: str | None = None) -> bytes:
    rel = (f'<relatedDocument typeCode="RPLC"><parentDocument><id root="{related}"/></parentDocument>'
           "</relatedDocument>") if related else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="1.2.250.1.999.1.2.3.4.5"/>
  <code code="{code}" codeSystem="2.16.840.1.113883.6.1"/>
  <title>{title}</title>
  <effectiveTime value="20261125090000+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <recordTarget><patientRole>
    <id root="{oid}" extension="{ins}"/>
    <patient>
      <name><given>{given}</given><family qualifier="BR">{family}</family></name>
      <administrativeGenderCode code="M" codeSystem="2.16.840.1.113883.5.1"/>
      <birthTime value="{birth}"/>
    </patient>
  </patientRole></recordTarget>
  {rel}
</ClinicalDocument>
""".encode()


def metadata(*, uri: str = "DOC0001.XML", type_code: str = "11488-4", ins: str = CLERICO_INS,
             unique_id: str = "1.2.250.1.999.1.2.3.4.5") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
    xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
  <rim:RegistryObjectList>
    <rim:ExtrinsicObject id="Document01" mimeType="text/xml"
        objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">
      <rim:Slot name="URI"><rim:ValueList><rim:Value>{uri}</rim:Value></rim:ValueList></rim:Slot>
      <rim:Classification classificationScheme="urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
          classifiedObject="Document01" id="c1" nodeRepresentation="{type_code}"/>
      <rim:ExternalIdentifier identificationScheme="urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
          id="e1" registryObject="Document01" value="{ins}^^^&amp;1.2.250.1.213.1.4.8&amp;ISO"/>
      <rim:ExternalIdentifier identificationScheme="urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
          id="e2" registryObject="Document01" value="{unique_id}"/>
    </rim:ExtrinsicObject>
  </rim:RegistryObjectList>
</lcm:SubmitObjectsRequest>
""".encode()


def xdm_zip(*, files: dict[str, bytes] | None = None, drop: tuple[str, ...] = (), **meta: str) -> bytes:
    members = {
        "INDEX.HTM": b"<html><body>IHE XDM</body></html>",
        "README.TXT": b"Archive IHE XDM - LGC de test\r\n",
        "IHE_XDM/SUBSET01/METADATA.XML": metadata(**meta),
        "IHE_XDM/SUBSET01/DOC0001.XML": cda(),
    }
    members.update(files or {})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            if name not in drop:
                zf.writestr(name, data)
    return buf.getvalue()


def mail(*, sender: str = KIT_BAL, to: tuple[str, ...] = (CLERICO_BAL,), subject: str = SUBJECT,
         headers: dict[str, str] | None = None, xdm: bytes | None = None, xdm_name: str = "IHE_XDM.zip",
         pdf: bool = True, body: str = "Bonjour, veuillez trouver ci-joint votre compte rendu.") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="lgc.test")
    defaults = {"X-MSS-NIL": "LGC-TEST-0001", "X-MSS-CODECDA": "11488-4", "X-MSS-INS": "O", "X-MSS-MES": "FIN"}
    for name, value in {**defaults, **(headers or {})}.items():
        if value is not None:
            msg[name] = value
    msg.set_content(body)
    if xdm is not None:
        msg.add_attachment(xdm, maintype="application", subtype="zip", filename=xdm_name)
    if pdf:
        msg.add_attachment(b"%PDF-1.4\n%bench\n", maintype="application", subtype="pdf",
                           filename="20261125_CR_CLERICO_COME.pdf")
    return msg


@dataclass
class Mss:
    server: ThreadedServer
    http: httpx.Client
    ca: ssl.SSLContext

    @property
    def ctx(self):
        return self.server.sim.ctx

    @property
    def settings(self) -> dict:
        return self.ctx.config.settings

    @property
    def smtp_port(self) -> int:
        return self.ctx.extras["mss_ports"]["smtp"]

    @property
    def imap_port(self) -> int:
        return self.ctx.extras["mss_ports"]["imap"]

    def get(self, path: str, **params: object) -> object:
        resp = self.http.get(self.server.url + path, params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def post(self, path: str, body: object) -> httpx.Response:
        return self.http.post(self.server.url + path, json=body)

    def findings(self) -> list[dict]:
        return self.get("/_bench/mss/findings")  # type: ignore[return-value]

    def last_findings(self) -> list[dict]:
        return self.findings()[-1]["findings"]

    def inbox(self, address: str, folder: str = "INBOX") -> list[dict]:
        return self.get(f"/_bench/mss/mailboxes/{address}", folder=folder)["messages"]  # type: ignore[index]

    def fault(self, rule: dict) -> None:
        resp = self.post("/_bench/faults", rule)
        assert resp.status_code < 300, resp.text

    def journal(self, operation: str) -> list[dict]:
        data = self.get("/_bench/journal", operation=operation)
        return data["entries"] if isinstance(data, dict) else data  # type: ignore[index]

    def sim_now(self) -> float:
        return datetime.fromisoformat(self.get("/_bench/clock")["now"].replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="session")
def mss_server() -> Iterator[Mss]:
    sim = build_simulator(SPEC, SimConfig(settings=dict(BASE_SETTINGS)))
    with serve_in_thread(sim) as server:
        http = httpx.Client(timeout=15)
        ca_pem = http.get(server.url + "/_bench/mss/ca.pem").text
        yield Mss(server, http, ssl.create_default_context(cadata=ca_pem))
        http.close()


@pytest.fixture
def mss(mss_server: Mss) -> Iterator[Mss]:
    resp = mss_server.http.post(mss_server.server.url + "/_bench/reset")
    assert resp.status_code < 300, resp.text
    saved = dict(mss_server.settings)
    yield mss_server
    mss_server.settings.clear()
    mss_server.settings.update(saved)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
