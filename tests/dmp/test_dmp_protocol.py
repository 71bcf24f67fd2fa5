"""DMP simulator over real HTTP with hand-written messages: VIHF, TD0.2/TD0.3, ITI-41/18/43/57, rules, state."""

# ruff: noqa: E501  (hand-written XPath / XML fragments are kept on one line)

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.dmp.app import SPEC

from .conftest import BASE, FAILURE, SUCCESS, Client, errors, split_multipart, xp
from .messages import (
    A_ITI18,
    A_ITI41,
    A_ITI43,
    A_ITI57,
    A_TD02,
    A_TD03,
    BOUCHER,
    CLERICO,
    DMPCLOS,
    GP,
    OPPOSANT,
    OTHER,
    SANSDMP,
    cda,
    envelope,
    find_documents,
    find_submission_sets,
    get_documents,
    mtom,
    pnr,
    retrieve,
    td02,
    td03,
    update_confidentiality,
    update_status,
)

DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"


RIM = {"rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"}
UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
CONF = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"


def eos(root) -> list:
    return root.xpath("//rim:ExtrinsicObject", namespaces=RIM)


def refs(root) -> list:
    return root.xpath("//rim:ObjectRef", namespaces=RIM)


def doc_of(documents: list[dict], uid: str) -> dict:
    return next(d for d in documents if d["unique_id"] == uid)


def td02_obs(root, code: str) -> str:
    return xp(root, f"//hl7:administrativeObservation[hl7:code/@code='{code}']/hl7:value/@code")


HAB_XSD = etree.XMLSchema(etree.parse(str(Path(__file__).resolve().parents[2] / "simulators" / "dmp" / "xsd"
                                         / "dmp_habilitations.xsd")))


def hab_valid(root) -> None:
    HAB_XSD.assertValid(root.xpath("//hab:setAuthorizationResponse", namespaces={"hab": "urn:si-dmp-habilitations"})[0])


def authorise(dmp: Client, ins: str = CLERICO, nid: str = GP) -> None:
    root = dmp.ok("habilitations", envelope(A_TD03, "habilitations", td03("AJOUT"), ins, nid=nid))
    hab_valid(root)
    assert xp(root, "//hab:status") == "OK", root


def find(dmp: Client, ins: str = CLERICO, **kw):
    vihf = {k: kw.pop(k) for k in ("nid", "purpose") if k in kw}
    return dmp.ok("registry", envelope(A_ITI18, "registry", find_documents(ins, **kw), ins, **vihf))


def feed(dmp: Client, uid: str, ins: str = CLERICO, nid: str = GP, **kw):
    return dmp.ok("repository", envelope(A_ITI41, "repository", pnr(uid, ins=ins, nid=nid, **kw), ins, nid=nid))


# --- VIHF --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attribute", [
    "VIHF_Version", "Authentification_Mode", "urn:oasis:names:tc:xacml:2.0:subject:role", "Secteur_Activite",
    "urn:oasis:names:tc:xacml:2.0:resource:resource-id", "Ressource_URN",
    "urn:oasis:names:tc:xspa:1.0:subject:subject-id", "Identifiant_Structure",
    "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse", "LPS_Nom", "LPS_ID_HOMOLOGATION_DMP",
])
def test_missing_vihf_attribute(dmp, attribute):
    fault = dmp.fault("patients", envelope(A_TD02, "patients", td02(), drop=attribute))
    assert fault.status == 400 and fault.code.endswith("Sender")
    assert fault.subcode == "wsse:InvalidSecurity" and attribute in fault.reason


def test_no_security_header(dmp):
    fault = dmp.fault("patients", envelope(A_TD02, "patients", td02(), sec=""))
    assert "wsse:Security" in fault.reason


def test_bad_purpose_of_use(dmp):
    fault = dmp.fault("registry", envelope(A_ITI18, "registry", find_documents(), purpose="urgence"))
    assert "purposeofuse" in fault.reason and "urgence" in fault.reason


def test_action_on_wrong_service(dmp):
    fault = dmp.fault("registry", envelope(A_ITI41, "registry", pnr("1.2.250.1.999.9.1")))
    assert fault.subcode.endswith("ActionNotSupported") and "repository" in fault.reason


# --- TD0.2 / TD0.3 -----------------------------------------------------------------------------------


