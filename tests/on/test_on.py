"""Ordonnance numérique simulator over real HTTP with hand-written SOAP requests: create, consult, search,
2D code, input and header rules, outcomes (KO, unavailable, slow, no answer), bearer-token mode."""

from __future__ import annotations

import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from lxml import etree

from simulators.on.model import check_numero, new_numero, numero_key

from .conftest import EP_XSD, NSMAP, Client, start, xp
from .messages import (
    ACTION_CONSULTER,
    ACTION_CREER,
    ACTION_RECHERCHER,
    KIT,
    LIGNE_AMOXICILLINE,
    LPS,
    PHARMACIEN,
    SECURITY_PSC_NO_SPECIALITE,
    SOAP_CT,
    consulter_body,
    creer_body,
    envelope,
    patient,
    prescripteur,
    rechercher_body,
)


def assert_fault(fault, subcode: str, detail: str, *words: str, status: int = 500) -> None:
    assert fault.status == status and fault.code.endswith(":Sender"), fault
    assert fault.subcode_qname == "{http://www.w3.org/2003/05/soap-envelope}" + subcode, fault
    assert fault.detail_code == detail, fault
    for word in words:  # the precise reason is in Detail; Reason holds the generic user message
        assert word in fault.detail, (word, fault.detail)


def add_rule(on: Client, effect: dict, **extra: object) -> None:
    on.control("POST", "/faults", {"effect": effect, **extra})


# --- success path ----------------------------------------------------------------------------------


def test_request_fixture_is_valid_against_our_xsd():
    EP_XSD.assertValid(etree.fromstring(creer_body().encode()))
    EP_XSD.assertValid(etree.fromstring(consulter_body("1" + "0" * 21).encode()))
    EP_XSD.assertValid(etree.fromstring(rechercher_body().encode()))


def test_create_returns_number_payload_and_decodable_qr(on, decode_qr):
    created = on.create()
    assert len(created.numero) == 22 and created.numero.isdigit()
    assert check_numero(created.numero) == created.numero
    assert created.payload == f"ON|1|{created.numero}|{KIT}|20260110"
    assert decode_qr(created.png) == [created.payload]
    assert xp(created.root, "//ep:EtatDelivrance") == "NON_DELIVREE"
    assert xp(created.root, "//ep:EtatDelivrance/@libelle") == "non délivrée"
    assert xp(created.root, "//wsa:Action") == ACTION_CREER + "Response"
    assert xp(created.root, "//wsa:RelatesTo") == "urn:uuid:5a0f1c3e-0000-4000-8000-0000000e0001"


def test_numbers_are_unique(on):
    numbers = {on.create().numero for _ in range(5)}
    assert len(numbers) == 5


def test_consult_after_create_then_dispensation_states(on):
    created = on.create()
    root = on.consult(created.numero)
    assert xp(root, "//ep:CR/ep:CodeCR") == "00"
    assert xp(root, "//ep:EPrescription/ep:NumeroPrescription") == created.numero
    assert xp(root, "//ep:EtatDelivrance") == "NON_DELIVREE"
    assert xp(root, "//ep:Patient/ep:INS/ep:NumIdentifiant") == "1431100950837"
    assert xp(root, "//ep:Patient/ep:NomNaissance") == "CLERICO"
    assert xp(root, "//ep:Prescripteur/ep:Nom") == "DOC0036624"
    assert root.xpath("count(//ep:Lignes/ep:Ligne)", namespaces=NSMAP) == 2
    assert xp(root, "//ep:Ligne[1]/ep:Produit/ep:Code/@systeme") == "CIP13"
    assert xp(root, "//ep:Ligne[2]/ep:NonSubstituable") == "true"
    assert xp(root, "//ep:Code2D/ep:Donnees") == created.payload

    on.control("POST", "/state", {"delivrance": {"numero": created.numero, "etat": "PARTIELLEMENT_DELIVREE",
                                                 "quantites": [1, 0]}})
    root = on.consult(created.numero)
    assert xp(root, "//ep:EtatDelivrance") == "PARTIELLEMENT_DELIVREE"
    assert xp(root, "//ep:EtatDelivrance/@libelle") == "partiellement délivrée"
    assert xp(root, "//ep:Ligne[1]/ep:QuantiteDelivree") == "1"
    on.control("POST", "/state", {"delivrance": {"numero": created.numero, "etat": "DELIVREE"}})
    assert xp(on.consult(created.numero), "//ep:EtatDelivrance") == "DELIVREE"
    state = on.control("GET", "/state").json()["state"]
    assert [p["etat"] for p in state["prescriptions"]] == ["DELIVREE"]


