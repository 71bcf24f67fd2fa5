"""Annuaire santé FHIR API over real HTTP with plain httpx query strings; bundles checked structurally."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from simulators.annuaire.app import SPEC
from simulators.annuaire.wire import URL_MSS_METADATA
from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator

from .conftest import KEY

RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
FINESS_SYSTEM = "https://finess.esante.gouv.fr"




def bundle(resp: httpx.Response, rtype: str) -> dict:
    """Check a searchset Bundle's structure and return it."""
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/fhir+json")
    b = resp.json()
    assert b["resourceType"] == "Bundle" and b["type"] == "searchset"
    assert isinstance(b["total"], int) and b["total"] >= 0
    assert isinstance(b.get("id"), str)
    relations = [link["relation"] for link in b["link"]]
    assert relations.count("self") == 1 and set(relations) <= {"self", "next", "previous"}
    for link in b["link"]:
        assert link["url"].startswith("http") and f"/fhir/v2/{rtype}?" in link["url"]
    for e in b.get("entry", []):  # FHIR JSON has no empty arrays: no match, no "entry"
        res = e["resource"]
        assert e["fullUrl"].endswith(f"/fhir/v2/{res['resourceType']}/{res['id']}")
        assert e["search"]["mode"] in ("match", "include")
        if e["search"]["mode"] == "match":
            assert res["resourceType"] == rtype
    matches = [e for e in b.get("entry", []) if e["search"]["mode"] == "match"]
    assert len(matches) <= b["total"]
    return b