def test_td02_open_dmp_without_authorisation(dmp):
    root = dmp.ok("patients", envelope(A_TD02, "patients", td02()))
    assert xp(root, "//hl7:queryAck/hl7:queryResponseCode/@code") == "OK"
    assert xp(root, "//hl7:acknowledgement/hl7:typeCode/@code") == "AA"
    assert xp(root, "//hl7:patient/hl7:id/@extension") == CLERICO
    assert td02_obs(root, "DMP_STATUT") == "ouvert"
    assert td02_obs(root, "AUTORISATION_PS") == "aucune"
    assert td02_obs(root, "PS_BLOQUE") == "false"
    assert xp(root, "//wsa:RelatesTo") == "urn:uuid:6f1c2c39-3c2e-4f57-9d8a-0a3f4c1e2b11"


def test_td02_absent_closed_blocked(dmp):
    root = dmp.ok("patients", envelope(A_TD02, "patients", td02(SANSDMP), SANSDMP))
    assert xp(root, "//hl7:queryAck/hl7:queryResponseCode/@code") == "NF"
    root = dmp.ok("patients", envelope(A_TD02, "patients", td02(DMPCLOS), DMPCLOS))
    assert td02_obs(root, "DMP_STATUT") == "ferme"
    assert xp(root, "//hl7:registrationEvent/hl7:statusCode/@code") == "terminated"
    root = dmp.ok("patients", envelope(A_TD02, "patients", td02(OPPOSANT), OPPOSANT))
    assert td02_obs(root, "PS_BLOQUE") == "true"
    root = dmp.ok("patients", envelope(A_TD02, "patients", td02(OPPOSANT), OPPOSANT, nid=OTHER))
    assert td02_obs(root, "PS_BLOQUE") == "false"


def test_td02_patient_other_than_the_vihf_resource_is_refused(dmp):
    root = dmp.ok("patients", envelope(A_TD02, "patients", td02(DMPCLOS)))  # the VIHF names CLERICO
    assert xp(root, "//hl7:acknowledgement/hl7:typeCode/@code") == "AE"
    assert xp(root, "//hl7:queryAck/hl7:queryResponseCode/@code") == "QE"
    detail = xp(root, "//hl7:acknowledgementDetail/hl7:text")
    assert DMPCLOS in detail and CLERICO in detail and "VIHF" in detail
    assert xp(root, "count(//hl7:patient)") == "0"  # nothing said about either patient's DMP


def test_td03_authorisation_lifecycle_on_the_clock(dmp):
    authorise(dmp)
    root = dmp.ok("patients", envelope(A_TD02, "patients", td02()))
    assert td02_obs(root, "AUTORISATION_PS") == "valide"
    auth = dmp.state(CLERICO)["authorisations"]
    assert auth[0]["national_id"] == GP and auth[0]["status"] == "valide"
    dmp.control("POST", "/clock", {"advance": "P6M"})
    root = dmp.ok("patients", envelope(A_TD02, "patients", td02()))
    assert td02_obs(root, "AUTORISATION_PS") == "expiree"
    authorise(dmp)  # renewed
    root = dmp.ok("habilitations", envelope(A_TD03, "habilitations", td03("RETRAIT")))
    assert xp(root, "//hab:status") == "OK" and xp(root, "//hab:statut") == "aucune"


def test_td03_blocked_professional_refused(dmp):
    root = dmp.ok("habilitations", envelope(A_TD03, "habilitations", td03("AJOUT"), OPPOSANT))
    hab_valid(root)
    assert xp(root, "//hab:status") == "KO" and xp(root, "//hab:code") == "DMPBlockedProfessional"


def test_td03_patient_refusal(dmp):
    dmp.control("POST", "/state", {"action": "refuse_authorisation", "ins": CLERICO, "national_id": GP})
    root = dmp.ok("habilitations", envelope(A_TD03, "habilitations", td03("AJOUT")))
    assert xp(root, "//hab:status") == "KO" and xp(root, "//hab:statut") == "refusee"


# --- ITI-18 consultation rules ----------------------------------------------------------------------


def test_consultation_without_authorisation_refused(dmp):
    root = find(dmp)
    assert xp(root, "/soap:Envelope/soap:Body/query:AdhocQueryResponse/@status") == FAILURE
    assert errors(root)[0][0] == "DMPAuthorizationRequired"


@pytest.mark.parametrize("purpose", ["bris_de_glace", "centre_15"])
def test_emergency_access_without_authorisation(dmp, purpose):
    root = find(dmp, purpose=purpose)
    assert xp(root, "//query:AdhocQueryResponse/@status") == SUCCESS
    assert len(eos(root)) == 2
    kinds = [e["kind"] for e in dmp.state(CLERICO)["events"]]
    assert f"acces_{purpose}" in kinds


