"""The reference LGC's Annuaire santé client against the Annuaire simulator (FHIR R4 JSON, API key)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from sims_messaging import ANNUAIRE_KEY, KIT, KIT_BAL, Sim, ctx, running

from reference_lgc.services import annuaire
from reference_lgc.services.context import CallContext, ServiceRefused, ServiceUnavailable
from simulators.annuaire.app import SPEC as ANNUAIRE


@pytest.fixture(scope="module")
def annuaire_sim() -> Iterator[Sim]:
    with running(ANNUAIRE) as sim:
        yield sim


@pytest.fixture
def sim(annuaire_sim: Sim) -> Sim:
    annuaire_sim.reset()
    return annuaire_sim


def endpoint(sim: Sim, *, api_key: str = ANNUAIRE_KEY, timeout: float = 5.0) -> CallContext:
    return ctx(sim.url + "/fhir/v2", timeout=timeout, api_key=api_key)


def test_flagship_gp_by_national_id_with_mailboxes_and_sites(sim: Sim) -> None:
    (kit,) = annuaire.search_practitioners(endpoint(sim), rpps="899700366240")
    assert (kit.national_id, kit.rpps) == ("899700366240", "99700366240")
    assert (kit.family_name, kit.given_names, kit.prefix, kit.suffix) == ("DOC0036624", ("KIT",), "M", "DR")
    assert (kit.profession, kit.category, kit.speciality) == ("10", "C", "SM26")
    (bal,) = kit.mailboxes
    assert (bal.address, bal.type, bal.liste_rouge) == (KIT_BAL, "PER", False)
    sites = {s.organization.name: s for s in kit.sites if s.organization}
    assert set(sites) == {"CABINET M DOC0036624", "HOPITAL GENERIQUE FIN VARI"}
    cabinet = sites["CABINET M DOC0036624"]
    assert cabinet.practice_mode == "L" and cabinet.profession == "10" and cabinet.speciality == "SM26"
    assert cabinet.organization is not None and cabinet.organization.sector == "SA07"
    assert cabinet.organization.postal_code == "75009" and cabinet.organization.cog == "75109"
    assert [m.address for m in cabinet.organization.mailboxes] == ["cabinet.doc0036624@medecin.mssante.fr"]
    hospital = sites["HOPITAL GENERIQUE FIN VARI"]
    assert hospital.practice_mode == "S"
    (role_bal,) = hospital.mailboxes
    assert (role_bal.address, role_bal.service, role_bal.digitization) == (
        "kit.doc0036624@hopital-generique.mssante.fr", "URGENCES", True)
    assert [m.address for m in kit.all_mailboxes] == [KIT_BAL, "kit.doc0036624@hopital-generique.mssante.fr"]


def test_same_gp_by_rpps_name_and_mailbox(sim: Sim) -> None:
    by_rpps = annuaire.search_practitioners(endpoint(sim), rpps=KIT.rpps, with_sites=False)
    by_name = annuaire.search_practitioners(endpoint(sim), name="doc0036624", given="kit", with_sites=False)
    by_bal = annuaire.search_practitioners(endpoint(sim), mailbox=KIT_BAL, with_sites=False)
    assert [p.national_id for p in by_rpps] == [p.national_id for p in by_name] == [p.national_id for p in by_bal] \
        == ["899700366240"]
    assert by_rpps[0].sites == ()


def test_homonyms_are_told_apart_by_profession(sim: Sim) -> None:
    found = annuaire.search_practitioners(endpoint(sim), family="MARTIN", given="SOPHIE")
    assert sorted(p.profession or "" for p in found) == ["10", "60"]
    nurses = annuaire.search_practitioners(endpoint(sim), family="MARTIN", profession="60")
    assert [p.national_id for p in nurses] == ["899999900048"]


def test_the_city_of_a_place_of_practice_is_a_chained_criterion(sim: Sim) -> None:
    (nurse,) = annuaire.search_practitioners(endpoint(sim), family="MARTIN", given="SOPHIE", city="CLERMONT-FERRAND")
    assert nurse.national_id == "899999900048" and nurse.sites[0].organization.city == "CLERMONT-FERRAND"
    # her mailbox at that practice is on the liste rouge: returned, flagged (the LGC's screen leaves it out)
    assert [(m.address, m.liste_rouge) for m in nurse.sites[0].mailboxes] == [
        ("s.martin.cabinet@infirmier.mssante.fr", True)]
    assert annuaire.search_practitioners(endpoint(sim), family="MARTIN", city="LYON") == []


def test_organizations_and_liste_rouge(sim: Sim) -> None:
    (ch,) = annuaire.search_organizations(endpoint(sim), name="CENTRE HOSPITALIER DU BANC")
    boxes = {m.address: m for m in ch.mailboxes}
    assert boxes["direction@ch-banc-essai.mssante.fr"].liste_rouge is True
    assert boxes["dpi-integration@ch-banc-essai.mssante.fr"].type == "APP"
    assert boxes["cardiologie@ch-banc-essai.mssante.fr"].service == "CARDIOLOGIE"
    assert "0473000010" in ch.phones
    apps = annuaire.search_organizations(endpoint(sim), mailbox_type="APP")
    assert {o.id for o in apps} == {"org-ch-banc-essai", "org-hopital-generique"}
    (pharmacy,) = annuaire.search_organizations(endpoint(sim), finess="639999002")
    assert pharmacy.name == "PHARMACIE DU BANC D'ESSAI" and pharmacy.finess == "639999002"


def test_paging_is_followed(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(annuaire, "PAGE_SIZE", 2)  # 7 practitioners in the bench directory: 4 pages
    everyone = annuaire.search_practitioners(endpoint(sim), profession="10,21,60", limit=200)
    assert len(everyone) == 7 and len({p.id for p in everyone}) == 7
    assert any(p.national_id == KIT.national_id and p.sites for p in everyone)
    few = annuaire.search_practitioners(endpoint(sim), profession="10,21,60", with_sites=False, limit=3)
    assert [p.id for p in few] == [p.id for p in everyone[:3]]


def test_a_closed_port_is_unreachable_and_says_why() -> None:
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/fhir/v2"
        with pytest.raises(ServiceUnavailable) as err:
            annuaire.search_practitioners(ctx(url, timeout=2.0, api_key=ANNUAIRE_KEY), rpps=KIT.national_id)
    assert err.value.code == "network"
    assert err.value.reason == "service Annuaire santé injoignable (ConnectError)"


def test_wrong_api_key_is_refused(sim: Sim) -> None:
    with pytest.raises(ServiceRefused) as err:
        annuaire.search_practitioners(endpoint(sim, api_key="nope"), rpps=KIT.national_id)
    assert err.value.code == "401" and "ESANTE-API-KEY" in (err.value.detail or "")


def test_quota_unavailable_and_hang(sim: Sim) -> None:
    sim.fault({"type": "outcome", "name": "annuaire.quota"}, first=1)
    with pytest.raises(ServiceUnavailable) as err:
        annuaire.search_practitioners(endpoint(sim), rpps=KIT.national_id)
    assert err.value.code == "429" and "60 s" in err.value.reason
    sim.fault({"type": "outcome", "name": "annuaire.indisponible"}, first=1)
    with pytest.raises(ServiceUnavailable) as err:
        annuaire.search_organizations(endpoint(sim), city="PARIS")
    assert err.value.code == "503"
    sim.fault({"type": "hang", "max_s": 5}, first=1)
    with pytest.raises(ServiceUnavailable) as err:
        annuaire.search_practitioners(endpoint(sim, timeout=0.5), rpps=KIT.national_id)
    assert err.value.reason == "pas de réponse du service Annuaire santé après 0.5 s"
