"""INSi protocol rules: action, headers, authentication modes, input rules, faults, outcomes, state."""

from __future__ import annotations

import httpx
import pytest

from .conftest import FIXTURES, NSMAP, Client, code_of, xp
from .messages import (
    ACTION_TRAITS,
    ACTION_VITALE,
    BAM_EMPTY,
    LPS,
    SECURITY_CPS,
    SECURITY_PSC,
    SOAP_CT,
    envelope,
    lps_block,
    traits_body,
    vitale_body,
)

CLERICO = traits_body("CLERICO", ["COME"], "M", "1943-11-07")
SOAP12 = NSMAP["soap"]


def assert_sender(fault, subcode: str, detail: str, *words: str) -> None:
    # HTTP 500 and a subcode in the SOAP envelope namespace, as the real service (siram_wire docstring)
    assert fault.status == 500 and fault.code_qname == f"{{{SOAP12}}}Sender", fault
    assert fault.subcode_qname == f"{{{SOAP12}}}{subcode}", fault
    assert fault.detail_code == detail and fault.severite == "erreur", fault
    for word in words:  # the precise reason is in Detail; Reason holds the generic user message
        assert word in fault.detail, (word, fault.detail)


# --- action ----------------------------------------------------------------------------------------


def test_action_from_content_type(insi):
    xml = envelope(CLERICO, action=None)
    root = insi.result(xml, f'{SOAP_CT}; action="{ACTION_TRAITS}"')
    assert code_of(root) == "00"
    assert not root.xpath("//wsa:Action", namespaces=NSMAP)  # the real service sends no SOAP Header


def test_missing_action(insi):
    assert_sender(insi.fault(envelope(CLERICO, action=None)), "siram_10", "desir_501", "Action")


def test_unknown_action(insi):
    assert_sender(insi.fault(envelope(CLERICO, action="urn:ServiceIdentiteCertifiee:1.0.0:supprimer")),
                  "siram_10", "desir_501", "inconnue")


def test_action_body_mismatch(insi):
    assert_sender(insi.fault(envelope(CLERICO, action=ACTION_VITALE, card="143110095083713")),
                  "siram_10", "desir_501", "RECSANSVITALE")


def test_body_in_wrong_namespace(insi):
    body = '<RECSANSVITALE xmlns="http://www.cnamts.fr/INSiRecVit"><NomNaissance>X</NomNaissance></RECSANSVITALE>'
    assert_sender(insi.fault(envelope(body)), "siram_10", "desir_501", "inattendu")


def test_fault_relates_to_request(insi):
    fault = insi.fault(envelope(CLERICO, action=None, message_id="urn:uuid:feedbeef-0000-4000-8000-000000000001"))
    # No SOAP Header in the answer: the request's MessageID comes back on siram:Erreur, as in the real capture
    assert fault.relates_to is None
    assert fault.message_id == "urn:uuid:feedbeef-0000-4000-8000-000000000001"


# --- ContexteLPS -----------------------------------------------------------------------------------


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
        ('<x:ContexteLPS xmlns:x="urn:siram:lps:ctxlps" Nature="CTXLPS" Version="01_00"/>', ["LPS absent"]),
        # right local name, wrong namespace: not the ContexteLPS block
        (LPS.format(nature="CTXLPS", version="01_00", r="4", idam="SIMUL-LGC-0001", lps_version="1",
                    instance="i", nom="n").replace("urn:siram:lps:ctxlps", "urn:autre"), ["absent"]),
    ],
)
def test_contexte_lps_checks(insi, lps, words):
    assert_sender(insi.fault(envelope(CLERICO, lps=lps)), "siram_20", "desir_520", *words)


def test_unknown_idam(insi):
    fault = insi.fault(envelope(CLERICO, lps=lps_block(idam="INCONNU-999")))
    assert_sender(fault, "siram_100", "desir_550", "Numéro d'autorisation du logiciel inconnu.")


def test_idam_list_is_configurable(insi_mtls):
    ok = envelope(CLERICO, security="", lps=lps_block(idam="AUTRE-LGC"))
    assert code_of(insi_mtls.result(ok)) == "00"
    assert_sender(insi_mtls.fault(envelope(CLERICO, security="", lps=lps_block(idam="BENCH-LGC-0001"))),
                  "siram_100", "desir_550")


