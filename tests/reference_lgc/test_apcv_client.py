"""The reference LGC's ApCV client against the ApCV simulator (in-process, ephemeral store)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from lxml import etree
from sims_identity import Sim, running

from reference_lgc.services import apcv
from reference_lgc.services.context import ServiceRefused, ServiceUnavailable, Software
from reference_lgc.services.insi import NS, OID_INS_NIR
from simulators.apcv.app import SPEC


@pytest.fixture(scope="module")
def apcv_sim() -> Iterator[Sim]:
    with running(SPEC, "/apcv") as sim:
        yield sim


@pytest.fixture
def sim(apcv_sim: Sim) -> Sim:
    apcv_sim.reset()
    return apcv_sim


def present(sim: Sim, patient: str) -> str:
    """What the patient's Appli carte Vitale shows, as the LGC's scanner reads it."""
    return sim.control("POST", "/state", {"present": patient})["state"]["presented"]["payload"]


def test_clerico_authenticate_restore_destroy(sim: Sim) -> None:
    ctx = sim.ctx()
    context = apcv.authenticate_proximity(ctx, present(sim, "clerico-come") + "\r\n")
    assert context.context_id and context.expires_at is not None and context.created_at is not None
    assert context.expires_at > context.created_at
    sent = etree.fromstring(context.exchange.request)
    assert sent.xpath("string(//saml2:NameID/@NameQualifier)", namespaces=NS) == "PSC"
    assert not sent.xpath("//bam:ContexteBAM", namespaces=NS)  # ApCV has no ContexteBAM

    identities = apcv.restore_context(ctx, context.context_id)
    assert identities.context_id == context.context_id and identities.mode == "QRCODE"
    assert (identities.nir_od, identities.regime, identities.caisse) == ("143110095083713", "01", "631")
    user = identities.user
    assert len(identities.beneficiaries) == 1 and identities.beneficiaries[0] is user
    assert (user.ins, user.ins_oid, user.nir) == ("143110095083713", OID_INS_NIR, "143110095083713")
    assert (user.birth_name, user.first_name, user.first_names, user.sex) == ("CLERICO", "COME", ("COME",), "M")
    assert (user.birth_date, user.birthplace_cog, user.rank) == (date(1943, 11, 7), "63220", 1)

    assert apcv.destroy_context(ctx, context.context_id) is not None
    with pytest.raises(ServiceRefused) as err:
        apcv.restore_context(ctx, context.context_id)
    assert (err.value.code, err.value.detail) == ("siram_61", "apcv_020")
    assert "authentifiez à nouveau" in err.value.reason


def test_twin_on_mothers_card_lists_every_beneficiary_user_first(sim: Sim) -> None:
    ctx = sim.ctx()
    context = apcv.authenticate_proximity(ctx, present(sim, "famille-lina"))
    identities = apcv.restore_context(ctx, context.context_id)
    assert identities.nir_od == "284056322090544"
    assert identities.beneficiaries[0].first_name == "LINA"
    assert sorted(b.first_name for b in identities.beneficiaries) == ["LEO", "LINA", "SOPHIE"]
    lina = identities.user
    assert (lina.ins, lina.rank, lina.card_birth_date) == ("217036322090792", 2, "2017-03-08")
    sophie = next(b for b in identities.beneficiaries if b.first_name == "SOPHIE")
    assert (sophie.is_user, sophie.birth_name, sophie.used_name) == (False, "DURANDAL", "FAMILLE")
    assert sophie.first_names == ("SOPHIE", "ANNE")


def test_qr_code_is_single_use(sim: Sim) -> None:
    payload = present(sim, "boucher-francois")
    apcv.authenticate_proximity(sim.ctx(), payload)
    with pytest.raises(ServiceRefused) as err:
        apcv.authenticate_proximity(sim.ctx(), payload)
    assert (err.value.code, err.value.detail) == ("siram_60", "apcv_012")
    assert "nouveau QR code" in err.value.reason


def test_expired_qr_code_is_refused(sim: Sim) -> None:
    payload = present(sim, "clerico-come")
    sim.control("POST", "/clock", {"advance": "PT10M"})
    with pytest.raises(ServiceRefused) as err:
        apcv.authenticate_proximity(sim.ctx(), payload)
    assert err.value.detail == "apcv_011" and "expiré" in err.value.reason


def test_tampered_qr_code_is_refused(sim: Sim) -> None:
    payload = present(sim, "clerico-come")
    with pytest.raises(ServiceRefused) as err:
        apcv.authenticate_proximity(sim.ctx(), payload[:-2] + ("AA" if not payload.endswith("AA") else "BB"))
    assert (err.value.code, err.value.detail) == ("siram_60", "apcv_010")


def test_unknown_idam_is_refused(sim: Sim) -> None:
    with pytest.raises(ServiceRefused) as err:
        apcv.authenticate_proximity(sim.ctx(software=Software(idam="X")), present(sim, "clerico-come"))
    assert (err.value.code, err.value.detail) == ("siram_100", "desir_550")


def test_service_unavailable_outcome(sim: Sim) -> None:
    sim.fault({"type": "outcome", "name": "apcv.service-indisponible"})
    with pytest.raises(ServiceUnavailable) as err:
        apcv.authenticate_proximity(sim.ctx(), present(sim, "clerico-come"))
    assert (err.value.code, err.value.detail) == ("siram_40", "apcv_102")


def test_latency_above_timeout_is_unavailable(sim: Sim) -> None:
    payload = present(sim, "clerico-come")
    sim.fault({"type": "latency", "ms": 3000})
    with pytest.raises(ServiceUnavailable) as err:
        apcv.authenticate_proximity(sim.ctx(timeout=0.5), payload)
    assert err.value.code == "timeout" and "ApCV" in err.value.reason