def test_flagship_find_documents_after_authorisation(dmp):
    authorise(dmp)
    root = find(dmp)
    entries = eos(root)
    assert len(entries) == 2
    assert {e.get("status") for e in entries} == {"urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"}
    assert "899700218896" in xp(root, "//rim:Slot[@name='authorPerson']/rim:ValueList/rim:Value")
    assert xp(root, "//rim:Slot[@name='repositoryUniqueId']//rim:Value") == "1.2.250.1.213.4.1.1.2"
    # filters
    root = find(dmp, extra='<rim:Slot name="$XDSDocumentEntryTypeCode"><rim:ValueList><rim:Value>(\'11502-2^^2.16.840.1.113883.6.1\')</rim:Value></rim:ValueList></rim:Slot>')
    assert len(eos(root)) == 1
    root = find(dmp, return_type="ObjectRef")
    assert len(refs(root)) == 2
    root = find(dmp, extra='<rim:Slot name="$XDSDocumentEntryCreationTimeFrom"><rim:ValueList><rim:Value>29990101</rim:Value></rim:ValueList></rim:Slot>')
    assert xp(root, "//query:AdhocQueryResponse/@status") == SUCCESS
    assert not eos(root)


def test_blocked_professional_refused_everything(dmp):
    root = find(dmp, OPPOSANT, purpose="bris_de_glace")
    assert errors(root)[0][0] == "DMPBlockedProfessional"
    root = feed(dmp, "1.2.250.1.999.10.1", OPPOSANT)
    assert errors(root)[0][0] == "DMPBlockedProfessional"
    # the patient unblocks through the control API
    dmp.control("POST", "/state", {"action": "unblock", "ins": OPPOSANT, "national_id": GP})
    assert xp(find(dmp, OPPOSANT, purpose="bris_de_glace"), "//query:AdhocQueryResponse/@status") == SUCCESS


def test_query_for_another_patient_than_the_vihf(dmp):
    authorise(dmp)
    root = dmp.ok("registry", envelope(A_ITI18, "registry", find_documents(BOUCHER), CLERICO))
    assert errors(root)[0][0] == "XDSPatientIdDoesNotMatch"


def test_unknown_stored_query_and_missing_parameter(dmp):
    authorise(dmp)
    body = find_documents().replace("14d4debf-8f97-4251-9a74-a90016b0af0d", "00000000-0000-0000-0000-000000000000")
    assert errors(dmp.ok("registry", envelope(A_ITI18, "registry", body)))[0][0] == "XDSUnknownStoredQuery"
    body = find_documents().replace("$XDSDocumentEntryStatus", "$Autre")
    assert errors(dmp.ok("registry", envelope(A_ITI18, "registry", body)))[0][0] == "XDSStoredQueryParamNumber"


# --- ITI-41 ------------------------------------------------------------------------------------------


def test_provide_and_register_inline_then_find_get_and_submission_sets(dmp):
    root = feed(dmp, "1.2.250.1.999.20.1")
    assert xp(root, "/soap:Envelope/soap:Body/rs:RegistryResponse/@status") == SUCCESS, errors(root)
    assert xp(root, "//wsa:Action") == A_ITI41 + "Response"
    docs = dmp.state(CLERICO)["documents"]
    mine = doc_of(docs, "1.2.250.1.999.20.1")
    assert mine["author_nid"] == GP and mine["visible_patient"] and mine["type_code"] == "11488-4"
    assert mine["set_id"] == "1.2.250.1.999.77.1" and mine["version_number"] == 1
    assert any(d["is_signature"] for d in docs)
    authorise(dmp)
    assert len(eos(find(dmp))) == 4
    root = dmp.ok("registry", envelope(A_ITI18, "registry", get_documents("1.2.250.1.999.20.1")))
    assert xp(root, f"//rim:ExternalIdentifier[@identificationScheme='{UNIQUE_ID}']/@value") == "1.2.250.1.999.20.1"
    root = dmp.ok("registry", envelope(A_ITI18, "registry", find_submission_sets()))
    assert xp(root, "//rim:RegistryPackage//rim:ExternalIdentifier[@identificationScheme='urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8']/@value") == "1.2.250.1.999.20.1.1"
    events = dmp.state(CLERICO)["events"]
    assert any(e["kind"] == "document_ajoute" and e["patient_notified"] for e in events)


