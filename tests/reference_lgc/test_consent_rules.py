"""DMP consent rules and the DICA checklist of the reference LGC, without any I/O."""

from __future__ import annotations

import pytest

from reference_lgc.consent import (
    Consent,
    ConsentError,
    DmpAccess,
    authorisation_to_set,
    check_consent_input,
    dica,
    feeding_allowed,
)

LINKS = {"identity": "/p/1#identite", "consent": "/p/1#consentement", "login": "/connexion",
         "status": "https://status.example"}
OPEN = DmpAccess(state="ouvert", authorisation="valide")
CONSENT = Consent(episode="E1", consultation_consent=True)


def items(**kw) -> dict[str, object]:
    args = {"ins_qualified": True, "dmp": OPEN, "consent": CONSENT, "authenticated": True, "links": LINKS}
    args.update(kw)
    return {i.key: i for i in dica(**args).items}


def test_all_four_conditions_met_allows_consultation() -> None:
    d = dica(ins_qualified=True, dmp=OPEN, consent=CONSENT, authenticated=True, links=LINKS)
    assert d.can_consult and not d.unmet and [i.key for i in d.items] == ["D", "I", "C", "A"]


@pytest.mark.parametrize(("kw", "key", "cause", "fix"), [
    ({"ins_qualified": False}, "I", "pas qualifiée", "/p/1#identite"),
    ({"consent": None}, "C", "non recueilli", "/p/1#consentement"),
    ({"consent": Consent(episode="E1")}, "C", "n'a pas consenti", "/p/1#consentement"),
    ({"authenticated": False}, "A", "Pro Santé Connect", "/connexion"),
    ({"dmp": DmpAccess(state="absent")}, "D", "pas de DMP", ""),
    ({"dmp": DmpAccess(state="ferme")}, "D", "fermé", ""),
    ({"dmp": DmpAccess(state="ouvert", blocked=True)}, "D", "bloqué", ""),
    ({"dmp": DmpAccess(state="echec", reason="HTTP 503")}, "D", "HTTP 503", "https://status.example"),
])
def test_each_unmet_condition_has_its_cause_and_fix(kw: dict, key: str, cause: str, fix: str) -> None:
    it = items(**kw)[key]
    assert it.ok is False
    assert cause in it.cause
    assert it.fix_href == fix
    d = dica(**{"ins_qualified": True, "dmp": OPEN, "consent": CONSENT, "authenticated": True, "links": LINKS,
                **kw})
    assert not d.can_consult


def test_dmp_check_in_flight_is_pending_not_refused() -> None:
    d = dica(ins_qualified=True, dmp=DmpAccess(state="en_cours"), consent=CONSENT, authenticated=True, links=LINKS)
    assert d.pending and not d.can_consult and not d.unmet


def test_unqualified_ins_means_the_dmp_is_not_even_checked() -> None:
    assert "INS doit être qualifiée" in items(ins_qualified=False, dmp=None)["D"].cause


def test_emergency_access_counts_as_consent_and_needs_a_reason() -> None:
    emergency = Consent(episode="E1", emergency_reason="Patient inconscient aux urgences")
    assert items(consent=emergency)["C"].ok
    with pytest.raises(ConsentError):
        check_consent_input(consultation_consent=False, emergency=True, emergency_reason="  ")
    check_consent_input(consultation_consent=False, emergency=True, emergency_reason="Patient inconscient")


def test_feeding_is_allowed_by_default_unless_the_patient_objects() -> None:
    assert feeding_allowed(ins_qualified=True, consent=None) == (True, "")
    ok, why = feeding_allowed(ins_qualified=True, consent=Consent(episode="E1", feeding_opposed=True))
    assert not ok and "opposé" in why
    ok, why = feeding_allowed(ins_qualified=False, consent=None)
    assert not ok and "INS" in why


def test_authorisation_is_set_after_consent_and_renewed_when_expired() -> None:
    assert authorisation_to_set(consent=CONSENT, dmp=DmpAccess(state="ouvert", authorisation="aucune"))
    assert authorisation_to_set(consent=CONSENT, dmp=DmpAccess(state="ouvert", authorisation="expiree"))
    assert not authorisation_to_set(consent=CONSENT, dmp=OPEN)
    assert not authorisation_to_set(consent=None, dmp=DmpAccess(state="ouvert"))
    assert not authorisation_to_set(consent=Consent(episode="E1"), dmp=DmpAccess(state="ouvert"))
    assert not authorisation_to_set(consent=CONSENT, dmp=DmpAccess(state="ouvert", blocked=True))
    assert not authorisation_to_set(consent=CONSENT, dmp=DmpAccess(state="ferme"))
