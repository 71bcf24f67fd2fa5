"""The trainers' console in Chromium (Playwright), over a bench of every simulator started by the test: one click
applies an incident and the live feed shows the next request delayed; a CIBA request approved on the page lets
the client's poll succeed; the simulated clock advances on every simulator."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from lgc_harness import PSC_REALM, Bench

pytestmark = pytest.mark.timeout(90)

KIT = "899700366240"  # KIT DOC0036624, a professional of the personas
CLIENT = ("segur-bench-lgc", "segur-bench-lgc-secret")  # the PSC simulator's default client (CIBA allowed)


def fhir_metadata(bench: Bench, run: str) -> float:
    """A client's request to the Annuaire santé simulator (plain HTTP client); returns how long it took."""
    started = time.monotonic()
    resp = httpx.get(bench.urls["annuaire"] + "/fhir/v2/metadata", headers={"X-Bench-Run": run}, timeout=15)
    assert resp.status_code == 200, resp.text
    return time.monotonic() - started


def active_incidents(bench: Bench, service: str) -> list[str]:
    return httpx.get(bench.urls[service] + "/_bench/faults", timeout=5).json()["incidents"]


def wait_until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_one_click_incident_delays_the_next_request_in_the_live_feed_and_clearing_it_ends_the_delay(
        page, bench: Bench) -> None:
    card = page.locator('#incidents-liste li[data-incident="latence-3s"]')
    card.locator('button[data-action="apply"]').click()
    wait_until(lambda: active_incidents(bench, "annuaire") == ["latence-3s"])
    page.locator('#services-lignes tr[data-service="annuaire"] .incidents-service').get_by_text("latence-3s").wait_for()

    slow_run = f"console-lent-{uuid.uuid4().hex[:8]}"
    assert fhir_metadata(bench, slow_run) >= 2.9
    row = page.locator(f'#journal-lignes tr[data-run="{slow_run}"]')
    row.wait_for(timeout=5_000)  # the live feed shows it without a reload
    assert float(row.get_attribute("data-waited")) >= 2900
    assert "3" in row.locator("td.latence").inner_text()
    assert "latence" in row.inner_text().lower()  # the fault rule applied, as the journal recorded it

    # Its detail: request and response, the injected latency, the JSON answer indented
    row.locator("button.lien").click()
    detail = page.locator("#journal-detail")
    detail.wait_for()
    assert "Latence injectée" in detail.inner_text()
    assert '\n  "resourceType": "CapabilityStatement"' in page.locator("#detail-reponse").inner_text()
    assert f"x-bench-run: {slow_run}" in page.locator("#detail-requete-entetes").inner_text().lower()

    card.locator('button[data-action="clear"]').click()
    wait_until(lambda: active_incidents(bench, "annuaire") == [])
    quick_run = f"console-rapide-{uuid.uuid4().hex[:8]}"
    assert fhir_metadata(bench, quick_run) < 1.5
    quick = page.locator(f'#journal-lignes tr[data-run="{quick_run}"]')
    quick.wait_for(timeout=5_000)
    assert quick.get_attribute("data-waited") == "0"
    assert quick.locator("td.latence").inner_text() == "—"


