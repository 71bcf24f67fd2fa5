"""The reference LGC's INSi client against the INSi simulator (in-process, ephemeral store)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import date

import pytest
from lxml import etree
from sims_identity import Sim, running

from reference_lgc.services import insi
from reference_lgc.services.context import ServiceRefused, ServiceUnavailable, Software
from simulators.insi.app import SPEC


@pytest.fixture(scope="module")
def insi_sim() -> Iterator[Sim]:
    with running(SPEC, "/lps") as sim:
        yield sim


@pytest.fixture
def sim(insi_sim: Sim) -> Sim:
    insi_sim.reset()  # faults and state of a previous test must not leak
    return insi_sim


def traits(sim: Sim, **kw: object) -> insi.InsiResult:
    return insi.search_by_traits(sim.ctx(), **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- answers


def test_clerico_found_with_accented_input_normalised(sim: Sim) -> None:
    seen: list[insi.Exchange] = []
    result = insi.search_by_traits(sim.ctx(), birth_name="Clérico", first_names=["Côme"], sex="M",
                                   birth_date=date(1943, 11, 7), on_exchange=seen.append)
    assert (result.code, result.label, result.found) == ("00", "OK", True)
    person = result.individual
    assert person is not None
    assert person.matricule == "143110095083713" and person.oid == insi.OID_INS_NIR
    assert (person.birth_name, person.first_names, person.sex) == ("CLERICO", ("COME",), "M")
    assert (person.birth_date, person.birthplace_cog, person.history) == (date(1943, 11, 7), "63220", ())
    # Traces: the exact bytes exchanged, also handed to on_exchange.
    assert seen == [result.exchange] and result.exchange.http_status == 200
    sent = etree.fromstring(result.exchange.request)
    ns = insi.NS
    assert sent.xpath("string(//saml2:NameID/@NameQualifier)", namespaces=ns) == "PSC"
    assert sent.xpath("string(//saml2:Attribute[@Name='identifiantFacturation'])", namespaces=ns) == "999990013"
    assert sent.xpath("string(//lps:LPS/lps:IDAM[@R='4'])", namespaces=ns) == "BENCH-LGC-0001"
    assert sent.xpath("string(//rs:NomNaissance)", namespaces=ns) == "CLERICO"
    assert b"1431100950837" in (result.exchange.response or b"")


def test_boucher_found_with_cog(sim: Sim) -> None:
    result = traits(sim, birth_name="BOUCHER", first_names="FRANCOIS", sex="M", birth_date="1967-10-12",
                    birthplace_cog="63220")
    assert result.code == "00" and result.individual is not None
    assert result.individual.matricule == "167100093480710"
    assert result.individual.first_name == "FRANCOIS"


def test_homonyms_02_without_cog_then_00_with_cog(sim: Sim) -> None:
    q = dict(birth_name="DE VINCI", first_names=["LEONARDO"], sex="M", birth_date="2014-02-01")
    several = traits(sim, **q)
    assert (several.code, several.label, several.individual) == ("02", "Plusieurs identites trouvees", None)
    mazoires = traits(sim, **q, birthplace_cog="63220").individual
    italie = traits(sim, **q, birthplace_cog="99127").individual
    assert mazoires is not None and italie is not None
    assert (mazoires.matricule, mazoires.birthplace_cog) == ("114026322090185", "63220")
    assert (italie.matricule, italie.birthplace_cog) == ("114029912790259", "99127")


def test_unknown_identity_gives_01(sim: Sim) -> None:
    result = traits(sim, birth_name="TCHITCHI", first_names="OLA", sex="F", birth_date="1936-06-21")
    assert (result.code, result.label, result.individual) == ("01", "Aucune identite trouvee", None)
    assert traits(sim, birth_name="TCHITCHI", first_names="CATARINA", sex="F", birth_date="1936-06-21").code == "00"


def test_history_and_full_first_name_list(sim: Sim) -> None:
    result = traits(sim, birth_name="ECETINSI", first_names=["PIERRE-ALAIN", "MURIEL", "FLORIANT"], sex="M",
                    birth_date="2009-07-14")
    person = result.individual
    assert person is not None and person.matricule == "109076322083489"
    assert person.first_names == ("PIERRE-ALAIN", "MURIEL", "FLORIANT")
    assert person.first_names_text == "PIERRE-ALAIN MURIEL FLORIANT" and person.first_name == "PIERRE-ALAIN"
    assert [h.matricule for h in person.history] == ["209076322083439", "209066322012355"]
    assert (person.history[0].start, person.history[0].end) == (date(2019, 3, 1), date(2019, 2, 28))


def test_nia_oid(sim: Sim) -> None:
    person = traits(sim, birth_name="PROVISOIRE", first_names="MATRICULE", sex="M", birth_date="2009-07-01").individual
    assert person is not None and person.oid == insi.OID_INS_NIA and person.ins.is_nia


def test_carte_vitale_search_finds_the_twin_by_rank(sim: Sim) -> None:
    result = insi.search_by_carte_vitale(sim.ctx(), nir_od="284056322090544", birth_date="20170308", rank=2,
                                         regime="01", caisse="631", centre="0001")
    assert result.individual is not None
    assert (result.individual.matricule, result.individual.first_name) == ("217036322090792", "LINA")
    sent = etree.fromstring(result.exchange.request)
    assert sent.xpath("string(//bam:COUVERTURE/bam:ASSURE/bam:Id/bam:Num)", namespaces=insi.NS) == "2840563220905"
    # Without the rank both twins match.
    assert insi.search_by_carte_vitale(sim.ctx(), nir_od="284056322090544", birth_date="2017-03-08").code == "02"


# --------------------------------------------------------------------------------------------- failures


def test_cnda_daeion_fault_is_a_server_error_with_its_reason(sim: Sim) -> None:
    # siram_40/insi_102 is a Receiver fault: the service's own problem, so "unavailable" (retry later).
    with pytest.raises(ServiceUnavailable) as err:
        traits(sim, birth_name="D'AEION", first_names="COEUR", sex="M", birth_date="1987-01-25")
    assert (err.value.code, err.value.detail) == ("siram_40", "insi_102")
    assert "Le service est temporairement inaccessible" in err.value.reason  # the service's Reason, for the user
    assert err.value.reason.startswith("Le service INSi est indisponible")


def test_unknown_idam_is_refused_with_siram_100(sim: Sim) -> None:
    with pytest.raises(ServiceRefused) as err:
        insi.search_by_traits(sim.ctx(software=Software(idam="X")), birth_name="BOUCHER", first_names="FRANCOIS",
                              sex="M", birth_date="1967-10-12")
    assert (err.value.code, err.value.detail) == ("siram_100", "desir_550")
    assert "Numéro d'autorisation du logiciel inconnu" in err.value.reason  # the captured Detail text


def test_lexical_rule_broken_is_refused(sim: Sim) -> None:
    with pytest.raises(ServiceRefused) as err:
        traits(sim, birth_name="BOUCHER2", first_names="FRANCOIS", sex="M", birth_date="1967-10-12")
    assert err.value.code == "siram_50" and "NomNaissance" in err.value.reason


def test_missing_billing_id_is_refused_before_sending(sim: Sim) -> None:
    ctx = sim.ctx()
    ctx = type(ctx)(ctx.software, type(ctx.professional)(national_id="899700366240", rpps="99700366240",
                                                          family_name="X", given_name="Y"), ctx.endpoint)
    with pytest.raises(ServiceRefused, match="identifiant de facturation"):
        insi.search_by_traits(ctx, birth_name="BOUCHER", first_names="FRANCOIS", sex="M", birth_date="1967-10-12")


def test_injected_http_503_is_unavailable(sim: Sim) -> None:
    sim.fault({"type": "http_status", "status": 503}, service="insi")
    with pytest.raises(ServiceUnavailable) as err:
        traits(sim, birth_name="BOUCHER", first_names="FRANCOIS", sex="M", birth_date="1967-10-12")
    assert err.value.code == "http_503" and "HTTP 503" in err.value.reason


def test_injected_receiver_fault_is_unavailable_and_sender_fault_refused(sim: Sim) -> None:
    # One rule at a time: "first" counts matching calls, and a call shadowed by another rule still counts.
    sim.fault({"type": "soap_fault", "code": "Receiver", "subcode": "siram_40", "reason": "Maintenance en cours"},
              first=1)
    q = dict(birth_name="BOUCHER", first_names="FRANCOIS", sex="M", birth_date="1967-10-12")
    with pytest.raises(ServiceUnavailable) as down:
        traits(sim, **q)
    assert down.value.code == "siram_40" and "Maintenance en cours" in down.value.reason
    sim.fault({"type": "soap_fault", "code": "Sender", "subcode": "siram_99", "reason": "Demande rejetee"}, first=1)
    with pytest.raises(ServiceRefused) as refused:
        traits(sim, **q)
    assert refused.value.code == "siram_99" and "Demande rejetee" in refused.value.reason
    assert traits(sim, **q).code == "00"  # both rules were for the first matching call only


def test_business_outcome_cr02_is_a_result_not_an_error(sim: Sim) -> None:
    sim.fault({"type": "outcome", "name": "insi.cr02"}, match={"attrs": {"nom": "BOUCHER"}})
    assert traits(sim, birth_name="BOUCHER", first_names="FRANCOIS", sex="M", birth_date="1967-10-12").code == "02"
    assert traits(sim, birth_name="CLERICO", first_names="COME", sex="M", birth_date="1943-11-07").code == "00"


def test_latency_above_timeout_is_unavailable(sim: Sim) -> None:
    sim.fault({"type": "latency", "ms": 3000})
    seen: list[insi.Exchange] = []
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as err:
        insi.search_by_traits(sim.ctx(timeout=0.5), birth_name="BOUCHER", first_names="FRANCOIS", sex="M",
                              birth_date="1967-10-12", on_exchange=seen.append)
    assert time.monotonic() - started < 2.5
    assert err.value.code == "timeout" and "délai" in err.value.reason and "0.5 s" in err.value.reason
    assert len(seen) == 1 and seen[0].response is None and seen[0].http_status is None


def test_dribbled_answer_slower_than_timeout_is_unavailable(sim: Sim) -> None:
    sim.fault({"type": "dribble", "chunk_bytes": 50, "interval_ms": 100})  # ~1.5 kB answer: ~3 s in all
    with pytest.raises(ServiceUnavailable) as err:
        insi.search_by_traits(sim.ctx(timeout=1.0), birth_name="BOUCHER", first_names="FRANCOIS", sex="M",
                              birth_date="1967-10-12")
    assert err.value.code == "timeout"


def test_oversized_or_dtd_answers_are_rejected(sim: Sim) -> None:
    ct = "application/soap+xml; charset=utf-8"
    sim.fault({"type": "http_status", "status": 200, "content_type": ct, "body": "<x>" + "a" * (1 << 21) + "</x>"},
              first=1)
    with pytest.raises(ServiceUnavailable) as big:
        traits(sim, birth_name="BOUCHER", first_names="FRANCOIS", sex="M", birth_date="1967-10-12")
    assert big.value.code == "reponse_trop_grande"
    dtd = ('<!DOCTYPE e [<!ENTITY x "boom">]><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope">'
           "<e:Body><r>&x;</r></e:Body></e:Envelope>")
    sim.fault({"type": "http_status", "status": 200, "content_type": ct, "body": dtd}, first=1)
    with pytest.raises(ServiceUnavailable) as bad:
        traits(sim, birth_name="BOUCHER", first_names="FRANCOIS", sex="M", birth_date="1967-10-12")
    assert bad.value.code == "reponse_invalide"


def test_unreachable_service_is_unavailable(sim: Sim) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = sim.ctx()
    ctx = type(ctx)(ctx.software, ctx.professional, type(ctx.endpoint)(f"http://127.0.0.1:{port}/lps", timeout=2))
    with pytest.raises(ServiceUnavailable) as err:
        insi.search_by_traits(ctx, birth_name="BOUCHER", first_names="FRANCOIS", sex="M", birth_date="1967-10-12")
    assert err.value.code == "reseau" and "injoignable" in err.value.reason
