"""The reference LGC's DMP client against the DMP simulator (in-process, ephemeral store, free port)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sims_dmp import (
    BOUCHER,
    CLERICO,
    DMPCLOS,
    KIT,
    OPPOSANT,
    SANSDMP,
    SEED_AUTHOR,
    TEST_OID,
    Sim,
    cda,
    metadata,
    psc_access_token,
    running_dmp,
    running_psc,
    with_token,
)

from reference_lgc.services import dmp
from reference_lgc.services.context import ServiceRefused, ServiceUnavailable
from reference_lgc.services.vihf import security_header
from simulators.dmp.vihf import extract

SET_ID = "1.2.250.1.999.77.1"


@pytest.fixture(scope="module")
def server() -> Iterator[Sim]:
    with running_dmp() as sim:
        yield sim


@pytest.fixture
def sim(server: Sim) -> Sim:
    server.reset()
    return server


def _uid(n: int) -> str:
    return f"1.2.250.1.999.4242.{n}.{time.monotonic_ns()}"


def _feed(sim: Sim, uid: str, *, version: int = 1, replaces: str | None = None, invisible: bool = False,
          title: str = "CR de consultation") -> dmp.Submission:
    return dmp.provide_document(sim.ctx(), CLERICO, TEST_OID, cda(uid, set_id=SET_ID, version=version, title=title),
                                metadata(uid, title=title, invisible=invisible), replaces=replaces)


# --- VIHF ---------------------------------------------------------------------------------------------


def test_vihf_is_what_the_dmp_reads(sim: Sim) -> None:
    vihf = extract(security_header(with_token(sim.ctx(), "tok"), CLERICO, TEST_OID, "bris_de_glace"))
    assert (vihf.national_id, vihf.patient_ins, vihf.patient_oid) == (KIT.national_id, CLERICO, TEST_OID)
    assert vihf.purpose == "bris_de_glace"
    assert [(r.code, r.system) for r in vihf.roles] == [("10", "1.2.250.1.71.1.2.7"), ("SM26", "1.2.250.1.71.4.2.5")]
    assert vihf.first("Authentification_Mode") == "INDIRECTE_RENFORCEE"  # PSC login
    assert vihf.first("Identifiant_Structure") == "499700366240007"
    assert vihf.lps["homologation"] == "BENCH-DMP-0001" and vihf.secteur == "SA07^1.2.250.1.71.4.2.4"


def test_endpoint_headers_go_with_every_request_and_name_the_run(sim: Sim) -> None:
    """Endpoint.headers (what the scenarios' "other workstation" uses to name its run): on the wire, and the
    simulator files the exchange under that run and works on that run's own DMP when it has one."""
    assert sim.http.put("/_bench/runs/poste-voisin", json={"state": "own"}).status_code == 200
    try:
        ctx = sim.ctx()
        named = replace(ctx, endpoint=replace(ctx.endpoint, headers={"X-Bench-Run": "poste-voisin"}))
        uid = _uid(1)
        dmp.provide_document(named, CLERICO, TEST_OID, cda(uid, set_id=SET_ID), metadata(uid))
        entry = sim.control("GET", "/journal?run=poste-voisin")["entries"][-1]
        assert entry["operation"] == "ITI-41" and dict(entry["request"]["headers"])["x-bench-run"] == "poste-voisin"
        own = sim.http.get("/_bench/state", params={"ins": CLERICO, "run": "poste-voisin"}).json()["state"]
        assert uid in {d["unique_id"] for d in own["documents"]}
        assert uid not in {d["unique_id"] for d in sim.control("GET", f"/state?ins={CLERICO}")["state"]["documents"]}
    finally:
        sim.http.delete("/_bench/runs/poste-voisin")


def test_missing_structure_is_refused_before_calling(sim: Sim) -> None:
    ctx = sim.ctx(professional=replace(KIT, structure_id=""))
    with pytest.raises(ServiceRefused, match="Identifiant_Structure"):
        dmp.test_existence(ctx, CLERICO, TEST_OID)


# --- TD0.2 / TD0.3 --------------------------------------------------------------------------------------


def test_td02_states(sim: Sim) -> None:
    ctx = sim.ctx()
    clerico = dmp.test_existence(ctx, CLERICO, TEST_OID)
    assert (clerico.state, clerico.authorisation, clerico.blocked, clerico.exists) == ("ouvert", "aucune", False, True)
    assert clerico.patient is not None and clerico.patient.birth_name == "CLERICO"
    assert not clerico.can_consult and clerico.can_feed
    closed = dmp.test_existence(ctx, DMPCLOS, TEST_OID)
    assert closed.state == "ferme" and closed.closed_at and not closed.can_feed
    absent = dmp.test_existence(ctx, SANSDMP, TEST_OID)
    assert (absent.state, absent.exists) == ("absent", False)
    blocked = dmp.test_existence(ctx, OPPOSANT, TEST_OID)
    assert blocked.state == "ouvert" and blocked.blocked and not blocked.can_feed


def test_td02_malformed_ins_is_refused(sim: Sim) -> None:
    with pytest.raises(ServiceRefused) as exc:
        dmp.test_existence(sim.ctx(), CLERICO[:-2] + "00", TEST_OID)
    assert exc.value.code == "QE" and "cle" in exc.value.reason


def test_td03_then_td02_valid_then_expired_then_withdrawn(sim: Sim) -> None:
    ctx = sim.ctx()
    auth = dmp.set_authorisation(ctx, CLERICO, TEST_OID, medecin_traitant=True)
    assert auth.status == "valide" and auth.end and auth.medecin_traitant
    status = dmp.test_existence(ctx, CLERICO, TEST_OID)
    assert (status.authorisation, status.authorisation_expires, status.medecin_traitant) == ("valide", auth.end, True)
    assert status.can_consult
    sim.control("POST", "/clock", {"advance": "P6M"})
    assert dmp.test_existence(ctx, CLERICO, TEST_OID).authorisation == "expiree"
    assert dmp.set_authorisation(ctx, CLERICO, TEST_OID, grant=False).status == "aucune"
    assert dmp.test_existence(ctx, CLERICO, TEST_OID).authorisation == "aucune"


def test_td03_refused_by_patient(sim: Sim) -> None:
    sim.control("POST", "/state", {"action": "refuse_authorisation", "ins": CLERICO, "national_id": KIT.national_id})
    with pytest.raises(ServiceRefused) as exc:
        dmp.set_authorisation(sim.ctx(), CLERICO, TEST_OID)
    assert exc.value.code == "DMPAuthorizationDenied" and "refusé" in exc.value.reason


# --- consultation rules -----------------------------------------------------------------------------------


def test_consultation_needs_authorisation_unless_bris_de_glace(sim: Sim) -> None:
    ctx = sim.ctx()
    with pytest.raises(ServiceRefused) as exc:
        dmp.find_documents(ctx, CLERICO, TEST_OID)
    assert exc.value.code == "DMPAuthorizationRequired" and "DMPAuthorizationRequired" in exc.value.reason
    seeded = dmp.find_documents(ctx, CLERICO, TEST_OID, purpose="bris_de_glace")
    assert len(seeded) == 2 and {d.author.national_id for d in seeded if d.author} == {SEED_AUTHOR}
    assert [d.type_code.code for d in seeded if d.type_code] == ["11502-2", "11488-4"]  # newest first
    kinds = [e["kind"] for e in sim.state(CLERICO)["events"]]
    assert "acces_bris_de_glace" in kinds


def test_blocked_professional_is_refused_even_in_bris_de_glace(sim: Sim) -> None:
    with pytest.raises(ServiceRefused) as exc:
        dmp.find_documents(sim.ctx(), OPPOSANT, TEST_OID, purpose="bris_de_glace")
    assert exc.value.code == "DMPBlockedProfessional" and "bloqué" in exc.value.reason


# --- ITI-41 / ITI-18 / ITI-43 -----------------------------------------------------------------------------


def test_provide_find_retrieve_byte_for_byte(sim: Sim) -> None:
    ctx = sim.ctx()
    dmp.set_authorisation(ctx, CLERICO, TEST_OID)
    uid = _uid(1)
    content = cda(uid, set_id=SET_ID)
    sub = dmp.provide_document(ctx, CLERICO, TEST_OID, content, metadata(uid))
    assert sub.unique_id == uid and sub.entry_uuid.startswith("urn:uuid:")
    entries = dmp.find_documents(ctx, CLERICO, TEST_OID)
    assert len(entries) == 3  # 2 seeded + ours; the signature document is left out
    mine = next(e for e in entries if e.unique_id == uid)
    assert mine.entry_uuid == sub.entry_uuid and mine.lid == sub.entry_uuid
    assert (mine.title, mine.mime_type, mine.short_status, mine.version) == ("CR de consultation", "text/xml",
                                                                             "Approved", 1)
    assert mine.type_code == dmp.Code("11488-4", "2.16.840.1.113883.6.1", "CR de consultation")
    assert mine.class_code is not None and mine.class_code.code == "10"
    assert mine.creation_time == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    assert mine.author is not None and (mine.author.rpps, mine.author.family_name, mine.author.profession) == (
        "99700366240", "DOC0036624", "10")
    assert [c.code for c in mine.confidentiality] == ["N"] and not mine.invisible_to_patient
    assert mine.size == len(content) and mine.repository_id == dmp.DEFAULT_REPOSITORY
    with_sig = dmp.find_documents(ctx, CLERICO, TEST_OID, include_signatures=True)
    assert any(e.is_signature and e.unique_id == sub.signature_unique_id for e in with_sig)
    got = dmp.retrieve_document(ctx, CLERICO, TEST_OID, uid, repository_id=mine.repository_id)
    assert got.content == content and got.mime_type == "text/xml"


def test_retrieve_refusals(sim: Sim) -> None:
    ctx = sim.ctx()
    seeded = dmp.find_documents(ctx, CLERICO, TEST_OID, purpose="centre_15")[0]
    with pytest.raises(ServiceRefused) as exc:  # normal mode without authorisation
        dmp.retrieve_document(ctx, CLERICO, TEST_OID, seeded.unique_id)
    assert exc.value.code == "DMPAuthorizationRequired"
    got = dmp.retrieve_document(ctx, CLERICO, TEST_OID, seeded.unique_id, purpose="centre_15")
    assert got.content.startswith(b"<?xml") and b"ClinicalDocument" in got.content
    assert len(got.content) == seeded.size
    with pytest.raises(ServiceRefused) as exc:
        dmp.retrieve_document(ctx, CLERICO, TEST_OID, "1.2.250.1.999.404", purpose="centre_15")
    assert exc.value.code == "XDSDocumentUniqueIdError" and "introuvable" in exc.value.reason


def test_find_filters_on_creation_time_and_type(sim: Sim) -> None:
    ctx = sim.ctx()
    dmp.set_authorisation(ctx, CLERICO, TEST_OID)
    _feed(sim, _uid(2))
    recent = dmp.find_documents(ctx, CLERICO, TEST_OID, since=datetime(2026, 11, 25, tzinfo=UTC))
    assert [e.title for e in recent] == ["CR de consultation"]
    consultations = dmp.find_documents(ctx, CLERICO, TEST_OID,
                                       type_codes=[dmp.Code("11488-4", "2.16.840.1.113883.6.1")])
    assert len(consultations) == 2  # ours + the seeded consultation; not the biology report


def test_replacement_deprecates_the_old_version(sim: Sim) -> None:
    ctx = sim.ctx()
    dmp.set_authorisation(ctx, CLERICO, TEST_OID)
    v1 = _feed(sim, _uid(3))
    v2 = _feed(sim, _uid(4), version=2, replaces=v1.entry_uuid, title="CR de consultation (corrigé)")
    approved = [e for e in dmp.find_documents(ctx, CLERICO, TEST_OID) if e.lid == v1.entry_uuid]
    assert [(e.entry_uuid, e.version, e.title) for e in approved] == [(v2.entry_uuid, 2,
                                                                       "CR de consultation (corrigé)")]
    old = dmp.find_documents(ctx, CLERICO, TEST_OID, statuses=[dmp.ST_DEPRECATED])
    assert [(e.entry_uuid, e.short_status) for e in old] == [(v1.entry_uuid, "Deprecated")]
    with pytest.raises(ServiceRefused) as exc:  # the deprecated one cannot be replaced again
        _feed(sim, _uid(5), version=3, replaces=v1.entry_uuid)
    assert exc.value.code == "XDSRegistryMetadataError"


def test_replacing_someone_elses_document_is_refused(sim: Sim) -> None:
    ctx = sim.ctx()
    dmp.set_authorisation(ctx, CLERICO, TEST_OID)
    seeded = dmp.find_documents(ctx, CLERICO, TEST_OID)[0]
    with pytest.raises(ServiceRefused) as exc:
        _feed(sim, _uid(6), version=2, replaces=seeded.entry_uuid)
    assert "DMPNotAuthor" in exc.value.reason and "auteur" in exc.value.reason


def test_feeding_a_closed_dmp_is_refused(sim: Sim) -> None:
    uid = _uid(7)
    with pytest.raises(ServiceRefused) as exc:
        dmp.provide_document(sim.ctx(), DMPCLOS, TEST_OID, cda(uid, set_id=SET_ID, ins=DMPCLOS), metadata(uid))
    assert exc.value.code == "DMPClosed" and "fermé" in exc.value.reason


# --- ITI-57 -----------------------------------------------------------------------------------------------


def test_visibility_update(sim: Sim) -> None:
    ctx = sim.ctx()
    dmp.set_authorisation(ctx, CLERICO, TEST_OID)
    sub = _feed(sim, _uid(8), invisible=True)
    entry = next(e for e in dmp.find_documents(ctx, CLERICO, TEST_OID) if e.entry_uuid == sub.entry_uuid)
    assert entry.invisible_to_patient and not entry.masked_to_professionals
    dmp.update_visibility(ctx, CLERICO, TEST_OID, entry, invisible_to_patient=False, masked_to_professionals=True)
    after = next(e for e in dmp.find_documents(ctx, CLERICO, TEST_OID) if e.entry_uuid == sub.entry_uuid)
    assert not after.invisible_to_patient and after.masked_to_professionals and after.version == entry.version + 1
    doc = next(d for d in sim.state(CLERICO)["documents"] if d["entry_uuid"] == sub.entry_uuid)
    assert doc["visible_patient"] and doc["masked_ps"]
    with pytest.raises(ServiceRefused) as exc:  # stale version
        dmp.update_visibility(ctx, CLERICO, TEST_OID, entry, masked_to_professionals=False)
    assert exc.value.code == "XDSMetadataVersionError"


def test_delete_own_document_but_not_others(sim: Sim) -> None:
    ctx = sim.ctx()
    dmp.set_authorisation(ctx, CLERICO, TEST_OID)
    sub = _feed(sim, _uid(9))
    dmp.delete_document(ctx, CLERICO, TEST_OID, sub.entry_uuid)
    assert sub.entry_uuid not in {e.entry_uuid for e in dmp.find_documents(ctx, CLERICO, TEST_OID)}
    seeded = dmp.find_documents(ctx, CLERICO, TEST_OID)[0]
    with pytest.raises(ServiceRefused) as exc:
        dmp.delete_document(ctx, CLERICO, TEST_OID, seeded.entry_uuid)
    assert exc.value.code == "DMPNotAuthor"


def test_archive_and_unarchive(sim: Sim) -> None:
    ctx = sim.ctx()
    dmp.set_authorisation(ctx, CLERICO, TEST_OID)
    sub = _feed(sim, _uid(10))
    dmp.archive_document(ctx, CLERICO, TEST_OID, sub.entry_uuid)
    archived = dmp.find_documents(ctx, CLERICO, TEST_OID, statuses=[dmp.ST_ARCHIVED])
    assert [e.entry_uuid for e in archived] == [sub.entry_uuid]
    dmp.unarchive_document(ctx, CLERICO, TEST_OID, sub.entry_uuid)
    assert sub.entry_uuid in {e.entry_uuid for e in dmp.find_documents(ctx, CLERICO, TEST_OID)}


# --- unavailability ---------------------------------------------------------------------------------------


def test_http_503_is_unavailable(sim: Sim) -> None:
    sim.fault({"type": "http_status", "status": 503}, service="dmp", operation="TD0.2")
    with pytest.raises(ServiceUnavailable) as exc:
        dmp.test_existence(sim.ctx(), CLERICO, TEST_OID)
    assert exc.value.code == "HTTP 503" and "503" in exc.value.reason


def test_receiver_fault_is_unavailable(sim: Sim) -> None:
    sim.fault({"type": "outcome", "name": "dmp.indisponible"}, service="dmp", match={"attrs": {"ins": BOUCHER}})
    assert dmp.test_existence(sim.ctx(), CLERICO, TEST_OID).exists  # only BOUCHER is affected
    with pytest.raises(ServiceUnavailable) as exc:
        dmp.test_existence(sim.ctx(), BOUCHER, TEST_OID)
    assert exc.value.code == "DMP_INDISPONIBLE" and "indisponible" in exc.value.reason


def test_registry_busy_is_unavailable(sim: Sim) -> None:
    dmp.set_authorisation(sim.ctx(), CLERICO, TEST_OID)
    sim.fault({"type": "outcome", "name": "dmp.erreur.XDSRegistryBusy"}, service="dmp", operation="ITI-18")
    with pytest.raises(ServiceUnavailable) as exc:
        dmp.find_documents(sim.ctx(), CLERICO, TEST_OID)
    assert exc.value.code == "XDSRegistryBusy"


def test_latency_beyond_timeout_is_unavailable(sim: Sim) -> None:
    sim.fault({"type": "latency", "ms": 3000}, service="dmp", operation="TD0.2")
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as exc:
        dmp.test_existence(sim.ctx(timeout=0.5), CLERICO, TEST_OID)
    assert time.monotonic() - started < 2.0
    assert exc.value.code == "TIMEOUT" and "0.5 s" in exc.value.reason


def test_dropped_connection_is_unavailable(sim: Sim) -> None:
    sim.fault({"type": "drop"}, service="dmp")
    with pytest.raises(ServiceUnavailable) as exc:
        dmp.test_existence(sim.ctx(), CLERICO, TEST_OID)
    assert exc.value.code == "RESEAU"


# --- "API Pro Santé Connectée": the DMP checks the PSC access token ----------------------------------------


def test_psc_token_mode() -> None:
    with running_psc() as psc, running_dmp(auth_mode="psc", psc_issuer=psc.url + "/auth/realms/esante-wallet") as sim:
        token = psc_access_token(psc)
        status = dmp.test_existence(with_token(sim.ctx(), token), CLERICO, TEST_OID)
        assert status.state == "ouvert"
        with pytest.raises(ServiceRefused) as exc:
            dmp.test_existence(sim.ctx(), CLERICO, TEST_OID)  # no token
        assert exc.value.code == "InvalidSecurity" and "jeton" in exc.value.reason
        other = psc_access_token(psc, SEED_AUTHOR)  # someone else's token with KIT's VIHF
        with pytest.raises(ServiceRefused, match="differe"):
            dmp.test_existence(with_token(sim.ctx(), other), CLERICO, TEST_OID)