def test_a_ciba_request_approved_in_the_console_lets_the_client_poll_succeed(page, bench: Bench) -> None:
    bench.control("psc", "POST", "/state", {"ciba_auto_approve_s": None})  # only the trainer answers
    oidc = bench.urls["psc"] + PSC_REALM + "/protocol/openid-connect"
    code = uuid.uuid4().hex[:6]
    started = httpx.post(oidc + "/ext/ciba/auth", auth=CLIENT, timeout=10, data={
        "scope": "openid scope_all", "login_hint": KIT, "binding_message": code})
    assert started.status_code == 200, started.text
    auth_req_id = started.json()["auth_req_id"]
    poll = {"grant_type": "urn:openid:params:grant-type:ciba", "auth_req_id": auth_req_id}
    pending = httpx.post(oidc + "/token", auth=CLIENT, data=poll, timeout=10)
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"

    row = page.locator(f'#ciba-lignes tr[data-auth-req-id="{auth_req_id}"]')
    row.wait_for(timeout=6_000)  # the page refreshes every 2 s
    assert code in row.inner_text() and "en attente" in row.inner_text()
    row.get_by_role("button", name="Approuver").click()
    page.wait_for_function(
        "id => document.querySelector(`#ciba-lignes tr[data-auth-req-id='${id}'] .statut`)"
        "?.textContent.includes('approuvée')", arg=auth_req_id)

    token = httpx.post(oidc + "/token", auth=CLIENT, data=poll, timeout=10)
    assert token.status_code == 200, token.text
    assert token.json()["access_token"]


def test_the_clock_advances_and_freezes_on_every_simulator(page, bench: Bench) -> None:
    def offsets() -> dict[str, float]:
        return {s: httpx.get(url + "/_bench/clock", timeout=5).json()["offset_seconds"]
                for s, url in bench.urls.items()}

    before = offsets()
    try:
        page.fill("#horloge-avance", "+1h")
        page.get_by_role("button", name="Avancer", exact=True).click()
        page.locator("#etat").get_by_text("Avance de l'horloge : fait.").wait_for()
        after = offsets()
        for service, offset in after.items():
            assert offset - before[service] == pytest.approx(3600, abs=5), service
        page.locator("#horloge-decalage").get_by_text("3 600 s", exact=False).wait_for()

        page.get_by_role("button", name="Figer").click()
        page.locator("#etat").get_by_text("Horloge figée : fait.").wait_for()
        assert all(httpx.get(url + "/_bench/clock").json()["frozen"] for url in bench.urls.values())
        page.locator("#horloge-figee").get_by_text("(figée)").wait_for()
        page.get_by_role("button", name="Libérer").click()
        page.locator("#etat").get_by_text("Horloge libérée : fait.").wait_for()
        assert not any(httpx.get(url + "/_bench/clock").json()["frozen"] for url in bench.urls.values())
    finally:
        for url in bench.urls.values():
            httpx.post(url + "/_bench/clock", json={"reset": True}, timeout=5)


def test_a_custom_rule_from_the_form_is_listed_and_deleted(page, bench: Bench) -> None:
    page.select_option("#regle-service", "insi")
    page.fill("#regle-operation", "rechercherInsAvecTraitsIdentite")
    page.select_option("#regle-effet", "outcome")
    page.select_option("#regle-resultat", "insi.cr01")
    page.fill("#regle-premiers", "2")
    page.get_by_role("button", name="Ajouter la règle").click()
    page.locator("#etat").get_by_text("Ajout de la règle : fait.").wait_for()
    rules = httpx.get(bench.urls["insi"] + "/_bench/faults").json()["rules"]
    assert [(r["operation"], r["effect"], r["first"]) for r in rules] == [
        ("rechercherInsAvecTraitsIdentite", {"type": "outcome", "name": "insi.cr01"}, 2)]
    button = page.locator(f'#services-lignes button[data-rule-id="{rules[0]["id"]}"]')
    button.click()
    wait_until(lambda: httpx.get(bench.urls["insi"] + "/_bench/faults").json()["rules"] == [])
    button.wait_for(state="detached")


def test_apcv_qr_codes_and_mailboxes_are_shown(page, bench: Bench, decode_qr) -> None:
    import base64

    card = page.locator('#apcv-liste li[data-patient="clerico-come"]')
    card.get_by_role("button", name="Afficher un QR code").click()
    image = card.locator("img")
    image.wait_for()
    payload = card.locator("code.charge").inner_text()
    src = image.get_attribute("src")
    assert decode_qr(base64.b64decode(src.split(",", 1)[1])) == [payload]
    assert page.locator("#mss-lignes tr[data-address]").count() > 0
