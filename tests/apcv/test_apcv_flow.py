"""ApCV flow: present an Appli carte Vitale (QR code), authenticate, restore and destroy the context."""

from __future__ import annotations

import base64
import json

import pytest
from lxml import etree

from simulators.personas import load_personas

from .conftest import AUTH_XSD, NSMAP, xp
from .messages import (
    ACTION_RESTITUER,
    SECURITY_CPS,
    SECURITY_PSC,
    auth_body,
    envelope,
    restituer_body,
)

PERSONAS = load_personas()


def assert_fault(fault, subcode: str, detail: str, *words: str) -> None:
    assert fault.status == 500 and fault.code.endswith(":Sender"), fault
    assert fault.subcode_qname == "{http://www.w3.org/2003/05/soap-envelope}" + subcode, fault
    assert fault.detail_code == detail and fault.severite == "erreur", fault
    for word in words:
        assert word in fault.detail, (word, fault.detail)


def user_of(root: etree._Element) -> etree._Element:
    found = root.xpath("//a:ContexteApCV/a:Beneficiaires/a:Beneficiaire[@utilisateur='true']", namespaces=NSMAP)
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize(
    ("style", "body_style", "security"),
    [("soap", "apcv", SECURITY_CPS), ("env", "default", SECURITY_PSC), ("S", "ns2", SECURITY_CPS),
     ("soap", "unqualified", SECURITY_PSC)],
)
def test_full_flow(apcv, style, body_style, security, decode_qr):
    security = security.format(facturation="631234567")
    presented = apcv.present("clerico-come")
    assert presented.payload.startswith("APCV1.")
    assert decode_qr(presented.png) == [presented.payload]  # what the LGC's scanner reads

    xml = envelope(auth_body(presented.payload, style=body_style), style=style, security=security,
                   message_id="urn:uuid:00000000-0000-4000-8000-00000000f10a")
    root = apcv.ok(xml, "AuthentifierUtilisateurProximiteResp")
    assert xp(root, "/soap:Envelope/soap:Header/wsa:Action") == (
        "urn:ApCV_AUTH:1.0.0:authentifierUtilisateurProximiteResponse")
    assert xp(root, "/soap:Envelope/soap:Header/wsa:RelatesTo") == "urn:uuid:00000000-0000-4000-8000-00000000f10a"
    context_id = xp(root, "//a:AuthentifierUtilisateurProximiteResp/a:ContexteApCV/a:Identifiant")
    assert context_id
    assert xp(root, "//a:ContexteApCV/a:DateExpiration") > xp(root, "//a:ContexteApCV/a:DateCreation")

    root = apcv.restituer(context_id, style=style, security=security)
    assert xp(root, "//a:RestituerContexteApCVResp/@version") == "1.0"
    assert xp(root, "//a:ContexteApCV/a:Identifiant") == context_id
    assert xp(root, "//a:ContexteApCV/a:ModeAuthentification") == "QRCODE"
    assert xp(root, "//a:Assure/a:NIROuvrantDroit/a:NumIdentifiant") == "1431100950837"
    assert xp(root, "//a:Assure/a:NIROuvrantDroit/a:Cle") == "13"
    assert xp(root, "//a:Assure/a:GrandRegime") == "01"
    user = user_of(root)
    clerico = PERSONAS.patient("clerico-come")
    assert xp(user, "a:INS/a:NumIdentifiant") + xp(user, "a:INS/a:Cle") == clerico.ins == "143110095083713"
    assert xp(user, "a:INS/a:OID") == clerico.oid == "1.2.250.1.213.1.4.8"
    assert xp(user, "a:NIRIndividu/a:NumIdentifiant") == clerico.matricule
    assert xp(user, "a:Rang") == "1"
    assert xp(user, "a:Traits/a:NomNaissance") == clerico.nom_naissance == "CLERICO"
    assert xp(user, "a:Traits/a:Prenom") == "COME"
    assert xp(user, "a:Traits/a:ListePrenom") == clerico.liste_prenoms
    assert xp(user, "a:Traits/a:Sexe") == "M"
    assert xp(user, "a:Traits/a:DateNaissance") == clerico.date_naissance.isoformat() == "1943-11-07"
    assert xp(user, "a:Traits/a:LieuNaissance") == (clerico.lieu_naissance or "")

    root = apcv.detruire(context_id, style=style, security=security)
    assert xp(root, "//a:DetruireContexteApCVResp/a:ContexteApCV/a:Identifiant") == context_id
    assert xp(root, "//a:DetruireContexteApCVResp/a:DateDestruction")

    fault = apcv.fault(envelope(restituer_body(context_id), action=ACTION_RESTITUER, style=style, security=security))
    assert_fault(fault, "siram_61", "apcv_020", context_id, "inconnu")
    assert fault.relates_to is None  # no SOAP Header, as the real services answer


