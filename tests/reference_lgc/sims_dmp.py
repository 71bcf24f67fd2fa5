"""Helpers for the reference LGC's DMP client tests: the DMP simulator (and PSC when the DMP checks tokens)
in-process on free ports with an ephemeral store, the flagship GP's CallContext, and a small CDA document.

Only the tests touch the simulators; `reference_lgc` itself never imports them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from reference_lgc.services.context import CallContext, Endpoint, Professional, Software
from reference_lgc.services.dmp import Code, DocumentMetadata
from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.dmp.app import SPEC as DMP
from simulators.psc.app import SPEC as PSC

BASE = "/si-dmp-server/v2/services"
PSC_REALM = "/auth/realms/esante-wallet"
PSC_CLIENT = ("segur-bench-lgc", "segur-bench-lgc-secret")
TEST_OID = "1.2.250.1.213.1.4.10"  # test INS-NIR OID used by the DMP personas
CLERICO = "143110095083713"
BOUCHER = "167100093480710"
DMPCLOS = "290106322090821"
SANSDMP = "152026322090958"
OPPOSANT = "171066322091063"  # has blocked KIT
SEED_AUTHOR = "899700218896"

# KIT DOC0036624 (PSC sandbox card) in his liberal cabinet (personas professionals.toml / structures.toml).
KIT = Professional(national_id="899700366240", rpps="99700366240", family_name="DOC0036624", given_name="KIT",
                   structure_id="499700366240007", structure_name="CABINET M DOC0036624",
                   billing_id="999990013", amo_speciality="01")


@dataclass
class Sim:
    url: str
    http: httpx.Client

    def control(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        resp = self.http.request(method, f"/_bench{path}", json=json)
        assert resp.status_code < 300, resp.text
        return resp.json() if resp.content else {}

    def reset(self) -> None:
        self.control("POST", "/reset")

    def fault(self, effect: dict[str, Any], **selector: Any) -> None:
        self.control("POST", "/faults", {"effect": effect, **selector})

    def state(self, ins: str) -> dict[str, Any]:
        return self.control("GET", f"/state?ins={ins}")["state"]

    def ctx(self, *, professional: Professional = KIT, timeout: float = 5.0) -> CallContext:
        return CallContext(Software(), professional, Endpoint(self.url + BASE, timeout=timeout))


@contextmanager
def running_dmp(**settings: Any) -> Iterator[Sim]:
    with serve_in_thread(build_simulator(DMP, SimConfig(settings=settings))) as server, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        yield Sim(server.url, http)


@contextmanager
def running_psc() -> Iterator[Sim]:
    with serve_in_thread(build_simulator(PSC, SimConfig())) as server, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        yield Sim(server.url, http)


def psc_access_token(psc: Sim, national_id: str = KIT.national_id) -> str:
    """A CIBA access token for ``national_id`` (the trainer approves the request through the control API)."""
    oidc = f"{psc.url}{PSC_REALM}/protocol/openid-connect/"
    req = httpx.post(oidc + "ext/ciba/auth", auth=PSC_CLIENT, data={
        "scope": "openid scope_all", "acr_values": "eidas1", "login_hint": national_id, "binding_message": "42"})
    assert req.status_code == 200, req.text
    auth_req_id = req.json()["auth_req_id"]
    psc.control("POST", "/state", {"ciba": {"auth_req_id": auth_req_id, "decision": "approve"}})
    resp = httpx.post(oidc + "token", auth=PSC_CLIENT, data={"grant_type": "urn:openid:params:grant-type:ciba",
                                                             "auth_req_id": auth_req_id})
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def with_token(ctx: CallContext, token: str | None) -> CallContext:
    return replace(ctx, professional=replace(ctx.professional, access_token=token))


CDA = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="{uid}"/>
  <code code="11488-4" codeSystem="2.16.840.1.113883.6.1" displayName="Compte rendu de consultation"/>
  <title>{title}</title>
  <effectiveTime value="20261125090000+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="{set_id}"/>
  <versionNumber value="{version}"/>
  <recordTarget><patientRole><id root="{oid}" extension="{ins}"/></patientRole></recordTarget>
  <component><nonXMLBody>
    <text mediaType="text/plain" representation="B64">Q29uc3VsdGF0aW9uIGR1IGpvdXIK</text>
  </nonXMLBody></component>
</ClinicalDocument>
"""


def cda(uid: str, *, set_id: str, version: int = 1, ins: str = CLERICO, title: str = "CR de consultation") -> bytes:
    return CDA.format(uid=uid, set_id=set_id, version=version, oid=TEST_OID, ins=ins, title=title).encode()


def metadata(uid: str, *, title: str = "CR de consultation", invisible: bool = False) -> DocumentMetadata:
    return DocumentMetadata(
        title=title, unique_id=uid, creation_time=datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
        class_code=Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
        type_code=Code("11488-4", "2.16.840.1.113883.6.1", "CR de consultation"),
        format_code=Code("urn:ihe:iti:xds-sd:text:2008", "1.3.6.1.4.1.19376.1.2.3", "Texte"),
        invisible_to_patient=invisible)