def matched(b: dict) -> list[dict]:
    return [e["resource"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]


def outcome(resp: httpx.Response, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/fhir+json")
    oo = resp.json()
    assert oo["resourceType"] == "OperationOutcome" and oo["issue"][0]["severity"] == "error"
    if code:
        assert oo["issue"][0]["code"] == code, oo
    return oo


def mailbox_meta(telecom: dict) -> dict:
    ext = next(e for e in telecom["extension"] if e["url"] == URL_MSS_METADATA)
    out = {}
    for sub in ext["extension"]:
        value = next(v for k, v in sub.items() if k.startswith("value"))
        out[sub["url"]] = value["coding"][0]["code"] if sub["url"] == "type" else value
    return out


# --- API key ---------------------------------------------------------------------------------------


def test_missing_api_key_is_401(base):
    oo = outcome(httpx.get(f"{base}/Practitioner?name=DOC"), 401, "login")
    assert "ESANTE-API-KEY" in oo["issue"][0]["diagnostics"]


def test_wrong_api_key_is_401(base):
    outcome(httpx.get(f"{base}/Practitioner", headers={"ESANTE-API-KEY": "nope"}), 401, "login")


def test_configured_api_keys():
    sim = build_simulator(SPEC, SimConfig(settings={"api_keys": ["cle-editeur-1"]}))
    with serve_in_thread(sim) as server:
        url = server.url + "/fhir/v2/Organization"
        assert httpx.get(url, headers={"ESANTE-API-KEY": "cle-editeur-1"}).status_code == 200
        assert httpx.get(url, headers={"ESANTE-API-KEY": KEY}).status_code == 401


def test_metadata_lists_search_parameters(base):
    cs = httpx.get(f"{base}/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    params = {r["type"]: {p["name"] for p in r["searchParam"]} for r in cs["rest"][0]["resource"]}
    assert {"name", "identifier", "mailbox-mss", "mailbox-mss-type"} <= params["Practitioner"]
    assert {"address-city", "address-postalcode"} <= params["Organization"]


# --- Practitioner ----------------------------------------------------------------------------------


def test_practitioner_by_rpps_identifier(client):
    b = bundle(client.get(f"/Practitioner?identifier={RPPS_SYSTEM}|899700366240"), "Practitioner")
    assert b["total"] == 1
    p = matched(b)[0]
    assert {"system": RPPS_SYSTEM, "value": "899700366240"}.items() <= p["identifier"][0].items()
    assert p["name"][0]["family"] == "DOC0036624" and p["name"][0]["given"] == ["KIT"]
    boxes = [t for t in p["telecom"] if t["system"] == "email"]
    assert boxes[0]["value"] == "kit.doc0036624@medecin.mssante.fr"
    meta = mailbox_meta(boxes[0])
    assert meta["type"] == "PER" and meta["listeRouge"] is False
    # the bare value and the 11-digit RPPS also match
    assert bundle(client.get("/Practitioner?identifier=899700366240"), "Practitioner")["total"] == 1
    assert bundle(client.get("/Practitioner?identifier=https://rpps.esante.gouv.fr|99700366240"),
                  "Practitioner")["total"] == 1
    assert bundle(client.get("/Practitioner?identifier=https://other|899700366240"), "Practitioner")["total"] == 0


def test_homonyms_by_name(client):
    b = bundle(client.get("/Practitioner?family=MARTIN&given=sophie"), "Practitioner")
    assert b["total"] == 2
    professions = {p["qualification"][0]["code"]["coding"][0]["code"] for p in matched(b)}
    assert professions == {"10", "60"}
    assert bundle(client.get("/Practitioner?name=Sophie Martin"), "Practitioner")["total"] == 2
    assert bundle(client.get("/Practitioner?name=mart"), "Practitioner")["total"] == 2  # starts-with
    assert bundle(client.get("/Practitioner?name:exact=MART"), "Practitioner")["total"] == 0
    assert bundle(client.get("/Practitioner?name:contains=ARTI"), "Practitioner")["total"] == 2


def test_multi_criteria_and_or(client):
    b = bundle(client.get("/Practitioner?family=MARTIN&qualification-code=60"), "Practitioner")
    assert [p["id"] for p in matched(b)] == ["pra-899999900048"]
    b = bundle(client.get("/Practitioner?family=MARTIN,DUPONT"), "Practitioner")
    assert b["total"] == 3


def test_several_mailboxes(client):
    b = bundle(client.get("/Practitioner?family=DUPONT"), "Practitioner")
    boxes = [t["value"] for t in matched(b)[0]["telecom"]]
    assert boxes == ["jean-marie.dupont@medecin.mssante.fr", "jm.dupont@autre-operateur.mssante.fr"]


def test_mailbox_search_modifiers(client):
    b = bundle(client.get("/Practitioner?mailbox-mss=kit.doc0036624@medecin.mssante.fr"), "Practitioner")
    assert b["total"] == 1
    b = bundle(client.get("/Practitioner?mailbox-mss:exact=KIT.DOC0036624@medecin.mssante.fr"), "Practitioner")
    assert b["total"] == 0
    b = bundle(client.get("/Practitioner?mailbox-mss:contains=@medecin.mssante.fr"), "Practitioner")
    assert b["total"] == 4


def test_mailbox_type_search(client):
    b = bundle(client.get("/Organization?mailbox-mss-type=APP"), "Organization")
    assert {o["id"] for o in matched(b)} == {"org-ch-banc-essai", "org-hopital-generique"}
    b = bundle(client.get("/Organization?mailbox-mss-type=TRE-R256-TypeMessagerie|CAB"), "Organization")
    assert "org-cabinet-martin-paris" in {o["id"] for o in matched(b)}
    b = bundle(client.get("/Practitioner?mailbox-mss-type=ORG"), "Practitioner")
    assert b["total"] == 0


def test_read_practitioner(client):
    resp = client.get("/Practitioner/pra-899700218896")
    assert resp.status_code == 200 and resp.json()["name"][0]["family"] == "SPECIALISTE0021889"
    outcome(client.get("/Practitioner/pra-000"), 404, "not-found")


# --- PractitionerRole ------------------------------------------------------------------------------


def test_role_with_mailbox_and_includes(client):
    b = bundle(client.get("/PractitionerRole?practitioner=Practitioner/pra-899700366240"
                          "&_include=PractitionerRole:organization&_include=PractitionerRole:practitioner"),
               "PractitionerRole")
    assert b["total"] == 2
    roles = {r["organization"]["reference"]: r for r in matched(b)}
    hosp = roles["Organization/org-hopital-generique"]
    meta = mailbox_meta(hosp["telecom"][0])
    assert hosp["telecom"][0]["value"] == "kit.doc0036624@hopital-generique.mssante.fr"
    assert meta == {"type": "PER", "service": "URGENCES", "listeRouge": False, "digitization": True}
    included = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in b["entry"]
                if e["search"]["mode"] == "include"}
    assert included == {"Organization/org-hopital-generique", "Organization/org-cabinet-doc0036624",
                        "Practitioner/pra-899700366240"}


def test_role_chained_multi_criteria(client):
    url = "/PractitionerRole?practitioner.family=MARTIN&organization.address-city=CLERMONT&role=60"
    b = bundle(client.get(url), "PractitionerRole")
    assert [r["id"] for r in matched(b)] == ["rol-899999900048-cabinet-infirmier-banc-essai"]
    b = bundle(client.get("/PractitionerRole?specialty=SM04&organization.address-postalcode=63000"),
               "PractitionerRole")
    assert [r["practitioner"]["display"] for r in matched(b)] == ["JEAN-MARIE DUPONT"]


# --- Organization ----------------------------------------------------------------------------------


def test_organization_by_finess_and_address(client):
    b = bundle(client.get(f"/Organization?identifier={FINESS_SYSTEM}|639999002"), "Organization")
    assert [o["name"] for o in matched(b)] == ["PHARMACIE DU BANC D'ESSAI"]
    b = bundle(client.get("/Organization?address-city=clermont-ferrand"), "Organization")
    assert b["total"] == 3
    b = bundle(client.get("/Organization?address-postalcode=75009&name:contains=cabinet"), "Organization")
    assert {o["id"] for o in matched(b)} == {"org-cabinet-doc0036624", "org-cabinet-specialiste0021889"}


def test_organization_mailboxes_and_liste_rouge(client):
    org = client.get("/Organization/org-ch-banc-essai").json()
    boxes = {t["value"]: mailbox_meta(t) for t in org["telecom"] if t["system"] == "email"}
    assert boxes["dpi-integration@ch-banc-essai.mssante.fr"]["type"] == "APP"
    assert boxes["dpi-integration@ch-banc-essai.mssante.fr"]["responsible"] == "DSI DU CENTRE HOSPITALIER"
    assert boxes["direction@ch-banc-essai.mssante.fr"]["listeRouge"] is True
    assert boxes["cardiologie@ch-banc-essai.mssante.fr"]["service"] == "CARDIOLOGIE"
    assert {"system": "phone", "value": "0473000010"} in org["telecom"]


# --- paging and errors -----------------------------------------------------------------------------


def test_paging_links(client):
    first = bundle(client.get("/Practitioner?_count=2"), "Practitioner")
    total = first["total"]
    assert total == 7 and len(matched(first)) == 2
    seen = [p["id"] for p in matched(first)]
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert "previous" not in links
    while "next" in links:
        page = bundle(httpx.get(links["next"], headers={"ESANTE-API-KEY": KEY}), "Practitioner")
        seen += [p["id"] for p in matched(page)]
        links = {link["relation"]: link["url"] for link in page["link"]}
        assert "previous" in links
    assert len(seen) == total == len(set(seen))
    assert parse_qs(urlsplit(links["self"]).query)["_offset"] == ["6"]


@pytest.mark.parametrize(
    ("query", "code", "word"),
    [
        ("/Practitioner?colour=blue", "not-supported", "colour"),
        ("/Practitioner?name:fuzzy=x", "not-supported", ":fuzzy"),
        ("/Practitioner?identifier:contains=8997", "not-supported", ":contains"),
        ("/Practitioner?_count=abc", "invalid", "_count"),
        ("/Practitioner?name=", "invalid", "empty"),
        ("/Organization?family=MARTIN", "not-supported", "family"),
        ("/Practitioner?_include=PractitionerRole:organization", "not-supported", "_include"),
        ("/PractitionerRole?patient.name=x", "not-supported", "patient.name"),
        ("/Practitioner?_format=xml", "invalid", "_format"),
    ],
)
def test_bad_search_is_400(client, query, code, word):
    oo = outcome(client.get(query), 400, code)
    assert word in oo["issue"][0]["diagnostics"]


def test_unknown_resource_type(client):
    outcome(client.get("/Patient?name=x"), 404, "not-supported")


def test_post_search(client):
    resp = client.post("/Practitioner/_search", data={"family": "MARTIN"})
    assert bundle(resp, "Practitioner")["total"] == 2


# --- outcomes and faults ---------------------------------------------------------------------------


def test_outcomes(client, base):
    ctl = base.replace("/fhir/v2", "/_bench")
    httpx.post(f"{ctl}/faults", json={"effect": {"type": "outcome", "name": "annuaire.quota"}, "first": 1})
    resp = client.get("/Practitioner?family=MARTIN")
    outcome(resp, 429, "throttled")
    assert resp.headers["Retry-After"] == "60"
    assert bundle(client.get("/Practitioner?family=MARTIN"), "Practitioner")["total"] == 2
    httpx.post(f"{ctl}/faults", json={"effect": {"type": "outcome", "name": "annuaire.indisponible"},
                                      "operation": "Organization.search"})
    outcome(client.get("/Organization"), 503, "transient")
    assert client.get("/Practitioner").status_code == 200


def test_hang_effect_times_the_client_out(client, base):
    httpx.post(base.replace("/fhir/v2", "/_bench/faults"), json={"effect": {"type": "hang", "max_s": 5}})
    with pytest.raises(httpx.ReadTimeout):
        client.get("/Practitioner", timeout=0.5)