def test_control_rejects_bad_dispensation(on):
    created = on.create()
    resp = on.http.post("/_bench/state", json={"delivrance": {"numero": created.numero, "etat": "PERDUE"}})
    assert resp.status_code == 400 and "PERDUE" in resp.text
    resp = on.http.post("/_bench/state", json={"delivrance": {"numero": "1" * 22, "etat": "DELIVREE"}})
    assert resp.status_code == 400


def test_consult_unknown_number_is_cr01(on):
    base = "1260110" + "0" * 13
    root = on.consult(base + numero_key(base))
    assert xp(root, "//ep:CR/ep:CodeCR") == "01"
    assert not root.xpath("//ep:EPrescription", namespaces=NSMAP)


def test_qr_png_control_route(on, decode_qr):
    created = on.create()
    resp = on.http.get(f"/_bench/on/{created.numero}/qr.png")
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    assert decode_qr(resp.content) == [created.payload]
    assert on.http.get("/_bench/on/123/qr.png").status_code == 404


def test_locally_generated_number_is_accepted_once(on):
    numero = new_numero(__import__("datetime").date(2026, 1, 10))
    assert on.create(numero=numero).numero == numero
    fault = on.fault(envelope(creer_body(numero=numero)))
    assert_fault(fault, "siram_53", "epresc_030", "deja utilise")


def test_search_by_patient(on):
    first, second = on.create(), on.create()
    root = on.ok(envelope(rechercher_body(), action=ACTION_RECHERCHER), "RechercherEPrescriptionsResp")
    assert xp(root, "//ep:CR/ep:CodeCR") == "00"
    found = root.xpath("//ep:Resume/ep:NumeroPrescription/text()", namespaces=NSMAP)
    assert sorted(found) == sorted([first.numero, second.numero])
    root = on.ok(envelope(rechercher_body("1671000934807", "10"), action=ACTION_RECHERCHER),
                 "RechercherEPrescriptionsResp")
    assert xp(root, "//ep:CR/ep:CodeCR") == "01"


def test_hermann_wrong_key_accepted_because_persona_says_so(on):
    body = creer_body(patient_xml=patient(num="1810363220456", cle="60", nom="HERMANN", prenom="GATIEN",
                                          ddn="1981-03-24"))
    on.ok(envelope(body), "CreerEPrescriptionResp")


# --- input rules -----------------------------------------------------------------------------------

