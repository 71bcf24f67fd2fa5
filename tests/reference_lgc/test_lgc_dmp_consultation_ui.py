"""DMP consultation in the reference LGC (Chromium against the simulators): new documents counted without
click by category with the invisible ones marked, filters, multi-select integration without duplicates and
with provenance, one-click visibility, N1 opening on its PDF and N3-style readable rendering."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
from lgc_harness import Bench, Lgc
from sims_dmp import KIT, TEST_OID, cda, metadata
from test_lgc_dmp_access_ui import qualify_with_apcv, wait_settled
from test_lgc_identity_ui import wait_call

from reference_lgc.services import dmp
from reference_lgc.services.context import CallContext, Endpoint, Software

BOUCHER = "167100093480710"


def kit_ctx(bench: Bench) -> CallContext:
    """The test acts as another workstation of the same physician, feeding the DMP directly."""
    return CallContext(Software(), KIT, Endpoint(url=bench.urls["dmp"] + "/si-dmp-server/v2/services", timeout=10))


def test_new_documents_are_counted_then_integrated_once_with_provenance(page, lgc: Lgc, bench: Bench) -> None:
    pid = qualify_with_apcv(page, lgc, bench, "BOUCHER", BOUCHER)
    wait_call(page, "dmp", operation="acces", within="#dmp")
    page.check("#formulaire-consentement input[name=consultation]")
    page.click("#enregistrer-consentement")
    wait_call(page, "dmp", operation="consultation", within="#dmp")
    wait_settled(page, "#dmp")  # the chain after consent has ended: the consultation shown is the last one
    box = page.locator("#nouveaux-documents")
    assert box.get_attribute("data-total") == "2"  # the two documents seeded in the flagship patient's DMP
    assert "Biologie : 1" in box.inner_text() and "première consultation" in box.inner_text()

    # Another workstation sends a document invisible to the patient: new too, and marked (the file is reopened
    # within the same consultation, so "since the last visit" still means before this consultation).
    uid = f"2.25.{uuid.uuid4().int}"
    dmp.provide_document(kit_ctx(bench), BOUCHER, TEST_OID,
                         cda(uid, set_id=f"2.25.{uuid.uuid4().int}", ins=BOUCHER, title="CR avant annonce"),
                         metadata(uid, title="CR avant annonce", invisible=True))
    previous = page.locator("#dmp [data-operation=consultation]").get_attribute("data-call")
    page.goto(f"{lgc.url}/patients/{pid}")  # opening the file: TD0.2, then a new consultation
    page.wait_for_selector(f'#dmp [data-operation=consultation][data-status=reussi]:not([data-call="{previous}"])',
                           timeout=15_000)
    box = page.locator("#nouveaux-documents")
    assert box.get_attribute("data-total") == "3" and box.get_attribute("data-invisible") == "1"
    assert "dont 1 invisible pour le patient" in box.inner_text()

    page.click("#voir-dmp")
    assert page.locator("#documents-dmp tbody tr").count() == 3
    page.select_option("#filtres select[name=visibilite]", "invisible")
    page.click("#filtres button[type=submit]")
    rows = page.locator("#documents-dmp tbody tr")
    assert rows.count() == 1 and "CR avant annonce" in rows.first.inner_text()
    page.select_option("#filtres select[name=visibilite]", "")
    page.fill("#filtres input[name=depuis]", datetime.now(UTC).strftime("%Y-%m-01"))
    page.click("#filtres button[type=submit]")
    assert page.locator("#documents-dmp tbody tr").count() in (1, 2)  # the 40-day-old seed is filtered out
    page.fill("#filtres input[name=depuis]", "")
    page.click("#filtres button[type=submit]")

    # Multi-select → integrated into the local record, once.
    for box_ in page.locator("#documents-dmp input[name=entree]").all():
        box_.check()
    retrieves_before = len(bench.journal("dmp", "ITI-43"))
    page.click("#integrer")
    wait_call(page, "dmp", operation="integration", within="#dmp-liste")
    assert len(bench.journal("dmp", "ITI-43")) == retrieves_before + 3
    assert page.locator("#documents-dmp input[name=entree]").count() == 0  # nothing left to integrate
    assert page.locator("#documents-dmp [data-marker=integre]").count() == 3
    page.goto(f"{lgc.url}/patients/{pid}")
    local = page.locator("#documents-locaux")
    assert local.locator("[data-marker=importe-dmp]").count() == 3
    assert "Note de consultation" in local.inner_text()  # the local document stays, without the marker

    # The imported N1 opens on its PDF; the readable rendering shows its header.
    link = local.locator("a", has_text="Compte rendu de consultation de cardiologie")
    link.click()
    pdf_url = page.locator("#pdf").get_attribute("data")
    resp = httpx.get(lgc.url + pdf_url, cookies={c["name"]: c["value"] for c in page.context.cookies()})
    assert resp.headers["content-type"] == "application/pdf" and resp.content.startswith(b"%PDF")
    page.click("#version-lisible")
    assert "version 1" in page.locator("main").inner_text()

    # One click makes the invisible document visible to the patient (ITI-57).
    page.goto(f"{lgc.url}/patients/{pid}/dmp?visibilite=invisible")
    page.click(".rendre-visible")
    wait_call(page, "dmp", operation="visibilite", within="#dmp-liste")
    assert len(bench.journal("dmp", "ITI-57")) >= 1
    page.goto(f"{lgc.url}/patients/{pid}/dmp?visibilite=invisible")
    assert page.locator("#documents-dmp [data-marker=invisible]").count() == 0


def test_consultation_never_happens_without_consent(page, lgc: Lgc, bench: Bench) -> None:
    before = len(bench.journal("dmp", "ITI-18"))
    qualify_with_apcv(page, lgc, bench, "CLERICO", "143110095083713")
    wait_call(page, "dmp", operation="acces", within="#dmp")
    assert page.locator("#nouveaux-documents").count() == 0
    page.goto(page.url.split("#")[0] + "/dmp")
    page.click("#actualiser-dmp")
    assert "Consultation du DMP impossible" in page.locator(".flash.error").inner_text()
    assert len(bench.journal("dmp", "ITI-18")) == before
