"""Helpers for the reference LGC's ON / MSSanté / Annuaire client tests: run simulators in-process (free ports),
get a real Pro Santé Connect token from the PSC simulator (CIBA), build CallContexts and test documents.

Only the tests touch the simulators; `reference_lgc` itself never imports them.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx

from reference_lgc.services.context import CallContext, Endpoint, Professional, Software
from simulators.core.server import serve_in_thread
from simulators.core.service import ServiceSpec, SimConfig
from simulators.core.simulator import build_simulator

# The PSC sandbox card reused by the personas (simulators/personas/data/professionals.toml).
KIT = Professional(national_id="899700366240", rpps="99700366240", family_name="DOC0036624", given_name="KIT",
                   billing_id="999990013", amo_speciality="01", structure_name="CABINET M DOC0036624",
                   structure_id="499700366240007")
KIT_BAL = "kit.doc0036624@medecin.mssante.fr"
ROBERT_NID = "899700218896"
ROBERT_BAL = "robert.specialiste0021889@medecin.mssante.fr"
CLERICO_INS = "143110095083713"
CLERICO_BAL = f"{CLERICO_INS}@patient.mssante.fr"
PSC_REALM = "/auth/realms/esante-wallet"
PSC_CLIENT = ("segur-bench-lgc", "segur-bench-lgc-secret")
ANNUAIRE_KEY = "segur-bench-annuaire"


@dataclass
class Sim:
    url: str  # base URL, e.g. http://127.0.0.1:41234
    http: httpx.Client
    server: Any  # simulators.core.server.ThreadedServer

    def control(self, method: str, path: str, json: Any = None) -> Any:
        resp = self.http.request(method, f"/_bench{path}", json=json)
        assert resp.status_code < 300, resp.text
        return resp.json() if resp.content else {}

    def reset(self) -> None:
        self.control("POST", "/reset")

    def fault(self, effect: dict[str, Any], **selector: Any) -> None:
        self.control("POST", "/faults", {"effect": effect, **selector})


@contextmanager
def running(spec: ServiceSpec, **settings: Any) -> Iterator[Sim]:
    with serve_in_thread(build_simulator(spec, SimConfig(settings=settings))) as server, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        yield Sim(server.url, http, server)


def ctx(url: str, *, professional: Professional = KIT, timeout: float = 5.0, **extra: str) -> CallContext:
    return CallContext(Software(), professional, Endpoint(url, timeout=timeout, extra=dict(extra)))


def with_token(c: CallContext, token: str | None) -> CallContext:
    return replace(c, professional=replace(c.professional, access_token=token))


def psc_token(psc_url: str, national_id: str = KIT.national_id) -> str:
    """Access token of the professional from the PSC simulator (CIBA poll flow, approved via the control API)."""
    oidc = psc_url + PSC_REALM + "/protocol/openid-connect/"
    req = httpx.post(oidc + "ext/ciba/auth", auth=PSC_CLIENT, data={
        "scope": "openid scope_all", "acr_values": "eidas1", "login_hint": national_id, "binding_message": "42"})
    assert req.status_code == 200, req.text
    auth_req_id = req.json()["auth_req_id"]
    approved = httpx.post(psc_url + "/_bench/state", json={"ciba": {"auth_req_id": auth_req_id,
                                                                    "decision": "approve"}})
    assert approved.status_code < 300, approved.text
    resp = httpx.post(oidc + "token", auth=PSC_CLIENT, data={"grant_type": "urn:openid:params:grant-type:ciba",
                                                             "auth_req_id": auth_req_id})
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


# A one-page PDF that a viewer opens (the MSS simulator only checks the type; the LGC archives the bytes).
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
       b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def cda_clerico(*, doc_id: str = "1.2.250.1.999.1.2.3.4.5", code: str = "11488-4",
                title: str = "Compte rendu de consultation", ins: str = CLERICO_INS) -> bytes:
    """A CDA R2 N1 (PDF body) for CLÉRICO Côme, authored by KIT DOC0036624."""
    pdf = base64.b64encode(PDF).decode()
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.2.8.2.1"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <templateId root="1.3.6.1.4.1.19376.1.2.20"/>
  <id root="{doc_id}"/>
  <code code="{code}" codeSystem="2.16.840.1.113883.6.1" displayName="CR de consultation"/>
  <title>{title}</title>
  <effectiveTime value="20260110093000+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="{doc_id}.1"/>
  <versionNumber value="1"/>
  <recordTarget><patientRole>
    <id root="1.2.250.1.213.1.4.8" extension="{ins}"/>
    <patient>
      <name><given qualifier="BR">COME</given><family qualifier="BR">CLERICO</family></name>
      <administrativeGenderCode code="M" codeSystem="2.16.840.1.113883.5.1"/>
      <birthTime value="19431107"/>
    </patient>
  </patientRole></recordTarget>
  <author><time value="20260110093000+0100"/><assignedAuthor>
    <id root="1.2.250.1.71.4.2.1" extension="899700366240"/>
    <assignedPerson><name><given>KIT</given><family>DOC0036624</family></name></assignedPerson>
  </assignedAuthor></author>
  <custodian><assignedCustodian><representedCustodianOrganization>
    <id root="1.2.250.1.71.4.2.2" extension="499700366240007"/>
  </representedCustodianOrganization></assignedCustodian></custodian>
  <componentOf><encompassingEncounter><effectiveTime value="20260110"/><location><healthCareFacility>
    <code code="SA07" codeSystem="1.2.250.1.71.4.2.4"/>
  </healthCareFacility></location></encompassingEncounter></componentOf>
  <component><nonXMLBody><text mediaType="application/pdf" representation="B64">{pdf}</text></nonXMLBody></component>
</ClinicalDocument>
""".encode()