BAD_INPUTS = [
    ("nom-minuscule", dict(patient_xml=patient(nom="Clerico")), "siram_50", "epresc_001", "NomNaissance"),
    ("nom-accent", dict(patient_xml=patient(nom="CLÉRICO")), "siram_50", "epresc_001", "non autorise"),
    ("prenom-espace-tete", dict(patient_xml=patient(prenom=" COME")), "siram_50", "epresc_001", "Prenom"),
    ("sexe", dict(patient_xml=patient(sexe="X")), "siram_50", "epresc_001", "Sexe"),
    ("date-naissance", dict(patient_xml=patient(ddn="1943-02-30")), "siram_50", "epresc_001", "inexistante"),
    ("matricule", dict(patient_xml=patient(num="14311009508")), "siram_50", "epresc_001", "NumIdentifiant"),
    ("cle", dict(patient_xml=patient(cle="14")), "siram_50", "epresc_001", "Cle"),
    ("oid", dict(patient_xml=patient(oid="1.2.3")), "siram_50", "epresc_001", "OID"),
    ("traits-autre-patient", dict(patient_xml=patient(nom="BOUCHER")), "siram_51", "epresc_010", "NomNaissance"),
    ("ddn-autre", dict(patient_xml=patient(ddn="1943-11-08")), "siram_51", "epresc_010", "DateNaissance"),
    ("sans-patient", dict(patient_xml=""), "siram_50", "epresc_001", "Patient"),
    ("rpps-inconnu", dict(prescripteur_xml=prescripteur("899999999999")), "siram_52", "epresc_020", "inconnu"),
    ("rpps-forme", dict(prescripteur_xml=prescripteur("12345")), "siram_50", "epresc_001", "IdNational"),
    ("prescripteur-autre", dict(prescripteur_xml=prescripteur("899700218896", "999990021")), "siram_52",
     "epresc_020", "authentifie"),
    ("facturation", dict(prescripteur_xml=prescripteur(fact="123456789")), "siram_52", "epresc_020",
     "IdentifiantFacturation"),
    ("sans-prescripteur", dict(prescripteur_xml=""), "siram_50", "epresc_001", "Prescripteur"),
    ("sans-lignes", dict(lignes=""), "siram_50", "epresc_001", "Lignes"),
    ("lignes-vides", dict(lignes="<ep:Lignes/>"), "siram_50", "epresc_001", "au moins une ligne"),
    ("libelle", dict(lignes="<ep:Lignes><ep:Ligne><ep:Produit/><ep:Posologie>1/j</ep:Posologie>"
                            "<ep:Duree>5</ep:Duree></ep:Ligne></ep:Lignes>"), "siram_50", "epresc_001", "Libelle"),
    ("posologie", dict(lignes="<ep:Lignes><ep:Ligne><ep:Produit><ep:Libelle>X</ep:Libelle></ep:Produit>"
                              "<ep:Duree>5</ep:Duree></ep:Ligne></ep:Lignes>"), "siram_50", "epresc_001",
     "Posologie"),
    ("duree-ou-quantite", dict(lignes="<ep:Lignes><ep:Ligne><ep:Produit><ep:Libelle>X</ep:Libelle></ep:Produit>"
                                      "<ep:Posologie>1/j</ep:Posologie></ep:Ligne></ep:Lignes>"), "siram_50",
     "epresc_001", "Duree ou Quantite"),
    ("duree-unite", dict(lignes="<ep:Lignes><ep:Ligne><ep:Produit><ep:Libelle>X</ep:Libelle></ep:Produit>"
                                "<ep:Posologie>1/j</ep:Posologie><ep:Duree unite='a'>1</ep:Duree></ep:Ligne>"
                                "</ep:Lignes>"), "siram_50", "epresc_001", "unite"),
    ("duree-trop-longue", dict(lignes="<ep:Lignes><ep:Ligne><ep:Produit><ep:Libelle>X</ep:Libelle></ep:Produit>"
                                      "<ep:Posologie>1/j</ep:Posologie><ep:Duree unite='m'>13</ep:Duree></ep:Ligne>"
                                      "</ep:Lignes>"), "siram_50", "epresc_001", "366"),
    ("code-cip", dict(lignes=f"<ep:Lignes>{LIGNE_AMOXICILLINE.replace('3400930000001', '34009')}</ep:Lignes>"),
     "siram_50", "epresc_001", "CIP13"),
    ("quantite", dict(lignes="<ep:Lignes>" + LIGNE_AMOXICILLINE.replace('boite">1<', 'boite">0<') + "</ep:Lignes>"),
     "siram_50", "epresc_001", "Quantite"),
    ("date-future", dict(date="2999-01-01"), "siram_50", "epresc_001", "posterieure"),
    ("type", dict(type="11488-4"), "siram_50", "epresc_001", "TRE_A05"),
    ("numero-cle", dict(numero="1260110" + "0" * 13 + "00"), "siram_53", "epresc_030", "cle"),
    ("numero-forme", dict(numero="ABC"), "siram_53", "epresc_030", "22 chiffres"),
]


