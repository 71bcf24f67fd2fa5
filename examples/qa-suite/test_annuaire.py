"""Plain pytest tests of "our LGC" (my_lgc.py) against the bench: the journal as judge, an incident, a fault rule."""

import pytest
from my_lgc import DirectoryUnavailable, find_correspondents


@pytest.mark.rem("SC.MSS/CONF.20")
def test_homonyms_are_told_apart(segur_bench, annuaire):
    found = find_correspondents(annuaire, "MARTIN", given="SOPHIE")
    assert len(found) >= 2, "two SOPHIE MARTIN (a GP in Paris, a nurse in Clermont-Ferrand)"
    # The bench's journal of THIS test: the LGC sent its API key and searched once.
    searches = segur_bench.journal("annuaire", operation="Practitioner.search")
    assert len(searches) == 1
    assert "esante-api-key" in {name.lower() for name, _value in searches[0]["request"]["headers"]}


def test_the_journal_holds_only_this_tests_exchanges(segur_bench, annuaire):
    find_correspondents(annuaire, "DUPONT")
    assert [e["operation"] for e in segur_bench.journal("annuaire")] == ["Practitioner.search"]


def test_a_slow_network_is_reported_not_hung(segur_bench, annuaire):
    with segur_bench.incident("latence-3s"), pytest.raises(DirectoryUnavailable, match="à temps"):
        find_correspondents(annuaire, "MARTIN", timeout=1.0)
    # cleared on exit: the next search is fast again
    assert find_correspondents(annuaire, "MARTIN", timeout=2.0)


def test_an_unavailable_directory_is_reported(segur_bench, annuaire):
    rule = {"service": "annuaire", "operation": "Practitioner.search",
            "effect": {"type": "http_status", "status": 503, "headers": {"Retry-After": "30"}}}
    with segur_bench.fault(rule), pytest.raises(DirectoryUnavailable, match="503"):
        find_correspondents(annuaire, "MARTIN")
