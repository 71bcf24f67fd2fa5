"""DMP feeding through the reference LGC's durable outbox, driven from the UI: DMP down → queued and visible as
pending → DMP back → sent once; cancel during the deferral; the LGC killed (SIGKILL) mid-send and restarted →
the document is in the DMP exactly once."""

from __future__ import annotations

import time

from lgc_harness import Bench, Lgc, wait_http
from test_lgc_dmp_access_ui import qualify_with_apcv
from test_lgc_prescription_ui import write_prescription

WAIT_MS = 25_000
BOUCHER = "167100093480710"


def dmp_copies(bench: Bench, ins: str, title: str = "Ordonnance") -> int:
    """Prescriptions the DMP holds for this patient (its own state, whatever the requests were)."""
    data = bench.control("dmp", "GET", f"/state?ins={ins}")
    docs = data.get("state", data)["documents"]
    return sum(title in (d.get("title") or "") for d in docs)


def outbox_state(page) -> str:
    return page.locator("#ordonnance [data-outbox]").get_attribute("data-state")


def test_dmp_down_queues_then_sends_once_when_it_returns(page, lgc: Lgc, bench: Bench) -> None:
    pid = qualify_with_apcv(page, lgc, bench, "BOUCHER", BOUCHER)
    bench.fault("dmp", operation="ITI-41", effect={"type": "http_status", "status": 503})
    write_prescription(page, lgc, pid, mss=False, delay="0")
    before = dmp_copies(bench, BOUCHER)
    page.click("#valider-ordonnance")
    page.wait_for_selector("#ordonnance [data-outbox][data-state=a_envoyer]", timeout=WAIT_MS)
    item = page.locator("#ordonnance [data-outbox]")
    page.wait_for_function("document.querySelector('#ordonnance [data-outbox] .motif') !== null", timeout=WAIT_MS)
    assert "503" in item.inner_text() or "indisponible" in item.inner_text().lower()
    page.goto(f"{lgc.url}/patients/{pid}")  # pending, visible in the record too
    assert page.locator("#documents-locaux [data-outbox]").count() >= 1
    page.go_back()
    bench.clear()  # the DMP is back: the outbox sends by itself
    page.wait_for_selector("#ordonnance [data-outbox][data-state=envoye]", timeout=WAIT_MS)
    assert dmp_copies(bench, BOUCHER) == before + 1


def test_cancel_during_the_deferral_sends_nothing(page, lgc: Lgc, bench: Bench) -> None:
    pid = qualify_with_apcv(page, lgc, bench, "BOUCHER", BOUCHER)
    write_prescription(page, lgc, pid, mss=False, delay="30")
    before = dmp_copies(bench, BOUCHER)
    page.click("#valider-ordonnance")
    page.wait_for_selector("#ordonnance [data-outbox][data-state=differe]", timeout=WAIT_MS)
    page.click("#ordonnance [data-outbox] button[data-action=suspendre]")
    page.wait_for_selector("#ordonnance [data-outbox][data-state=suspendu]")
    page.click("#ordonnance [data-outbox] button[data-action=annuler]")
    page.wait_for_selector("#ordonnance [data-outbox][data-state=annule]")
    time.sleep(1.5)
    assert dmp_copies(bench, BOUCHER) == before


def test_lgc_killed_mid_send_and_restarted_sends_exactly_once(page, lgc: Lgc, bench: Bench) -> None:
    pid = qualify_with_apcv(page, lgc, bench, "BOUCHER", BOUCHER)
    write_prescription(page, lgc, pid, mss=False, delay="0")
    before = dmp_copies(bench, BOUCHER)
    # The DMP answers 3 s late: the LGC is killed while the send is on the wire.
    bench.fault("dmp", operation="ITI-41", effect={"type": "latency", "ms": 3000})
    page.click("#valider-ordonnance")
    page.wait_for_selector("#ordonnance [data-outbox][data-state=envoi]", timeout=WAIT_MS)
    lgc.proc.kill()  # SIGKILL: no clean-up at all
    lgc.proc.wait()
    time.sleep(3.5)  # the DMP finishes storing what it received
    bench.clear()
    lgc.restart()
    wait_http(lgc.url + "/sante", lgc.proc, "reference LGC")
    page.reload()
    page.wait_for_selector("#ordonnance [data-outbox][data-state=envoye]", timeout=WAIT_MS)
    assert dmp_copies(bench, BOUCHER) == before + 1