# --- ContexteBAM -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bam", "words"),
    [
        ("", ["ContexteBAM", "absent"]),
        (BAM_EMPTY.format(version="01_00"), ["Version", "01_02"]),
        ('<b:ContexteBAM xmlns:b="urn:siram:bam:ctxbam" Version="01_02"><b:Id>x</b:Id></b:ContexteBAM>',
         ["COUVERTURE absent"]),
        ('<b:ContexteBAM xmlns:b="urn:siram:bam:ctxbam" Version="01_02" Nature="CTXLPS"><b:COUVERTURE/>'
         "</b:ContexteBAM>", ["Nature"]),
    ],
)
def test_contexte_bam_checks(insi, bam, words):
    assert_sender(insi.fault(envelope(CLERICO, bam=bam)), "siram_21", "desir_521", *words)


def test_carte_vitale_needs_filled_couverture(insi):
    body = vitale_body("143110095083713", "1943-11-07", "1")
    fault = insi.fault(envelope(body, action=ACTION_VITALE))  # default BAM has an empty COUVERTURE
    assert_sender(fault, "siram_21", "desir_521", "COUVERTURE vide")


# --- wsse:Security ---------------------------------------------------------------------------------


def test_cps_and_psc_assertions_accepted(insi):
    assert code_of(insi.result(envelope(CLERICO, security=SECURITY_CPS))) == "00"
    assert code_of(insi.result(envelope(CLERICO, security=SECURITY_PSC, style="env"))) == "00"


@pytest.mark.parametrize(
    ("security", "words"),
    [
        ("", ["wsse:Security absent"]),
        ('<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext'
         '-1.0.xsd"/>', ["assertion SAML"]),
        (SECURITY_CPS.replace('NameQualifier="CPS"', 'NameQualifier="AUTRE"'), ["NameQualifier"]),
        (SECURITY_CPS.replace(">899700366240</saml2:NameID>", "></saml2:NameID>"), ["NameID"]),
        (SECURITY_CPS.replace('Name="secteurActivite"', 'Name="autre"'), ["secteurActivite"]),
        (SECURITY_CPS.replace('Name="identifiantFacturation"', 'Name="autre"'), ["identifiantFacturation"]),
        (SECURITY_PSC.replace('Name="codeSpecialiteAMO"', 'Name="autre"'), ["codeSpecialiteAMO"]),
        # SAML 1.1 namespace: not a SAML 2.0 assertion
        (SECURITY_CPS.replace("urn:oasis:names:tc:SAML:2.0:assertion", "urn:oasis:names:tc:SAML:1.0:assertion"),
         ["assertion SAML"]),
    ],
)
def test_security_checks(insi, security, words):
    assert_sender(insi.fault(envelope(CLERICO, security=security)), "siram_30", "desir_530", *words)


def test_mtls_mode_accepts_no_assertion(insi_mtls):
    # over mutual TLS with the bench's INSI-AUTO software certificate (the fixture's client)
    assert code_of(insi_mtls.result(envelope(CLERICO, security=""))) == "00"
    assert code_of(insi_mtls.result(envelope(CLERICO))) == "00"  # an assertion, if sent, is ignored


def test_mtls_mode_refuses_a_connection_without_a_client_certificate(insi_mtls_server, test_pki):
    client = Client(insi_mtls_server.tls_url, verify=test_pki.context())
    with pytest.raises(httpx.HTTPError, match="certificate required"):
        client.post(envelope(CLERICO, security=""))
    client.http.close()


def test_mtls_mode_wants_the_insi_auto_or_manu_common_name(insi_mtls_server, test_pki):
    # A valid certificate of the structure, but not named INSI-AUTO/INSI-MANU: DESIR_560, as the real service.
    client = Client(insi_mtls_server.tls_url, verify=test_pki.context("structure"))
    fault = client.fault(envelope(CLERICO, security=""))
    assert_sender(fault, "siram_100", "desir_560", "CN='cabinet'")
    # The message the PADOA README reports for DESIR_560, as the Reason for the user
    assert fault.reason == "Vous ne disposez pas des droits suffisants pour accéder à ce service."
    client.http.close()