def test_provide_and_register_mtom_then_retrieve_mtom(dmp):
    uid = "1.2.250.1.999.21.1"
    document = cda(uid)
    soap = envelope(A_ITI41, "repository", pnr(uid, mtom=True))
    body, ctype = mtom(soap, document)
    root = dmp.ok("repository", body, ctype)
    assert xp(root, "//rs:RegistryResponse/@status") == SUCCESS, errors(root)
    authorise(dmp)
    resp = dmp.post("repository", envelope(A_ITI43, "repository", retrieve(uid)))
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("multipart/related")
    soap_part, attachments = split_multipart(resp.content, resp.headers["content-type"])
    root = etree.fromstring(soap_part)
    assert xp(root, "//rs:RegistryResponse/@status") == SUCCESS
    assert xp(root, "//xds:DocumentUniqueId") == uid and xp(root, "//xds:mimeType") == "text/xml"
    cid = xp(root, "//xds:Document/xop:Include/@href").removeprefix("cid:")
    assert attachments[cid] == document


def test_retrieve_rules(dmp):
    uid = dmp.state(CLERICO)["documents"][0]["unique_id"]
    resp = dmp.post("repository", envelope(A_ITI43, "repository", retrieve(uid)))
    soap_part, _ = split_multipart(resp.content, resp.headers["content-type"])
    assert errors(etree.fromstring(soap_part))[0][0] == "DMPAuthorizationRequired"
    authorise(dmp)
    resp = dmp.post("repository", envelope(A_ITI43, "repository", retrieve("1.2.250.1.999.404")))
    assert errors(etree.fromstring(split_multipart(resp.content, resp.headers["content-type"])[0]))[0][0] == \
        "XDSDocumentUniqueIdError"
    resp = dmp.post("repository", envelope(A_ITI43, "repository", retrieve(uid, "1.2.3")))
    assert errors(etree.fromstring(split_multipart(resp.content, resp.headers["content-type"])[0]))[0][0] == \
        "XDSUnknownRepositoryId"


def test_wrong_value_set_code(dmp):
    root = feed(dmp, "1.2.250.1.999.22.1", type_code="99999-9")
    assert xp(root, "//rs:RegistryResponse/@status") == FAILURE
    code, message = errors(root)[0]
    assert code == "XDSRegistryMetadataError" and "typeCode 99999-9" in message
    assert not [d for d in dmp.state(CLERICO)["documents"] if d["unique_id"] == "1.2.250.1.999.22.1"]


def test_prescription_type_code_accepted(dmp):
    root = feed(dmp, "1.2.250.1.999.23.1", type_code="57833-6")
    assert xp(root, "//rs:RegistryResponse/@status") == SUCCESS, errors(root)


def test_signature_document_required(dmp):
    root = feed(dmp, "1.2.250.1.999.24.1", signature=False)
    assert any("signature" in m.lower() for _, m in errors(root))


def test_patient_id_must_be_an_ins_with_test_or_production_oid(dmp):
    root = feed(dmp, "1.2.250.1.999.25.1", oid="1.2.250.1.213.1.4.9")
    assert {c for c, _ in errors(root)} == {"XDSUnknownPatientId"}


def test_feeding_unknown_or_closed_dmp(dmp):
    assert errors(feed(dmp, "1.2.250.1.999.26.1", SANSDMP))[0][0] == "XDSUnknownPatientId"
    assert errors(feed(dmp, "1.2.250.1.999.26.2", DMPCLOS))[0][0] == "DMPClosed"


def test_duplicate_unique_id(dmp):
    feed(dmp, "1.2.250.1.999.27.1")
    root = dmp.ok("repository", envelope(A_ITI41, "repository", pnr("1.2.250.1.999.27.1").replace(
        "1.2.250.1.999.27.1.1", "1.2.250.1.999.27.9")))
    assert "XDSDocumentUniqueIdError" in {c for c, _ in errors(root)}


def test_replacement_of_unknown_document(dmp):
    root = feed(dmp, "1.2.250.1.999.28.1", rplc="urn:uuid:00000000-0000-4000-8000-000000000000")
    assert errors(root)[0][0] == "UnresolvedReferenceException"