@pytest.mark.parametrize(("case", "kw", "subcode", "detail", "word"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_input_rules(on, case, kw, subcode, detail, word):
    assert_fault(on.fault(envelope(creer_body(**kw))), subcode, detail, word)


def test_pharmacist_cannot_prescribe(on):
    fault = on.fault(envelope(creer_body(prescripteur_xml=prescripteur(PHARMACIEN, "999990039")), nid=PHARMACIEN))
    assert_fault(fault, "siram_52", "epresc_020", "pharmacien")


def test_consult_bad_number(on):
    fault = on.fault(envelope(consulter_body("12345"), action=ACTION_CONSULTER))
    assert_fault(fault, "siram_53", "epresc_030", "NumeroPrescription")


# --- envelope and header rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "subcode", "detail", "word"),
    [
        (dict(action=None), "siram_10", "desir_501", "Action"),
        (dict(action="urn:ServiceEPrescription:1.0.0:supprimerEPrescription"), "siram_10", "desir_501", "inconnue"),
        (dict(action=ACTION_CONSULTER), "siram_10", "desir_501", "CreerEPrescriptionReq"),
        (dict(lps=""), "siram_20", "desir_520", "ContexteLPS"),
        (dict(lps=LPS.format(idam="INCONNU-0001")), "siram_100", "desir_550", "autorisation du logiciel inconnu"),
        (dict(security=""), "siram_30", "desir_530", "wsse:Security"),
        (dict(security=SECURITY_PSC_NO_SPECIALITE), "siram_30", "desir_530", "codeSpecialiteAMO"),
    ],
    ids=["no-action", "unknown-action", "action-mismatch", "no-lps", "idam", "no-security", "psc-attr"],
)
def test_header_rules(on, kw, subcode, detail, word):
    fault = on.fault(envelope(creer_body(), **kw))
    assert_fault(fault, subcode, detail, word)
    assert fault.relates_to is None
    if detail.startswith("desir_"):  # the gateway's faults carry the request's MessageID on siram:Erreur
        assert fault.message_id == "urn:uuid:5a0f1c3e-0000-4000-8000-0000000e0001"


def test_body_in_wrong_namespace(on):
    fault = on.fault(envelope('<CreerEPrescriptionReq xmlns="urn:other"/>'))
    assert_fault(fault, "siram_10", "desir_501", "inattendu")


def test_not_xml_is_a_soap_fault(on):
    resp = on.post("not xml")
    assert resp.status_code == 500 and "Fault" in resp.text


# --- outcomes and faults of the fault engine --------------------------------------------------------


def test_outcome_ko(on):
    add_rule(on, {"type": "outcome", "name": "on.ko"})
    root = on.ok(envelope(creer_body()), "CreerEPrescriptionResp")
    assert xp(root, "//ep:CR/ep:CodeCR") == "10"
    assert "KO" in xp(root, "//ep:CR/ep:LibelleCR")
    assert not root.xpath("//ep:EPrescription", namespaces=NSMAP)
    assert on.control("GET", "/state").json()["state"]["prescriptions"] == []


def test_outcome_ko_targets_one_patient(on):
    add_rule(on, {"type": "outcome", "name": "on.ko"}, match={"attrs": {"ins": "143110095083713"}})
    assert xp(on.ok(envelope(creer_body()), "CreerEPrescriptionResp"), "//ep:CodeCR") == "10"
    other = creer_body(patient_xml=patient(num="1671000934807", cle="10", nom="BOUCHER", prenom="FRANCOIS",
                                           ddn="1967-10-12"))
    assert xp(on.ok(envelope(other), "CreerEPrescriptionResp"), "//ep:CodeCR") == "00"


def test_outcome_indisponible(on):
    add_rule(on, {"type": "outcome", "name": "on.indisponible"})
    fault = on.fault(envelope(creer_body()))
    assert fault.status == 500 and fault.code.endswith(":Receiver")
    assert fault.subcode.endswith(":siram_40") and fault.detail_code == "epresc_102"


def test_outcome_lent(on):
    add_rule(on, {"type": "outcome", "name": "on.lent"})
    started = time.monotonic()
    on.create()
    assert time.monotonic() - started >= 4.9  # on.lent: the core latency effect, 5 s


def test_outcome_sans_reponse_times_the_client_out(on):
    add_rule(on, {"type": "outcome", "name": "on.sans-reponse"})
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(on.url + "/eprescription", content=envelope(creer_body()).encode(),
                   headers={"Content-Type": "application/soap+xml"}, timeout=0.5)


def test_core_hang_effect_times_the_client_out(on):
    add_rule(on, {"type": "hang", "max_s": 5})
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(on.url + "/eprescription", content=envelope(creer_body()).encode(),
                   headers={"Content-Type": "application/soap+xml"}, timeout=0.5)


def test_named_incident_on_sans_reponse(on):
    resp = on.http.post("/_bench/incidents/on-sans-reponse")
    assert resp.status_code == 201, resp.text
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(on.url + "/eprescription", content=envelope(creer_body()).encode(),
                   headers={"Content-Type": "application/soap+xml"}, timeout=0.5)


def test_core_latency_effect_on_one_operation(on):
    add_rule(on, {"type": "latency", "ms": 800}, operation="creerEPrescription")
    started = time.monotonic()
    created = on.create()
    assert time.monotonic() - started >= 0.75
    started = time.monotonic()
    on.consult(created.numero)
    assert time.monotonic() - started < 0.75


def test_unknown_outcome_is_refused(on):
    resp = on.http.post("/_bench/faults", json={"effect": {"type": "outcome", "name": "on.inconnu"}})
    assert resp.status_code == 400 and "on.ko" in resp.text


# --- API Pro Santé Connectée mode (bearer token) ----------------------------------------------------

ISSUER = "http://psc.test/auth/realms/esante-wallet"
KEY = RSAKey.generate_key(2048, private=True)
KEY.ensure_kid()


def token(nid: str = KIT, exp_in: int = 300) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": f"f:550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd:{nid}", "aud": "api-on",
              "exp": now + exp_in, "iat": now - 10, "SubjectNameID": nid, "azp": "lgc"}
    return jwt.encode({"alg": "RS256", "kid": KEY.kid}, claims, KEY)