def test_request_templates_match_our_xsd():
    """Our hand-written qualified request bodies are valid against our XSD (the unqualified style is not)."""
    for style in ("apcv", "ns2", "default"):
        AUTH_XSD.assertValid(etree.fromstring(auth_body("APCV1.x.y", style=style)))
        AUTH_XSD.assertValid(etree.fromstring(restituer_body("0b1f6f3e-7c59-4b8e-9d1e-2d0a5a1b6c7d", style=style)))
    assert not AUTH_XSD.validate(etree.fromstring(auth_body("APCV1.x.y", style="unqualified")))


def test_present_by_ins_and_family_card(apcv):
    presented = apcv.present("217036322090792")  # INS of famille-lina, rang 2 on her mother's card
    assert presented.patient_id == "famille-lina"
    assert presented.raw["rang_naissance"] == 2 and presented.raw["nir_ouvrant_droit"] == "284056322090544"
    root = apcv.restituer(apcv.authenticate(presented.payload))
    bens = root.xpath("//a:Beneficiaires/a:Beneficiaire", namespaces=NSMAP)
    names = {xp(b, "a:Traits/a:Prenom"): (xp(b, "@utilisateur"), xp(b, "a:Rang")) for b in bens}
    on_card = PERSONAS.patients_on_card("284056322090544")
    assert len(bens) == len(on_card) == 3
    assert bens[0].get("utilisateur") == "true"  # the user comes first
    lina = PERSONAS.patient("famille-lina")
    assert names[lina.premier_prenom] == ("true", "2")
    assert sorted(v[0] for v in names.values()) == ["false", "false", "true"]
    user = user_of(root)
    assert xp(user, "a:INS/a:NumIdentifiant") + xp(user, "a:INS/a:Cle") == "217036322090792"
    assert xp(root, "//a:Assure/a:NIROuvrantDroit/a:NumIdentifiant") == "2840563220905"


@pytest.mark.parametrize("patient", [p.id for p in PERSONAS.patients if p.carte_vitale])
def test_every_card_holder_restores_valid_context(apcv, patient):
    root = apcv.restituer(apcv.authenticate(apcv.present(patient).payload))
    assert xp(user_of(root), "a:INS/a:NumIdentifiant") + xp(user_of(root), "a:INS/a:Cle") == (
        PERSONAS.patient(patient).ins)


def test_qr_png_control_route(apcv, decode_qr):
    apcv.control("POST", "/faults", {"effect": {"type": "http_status", "status": 503}})
    resp = apcv.http.get("/_bench/apcv/boucher-francois/qr.png")  # control route: no fault applied
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    payload = resp.headers["X-ApCV-Donnees"]
    assert decode_qr(resp.content) == [payload]
    assert apcv.post(envelope(auth_body(payload))).status_code == 503  # the service itself is faulted
    apcv.control("DELETE", "/faults")
    root = apcv.restituer(apcv.authenticate(payload))
    assert xp(user_of(root), "a:Traits/a:NomNaissance") == "BOUCHER"
    resp = apcv.http.get("/_bench/apcv/houilles-pierre/qr.png")
    assert resp.status_code == 404 and "carte Vitale" in resp.json()["detail"]
    assert apcv.http.get("/_bench/apcv/nobody/qr.png").status_code == 404


def test_each_presentation_is_a_new_qr(apcv):
    a, b = apcv.present("clerico-come"), apcv.present("clerico-come")
    assert a.payload != b.payload
    assert apcv.authenticate(a.payload) != apcv.authenticate(b.payload)


def test_qr_is_single_use(apcv):
    presented = apcv.present("clerico-come")
    apcv.authenticate(presented.payload)
    assert_fault(apcv.fault(envelope(auth_body(presented.payload))), "siram_60", "apcv_012", "deja utilise")


def _tamper_claims(payload: str, **changes: object) -> str:
    prefix, body, mac = payload.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    new_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{prefix}.{new_body}.{mac}"


def test_tampered_qr_refused(apcv):
    payload = apcv.present("clerico-come").payload
    for bad in (
        _tamper_claims(payload, nod="167100093480710"),  # someone else's card, MAC kept
        _tamper_claims(payload, exp=4102444800),  # extended expiry
        payload[:-3] + ("AAA" if not payload.endswith("AAA") else "BBB"),  # MAC altered
        payload.rsplit(".", 1)[0] + ".",  # MAC removed
        payload.replace("APCV1.", "APCV1.e", 1),
    ):
        assert_fault(apcv.fault(envelope(auth_body(bad))), "siram_60", "apcv_010", "signature")
    for bad in ("APCV2." + payload[6:], "not a qr code", payload.split(".")[1], "APCV1.abc"):
        assert_fault(apcv.fault(envelope(auth_body(bad))), "siram_60", "apcv_010", "format")
    apcv.authenticate(payload)  # the genuine one still works