def test_replacement_deprecates_previous_version(dmp):
    feed(dmp, "1.2.250.1.999.29.1")
    old = next(d for d in dmp.state(CLERICO)["documents"] if d["unique_id"] == "1.2.250.1.999.29.1")
    uid2 = "1.2.250.1.999.29.2"
    root = feed(dmp, uid2, rplc=old["entry_uuid"], content=cda(uid2, version=2))
    assert xp(root, "//rs:RegistryResponse/@status") == SUCCESS, errors(root)
    docs = {d["unique_id"]: d for d in dmp.state(CLERICO)["documents"]}
    assert docs["1.2.250.1.999.29.1"]["status"] == DEPRECATED
    assert docs[uid2]["lid"] == old["lid"] and docs[uid2]["version"] == 2 and docs[uid2]["replaces"] == old["entry_uuid"]
    authorise(dmp)
    uids = [xp(e, f"rim:ExternalIdentifier[@identificationScheme='{UNIQUE_ID}']/@value")
            for e in eos(find(dmp))]
    assert uid2 in uids and "1.2.250.1.999.29.1" not in uids
    # replacing again the deprecated version, or with a lower CDA version, is refused
    root = feed(dmp, "1.2.250.1.999.29.3", rplc=old["entry_uuid"], content=cda("1.2.250.1.999.29.3", version=3))
    assert "Approved" in errors(root)[0][1]
    new = docs[uid2]
    root = feed(dmp, "1.2.250.1.999.29.4", rplc=new["entry_uuid"], content=cda("1.2.250.1.999.29.4", version=1))
    assert any("versionNumber" in m for _, m in errors(root))


def test_replacement_by_non_author_refused(dmp):
    seeded = dmp.state(CLERICO)["documents"][0]
    root = feed(dmp, "1.2.250.1.999.30.1", rplc=seeded["entry_uuid"])
    assert "DMPNotAuthor" in {c for c, _ in errors(root)}


def test_hash_mismatch(dmp):
    body = pnr("1.2.250.1.999.31.1").replace(
        '<rim:Slot name="languageCode">',
        '<rim:Slot name="hash"><rim:ValueList><rim:Value>da39a3ee5e6b4b0d3255bfef95601890afd80709</rim:Value></rim:ValueList></rim:Slot><rim:Slot name="languageCode">', 1)
    root = dmp.ok("repository", envelope(A_ITI41, "repository", body))
    assert errors(root)[0][0] == "XDSRepositoryMetadataError"


# --- visibility, ITI-57 ------------------------------------------------------------------------------


def test_invisible_document_auto_visible_after_three_months(dmp):
    feed(dmp, "1.2.250.1.999.40.1", invisible=True)
    doc = next(d for d in dmp.state(CLERICO)["documents"] if d["unique_id"] == "1.2.250.1.999.40.1")
    assert not doc["visible_patient"]
    # invisible-to-patient documents are listed to professionals
    authorise(dmp)
    conf = find(dmp).xpath(f"//rim:Classification[@classificationScheme='{CONF}']/@nodeRepresentation",
                           namespaces={"rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"})
    assert "INVISIBLE_PATIENT" in conf
    dmp.control("POST", "/clock", {"advance": "P1M"})
    state = dmp.state(CLERICO)
    assert [e for e in state["events"] if e["kind"] == "information_document_invisible"]
    assert not next(d for d in state["documents"] if d["unique_id"] == "1.2.250.1.999.40.1")["visible_patient"]
    dmp.control("POST", "/clock", {"advance": "P2M"})
    state = dmp.state(CLERICO)
    doc = next(d for d in state["documents"] if d["unique_id"] == "1.2.250.1.999.40.1")
    assert doc["visible_patient"] and ["N", "2.16.840.1.113883.5.25"] in doc["confidentiality"]
    assert [e for e in state["events"] if e["kind"] == "document_rendu_visible" and e["detail"]["automatique"]]


def test_invisible_document_jumping_three_months(dmp):
    feed(dmp, "1.2.250.1.999.41.1", invisible=True)
    dmp.control("POST", "/clock", {"advance": "P3M"})
    state = dmp.state(CLERICO)
    assert next(d for d in state["documents"] if d["unique_id"] == "1.2.250.1.999.41.1")["visible_patient"]
    kinds = [e["kind"] for e in state["events"]]
    assert kinds.index("information_document_invisible") < kinds.index("document_rendu_visible")