@pytest.fixture(scope="module")
def on_bearer():
    settings = {"psc_issuer": ISSUER, "psc_jwks": KeySet([KEY]).as_dict(private=False), "psc_audience": "api-on"}
    with start(settings) as server:
        client = Client(server.url)
        yield client
        client.http.close()


def test_bearer_token_replaces_the_assertion(on_bearer):
    xml = envelope(creer_body(), security="")
    root = on_bearer.ok(xml, "CreerEPrescriptionResp", headers={"Authorization": f"Bearer {token()}"})
    assert xp(root, "//ep:CodeCR") == "00"


def test_bearer_expired_token_is_401(on_bearer):
    fault = on_bearer.fault(envelope(creer_body(), security=""),
                            headers={"Authorization": f"Bearer {token(exp_in=-600)}"})
    assert_fault(fault, "siram_30", "desir_530", "expired", status=401)


def test_bearer_token_of_another_professional(on_bearer):
    fault = on_bearer.fault(envelope(creer_body(), security=""),
                            headers={"Authorization": f"Bearer {token('899700218896')}"})
    assert_fault(fault, "siram_52", "epresc_020", "authentifie")


def test_a_chunked_request_is_read_whole(on):
    """A SOAP stack that streams its request (Transfer-Encoding: chunked, as Java HTTP conduits do above a few KB)
    gets the same answer as with a Content-Length (issue 16: the Flask-routed services read an empty body)."""
    data = envelope(creer_body()).encode()
    pieces = [data[i:i + 700] for i in range(0, len(data), 700)]
    resp = on.http.post("/eprescription", content=iter(pieces), headers={"Content-Type": SOAP_CT})
    assert resp.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in resp.request.headers
    assert resp.status_code == 200, resp.text
    root = etree.fromstring(resp.content)
    assert root.xpath("string(//ep:CR/ep:CodeCR)", namespaces=NSMAP) == "00"
