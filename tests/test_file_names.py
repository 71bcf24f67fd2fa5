"""Proof file names read as French in ASCII (issue 18): accents dropped, not the letters they sit on."""

from __future__ import annotations

import pytest

from proofs.file_names import ascii_text, file_slug


@pytest.mark.parametrize(("text", "slug"), [
    ("le médecin valide l'ordonnance", "le-medecin-valide-l-ordonnance"),
    ("Étant donné l'identité de \"BOUCHER\" est qualifiée", "etant-donne-l-identite-de-boucher-est-qualifiee"),
    ("la liste DICA indique « Consentement »", "la-liste-dica-indique-consentement"),
    ("Œdème du cœur, reçu à 12 h", "oedeme-du-coeur-recu-a-12-h"),
    ("l'envoi au DMP de l'ordonnance est annulé", "l-envoi-au-dmp-de-l-ordonnance-est-annule"),
    ("— … !", ""),
])
def test_french_text_becomes_a_readable_ascii_slug(text: str, slug: str) -> None:
    assert file_slug(text) == slug


def test_a_long_step_is_cut_at_a_word_boundary() -> None:
    slug = file_slug("aucune consultation ni récupération de document n'a été envoyée au DMP après le retrait")
    assert len(slug) <= 50 and slug == "aucune-consultation-ni-recuperation-de-document-n"
    assert file_slug("a" * 80) == "a" * 50  # one word longer than the limit is cut where it must


def test_ascii_text_keeps_what_is_already_ascii() -> None:
    assert ascii_text("SC.DMP/UX.13 — ça") == "SC.DMP/UX.13  ca"