def test_make_visible_and_mask_by_iti57(dmp):
    feed(dmp, "1.2.250.1.999.42.1", invisible=True)
    doc = next(d for d in dmp.state(CLERICO)["documents"] if d["unique_id"] == "1.2.250.1.999.42.1")
    body = update_confidentiality(doc["lid"], [("N", "2.16.840.1.113883.5.25"), ("MASQUE_PS", "1.2.250.1.213.1.1.4.13")])
    root = dmp.ok("registry", envelope(A_ITI57, "registry", body))
    assert xp(root, "//rs:RegistryResponse/@status") == SUCCESS, errors(root)
    doc = next(d for d in dmp.state(CLERICO)["documents"] if d["unique_id"] == "1.2.250.1.999.42.1")
    assert doc["visible_patient"] and doc["masked_ps"] and doc["version"] == 2
    # masked: listed to its author, not to another professional (even in bris de glace)
    authorise(dmp)
    assert len(eos(find(dmp))) == 4
    other = find(dmp, nid=OTHER, purpose="bris_de_glace")
    assert len(eos(other)) == 3
    # stale PreviousVersion
    root = dmp.ok("registry", envelope(A_ITI57, "registry", body.replace("<rim:Value>1</rim:Value>", "<rim:Value>7</rim:Value>")))
    assert errors(root)[0][0] == "XDSMetadataVersionError"


def test_deletion_by_non_author_refused(dmp):
    seeded = dmp.state(CLERICO)["documents"][0]
    root = dmp.ok("registry", envelope(A_ITI57, "registry", update_status(seeded["entry_uuid"], DELETED)))
    assert errors(root)[0][0] == "DMPNotAuthor"
    root = dmp.ok("registry", envelope(A_ITI57, "registry", update_status(seeded["entry_uuid"], DELETED), nid=OTHER))
    assert xp(root, "//rs:RegistryResponse/@status") == SUCCESS, errors(root)
    authorise(dmp)
    assert len(eos(find(dmp))) == 1


def test_archive_and_unknown_target(dmp):
    feed(dmp, "1.2.250.1.999.43.1")
    doc = next(d for d in dmp.state(CLERICO)["documents"] if d["unique_id"] == "1.2.250.1.999.43.1")
    archived = "urn:asip:ci-sis:2010:StatusType:Archived"
    root = dmp.ok("registry", envelope(A_ITI57, "registry", update_status(doc["entry_uuid"], archived)))
    assert xp(root, "//rs:RegistryResponse/@status") == SUCCESS, errors(root)
    authorise(dmp)
    root = find(dmp, statuses=f"('{archived}')")
    assert len(eos(root)) == 1
    root = dmp.ok("registry", envelope(A_ITI57, "registry", update_status("urn:uuid:00000000-0000-4000-8000-000000000001", DELETED)))
    assert errors(root)[0][0] == "UnresolvedReferenceException"
    root = dmp.ok("registry", envelope(A_ITI57, "registry", update_status(doc["entry_uuid"], DELETED)))
    assert errors(root)[0][0] == "XDSMetadataUpdateError"  # OriginalStatus is no longer Approved


# --- control API, outcomes, persistence ----------------------------------------------------------------


def test_patient_side_actions(dmp):
    dmp.control("POST", "/state", {"action": "block", "ins": CLERICO, "national_id": GP})
    assert errors(find(dmp, purpose="bris_de_glace"))[0][0] == "DMPBlockedProfessional"
    dmp.control("POST", "/state", {"action": "unblock", "ins": CLERICO, "national_id": GP})
    state = dmp.control("POST", "/state", {"action": "add_document", "ins": CLERICO, "title": "Mon ordonnance"})["state"]
    added = next(d for d in state["documents"] if d["title"] == "Mon ordonnance")
    assert added["added_by_patient"] and added["class_code"] == "90"
    seeded = next(d for d in state["documents"] if d["author_nid"] == OTHER)
    dmp.control("POST", "/state", {"action": "hide_document", "ins": CLERICO, "document": seeded["entry_uuid"]})
    authorise(dmp)
    assert len(eos(find(dmp))) == 2
    dmp.control("POST", "/state", {"action": "close", "ins": CLERICO})
    assert errors(find(dmp))[0][0] == "DMPClosed"
    resp = dmp.http.post("/_bench/state", json={"action": "explode", "ins": CLERICO})
    assert resp.status_code == 400


@pytest.mark.parametrize("outcome,code", [("dmp.patient-oppose", "DMPPatientOpposed"),
                                          ("dmp.ps-bloque", "DMPBlockedProfessional"),
                                          ("dmp.erreur.XDSRegistryBusy", "XDSRegistryBusy")])
def test_forced_registry_errors(dmp, outcome, code):
    dmp.control("POST", "/faults", {"effect": {"type": "outcome", "name": outcome}})
    assert errors(feed(dmp, "1.2.250.1.999.50.1"))[0][0] == code
    dmp.control("DELETE", "/faults")
    assert xp(feed(dmp, "1.2.250.1.999.50.2"), "//rs:RegistryResponse/@status") == SUCCESS