def test_mtls_mode_over_plain_http_has_no_certificate_to_check(insi_mtls_server):
    client = Client(insi_mtls_server.url)
    assert_sender(client.fault(envelope(CLERICO, security="")), "siram_100", "desir_560", "sans TLS")
    client.http.close()


def test_assertion_mode_rejects_the_mtls_style_request(insi):
    assert_sender(insi.fault((FIXTURES / "recvitale_famille_S.xml").read_bytes()), "siram_30", "desir_530")


def test_unknown_must_understand_header(insi):
    extra = '<x:Trace xmlns:x="urn:autre" xmlns:s="http://www.w3.org/2003/05/soap-envelope" s:mustUnderstand="1"/>'
    fault = insi.fault(envelope(CLERICO, bam=BAM_EMPTY.format(version="01_02") + extra))
    assert fault.code.endswith(":MustUnderstand")


# --- input rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nom", "prenoms", "sexe", "ddn", "cog", "field", "why"),
    [
        ("Clerico", ["COME"], "M", "1943-11-07", None, "NomNaissance", "non autorise"),
        ("CLÉRICO", ["COME"], "M", "1943-11-07", None, "NomNaissance", "non autorise"),
        ("ŒUF", ["COME"], "M", "1943-11-07", None, "NomNaissance", "non autorise"),
        ("CLERICO2", ["COME"], "M", "1943-11-07", None, "NomNaissance", "non autorise"),
        (" CLERICO", ["COME"], "M", "1943-11-07", None, "NomNaissance", "premier caractere"),
        ("-CLERICO", ["COME"], "M", "1943-11-07", None, "NomNaissance", "premier caractere"),
        ("DE  VINCI", ["LEONARDO"], "M", "2014-02-01", None, "NomNaissance", "double"),
        ("D''AEION", ["COEUR"], "M", "1987-01-25", None, "NomNaissance", "double"),
        ("", ["COME"], "M", "1943-11-07", None, "NomNaissance", "obligatoire"),
        ("CLERICO", ["Côme"], "M", "1943-11-07", None, "Prenom", "non autorise"),
        ("CLERICO", ["-COME"], "M", "1943-11-07", None, "Prenom", "mal forme"),
        ("CLERICO", ["JEAN--PAUL"], "M", "1943-11-07", None, "Prenom", "mal forme"),
        ("CLERICO", [], "M", "1943-11-07", None, "Prenom", "au moins un"),
        ("CLERICO", [""], "M", "1943-11-07", None, "Prenom", "vide"),
        ("CLERICO", ["COME"], "H", "1943-11-07", None, "Sexe", "'M' ou 'F'"),
        ("CLERICO", ["COME"], "m", "1943-11-07", None, "Sexe", "'M' ou 'F'"),
        ("CLERICO", ["COME"], "M", "07/11/1943", None, "DateNaissance", "AAAA-MM-JJ"),
        ("CLERICO", ["COME"], "M", "19431107", None, "DateNaissance", "AAAA-MM-JJ"),
        ("CLERICO", ["COME"], "M", "1943-02-30", None, "DateNaissance", "inexistante"),
        ("CLERICO", ["COME"], "M", "1943-11-07", "6322", "LieuNaissance", "5 caracteres"),
        ("CLERICO", ["COME"], "M", "1943-11-07", "632200", "LieuNaissance", "5 caracteres"),
        ("CLERICO", ["COME"], "M", "1943-11-07", "2C020", "LieuNaissance", "invalide"),
    ],
)
def test_input_rules(insi, nom, prenoms, sexe, ddn, cog, field, why):
    fault = insi.fault(envelope(traits_body(nom, prenoms, sexe, ddn, cog)))
    assert_sender(fault, "siram_50", "insi_001", field, why)


def test_allowed_characters_pass(insi):
    for nom, prenoms, sexe, ddn, cog in [
        ("D'ARTAGNAN DE L'HERAULT", ["PIERRE-ALAIN"], "M", "2001-06-17", "63220"),
        ("ADRTROIS", ["DOMINIQUE"], "F", "1997-02-26", "2A020"),
        ("MARTIN--DURAND", ["JEAN"], "M", "1990-01-01", None),  # double hyphen allowed in names
    ]:
        assert code_of(insi.result(envelope(traits_body(nom, prenoms, sexe, ddn, cog)))) in ("00", "01")


