"""ApCV protocol rules: action, ContexteLPS / wsse:Security, input rules, malformed XML, outcomes, latency."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from simulators.apcv.app import SPEC
from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator

from .conftest import Client, xp
from .messages import (
    ACTION_AUTH,
    ACTION_DETRUIRE,
    ACTION_RESTITUER,
    LPS,
    SECURITY_PSC,
    SOAP_CT,
    auth_body,
    detruire_body,
    envelope,
    lps_block,
    restituer_body,
    security_cps,
)
from .test_apcv_flow import assert_fault

CTX_ID = "0b1f6f3e-7c59-4b8e-9d1e-2d0a5a1b6c7d"


@pytest.fixture
def payload(apcv) -> str:
    return apcv.present("clerico-come").payload


# --- action ----------------------------------------------------------------------------------------


def test_action_from_content_type(apcv, payload):
    xml = envelope(auth_body(payload), action=None)
    root = apcv.ok(xml, "AuthentifierUtilisateurProximiteResp", f'{SOAP_CT}; action="{ACTION_AUTH}"')
    assert xp(root, "//wsa:Action") == ACTION_AUTH + "Response"


def test_missing_action(apcv, payload):
    assert_fault(apcv.fault(envelope(auth_body(payload), action=None)), "siram_10", "desir_501", "Action")


def test_unknown_action(apcv, payload):
    fault = apcv.fault(envelope(auth_body(payload), action="urn:ApCV_SIGN:1.0.0:signerVitale"))
    assert_fault(fault, "siram_10", "desir_501", "inconnue")


def test_action_body_mismatch(apcv):
    fault = apcv.fault(envelope(restituer_body(CTX_ID), action=ACTION_DETRUIRE))
    assert_fault(fault, "siram_10", "desir_501", "RestituerContexteApCVReq")


def test_body_in_wrong_namespace(apcv):
    body = '<RestituerContexteApCVReq xmlns="http://www.sesam-vitale.fr/apcv/sign/1/0"/>'
    assert_fault(apcv.fault(envelope(body, action=ACTION_RESTITUER)), "siram_10", "desir_501", "inattendu")


def test_fault_relates_to_request(apcv):
    fault = apcv.fault(envelope(restituer_body(CTX_ID), action=None,
                                message_id="urn:uuid:feedbeef-0000-4000-8000-00000000a9c1"))
    assert fault.relates_to is None and fault.message_id == "urn:uuid:feedbeef-0000-4000-8000-00000000a9c1"


# --- headers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lps", "words"),
    [
        ("", ["ContexteLPS", "absent"]),
        (lps_block(nature="CTXBAM"), ["Nature"]),
        (lps_block(version="02_00"), ["Version", "01_00"]),
        (lps_block(r="3"), ["R", "'4'"]),
        (lps_block(idam=""), ["IDAM"]),
        (lps_block(lps_version=""), ["LPS/Version"]),
        (lps_block(instance=""), ["LPS/Instance"]),
        (lps_block(nom=""), ["LPS/Nom"]),
        (LPS.replace("ctxlps:ContexteLPS xmlns:ctxlps=\"urn:siram:lps:ctxlps\"",
                     "ctxlps:ContexteLPS xmlns:ctxlps=\"urn:autre\"").format(
            nature="CTXLPS", version="01_00", r="4", idam="X", lps_version="1", instance="i", nom="n"),
         ["ContexteLPS", "absent"]),
    ],
)
def test_contexte_lps_checks(apcv, lps, words):
    fault = apcv.fault(envelope(restituer_body(CTX_ID), action=ACTION_RESTITUER, lps=lps))
    assert_fault(fault, "siram_20", "desir_520", *words)


def test_unknown_idam(apcv):
    fault = apcv.fault(envelope(restituer_body(CTX_ID), action=ACTION_RESTITUER, lps=lps_block(idam="PIRATE-01")))
    assert_fault(fault, "siram_100", "desir_550", "Numéro d'autorisation du logiciel inconnu.")


@pytest.mark.parametrize(
    ("security", "words"),
    [
        ("", ["wsse:Security", "absent"]),
        ('<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"/>',
         ["assertion", "absente"]),
        (security_cps("631234567").replace('NameQualifier="CPS"', 'NameQualifier="RPPS"'),
         ["NameQualifier"]),
        (security_cps("631234567").replace(">899700366240</saml2:NameID>", "></saml2:NameID>"),
         ["NameID"]),
        (security_cps("631234567").replace("secteurActivite", "autre"), ["secteurActivite"]),
        (SECURITY_PSC.format(facturation="631234567").replace("codeSpecialiteAMO", "autre"), ["codeSpecialiteAMO"]),
        (SECURITY_PSC.format(facturation=""), ["identifiantFacturation"]),
    ],
)
def test_security_checks(apcv, security, words):
    fault = apcv.fault(envelope(restituer_body(CTX_ID), action=ACTION_RESTITUER, security=security))
    assert_fault(fault, "siram_30", "desir_530", *words)


def test_contexte_bam_is_ignored_unless_must_understand(apcv, payload):
    bam = ('<ctxbam:ContexteBAM xmlns:ctxbam="urn:siram:bam:ctxbam" Version="01_02"{mu}><ctxbam:COUVERTURE/>'
           '</ctxbam:ContexteBAM>')
    apcv.authenticate(payload, lps=lps_block() + bam.format(mu=""))
    mu = ' xmlns:s="http://www.w3.org/2003/05/soap-envelope" s:mustUnderstand="true"'
    fault = apcv.fault(envelope(restituer_body(CTX_ID), action=ACTION_RESTITUER, lps=lps_block() + bam.format(mu=mu)))
    assert fault.code.endswith(":MustUnderstand") and fault.status == 500


# --- input rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "field", "why"),
    [
        ({"version": None}, "AuthentifierUtilisateurProximiteReq/@version", "'1.0'"),
        ({"version": "2.0"}, "AuthentifierUtilisateurProximiteReq/@version", "'2.0'"),
        ({"with_ps": False}, "ProfessionnelSante", "absent"),
        ({"facturation": ""}, "IdentifiantFacturation", "absente"),
        ({"facturation": "63-123"}, "IdentifiantFacturation", "9 caracteres"),
        ({"facturation": "751234561"}, "IdentifiantFacturation", "ne correspond pas"),
        ({"specialite": ""}, "CodeSpecialiteAMO", "absente"),
        ({"specialite": "1"}, "CodeSpecialiteAMO", "2 chiffres"),
        ({"donnees": ""}, "Donnees", "absent"),
        ({"donnees": "A" * 3000}, "Donnees", "3000"),
    ],
)
def test_auth_input_rules(apcv, payload, kw, field, why):
    donnees = kw.pop("donnees", payload)
    fault = apcv.fault(envelope(auth_body(donnees, **kw)))
    assert_fault(fault, "siram_50", "apcv_001", field, why)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (restituer_body(CTX_ID, version="0.9"), "RestituerContexteApCVReq/@version"),
        (restituer_body(""), "ContexteApCV/Identifiant"),
        (restituer_body("x" * 65), "ContexteApCV/Identifiant"),
        (restituer_body("a b"), "ContexteApCV/Identifiant"),
        ('<RestituerContexteApCVReq xmlns="http://www.sesam-vitale.fr/apcv/auth/1/0"/>', "ContexteApCV"),
    ],
)
def test_context_input_rules(apcv, body, field):
    assert_fault(apcv.fault(envelope(body, action=ACTION_RESTITUER)), "siram_50", "apcv_001", field)


def test_version_optional_on_context_requests(apcv, payload):
    context_id = apcv.authenticate(payload)
    apcv.ok(envelope(restituer_body(context_id, version=None), action=ACTION_RESTITUER), "RestituerContexteApCVResp")
    apcv.ok(envelope(detruire_body(context_id, version=None), action=ACTION_DETRUIRE), "DetruireContexteApCVResp")


# --- malformed XML ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not xml at all",
        b"<soap:Envelope xmlns:soap='http://www.w3.org/2003/05/soap-envelope'><soap:Body>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
        b'<!DOCTYPE e SYSTEM "file:///etc/passwd"><e xmlns="http://www.w3.org/2003/05/soap-envelope"/>',
        envelope(restituer_body(CTX_ID), action=ACTION_RESTITUER).encode().replace(
            b'<?xml version="1.0" encoding="UTF-8"?>',
            b'<?xml version="1.0"?><!DOCTYPE z [<!ENTITY x SYSTEM "file:///etc/passwd">]>'),
        b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body/></soap:Envelope>',
    ],
)
def test_malformed_xml_gives_sender_fault(apcv, data):
    fault = apcv.fault(data)
    assert fault.status == 500 and fault.code.endswith(":Sender")
    assert "root:" not in fault.reason


def test_soap11_gives_version_mismatch(apcv):
    data = envelope(restituer_body(CTX_ID), action=ACTION_RESTITUER).replace(
        "http://www.w3.org/2003/05/soap-envelope", "http://schemas.xmlsoap.org/soap/envelope/")
    assert apcv.fault(data).code.endswith(":VersionMismatch")


def test_wrong_method_and_path(apcv):
    resp = apcv.http.get("/apcv")
    assert resp.status_code == 405 and "Fault" in resp.text
    assert apcv.http.post("/lps", content=b"<x/>").status_code == 404


# --- outcomes --------------------------------------------------------------------------------------


def test_outcomes_declared(apcv):
    outcomes = apcv.control("GET", "/faults").json()["outcomes"]
    assert set(outcomes) == {"apcv.qr-expire", "apcv.contexte-inconnu", "apcv.contexte-expire",
                             "apcv.service-indisponible"}


def _force(apcv, name: str, **rule: object) -> None:
    apcv.control("POST", "/faults", {"effect": {"type": "outcome", "name": name}, **rule})


def test_forced_qr_expire(apcv, payload):
    _force(apcv, "apcv.qr-expire")
    assert_fault(apcv.fault(envelope(auth_body(payload))), "siram_60", "apcv_011", "expire")
    apcv.control("DELETE", "/faults")
    apcv.authenticate(payload)  # the forced refusal did not consume the QR code


@pytest.mark.parametrize(("outcome", "detail"), [("apcv.contexte-inconnu", "apcv_020"),
                                                 ("apcv.contexte-expire", "apcv_021")])
def test_forced_context_outcomes(apcv, payload, outcome, detail):
    context_id = apcv.authenticate(payload)
    _force(apcv, outcome)
    for body, action in ((restituer_body(context_id), ACTION_RESTITUER), (detruire_body(context_id), ACTION_DETRUIRE)):
        fault = apcv.fault(envelope(body, action=action))
        assert_fault(fault, "siram_61", detail, context_id)
    apcv.control("DELETE", "/faults")
    apcv.restituer(context_id)  # the context is still there


def test_forced_service_unavailable(apcv, payload):
    _force(apcv, "apcv.service-indisponible")
    for xml in (envelope(auth_body(payload)), envelope(restituer_body(CTX_ID), action=ACTION_RESTITUER)):
        fault = apcv.fault(xml)
        assert (fault.status, fault.code) == (500, "S:Receiver")
        assert fault.subcode == "S:siram_40" and fault.detail_code == "apcv_102" and fault.severite == "fatal"
        assert "temporairement inaccessible" in fault.reason


def test_outcome_targets_one_card_by_attrs(apcv):
    _force(apcv, "apcv.qr-expire", match={"attrs": {"nir_od": "167100093480710"}})
    apcv.authenticate(apcv.present("clerico-come").payload)
    fault = apcv.fault(envelope(auth_body(apcv.present("boucher-francois").payload)))
    assert fault.detail_code == "apcv_011"


def test_outcome_targets_one_operation(apcv, payload):
    _force(apcv, "apcv.contexte-inconnu", operation="restituerContexteApCV")
    context_id = apcv.authenticate(payload)
    assert apcv.fault(envelope(restituer_body(context_id), action=ACTION_RESTITUER)).detail_code == "apcv_020"
    apcv.detruire(context_id)


def test_journal_names_operations(apcv, payload):
    apcv.control("POST", "/run", {"run": "apcv-journal"})  # late entries of earlier tests carry no run
    apcv.restituer(apcv.authenticate(payload))
    deadline = time.monotonic() + 3
    while True:  # an exchange is journaled just after its response is sent
        entries = apcv.http.get("/_bench/journal", params={"run": "apcv-journal"}).json()["entries"]
        ops = [e["operation"] for e in entries]
        if len(ops) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert sorted(ops) == ["authentifierUtilisateurProximite", "restituerContexteApCV"]


# --- latency is not serialised ---------------------------------------------------------------------


@pytest.fixture(params=["memory", "file"])
def any_store(request, apcv, tmp_path) -> Iterator[Client]:
    """The session simulator (in-memory store) and a file-backed one (WAL, as deployed)."""
    if request.param == "memory":
        yield apcv
        return
    with serve_in_thread(build_simulator(SPEC, SimConfig(data_dir=tmp_path))) as server:
        client = Client(server.url)
        yield client
        client.http.close()


def test_concurrent_calls_with_latency_are_not_serialised(any_store):
    apcv = any_store
    payloads = [apcv.present("clerico-come").payload for _ in range(20)]
    apcv.control("POST", "/faults", {"effect": {"type": "latency", "ms": 500}})

    def call(p: str) -> int:
        return apcv.post(envelope(auth_body(p))).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        start = time.perf_counter()
        statuses = list(pool.map(call, payloads))
        elapsed = time.perf_counter() - start
    assert statuses == [200] * 20
    assert 0.5 <= elapsed < 1.5, elapsed
    assert len(apcv.control("GET", "/state").json()["state"]["contexts"]) == 20


def test_a_chunked_request_is_read_whole(apcv, payload):
    """Transfer-Encoding: chunked, as streaming SOAP stacks send it (issue 16: the body arrived empty)."""
    data = envelope(auth_body(payload)).encode()
    resp = apcv.http.post("/apcv", content=iter([data[i:i + 512] for i in range(0, len(data), 512)]),
                          headers={"Content-Type": SOAP_CT})
    assert resp.request.headers.get("transfer-encoding") == "chunked"
    assert resp.status_code == 200, resp.text
    assert b"AuthentifierUtilisateurProximiteResp" in resp.content