def test_forced_unavailable(dmp):
    dmp.control("POST", "/faults", {"match": {"attrs": {"ins": BOUCHER}},
                                    "effect": {"type": "outcome", "name": "dmp.indisponible"}})
    fault = dmp.fault("patients", envelope(A_TD02, "patients", td02(BOUCHER), BOUCHER))
    assert fault.status == 500 and fault.code.endswith("Receiver") and "indisponible" in fault.reason
    root = dmp.ok("patients", envelope(A_TD02, "patients", td02()))
    assert td02_obs(root, "DMP_STATUT") == "ouvert"


def test_state_survives_restart(tmp_path):
    with serve_in_thread(build_simulator(SPEC, SimConfig(data_dir=tmp_path))) as server:
        client = Client(server.url)
        assert xp(feed(client, "1.2.250.1.999.60.1"), "//rs:RegistryResponse/@status") == SUCCESS
        authorise(client)
        client.http.close()
    with serve_in_thread(build_simulator(SPEC, SimConfig(data_dir=tmp_path))) as server:
        client = Client(server.url)
        state = client.state(CLERICO)
        assert [d for d in state["documents"] if d["unique_id"] == "1.2.250.1.999.60.1"]
        assert len([d for d in state["documents"] if d["author_nid"] == OTHER]) == 2  # seeded once, not twice
        assert state["authorisations"][0]["status"] == "valide"
        assert len(eos(find(client))) == 4
        client.http.close()


# --- "API Pro Santé Connectée" mode ----------------------------------------------------------------------


def test_psc_token_mode():
    import time

    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    issuer = "http://psc.test/auth/realms/esante-wallet"
    settings = {"auth_mode": "psc", "psc_issuer": issuer, "psc_jwks": {"keys": [key.as_dict(private=False)]}}

    def token(nid: str) -> str:
        now = int(time.time())
        claims = {"iss": issuer, "sub": f"f:0b0e3b9c-1111-4c4c-9d9d-000000000000:{nid}", "SubjectNameID": nid,
                  "aud": "api-pro-sante-connectee", "iat": now, "exp": now + 3600}
        return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)

    with serve_in_thread(build_simulator(SPEC, SimConfig(settings=settings))) as server:
        client = Client(server.url)
        body = envelope(A_TD02, "patients", td02())
        resp = client.post("patients", body, Authorization=f"Bearer {token(GP)}")
        assert resp.status_code == 200, resp.text
        resp = client.post("patients", body)
        assert resp.status_code == 400 and "jeton refuse" in resp.text
        resp = client.post("patients", body, Authorization=f"Bearer {token(OTHER)}")
        assert resp.status_code == 400 and "differe" in resp.text
        client.http.close()


def test_td03_fixture_matches_our_schema():
    HAB_XSD.assertValid(etree.fromstring(td03("AJOUT").encode()))
    HAB_XSD.assertValid(etree.fromstring(td03("RETRAIT").encode()))


def test_mtom_with_missing_part(dmp):
    soap = envelope(A_ITI41, "repository", pnr("1.2.250.1.999.70.1", mtom=True).replace("cid:sig1@lgc.test", "cid:absent@lgc.test"))
    body, ctype = mtom(soap, cda("1.2.250.1.999.70.1"))
    fault = dmp.fault("repository", body, ctype)
    assert fault.status == 400 and "absent@lgc.test" in fault.reason


def test_mtom_action_from_content_type_only(dmp):
    uid = "1.2.250.1.999.71.1"
    soap = envelope(A_ITI41, "repository", pnr(uid, mtom=True)).replace(
        f'<wsa:Action soap:mustUnderstand="true">{A_ITI41}</wsa:Action>', "")
    body, ctype = mtom(soap, cda(uid))
    assert xp(dmp.ok("repository", body, ctype), "//rs:RegistryResponse/@status") == SUCCESS


def test_unknown_service(dmp):
    assert dmp.post("patientCertif", envelope(A_TD02, "patients", td02())).status_code == 404


def test_chunked_mtom_provide_and_register_is_stored_whole(dmp):
    """A Java SOAP conduit streams an MTOM request with Transfer-Encoding: chunked: the repository must read all of
    it (issue 16: the Flask-routed services read an empty body), and the document retrieved is the one sent."""
    uid = "1.2.250.1.999.21.9"
    document = cda(uid)
    body, ctype = mtom(envelope(A_ITI41, "repository", pnr(uid, mtom=True)), document)
    resp = dmp.http.post(f"{BASE}/repository", content=iter([body[i:i + 1024] for i in range(0, len(body), 1024)]),
                         headers={"Content-Type": ctype})
    assert resp.request.headers.get("transfer-encoding") == "chunked"
    assert resp.status_code == 200, resp.text
    assert xp(etree.fromstring(resp.content), "//rs:RegistryResponse/@status") == SUCCESS
    authorise(dmp)
    resp = dmp.post("repository", envelope(A_ITI43, "repository", retrieve(uid)))
    soap_part, attachments = split_multipart(resp.content, resp.headers["content-type"])
    cid = xp(etree.fromstring(soap_part), "//xds:Document/xop:Include/@href").removeprefix("cid:")
    assert attachments[cid] == document