def test_expired_qr_refused(apcv):
    presented = apcv.present("clerico-come")
    apcv.control("POST", "/clock", {"advance": "PT4M"})
    apcv.authenticate(presented.payload)  # still valid after 4 minutes
    late = apcv.present("clerico-come")
    apcv.control("POST", "/clock", {"advance": "PT10M"})
    fault = apcv.fault(envelope(auth_body(late.payload)))
    assert_fault(fault, "siram_60", "apcv_011", "expire", late.expires_at, "nouveau QR code")


def test_qr_issued_before_reset_is_unknown(apcv):
    payload = apcv.present("clerico-come").payload
    apcv.control("POST", "/reset")
    assert_fault(apcv.fault(envelope(auth_body(payload))), "siram_60", "apcv_010", "inconnu")


def test_context_expires_on_simulated_clock(apcv):
    context_id = apcv.authenticate(apcv.present("clerico-come").payload)
    root = apcv.restituer(context_id)
    expires = xp(root, "//a:ContexteApCV/a:DateExpiration")
    apcv.control("POST", "/clock", {"advance": "PT59M"})
    apcv.restituer(context_id)
    apcv.control("POST", "/clock", {"advance": "PT2M"})
    fault = apcv.fault(envelope(restituer_body(context_id), action=ACTION_RESTITUER))
    assert_fault(fault, "siram_61", "apcv_021", "expire", expires)
    state = apcv.control("GET", "/state").json()["state"]
    assert state["contexts"][0]["expired"] is True


def test_context_belongs_to_the_professional(apcv):
    context_id = apcv.authenticate(apcv.present("clerico-come").payload)
    other = envelope(restituer_body(context_id), action=ACTION_RESTITUER, facturation="751234561")
    assert_fault(apcv.fault(other), "siram_61", "apcv_020", "inconnu")
    apcv.restituer(context_id)


def test_unknown_context(apcv):
    fault = apcv.fault(envelope(restituer_body("0b1f6f3e-7c59-4b8e-9d1e-2d0a5a1b6c7d"), action=ACTION_RESTITUER))
    assert_fault(fault, "siram_61", "apcv_020", "0b1f6f3e-7c59-4b8e-9d1e-2d0a5a1b6c7d")


def test_state_lists_qr_codes_and_contexts(apcv):
    presented = apcv.present("boucher-francois")
    state = apcv.control("GET", "/state").json()["state"]
    assert state["qr_ttl_s"] == 300 and state["context_ttl_s"] == 3600
    assert [q["patient_id"] for q in state["qr_codes"]] == ["boucher-francois"]
    assert state["qr_codes"][0]["used_at"] is None and state["contexts"] == []
    context_id = apcv.authenticate(presented.payload)
    state = apcv.control("GET", "/state").json()["state"]
    assert state["qr_codes"][0]["context_id"] == context_id
    assert [c["id"] for c in state["contexts"]] == [context_id]
    apcv.detruire(context_id)
    assert apcv.control("GET", "/state").json()["state"]["contexts"] == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"present": "houilles-pierre"}, "no carte Vitale"),
        ({"present": "inconnu"}, "unknown patient"),
        ({"present": 12}, "expected"),
        ({"autre": "clerico-come"}, "expected"),
        ([], "expected"),
    ],
)
def test_bad_state_bodies(apcv, body, words):
    resp = apcv.http.post("/_bench/state", json=body)
    assert resp.status_code == 400 and words in resp.json()["detail"], resp.text


def test_carte_vitale_image_of_a_family_card(apcv):
    """The image of the test carte Vitale a patient is on (control route, read by an LGC in place of a card
    reader): the insured mother first, with her NIR; the twins told apart by their birth rank only."""
    resp = apcv.http.get("/_bench/carte-vitale/famille-lina")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    assert 'filename="carte-vitale-famille-lina.json"' in resp.headers["content-disposition"]
    image = resp.json()
    assert image["format"] == "segur-bench/image-carte-vitale/1"
    assert image["ouvrant_droit"] == {"nir": "284056322090544", "regime": "01", "caisse": "631", "centre": "0001"}
    people = [(b["prenom"], b["date_naissance"], b["rang"], b["qualite"], b.get("nir")) for b in image["beneficiaires"]]
    assert people == [("SOPHIE", "19840519", 1, "assure", "284056322090544"),
                      ("LEO", "20170308", 1, "ayant_droit", None), ("LINA", "20170308", 2, "ayant_droit", None)]
    assert image["beneficiaires"][0]["nom"] == "FAMILLE" and image["beneficiaires"][0]["nom_naissance"] == "DURANDAL"


def test_carte_vitale_image_refusals(apcv):
    for ref, words in (("inconnu", "unknown patient"), ("houilles-pierre", "no carte Vitale")):
        resp = apcv.http.get(f"/_bench/carte-vitale/{ref}")
        assert resp.status_code == 404 and resp.headers["content-type"].startswith("application/problem+json")
        assert words in resp.json()["detail"]
