"""INS identity rules of the reference LGC (RNIV / INS implementation guide), without any I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from reference_lgc import identity as idn

GOOD = {"birth_name": "Clérico", "first_names": "Côme", "sex": "M", "birth_date": "1943-11-07",
        "birthplace_cog": "63220"}


def traits(**changes: str) -> idn.Traits:
    return idn.validate_traits({**GOOD, **changes}, today=date(2026, 11, 25))


def errors(**changes: str) -> dict[str, str]:
    with pytest.raises(idn.IdentityError) as exc:
        traits(**changes)
    return exc.value.errors


def test_traits_are_stored_in_ins_form() -> None:
    t = traits(birth_name="  d'Aéion  ", first_names="Jean-Noël   Cœur")
    assert (t.birth_name, t.first_names, t.first_first_name) == ("D'AEION", "JEAN-NOEL COEUR", "JEAN-NOEL")


@pytest.mark.parametrize(("field", "value", "words"), [
    ("birth_name", "", "obligatoire"),
    ("birth_name", "DUPONT3", "« 3 »"),
    ("birth_name", "DUPONT_MARTIN", "« _ »"),
    ("birth_name", "-DUPONT", "séparateur"),
    ("birth_name", "DUPONT--MARTIN", "séparateur"),
    ("first_names", "", "obligatoire"),
    ("first_names", "JEAN.PIERRE", "« . »"),
    ("sex", "X", "M (masculin) ou F"),
    ("sex", "", "M (masculin) ou F"),
    ("birth_date", "07/11/1943", "AAAA-MM-JJ"),
    ("birth_date", "1943-02-30", "AAAA-MM-JJ"),
    ("birth_date", "2030-01-01", "futur"),
    ("birthplace_cog", "", "INCONNU"),
    ("birthplace_cog", "6322", "5 caractères"),
    ("birthplace_cog", "2C020", "2A/2B"),
    ("used_name", "MARTIN1", "« 1 »"),
])
def test_each_input_rule_names_the_field_and_why(field: str, value: str, words: str) -> None:
    errs = errors(**{field: value})
    assert list(errs) == [field]
    assert words in errs[field]


def test_unknown_birthplace_must_be_chosen_and_is_accepted() -> None:
    assert traits(birthplace_cog="99999").birthplace_cog == "99999"
    assert idn.cog_label("99999") == "INCONNU"
    assert traits(birthplace_cog="2b020").birthplace_cog == "2B020"


def test_all_bad_fields_are_reported_at_once() -> None:
    errs = errors(birth_name="", sex="", birthplace_cog="")
    assert set(errs) == {"birth_name", "sex", "birthplace_cog"}


@pytest.mark.parametrize(("retrieved", "validated", "douteuse", "fictive", "expected"), [
    (False, False, False, False, idn.PROVISOIRE),
    (True, False, False, False, idn.RECUPEREE),
    (False, True, False, False, idn.VALIDEE),
    (True, True, False, False, idn.QUALIFIEE),
    (True, True, True, False, idn.PROVISOIRE),
    (True, True, False, True, idn.PROVISOIRE),
])
def test_status_follows_retrieval_validation_and_attributes(retrieved: bool, validated: bool, douteuse: bool,
                                                            fictive: bool, expected: str) -> None:
    assert idn.status(retrieved=retrieved, validated=validated, douteuse=douteuse, fictive=fictive) == expected


def test_advice_says_what_is_missing_to_qualify() -> None:
    assert "pièce d'identité" in idn.status_advice(idn.RECUPEREE)
    assert "INSi" in idn.status_advice(idn.VALIDEE)
    assert "douteuse" in idn.status_advice(idn.PROVISOIRE, douteuse=True).lower()


def test_doubtful_and_fictitious_exclude_each_other() -> None:
    with pytest.raises(idn.IdentityError):
        idn.set_attributes(homonyme=False, douteuse=True, fictive=True, retrieved=False, validated=False)


def test_doubtful_demotes_a_retrieved_identity_but_homonym_does_not() -> None:
    assert idn.set_attributes(homonyme=False, douteuse=True, fictive=False, retrieved=True, validated=True).demoted
    assert not idn.set_attributes(homonyme=True, douteuse=False, fictive=False, retrieved=True,
                                  validated=True).demoted
    assert not idn.set_attributes(homonyme=False, douteuse=True, fictive=False, retrieved=False,
                                  validated=False).demoted


def test_insi_is_called_for_unretrieved_identities_and_every_four_years() -> None:
    now = datetime(2026, 11, 25, tzinfo=UTC)
    assert idn.insi_call_needed(retrieved=False, douteuse=False, fictive=False, retrieved_at=None) == "recuperation"
    assert idn.insi_call_needed(retrieved=False, douteuse=True, fictive=False, retrieved_at=None) is None
    assert idn.insi_call_needed(retrieved=False, douteuse=False, fictive=True, retrieved_at=None) is None
    assert idn.insi_call_needed(retrieved=True, douteuse=False, fictive=False,
                                retrieved_at="2025-01-01T00:00:00+00:00", now=now) is None
    assert idn.insi_call_needed(retrieved=True, douteuse=False, fictive=False,
                                retrieved_at="2022-11-01T00:00:00+00:00", now=now) == "verification"


def test_comparison_with_insi_and_full_match_rule() -> None:
    local = traits(first_names="COME JEAN")
    insi = {"matricule": "143110095083713", "birth_name": "CLERICO", "first_names": "COME", "sex": "M",
            "birth_date": "1943-11-07", "birthplace_cog": "63220"}
    rows = idn.compare(local, None, insi)
    by_field = {r.field: r for r in rows}
    assert not by_field["first_names"].match and by_field["first_first_name"].match
    assert idn.full_match(rows)  # no local NIR yet, same strict traits: automatic retrieval
    assert not idn.full_match(idn.compare(local, "167100093480710", insi))  # the file holds another NIR
    assert not idn.full_match(idn.compare(traits(birth_date="1943-11-08"), None, insi))
    assert not idn.full_match(idn.compare(traits(sex="F"), None, insi))
