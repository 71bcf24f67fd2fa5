"""INSi answers compared with real ones, and read by a third-party SOAP client (zeep).

The expected bytes are the answers of the CNDA qualification service stored by a public INSi client (PADOA
`tlsi-ins`, src/ins/fixtures: the unknown-IDAM fault, the D'AEION technical fault, the TCHITCHI CATARINA
answer), typed here by hand with only the request's MessageID substituted. That client reads a fault only on
HTTP 500 and finds subcode and reason with prefix-aware regular expressions, so bytes matter, not just the infoset.
"""

# ruff: noqa: E501  (captured answers are kept on one line, as the real service sends them)

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import zeep
import zeep.exceptions
from lxml import etree
from saml_signing import sign_assertion

from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.insi.app import SPEC

from .conftest import NSMAP, Client, code_of
from .messages import (
    ACTION_TRAITS,
    BAM_EMPTY,
    SECURITY_CPS,
    SECURITY_CPS_UNSIGNED,
    SECURITY_PSC,
    envelope,
    lps_block,
    traits_body,
)

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
MESSAGE_ID = "uuid:b3549edd-4ae9-472a-b26f-fd2fb4ef397f"

CAPTURED_IDAM_FAULT = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><env:Body xmlns:env="http://www.w3.org/2003/05/soap-envelope"><soap:Fault><soap:Code><soap:Value>soap:Sender</soap:Value><soap:Subcode><soap:Value>soap:siram_100</soap:Value></soap:Subcode></soap:Code><soap:Reason><soap:Text xml:lang="fr">L\'accès par ce progiciel au service n\'est pas autorisé. Contactez l\'éditeur du progiciel ou votre responsable informatique.</soap:Text></soap:Reason><soap:Detail><siram:Erreur code="desir_550" messageID="uuid:b3549edd-4ae9-472a-b26f-fd2fb4ef397f" severite="erreur" xmlns:siram="urn:siram">Numéro d\'autorisation du logiciel inconnu.</siram:Erreur></soap:Detail></soap:Fault></env:Body></soap:Envelope>'
)
CAPTURED_TECHNICAL_FAULT = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><env:Body xmlns:S="http://www.w3.org/2003/05/soap-envelope" xmlns:env="http://www.w3.org/2003/05/soap-envelope"><S:Fault xmlns:ns4="http://schemas.xmlsoap.org/soap/envelope/"><S:Code><S:Value>S:Receiver</S:Value><S:Subcode><S:Value>S:siram_40</S:Value></S:Subcode></S:Code><S:Reason><S:Text xml:lang="en">Le service est temporairement inaccessible. Veuillez renouveler votre demande ultérieurement. Si le problème persiste, contactez l\'éditeur du progiciel ou votre responsable informatique.</S:Text></S:Reason><S:Detail><siram:Erreur severite="fatal" code="insi_102" xmlns:siram="urn:siram">L\'appel au service de recherche avec les traits d\'identité renvoie une erreur technique.</siram:Erreur></S:Detail></S:Fault></env:Body></soap:Envelope>'
)
CAPTURED_CATARINA = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><env:Body xmlns:S="http://www.w3.org/2003/05/soap-envelope" xmlns:env="http://www.w3.org/2003/05/soap-envelope"><RESULTAT xmlns="http://www.cnamts.fr/INSiResultat" xmlns:ns0="http://www.cnamts.fr/INSiRecVit" xmlns:ns1="http://www.cnamts.fr/INSiRecSans"><CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR><INDIVIDU><INSACTIF><IdIndividu><NumIdentifiant>2360663220836</NumIdentifiant><Cle>56</Cle></IdIndividu><OID>1.2.250.1.213.1.4.8</OID></INSACTIF><TIQ><NomNaissance>TCHITCHI</NomNaissance><ListePrenom>CATARINA BELLA</ListePrenom><Sexe>F</Sexe><DateNaissance>1936-06-21</DateNaissance><LieuNaissance>63220</LieuNaissance></TIQ></INDIVIDU></RESULTAT></env:Body></soap:Envelope>'
)


# --- bytes, compared with the captured answers -----------------------------------------------------


