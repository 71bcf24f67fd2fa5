"""Annuaire santé search (every field of a colleague, his MSSanté addresses) and the MSSanté inbox (patient and
professional senders told apart, XDM plumbing hidden, already-integrated documents flagged) in the LGC."""

from __future__ import annotations

from lgc_harness import Bench, Lgc
from test_lgc_identity_ui import wait_call

KIT_BAL = "kit.doc0036624@medecin.mssante.fr"


def test_directory_search_shows_every_field_and_the_mailboxes(page, lgc: Lgc, bench: Bench) -> None:
    page.goto(lgc.url + "/annuaire")
    page.fill("#recherche-annuaire input[name=nom]", "DOC0036624")
    page.click("#recherche-annuaire button[type=submit]")
    wait_call(page, "annuaire", within="#resultats-annuaire")
    card = page.locator(".praticien[data-rpps='99700366240']")
    text = card.inner_text()
    assert "899700366240" in text and "DOC0036624" in text and "SM26" in text
    assert KIT_BAL in text
    searches = bench.journal("annuaire")
    assert any("DOC0036624" in (e["url"] or "") for e in searches)


def test_inbox_tells_patients_from_professionals_and_hides_xdm(page, lgc: Lgc, bench: Bench) -> None:
    bench.control("mss", "POST", "/mss/inject", {
        "from": "robert.specialiste0021889@medecin.mssante.fr", "to": KIT_BAL,
        "subject": "Avis cardiologique", "body": "Cher confrère, voici mon avis.",
        "attachments": [{"filename": "avis.txt", "content_type": "text/plain", "base64": "QXZpcw=="}]})
    bench.control("mss", "POST", "/mss/inject", {
        "from": "143110095083713@patient.mssante.fr", "to": KIT_BAL, "subject": "Question", "body": "Bonjour docteur"})
    page.goto(lgc.url + "/messagerie")
    page.click("#relever")
    wait_call(page, "mss", within="#boite")
    rows = page.locator("#messages tbody tr")
    assert rows.count() >= 2
    assert page.locator("#messages tr.patient").count() >= 1
    pro = page.locator("#messages tr.professionnel", has_text="Avis cardiologique")
    assert "avis.txt" in pro.inner_text() and "professionnel" in pro.inner_text()
    assert "IHE_XDM.zip" not in page.locator("#messages").inner_text()