@pytest.mark.parametrize(
    ("od", "ddn", "rang", "field"),
    [
        ("X43110095083713", "1943-11-07", "1", "MatriculeOD/NumIdentifiant"),
        ("1431100950837X3", "1943-11-07", "1", "MatriculeOD/Cle"),
        ("143110095083713", "07-11-1943", "1", "DateNaissance"),
        ("143110095083713", "1943-11-07", "A", "RangNaissance"),
        (None, "1943-11-07", "1", "MatriculeOD"),
    ],
)
def test_carte_vitale_input_rules(insi, od, ddn, rang, field):
    xml = envelope(vitale_body(od, ddn, rang), action=ACTION_VITALE, card="143110095083713")
    assert_sender(insi.fault(xml), "siram_50", "insi_001", field)


# --- malformed XML ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not xml at all",
        b"<soap:Envelope xmlns:soap='http://www.w3.org/2003/05/soap-envelope'><soap:Body>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
        b'<!DOCTYPE e SYSTEM "file:///etc/passwd"><e xmlns="http://www.w3.org/2003/05/soap-envelope"/>',
        envelope(CLERICO).encode().replace(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                                           b'<?xml version="1.0"?><!DOCTYPE z [<!ENTITY x SYSTEM "file:///etc/passwd">]>'),
        b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body/></soap:Envelope>',
    ],
)
def test_malformed_xml_gives_sender_fault(insi, data):
    fault = insi.fault(data)
    assert fault.status == 500 and fault.code.endswith(":Sender")
    assert "root:" not in fault.reason


def test_soap11_gives_version_mismatch(insi):
    data = envelope(CLERICO).replace("http://www.w3.org/2003/05/soap-envelope", "http://schemas.xmlsoap.org/soap/envelope/")
    fault = insi.fault(data)
    assert fault.code.endswith(":VersionMismatch")


def test_wrong_method_and_path(insi):
    resp = insi.http.get("/lps")
    assert resp.status_code == 405 and "Fault" in resp.text


# --- D'AEION and outcomes -------------------------------------------------------------------------


def test_d_aeion_fault(insi):
    fault = insi.fault(envelope(traits_body("D'AEION", ["COEUR"], "M", "1987-01-25")))
    assert (fault.status, fault.code, fault.subcode) == (500, "S:Receiver", "S:siram_40")
    assert fault.subcode_qname == f"{{{SOAP12}}}siram_40" and fault.detail_code == "insi_102"
    assert fault.severite == "fatal"


@pytest.mark.parametrize(("outcome", "code"), [("insi.cr01", "01"), ("insi.cr02", "02")])
def test_forced_outcomes(insi, outcome, code):
    insi.control("POST", "/faults", {"effect": {"type": "outcome", "name": outcome}})
    assert code_of(insi.result(envelope(CLERICO))) == code
    insi.control("DELETE", "/faults")
    assert code_of(insi.result(envelope(CLERICO))) == "00"


def test_forced_service_unavailable(insi):
    insi.control("POST", "/faults", {"effect": {"type": "outcome", "name": "insi.service-indisponible"}})
    fault = insi.fault(envelope(CLERICO))
    assert fault.status == 500 and fault.subcode.endswith(":siram_40") and fault.detail_code == "insi_102"


def test_outcome_targets_one_patient_by_attrs(insi):
    insi.control("POST", "/faults", {"match": {"attrs": {"nom": "BOUCHER"}},
                                     "effect": {"type": "outcome", "name": "insi.cr02"}})
    assert code_of(insi.result(envelope(CLERICO))) == "00"
    assert code_of(insi.result(envelope(traits_body("BOUCHER", ["FRANCOIS"], "M", "1967-10-12")))) == "02"


def test_outcome_targets_carte_vitale_by_ins(insi):
    insi.control("POST", "/faults", {"match": {"attrs": {"ins": "143110095083713"}},
                                     "effect": {"type": "outcome", "name": "insi.cr01"}})
    xml = envelope(vitale_body("143110095083713", "1943-11-07", "1"), action=ACTION_VITALE, card="143110095083713")
    assert code_of(insi.result(xml)) == "01"
    xml = envelope(vitale_body("167100093480710", "1967-10-12", "1"), action=ACTION_VITALE, card="167100093480710")
    assert code_of(insi.result(xml)) == "00"


