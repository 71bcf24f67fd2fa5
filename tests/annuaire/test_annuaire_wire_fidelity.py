"""Issue 15, Annuaire santé wire points: `_count=0`, `Prefer: handling=lenient|strict`, reference search parameters in
the CapabilityStatement. Requests are literal query strings; answers are validated with the third-party FHIR models
of `fhir.resources` (R4B package: the R4-compatible models this version ships) and checked against the FHIR R4 base
search parameter types written out here by hand.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome

LENIENT = {"Prefer": "handling=lenient"}

# Types of the FHIR R4 base SearchParameters (hl7.org/fhir/R4/searchparameter-registry.html) the server declares.
R4_TYPES = {
    ("Practitioner", "_id"): "token", ("Practitioner", "identifier"): "token", ("Practitioner", "active"): "token",
    ("Practitioner", "name"): "string", ("Practitioner", "family"): "string", ("Practitioner", "given"): "string",
    ("PractitionerRole", "practitioner"): "reference", ("PractitionerRole", "organization"): "reference",
    ("PractitionerRole", "role"): "token", ("PractitionerRole", "specialty"): "token",
    ("PractitionerRole", "identifier"): "token", ("PractitionerRole", "active"): "token",
    ("Organization", "name"): "string", ("Organization", "address-city"): "string",
    ("Organization", "address-postalcode"): "string", ("Organization", "type"): "token",
    ("Organization", "identifier"): "token", ("Organization", "active"): "token",
}




def searchset(resp: httpx.Response) -> Bundle:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/fhir+json")
    assert "[]" not in resp.text.replace(" ", "")  # FHIR JSON: no empty arrays (json.html)
    bundle = Bundle.model_validate(resp.json())
    assert bundle.type == "searchset"
    return bundle


def outcome_of(resp: httpx.Response, status: int) -> OperationOutcome:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/fhir+json")
    return OperationOutcome.model_validate(resp.json())


# ------------------------------------------------------------------------------------------------ _count=0


def test_count_zero_returns_only_the_total(client: httpx.Client):
    bundle = searchset(client.get("/Practitioner?family=MARTIN&_count=0"))
    assert bundle.total == 2
    assert not bundle.entry
    assert [link.relation for link in bundle.link] == ["self"]  # no next/previous page to follow


def test_count_zero_with_include_and_on_every_type(client: httpx.Client):
    roles = searchset(client.get("/PractitionerRole?_count=0&_include=PractitionerRole:organization"))
    assert roles.total and roles.total > 0 and not roles.entry
    for rtype in ("Organization", "Practitioner"):
        assert searchset(client.get(f"/{rtype}?_count=0")).total > 0


def test_count_zero_with_no_match(client: httpx.Client):
    bundle = searchset(client.get("/Practitioner?family=NOBODY&_count=0"))
    assert bundle.total == 0 and not bundle.entry


@pytest.mark.parametrize("value", ["-1", "abc", ""])
def test_bad_count_stays_an_error(client: httpx.Client, value: str):
    oo = outcome_of(client.get(f"/Practitioner?_count={value}"), 400)
    assert oo.issue[0].code == "invalid" and "_count" in oo.issue[0].diagnostics


def test_an_empty_search_is_valid_fhir_json(client: httpx.Client):
    bundle = searchset(client.get("/Practitioner?family=NOBODY"))
    assert bundle.total == 0 and not bundle.entry


# ------------------------------------------------------------------------------------------------ handling


def test_unknown_parameter_is_400_by_default_and_with_handling_strict(client: httpx.Client):
    for headers in ({}, {"Prefer": "handling=strict"}):
        oo = outcome_of(client.get("/Practitioner?family=MARTIN&colour=blue", headers=headers), 400)
        assert oo.issue[0].code == "not-supported" and "colour" in oo.issue[0].diagnostics


def test_lenient_ignores_unknown_parameters_and_reports_them_in_an_outcome_entry(client: httpx.Client):
    resp = client.get("/Practitioner?family=MARTIN&colour=blue&name:fuzzy=x", headers=LENIENT)
    bundle = searchset(resp)
    assert resp.headers.get("Preference-Applied") == "handling=lenient"
    assert bundle.total == 2  # as if the two parameters had not been sent
    matches = [e for e in bundle.entry if e.search.mode == "match"]
    outcomes = [e for e in bundle.entry if e.search.mode == "outcome"]
    assert len(matches) == 2 and len(outcomes) == 1
    oo = outcomes[0].resource
    assert oo.get_resource_type() == "OperationOutcome"
    text = " ".join(i.diagnostics for i in oo.issue)
    assert "colour" in text and "name:fuzzy" in text
    assert {i.severity for i in oo.issue} == {"warning"} and {i.code for i in oo.issue} == {"not-supported"}
    # the self link shows the search that was actually performed
    self_query = dict(parse_qsl(urlsplit(next(x.url for x in bundle.link if x.relation == "self")).query))
    assert self_query["family"] == "MARTIN" and "colour" not in self_query and "name:fuzzy" not in self_query


def test_lenient_among_other_preferences_and_on_post_search(client: httpx.Client):
    resp = client.post("/Practitioner/_search", data={"family": "MARTIN", "colour": "blue"},
                       headers={"Prefer": "return=representation, handling=lenient"})
    bundle = searchset(resp)
    assert bundle.total == 2 and any(e.search.mode == "outcome" for e in bundle.entry)


def test_lenient_chains_and_includes(client: httpx.Client):
    bundle = searchset(client.get("/PractitionerRole?patient.name=x&organization.address-city=CLERMONT"
                                  "&_include=Patient:link", headers=LENIENT))
    strict = searchset(client.get("/PractitionerRole?organization.address-city=CLERMONT"))
    assert bundle.total == strict.total
    oo = next(e.resource for e in bundle.entry if e.search.mode == "outcome")
    text = " ".join(i.diagnostics for i in oo.issue)
    assert "patient.name" in text and "Patient:link" in text


def test_lenient_without_anything_to_ignore_adds_no_outcome(client: httpx.Client):
    bundle = searchset(client.get("/Practitioner?family=MARTIN", headers=LENIENT))
    assert {e.search.mode for e in bundle.entry} == {"match"}


def test_lenient_does_not_excuse_a_bad_value(client: httpx.Client):
    outcome_of(client.get("/Practitioner?_count=abc", headers=LENIENT), 400)
    outcome_of(client.get("/Practitioner?name=", headers=LENIENT), 400)


def test_lenient_paging_keeps_the_outcome_out_of_the_links(client: httpx.Client):
    bundle = searchset(client.get("/Practitioner?_count=2&colour=blue", headers=LENIENT))
    nxt = next(x.url for x in bundle.link if x.relation == "next")
    assert "colour" not in nxt
    assert searchset(client.get(nxt)).total == bundle.total  # the next link works in strict mode too


# ------------------------------------------------------------------------------------------------ CapabilityStatement


def test_capability_statement_is_valid_and_declares_reference_parameters(base: str):
    resp = httpx.get(f"{base}/metadata")
    assert resp.status_code == 200
    cs = CapabilityStatement.model_validate(resp.json())
    assert cs.fhirVersion == "4.0.1" and cs.kind == "instance"
    declared = {(r.type, p.name): p.type for r in cs.rest[0].resource for p in r.searchParam}
    for key, kind in R4_TYPES.items():
        assert declared.get(key) == kind, (key, declared.get(key))
    assert declared[("PractitionerRole", "practitioner")] == "reference"
    assert declared[("PractitionerRole", "organization")] == "reference"


def test_reference_parameters_accept_references_and_ids(client: httpx.Client):
    by_ref = searchset(client.get("/PractitionerRole?practitioner=Practitioner/pra-899700366240"))
    by_id = searchset(client.get("/PractitionerRole?practitioner=pra-899700366240"))
    assert by_ref.total == by_id.total and by_ref.total > 0
