"""INSi matching over the personas: every CNDA case, homonyms + COG, NIA variant, carte Vitale search."""

from __future__ import annotations

import pytest
from lxml import etree
from saml_signing import sign_assertion

from simulators.personas import OID_INS_NIA, OID_INS_NIR, load_personas

from .conftest import FIXTURES, NSMAP, code_of, schema, xp
from .messages import ACTION_VITALE, envelope, traits_body, vitale_body

PERSONAS = load_personas()
CASES = [
    pytest.param(p, case, id=f"{p.id}-{'+'.join(case.prenoms)}-{case.lieu_naissance or 'sans-cog'}")
    for p in PERSONAS.patients
    for case in p.insi.cases
]
STYLES = ["soap", "env", "S"]
BODY_STYLES = ["ns0", "ns1", "default"]


@pytest.mark.parametrize(("patient", "case"), CASES)
def test_every_persona_insi_case(insi, patient, case):
    i = CASES.index(next(c for c in CASES if c.values == (patient, case)))
    style, body_style = STYLES[i % 3], BODY_STYLES[(i // 3) % 3]
    body = traits_body(patient.nom_naissance, case.prenoms, patient.sexe, patient.date_naissance.isoformat(),
                       case.lieu_naissance, style=body_style)
    xml = envelope(body, style=style)
    if case.expected == "fault":
        siram, detail = patient.insi.fault_codes
        fault = insi.fault(xml)
        assert (fault.status, fault.code) == (500, "S:Receiver")
        assert fault.subcode.endswith(":" + siram) and fault.detail_code == detail
        return
    root = insi.result(xml)
    assert code_of(root) == case.expected
    if case.expected == "00":
        assert xp(root, "//r:INSACTIF/r:IdIndividu/r:NumIdentifiant") == patient.matricule
        assert xp(root, "//r:INSACTIF/r:IdIndividu/r:Cle") == patient.cle
        assert xp(root, "//r:INSACTIF/r:OID") == patient.oid
        assert xp(root, "//r:TIQ/r:ListePrenom") == patient.liste_prenoms
        histo = root.xpath("//r:INSHISTO/r:IdIndividu/r:NumIdentifiant/text()", namespaces=NSMAP)
        assert histo == [h.matricule for h in patient.inshisto]


def test_cnda_table_is_covered():
    names = {p.nom_naissance for p, _ in (c.values for c in CASES)}
    for nom in ("ADRTROIS", "ECETINSI", "PROVISOIRE", "CORSE", "HERMANN", "NESSI", "TCHITCHI", "ADRUN",
                "HOUILLES", "DE VINCI", "D'AEION"):
        assert nom in names, nom


@pytest.mark.parametrize(
    ("nom", "prenom", "sexe", "ddn", "ins"),
    [("CLERICO", "COME", "M", "1943-11-07", "143110095083713"),
     ("BOUCHER", "FRANCOIS", "M", "1967-10-12", "167100093480710")],
)
def test_flagship_identities(insi, nom, prenom, sexe, ddn, ins):
    root = insi.result(envelope(traits_body(nom, [prenom], sexe, ddn)))
    assert code_of(root) == "00"
    assert xp(root, "//r:INSACTIF/r:IdIndividu/r:NumIdentifiant") + xp(root, "//r:INSACTIF/r:IdIndividu/r:Cle") == ins
    assert xp(root, "//r:INSACTIF/r:OID") == OID_INS_NIR


@pytest.mark.parametrize("fixture", ["recsans_clerico_soap.xml", "recsans_boucher_env_psc.xml"])
def test_literal_fixture_files(insi, fixture):
    data = (FIXTURES / fixture).read_bytes()
    if b'NameQualifier="CPS"' in data:  # a CPS assertion is signed by the card: sign the literal one
        data = sign_assertion(data.decode()).encode()
    root = insi.result(data)
    assert code_of(root) == "00"
    # As the real service answers: no SOAP Header (no WS-Addressing echo)
    assert not root.xpath("/soap:Envelope/soap:Header", namespaces=NSMAP)


def test_request_fixtures_valid_against_our_request_xsds():
    recsans, recvit = schema("insi_recsans.xsd"), schema("insi_recvitale.xsd")
    for name in ("recsans_clerico_soap.xml", "recsans_boucher_env_psc.xml"):
        body = etree.parse(str(FIXTURES / name)).xpath("//*[local-name()='RECSANSVITALE']")[0]
        recsans.assertValid(body)
    recvit.assertValid(etree.parse(str(FIXTURES / "recvitale_famille_S.xml")).xpath("//*[local-name()='RECVITALE']")[0])
    recsans.assertValid(etree.fromstring(traits_body("D'AEION", ["COEUR"], "M", "1987-01-25", "63220")))
    assert not recsans.validate(etree.fromstring(traits_body("Dupont", ["JEAN"], "M", "1987-01-25")))


def test_homonyms_02_then_cog_disambiguates(insi):
    body = traits_body("DE VINCI", ["LEONARDO"], "M", "2014-02-01")
    assert code_of(insi.result(envelope(body))) == "02"
    for cog, matricule in (("63220", "1140263220901"), ("99127", "1140299127902")):
        root = insi.result(envelope(traits_body("DE VINCI", ["LEONARDO"], "M", "2014-02-01", cog)))
        assert code_of(root) == "00"
        assert xp(root, "//r:INSACTIF/r:IdIndividu/r:NumIdentifiant") == matricule
        assert xp(root, "//r:TIQ/r:LieuNaissance") == cog


def test_cog_retry_with_wrong_cog_gives_01(insi):
    assert code_of(insi.result(envelope(traits_body("CLERICO", ["COME"], "M", "1943-11-07", "75056")))) == "01"
    assert code_of(insi.result(envelope(traits_body("CLERICO", ["COME"], "M", "1943-11-07", "63220")))) == "00"


def test_first_name_rules(insi):
    ecetinsi = ("ECETINSI", "M", "2009-07-14")
    for prenoms, expected in [
        (["PIERRE-ALAIN"], "00"), (["MURIEL"], "00"),
        (["PIERRE-ALAIN", "MURIEL", "FLORIANT"], "00"),  # full list, one element per first name
        (["PIERRE-ALAIN MURIEL FLORIANT"], "00"),  # full list in a single element
        (["MURIEL", "PIERRE-ALAIN"], "01"),  # neither one first name nor the full ordered list
        (["PIERRE"], "01"),
    ]:
        root = insi.result(envelope(traits_body(ecetinsi[0], prenoms, ecetinsi[1], ecetinsi[2])))
        assert code_of(root) == expected, prenoms


def test_inshisto_and_dates(insi):
    root = insi.result(envelope(traits_body("ECETINSI", ["PIERRE-ALAIN"], "M", "2009-07-14")))
    histo = root.xpath("//r:INDIVIDU/r:INSHISTO", namespaces=NSMAP)
    assert len(histo) == 2
    assert xp(histo[0], "r:IdIndividu/r:NumIdentifiant") == "2090763220834"
    assert xp(histo[0], "r:DateDeb") == "2019-03-01" and xp(histo[0], "r:DateFin") == "2019-02-28"
    assert xp(histo[1], "r:IdIndividu/r:Cle") == "55"


def test_nia_oid_and_variant(insi):
    root = insi.result(envelope(traits_body("PROVISOIRE", ["MATRICULE"], "M", "2009-07-01")))
    assert xp(root, "//r:INSACTIF/r:OID") == OID_INS_NIA
    # CNDA TEST_1.10: same traits as ECETINSI answered with the NIA OID once the variant is active
    insi.control("POST", "/state", {"variants": ["TEST_1.10"]})
    root = insi.result(envelope(traits_body("ECETINSI", ["PIERRE-ALAIN"], "M", "2009-07-14")))
    assert xp(root, "//r:INSACTIF/r:OID") == OID_INS_NIA
    assert xp(root, "//r:INSACTIF/r:IdIndividu/r:NumIdentifiant") == "1090763220834"
    insi.control("POST", "/reset")
    root = insi.result(envelope(traits_body("ECETINSI", ["PIERRE-ALAIN"], "M", "2009-07-14")))
    assert xp(root, "//r:INSACTIF/r:OID") == OID_INS_NIR


def test_carte_vitale_literal_fixture_mtls(insi_mtls):
    root = insi_mtls.result((FIXTURES / "recvitale_famille_S.xml").read_bytes())
    assert code_of(root) == "00"
    assert xp(root, "//r:TIQ/r:ListePrenom").split()[0] == "LINA"
    assert not root.xpath("//r:TIQ/r:Prenom", namespaces=NSMAP)


@pytest.mark.parametrize(
    ("od", "ddn", "rang", "individu", "expected", "prenom"),
    [
        ("143110095083713", "1943-11-07", "1", None, "00", "COME"),
        ("167100093480710", "19671012", None, None, "00", "FRANCOIS"),
        ("284056322090544", "2017-03-08", "1", None, "00", "LEO"),
        ("284056322090544", "2017-03-08", "2", None, "00", "LINA"),
        ("284056322090544", "2017-03-08", None, None, "02", None),  # twins without the rank
        ("284056322090544", "1984-05-19", "1", None, "00", "SOPHIE"),
        ("284056322090544", "2017-03-08", None, "217036322090792", "00", "LINA"),
        ("284056322090544", "2017-03-09", "1", None, "01", None),
        ("199999999999999", "1943-11-07", "1", None, "01", None),
        (None, "1943-11-07", None, "143110095083713", "00", "COME"),
    ],
)
def test_carte_vitale_search(insi, od, ddn, rang, individu, expected, prenom):
    style = "default" if individu else "ns1"
    xml = envelope(vitale_body(od, ddn, rang, individu, style=style), action=ACTION_VITALE,
                   card=od or individu, style="S")
    root = insi.result(xml)
    assert code_of(root) == expected
    if prenom:
        assert xp(root, "//r:TIQ/r:ListePrenom").split()[0] == prenom