def test_unknown_idam_fault_is_the_captured_one(insi):
    resp = insi.post(envelope(traits_body("ADRTROIS", ["DOMINIQUE"], "F", "1997-02-26"), message_id=MESSAGE_ID,
                              lps=lps_block(idam="PDP17NF21DD0")))
    assert resp.status_code == 500
    assert resp.headers["content-type"].startswith("application/soap+xml")
    assert resp.content.decode() == CAPTURED_IDAM_FAULT


def test_technical_fault_is_the_captured_one(insi):
    resp = insi.post(envelope(traits_body("D'AEION", ["COEUR"], "M", "1987-01-25"), message_id=MESSAGE_ID))
    assert resp.status_code == 500
    assert resp.content.decode() == CAPTURED_TECHNICAL_FAULT


def test_forced_unavailability_is_the_captured_technical_fault(insi):
    insi.control("POST", "/faults", {"effect": {"type": "outcome", "name": "insi.service-indisponible"}})
    resp = insi.post(envelope(traits_body("CLERICO", ["COME"], "M", "1943-11-07")))
    assert resp.status_code == 500 and resp.content.decode() == CAPTURED_TECHNICAL_FAULT


def test_answer_is_the_captured_one(insi):
    resp = insi.post(envelope(traits_body("TCHITCHI", ["CATARINA"], "F", "1936-06-21")))
    assert resp.status_code == 200
    assert resp.content.decode() == CAPTURED_CATARINA


def test_addressing_headers_only_when_asked(tmp_path):
    config = SimConfig(settings={"wsa_response_headers": True}, data_dir=tmp_path)
    with serve_in_thread(build_simulator(SPEC, config)) as server:
        client = Client(server.url)
        root = client.result(envelope(traits_body("CLERICO", ["COME"], "M", "1943-11-07"),
                                      message_id="urn:uuid:0c0ffee0-0000-4000-8000-000000000001"))
        assert root.xpath("string(//wsa:Action)", namespaces=NSMAP) == ACTION_TRAITS + "Response"
        assert root.xpath("string(//wsa:RelatesTo)", namespaces=NSMAP) == "urn:uuid:0c0ffee0-0000-4000-8000-000000000001"
        client.http.close()


# --- zeep, a third-party SOAP 1.2 client --------------------------------------------------------------


def _blocks(*xml: str) -> list[etree._Element]:
    return [etree.fromstring(x) for x in xml]


@pytest.fixture
def zeep_service(insi: Client) -> zeep.proxy.ServiceProxy:
    wsdl = Path(__file__).parent / "fixtures" / "insi_zeep.wsdl"
    client = zeep.Client(str(wsdl))
    binding = "{http://www.cnamts.fr/webservice}ICIRServiceBinding"
    return client.create_service(binding, insi.url + "/lps")


def test_zeep_reads_the_answer(zeep_service):
    result = zeep_service.rechercherInsAvecTraitsIdentite(
        NomNaissance="TCHITCHI", Prenom=["CATARINA"], Sexe="F", DateNaissance="1936-06-21",
        _soapheaders=_blocks(lps_block(), BAM_EMPTY.format(version="01_02"), SECURITY_PSC))
    assert result.CR.CodeCR == "00"
    assert result.INDIVIDU.INSACTIF.IdIndividu.NumIdentifiant == "2360663220836"
    assert result.INDIVIDU.TIQ.ListePrenom == "CATARINA BELLA"


@pytest.mark.parametrize(("lps", "nom", "code", "subcode", "words"), [
    ("PIRATE-01", "CLERICO", "Sender", "siram_100", "n'est pas autorisé"),
    (None, "D'AEION", "Receiver", "siram_40", "temporairement inaccessible"),
])
def test_zeep_reads_faults_with_their_qualified_subcode(zeep_service, lps, nom, code, subcode, words):
    prenom = "COEUR" if nom == "D'AEION" else "COME"
    ddn = "1987-01-25" if nom == "D'AEION" else "1943-11-07"
    with pytest.raises(zeep.exceptions.Fault) as caught:
        zeep_service.rechercherInsAvecTraitsIdentite(
            NomNaissance=nom, Prenom=[prenom], Sexe="M", DateNaissance=ddn,
            _soapheaders=_blocks(lps_block(idam=lps) if lps else lps_block(), BAM_EMPTY.format(version="01_02"),
                                 SECURITY_PSC))
    fault = caught.value
    assert fault.code.rpartition(":")[2] == code
    assert fault.subcodes == [etree.QName(SOAP12, subcode)]  # resolved by zeep from the Value's namespaces
    assert words in fault.message


