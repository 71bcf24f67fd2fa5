"""The reference LGC's Ordonnance numérique client against the ON simulator (in-process), assertion and bearer
modes, business outcomes (KO, unavailable, no answer) steered through the control API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date

import pytest
from sims_messaging import KIT, PSC_REALM, Sim, ctx, psc_token, running, with_token

from reference_lgc.services import on
from reference_lgc.services.context import CallContext, ServiceRefused, ServiceUnavailable, Software
from simulators.on.app import SPEC as ON
from simulators.psc.app import SPEC as PSC

CLERICO = on.OnPatient(ins="143110095083713", oid="1.2.250.1.213.1.4.8", birth_name="CLERICO", first_names=("COME",),
                       sex="M", birth_date=date(1943, 11, 7), birth_place="63220")
LINES = (
    on.OnLine(label="AMOXICILLINE 1 G CPR", dosage="1 comprimé matin et soir pendant 6 jours", duration=6,
              quantity=1, quantity_unit="boite", product_code="3400930000001", product_code_system="CIP13"),
    on.OnLine(label="PARACETAMOL 1 G", dosage="1 g jusqu'à 3 fois par jour si douleur", quantity=2, renewals=1,
              non_substitutable=True),
)
DAY = date(2026, 1, 10)


@pytest.fixture(scope="module")
def psc() -> Iterator[Sim]:
    with running(PSC) as sim:
        yield sim


@pytest.fixture(scope="module")
def on_sim(psc: Sim) -> Iterator[Sim]:
    # Bearer mode validates PSC tokens against the PSC simulator's JWKS.
    with running(ON, psc_issuer=psc.url + PSC_REALM) as sim:
        yield sim


@pytest.fixture
def sim(on_sim: Sim) -> Sim:
    on_sim.reset()
    return on_sim


def endpoint(sim: Sim, *, timeout: float = 5.0, **extra: str) -> CallContext:
    return ctx(sim.url + "/eprescription", timeout=timeout, **extra)


def test_create_then_consult_clerico(sim: Sim, decode_qr) -> None:
    created = on.create_prescription(endpoint(sim), patient=CLERICO, lines=LINES, prescription_date=DAY)
    assert len(created.number) == 22 and created.number.isdigit()
    assert created.code2d_payload == f"ON|1|{created.number}|{KIT.national_id}|20260110"
    assert created.code2d_format == "QR_CODE"
    assert created.png is not None and decode_qr(created.png) == [created.code2d_payload]
    assert (created.dispensation_state, created.dispensation_label) == ("NON_DELIVREE", "non délivrée")
    assert created.prescription_date == DAY and created.prescription_type == "57833-6"
    stored = sim.control("GET", "/state")["state"]["prescriptions"]
    assert [p["numero"] for p in stored] == [created.number]

    found = on.consult_prescription(endpoint(sim), created.number)
    assert found is not None and found.number == created.number
    assert found.png is None and found.code2d_payload == created.code2d_payload
    assert found.patient == CLERICO
    assert found.prescriber is not None
    assert (found.prescriber.national_id, found.prescriber.family_name) == (KIT.national_id, "DOC0036624")
    assert [line.label for line in found.lines] == ["AMOXICILLINE 1 G CPR", "PARACETAMOL 1 G"]
    first, second = found.lines
    assert (first.product_code, first.product_code_system, first.duration, first.quantity) == (
        "3400930000001", "CIP13", 6, 1)
    assert second.non_substitutable and second.renewals == 1 and second.delivered_quantity == 0

    sim.control("POST", "/state", {"delivrance": {"numero": created.number, "etat": "PARTIELLEMENT_DELIVREE",
                                                  "quantites": [1, 0]}})
    found = on.consult_prescription(endpoint(sim), created.number)
    assert found is not None and found.dispensation_state == "PARTIELLEMENT_DELIVREE"
    assert [line.delivered_quantity for line in found.lines] == [1, 0]


def test_numbers_are_unique_and_search_by_patient(sim: Sim) -> None:
    numbers = {on.create_prescription(endpoint(sim), patient=CLERICO, lines=LINES[:1], prescription_date=DAY).number
               for _ in range(3)}
    assert len(numbers) == 3
    found = on.search_prescriptions(endpoint(sim), ins=CLERICO.ins, oid=CLERICO.oid)
    assert {s.number for s in found} == numbers
    assert all(s.prescriber_national_id == KIT.national_id for s in found)
    assert on.search_prescriptions(endpoint(sim), ins="167100093480710", oid=CLERICO.oid) == []


def test_consult_unknown_number_is_none(sim: Sim) -> None:
    base = "1260110" + "0" * 13
    assert on.consult_prescription(endpoint(sim), base + f"{97 - int(base) % 97:02d}") is None


def test_ko_outcome_is_refused_and_nothing_stored(sim: Sim) -> None:
    sim.fault({"type": "outcome", "name": "on.ko"})
    with pytest.raises(ServiceRefused) as err:
        on.create_prescription(endpoint(sim), patient=CLERICO, lines=LINES, prescription_date=DAY)
    assert err.value.code == "CR10" and "KO" in err.value.reason
    assert sim.control("GET", "/state")["state"]["prescriptions"] == []


def test_no_answer_is_unavailable_after_the_timeout(sim: Sim) -> None:
    sim.fault({"type": "outcome", "name": "on.sans-reponse"})
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as err:
        on.create_prescription(endpoint(sim, timeout=1.0), patient=CLERICO, lines=LINES, prescription_date=DAY)
    assert 0.9 <= time.monotonic() - started < 5
    assert err.value.reason == "pas de réponse du service Ordonnance numérique après 1 s"
    assert err.value.code == "timeout"


def test_unavailable_outcome_is_a_receiver_fault(sim: Sim) -> None:
    sim.fault({"type": "outcome", "name": "on.indisponible"})
    with pytest.raises(ServiceUnavailable) as err:
        on.create_prescription(endpoint(sim), patient=CLERICO, lines=LINES, prescription_date=DAY)
    assert (err.value.code, err.value.detail) == ("siram_40", "epresc_102")
    assert "indisponible" in err.value.reason


def test_inconsistent_traits_are_refused_with_the_reason(sim: Sim) -> None:
    wrong = replace(CLERICO, birth_name="BOUCHER")
    with pytest.raises(ServiceRefused) as err:
        on.create_prescription(endpoint(sim), patient=wrong, lines=LINES, prescription_date=DAY)
    assert (err.value.code, err.value.detail) == ("siram_51", "epresc_010")
    assert "NomNaissance" in err.value.reason


def test_unknown_software_is_refused(sim: Sim) -> None:
    c = endpoint(sim)
    c = CallContext(Software(idam="INCONNU-0001"), c.professional, c.endpoint)
    with pytest.raises(ServiceRefused) as err:
        on.create_prescription(c, patient=CLERICO, lines=LINES, prescription_date=DAY)
    assert err.value.code == "siram_100" and "autorisation du logiciel inconnu" in err.value.reason


def test_bearer_mode_with_a_psc_token(sim: Sim, psc: Sim) -> None:
    c = with_token(endpoint(sim, auth="bearer"), psc_token(psc.url))
    created = on.create_prescription(c, patient=CLERICO, lines=LINES, prescription_date=DAY)
    assert on.consult_prescription(c, created.number) is not None
    with pytest.raises(ServiceRefused) as err:
        on.create_prescription(with_token(c, "not-a-jwt"), patient=CLERICO, lines=LINES, prescription_date=DAY)
    assert err.value.code == "siram_30"
    with pytest.raises(ServiceRefused) as err:
        on.create_prescription(with_token(c, None), patient=CLERICO, lines=LINES)
    assert err.value.code == "no_token"
