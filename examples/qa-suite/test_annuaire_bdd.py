"""A pytest-bdd feature against the bench: its @exigence=ID tags are the plugin's `rem` marker."""

from my_lgc import find_correspondents
from pytest_bdd import given, parsers, scenarios, then, when

scenarios("features/annuaire.feature")


@given("le banc segur-bench", target_fixture="annuaire_url")
def bench_annuaire(segur_bench):
    return segur_bench.url("annuaire")


@when(parsers.parse('le LGC cherche "{family}" "{given}" dans l\'annuaire'), target_fixture="found")
def search(annuaire_url, family, given):
    return find_correspondents(annuaire_url, family, given=given)


@then(parsers.parse("il trouve {count:d} correspondants au moins, chacun avec son adresse MSSanté"))
def found_with_mailboxes(found, count):
    assert len(found) >= count
    assert all(c.mailboxes for c in found)


@then(parsers.parse("l'annuaire a reçu {count:d} recherche de ce scénario"))
def journal_count(segur_bench, count):
    assert len(segur_bench.journal("annuaire", operation="Practitioner.search")) == count