def _bad_mtom(uid: str) -> tuple[bytes, str]:
    return mtom(envelope(A_ITI41, "repository", pnr(uid, mtom=True)), cda(uid))


@pytest.mark.parametrize(("case", "words"), [
    ("invalid-base64", "base64 invalide"),
    ("duplicate-content-id", "en double"),
    ("root-not-xop", "application/xop+xml attendu"),
    ("unknown-transfer-encoding", "x-uuencode"),
    ("not-related", "multipart/related"),
    ("boundary-inside-a-part", "sans Content-ID"),
])
def test_malformed_mtom_is_refused_and_nothing_is_stored(dmp, case, words):
    """Hand-edited MTOM bodies (issue 16): each used to be stored as it came, or cut short, with a Success."""
    uid = f"1.2.250.1.999.22.{abs(hash(case)) % 10_000}"
    body, ctype = _bad_mtom(uid)
    boundary = "MIMEBoundary_lgc_test_42"
    if case == "invalid-base64":  # the signature part is base64: put characters outside the alphabet in it
        head, _, tail = body.partition(b"Content-ID: <sig1@lgc.test>\r\n\r\n")
        body = head + b"Content-ID: <sig1@lgc.test>\r\n\r\n" + b"!!pas du base64!!" + tail[tail.index(b"\r\n--"):]
    elif case == "duplicate-content-id":
        body = body.replace(b"Content-ID: <sig1@lgc.test>", b"Content-ID: <doc1@lgc.test>")
    elif case == "root-not-xop":
        body = body.replace(b'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"',
                            b"Content-Type: text/xml; charset=UTF-8", 1)
    elif case == "unknown-transfer-encoding":
        body = body.replace(b"Content-Transfer-Encoding: binary\r\nContent-ID: <doc1@lgc.test>",
                            b"Content-Transfer-Encoding: x-uuencode\r\nContent-ID: <doc1@lgc.test>")
    elif case == "not-related":
        ctype = ctype.replace("multipart/related", "multipart/mixed")
    else:  # the CDA carries a line equal to the delimiter: the parser cuts the document there
        marker = b"<ClinicalDocument"
        at = body.index(marker)
        body = body[:at] + f"\r\n--{boundary}\r\n".encode() + body[at:]
    before = len(dmp.state(CLERICO)["documents"])
    fault = dmp.fault("repository", body, ctype)
    assert fault.code.endswith("Sender") and words in fault.reason, fault
    assert fault.status == (415 if case == "not-related" else 400)  # multipart/mixed: refused as a media type
    assert len(dmp.state(CLERICO)["documents"]) == before


def test_a_runs_reset_leaves_the_other_runs_journal_and_documents(dmp):
    """Two pipelines feed the same DMP, each naming its run (X-Bench-Run); one resets its run: its journal entries
    go, the other run's stay, and no document is lost — the documents are the patients', shared by every run."""
    for run, uid in (("pipeline-a", "1.2.250.1.999.31.1"), ("pipeline-b", "1.2.250.1.999.31.2")):
        resp = dmp.post("repository", envelope(A_ITI41, "repository", pnr(uid, content=cda(uid, set_id=f"{uid}.9"))),
                        **{"X-Bench-Run": run})
        assert resp.status_code == 200 and SUCCESS in resp.text, resp.text
    before = {d["unique_id"] for d in dmp.state(CLERICO)["documents"]}
    assert {"1.2.250.1.999.31.1", "1.2.250.1.999.31.2"} <= before
    reset = dmp.control("POST", "/reset", {"run": "pipeline-a"})
    assert reset["reset"]["journal"] >= 1
    assert dmp.control("GET", "/journal?run=pipeline-a")["entries"] == []
    kept = dmp.control("GET", "/journal?run=pipeline-b")["entries"]
    assert [e["operation"] for e in kept] == ["ITI-41"]
    assert {d["unique_id"] for d in dmp.state(CLERICO)["documents"]} == before
