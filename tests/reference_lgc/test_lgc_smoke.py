from __future__ import annotations

from lgc_harness import Bench, Lgc


def test_login_lists_patients_and_shows_version(page, lgc: Lgc, bench: Bench) -> None:
    page.goto(lgc.url + "/patients")
    assert page.locator("#version-technique").inner_text().startswith("v")
    assert page.locator("#liste-patients").get_by_text("CLERICO").count() == 1
    page.click("text=CLERICO")
    page.wait_for_selector("#statut-identite")
    page.wait_for_selector("#identite [data-service=insi][data-status=reussi]", timeout=15000)
    print(page.locator("#identite").inner_text())