# --- the professional's assertion ---------------------------------------------------------------------


def _stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_conditions(security: str, not_before: datetime, not_after: datetime) -> str:
    conditions = f'<saml2:Conditions NotBefore="{_stamp(not_before)}" NotOnOrAfter="{_stamp(not_after)}"/>'
    return security.replace("<saml2:Subject>", conditions + "<saml2:Subject>", 1) if "<saml2:Subject>" in security \
        else security


CLERICO = traits_body("CLERICO", ["COME"], "M", "1943-11-07")


def _refusal(insi: Client, security: str) -> str:
    fault = insi.fault(envelope(CLERICO, security=security))
    assert fault.status == 500 and fault.subcode_qname == f"{{{SOAP12}}}siram_30", fault
    assert fault.detail_code == "desir_530"
    return fault.detail


def test_signed_cps_assertion_is_accepted(insi):
    assert code_of(insi.result(envelope(CLERICO, security=SECURITY_CPS))) == "00"


def test_unsigned_cps_assertion_is_refused(insi):
    assert "non signée" in _refusal(insi, SECURITY_CPS_UNSIGNED)


def test_tampered_cps_assertion_is_refused(insi):
    assert "invalide" in _refusal(insi, sign_assertion(SECURITY_CPS_UNSIGNED, tamper=True))


def test_cps_assertion_signed_by_another_key_is_refused(insi):
    assert "invalide" in _refusal(insi, sign_assertion(SECURITY_CPS_UNSIGNED, other_key=True))


def test_expired_assertion_is_refused(insi):
    now = datetime.now(UTC)
    expired = sign_assertion(_with_conditions(SECURITY_CPS_UNSIGNED, now - timedelta(hours=2), now - timedelta(hours=1)))
    assert "expirée" in _refusal(insi, expired)
    valid = sign_assertion(_with_conditions(SECURITY_CPS_UNSIGNED, now - timedelta(minutes=1), now + timedelta(hours=1)))
    assert code_of(insi.result(envelope(CLERICO, security=valid))) == "00"


def test_assertion_not_yet_valid_is_refused(insi):
    now = datetime.now(UTC)
    early = sign_assertion(_with_conditions(SECURITY_CPS_UNSIGNED, now + timedelta(hours=1), now + timedelta(hours=2)))
    assert "pas encore valide" in _refusal(insi, early)


def test_window_follows_the_bench_clock(insi):
    """The service's clock decides: a trainer who moves the bench clock past NotOnOrAfter expires the assertion."""
    now = datetime.now(UTC)
    valid = sign_assertion(_with_conditions(SECURITY_CPS_UNSIGNED, now - timedelta(minutes=1), now + timedelta(hours=1)))
    assert code_of(insi.result(envelope(CLERICO, security=valid))) == "00"
    insi.control("POST", "/clock", {"advance": "PT2H"})
    try:
        assert "expirée" in _refusal(insi, valid)
    finally:
        insi.control("POST", "/clock", {"reset": True})


def test_unsigned_psc_assertion_is_accepted(insi):
    # The Pro Santé Connect form is unsigned (protocols.md §1.3)
    assert code_of(insi.result(envelope(CLERICO, security=SECURITY_PSC))) == "00"


@pytest.fixture(scope="module")
def lenient_insi(tmp_path_factory) -> Iterator[Client]:
    config = SimConfig(settings={"verify_assertion": False}, data_dir=tmp_path_factory.mktemp("lenient"))
    with serve_in_thread(build_simulator(SPEC, config)) as server:
        client = Client(server.url)
        yield client
        client.http.close()


def test_verification_can_be_relaxed(lenient_insi):
    now = datetime.now(UTC)
    expired = _with_conditions(SECURITY_CPS_UNSIGNED, now - timedelta(hours=2), now - timedelta(hours=1))
    for security in (SECURITY_CPS_UNSIGNED, expired, sign_assertion(SECURITY_CPS_UNSIGNED, tamper=True)):
        assert code_of(lenient_insi.result(envelope(CLERICO, security=security))) == "00"