def test_outcomes_declared(insi):
    outcomes = insi.control("GET", "/faults").json()["outcomes"]
    assert set(outcomes) == {"insi.cr01", "insi.cr02", "insi.service-indisponible"}


# --- state: identity change for verification --------------------------------------------------------


def test_identity_change_moves_old_ins_to_inshisto(insi):
    state = insi.control("POST", "/state", {"changes": [
        {"ins": "143110095083713", "new_matricule": "1431163220999", "new_cle": "12"}]}).json()["state"]
    assert state["changes"][0]["old_ins"] == "143110095083713"
    root = insi.result(envelope(CLERICO))
    assert xp(root, "//r:INSACTIF/r:IdIndividu/r:NumIdentifiant") == "1431163220999"
    assert xp(root, "//r:INSACTIF/r:IdIndividu/r:Cle") == "12"
    histo = root.xpath("//r:INSHISTO/r:IdIndividu/r:NumIdentifiant/text()", namespaces=NSMAP)
    assert histo == ["1431100950837"]
    assert insi.control("GET", "/state").json()["state"]["changes"][0]["new_ins"] == "143116322099912"
    # a second change chains: both former matricules in INSHISTO, most recent first
    insi.control("POST", "/state", {"changes": [{"ins": "143116322099912", "new_matricule": "1431163220998"}]})
    root = insi.result(envelope(CLERICO))
    histo = root.xpath("//r:INSHISTO/r:IdIndividu/r:NumIdentifiant/text()", namespaces=NSMAP)
    assert histo == ["1431163220999", "1431100950837"]
    insi.control("POST", "/reset")
    root = insi.result(envelope(CLERICO))
    assert xp(root, "//r:INSACTIF/r:IdIndividu/r:NumIdentifiant") == "1431100950837"
    assert not root.xpath("//r:INSHISTO", namespaces=NSMAP)


@pytest.mark.parametrize(
    "body",
    [
        {"changes": [{"ins": "999999999999999", "new_matricule": "1431163220999"}]},
        {"changes": [{"ins": "143110095083713", "new_matricule": "12"}]},
        {"changes": [{"ins": "143110095083713", "new_matricule": "1431163220999", "new_cle": "X"}]},
        {"variants": ["TEST_9.99"]},
        {"autre": 1},
        [],
    ],
)
def test_bad_state_changes_rejected(insi, body):
    resp = insi.http.post("/_bench/state", json=body)
    assert resp.status_code == 400, resp.text


def test_vendor_idam_from_the_bench_configuration(tmp_path):
    """A vendor registers their CNDA number once, bench-wide (authorised_idam in segur-bench.toml): INSi, ApCV
    and ON accept it; a [settings.<service>] list of its own still wins; a malformed value is refused."""
    from segur_bench.config import BenchConfig, ConfigError
    from simulators.core.server import serve_in_thread
    from simulators.core.service import SimConfig
    from simulators.core.simulator import build_simulator
    from simulators.insi.app import SPEC

    toml = tmp_path / "segur-bench.toml"
    toml.write_text('authorised_idam = ["EDITEUR-CNDA-42"]\n[settings.on]\nauthorised_idam = ["AUTRE"]\n')
    config = BenchConfig.load(toml)
    assert config.accepted_idam("insi") == config.accepted_idam("apcv") == ["EDITEUR-CNDA-42"]
    assert config.accepted_idam("on") == ["AUTRE"]
    assert "authorised_idam" not in config.service_settings("mss")
    with serve_in_thread(build_simulator(SPEC, SimConfig(settings=config.service_settings("insi")))) as server:
        client = Client(server.url)
        assert code_of(client.result(envelope(CLERICO, lps=lps_block(idam="EDITEUR-CNDA-42")))) == "00"
        assert_sender(client.fault(envelope(CLERICO)), "siram_100", "desir_550")  # the default list is replaced
        client.http.close()
    toml.write_text('authorised_idam = "EDITEUR-CNDA-42"\n')
    with pytest.raises(ConfigError, match="authorised_idam"):
        BenchConfig.load(toml)
