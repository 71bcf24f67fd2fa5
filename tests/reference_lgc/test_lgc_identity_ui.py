"""Reference LGC in Chromium against the simulators: patients, INS rules, ApCV, INSi retrieval with the silent
COG retry, one-click qualification. Server-side facts come from the simulators' journals."""

from __future__ import annotations

import re
import time

import httpx
from lgc_harness import Bench, Lgc

RESULT_WAIT_MS = 15_000


def open_patient(page, lgc: Lgc, name: str) -> int:
    page.goto(f"{lgc.url}/patients?nom={name}")
    page.locator("#liste-patients a", has_text=name).first.click()
    page.wait_for_selector("#statut-identite")
    return int(re.search(r"/patients/(\d+)", page.url).group(1))


def wait_call(page, service: str, status: str = "reussi", operation: str | None = None, within: str = "") -> None:
    op = f"[data-operation={operation}]" if operation else ""
    page.wait_for_selector(f"{within} [data-service={service}]{op}[data-status={status}]", timeout=RESULT_WAIT_MS)


def status_of(page) -> str:
    return page.locator("#statut-identite").get_attribute("data-status")


def soap_bodies(bench: Bench, service: str, operation: str) -> list[str]:
    return [e["request"]["body"] for e in bench.journal(service, operation)]


def test_patient_search_by_name_birth_date_and_ins(page, lgc: Lgc) -> None:
    page.goto(lgc.url + "/patients?nom=bouch")
    rows = page.locator("#liste-patients tbody tr")
    assert rows.count() == 1 and "BOUCHER" in rows.first.inner_text()
    page.goto(lgc.url + "/patients?naissance=1990-10-05")
    assert "DMPCLOS" in page.locator("#liste-patients").inner_text()
    assert "BOUCHER" not in page.locator("#liste-patients").inner_text()
    page.goto(lgc.url + "/patients?nom=zzzz")
    assert "Aucun patient" in page.locator("#liste-patients").inner_text()


def test_creation_refuses_each_bad_input_with_its_reason(page, lgc: Lgc) -> None:
    page.goto(lgc.url + "/patients/nouveau")
    page.fill("input[name=birth_name]", "Dupont3")
    page.fill("input[name=first_names]", "Jean_Pierre")
    page.fill("input[name=birth_date]", "31/12/1980")
    page.fill("input[name=birthplace_cog]", "123")
    page.click("#formulaire-patient button[type=submit]")
    errors = {el.get_attribute("data-field"): el.inner_text() for el in page.locator(".error-text").all()}
    assert set(errors) == {"birth_name", "first_names", "sex", "birth_date", "birthplace_cog"}
    assert "« 3 »" in errors["birth_name"] and "« _ »" in errors["first_names"]
    assert "AAAA-MM-JJ" in errors["birth_date"] and "5 caractères" in errors["birthplace_cog"]
    # The birthplace is never prefilled: an empty one is refused, "INCONNU" must be chosen explicitly.
    page.fill("input[name=birth_name]", "Dupont")
    page.fill("input[name=first_names]", "Jean-Pierre")
    page.select_option("select[name=sex]", "M")
    page.fill("input[name=birth_date]", "2099-01-01")
    page.fill("input[name=birthplace_cog]", "")
    page.click("#formulaire-patient button[type=submit]")
    errors = {el.get_attribute("data-field"): el.inner_text() for el in page.locator(".error-text").all()}
    assert set(errors) == {"birth_date", "birthplace_cog"}
    assert "futur" in errors["birth_date"] and "INCONNU" in errors["birthplace_cog"]
    page.fill("input[name=birth_date]", "1980-12-31")
    page.fill("input[name=birthplace_cog]", "99999")
    page.check("input[name=douteuse]")
    page.check("input[name=fictive]")
    page.click("#formulaire-patient button[type=submit]")
    assert "à la fois douteuse et fictive" in page.locator(".error-text[data-field=attributes]").inner_text()
    page.uncheck("input[name=fictive]")
    page.click("#formulaire-patient button[type=submit]")
    page.wait_for_selector("#statut-identite")
    assert status_of(page) == "provisoire"
    assert "DUPONT" in page.locator("#nom-patient").inner_text()
    assert "INCONNU" in page.locator("#traits").inner_text()
    # Doubtful: no INSi call is made for it.
    assert page.locator("[data-service=insi]").count() == 0


def test_apcv_reading_qualifies_at_once_then_insi_verifies(page, lgc: Lgc, bench: Bench) -> None:
    presented = bench.present_apcv("143110095083713")
    pid = open_patient(page, lgc, "CLERICO")
    page.fill("#lecture-apcv textarea[name=payload]", presented["payload"])
    page.click("#lire-apcv")
    wait_call(page, "apcv")
    page.wait_for_selector("#statut-identite[data-status=qualifiee]", timeout=RESULT_WAIT_MS)
    assert "143110095083713" in page.locator("#ins").inner_text()
    assert "Appli carte Vitale" in page.locator("#traits").inner_text()
    wait_call(page, "insi", within="#identite")  # INSi verification with the ApCV's traits
    ops = [e["operation"] for e in bench.journal("apcv")]
    assert ops[-3:] == ["authentifierUtilisateurProximite", "restituerContexteApCV", "detruireContexteApCV"]
    traces = httpx.get(f"{lgc.url}/patients/{pid}/traces", cookies=_cookies(page)).text
    assert "Appli carte Vitale" in traces and "ins_recuperee" in traces


def test_apcv_from_an_uploaded_qr_image(page, lgc: Lgc, bench: Bench, tmp_path) -> None:
    png = httpx.get(f"{bench.urls['apcv']}/_bench/apcv/167100093480710/qr.png").content
    image = tmp_path / "apcv.png"
    image.write_bytes(png)
    open_patient(page, lgc, "BOUCHER")
    page.set_input_files("#lecture-apcv input[name=image]", str(image))
    page.click("#lire-apcv")
    wait_call(page, "apcv")
    page.wait_for_selector("#statut-identite[data-status=qualifiee]", timeout=RESULT_WAIT_MS)
    assert "167100093480710" in page.locator("#ins").inner_text()


def test_insi_02_is_retried_silently_with_the_cog(page, lgc: Lgc, bench: Bench) -> None:
    before = len(soap_bodies(bench, "insi", "rechercherInsAvecTraitsIdentite"))
    open_patient(page, lgc, "DE VINCI")
    wait_call(page, "insi", within="#identite")
    bodies = soap_bodies(bench, "insi", "rechercherInsAvecTraitsIdentite")[before:]
    assert len(bodies) == 2
    assert "LieuNaissance" not in bodies[0] and ">63220<" in bodies[1]
    assert "relance automatique avec le COG" in page.locator("#identite").inner_text()
    comparison = page.locator("#comparaison").inner_text()
    assert "114026322090185" in comparison  # the homonym born in Mazoires, not the one born in Italy
    assert status_of(page) == "recuperee"  # full match on the strict traits: retrieved without asking
    assert page.locator("#comparaison tr.diff").count() == 0 or "Matricule" in page.locator(
        "#comparaison tr.diff").first.inner_text()


def test_insi_01_shows_advice_and_keeps_the_identity_provisional(page, lgc: Lgc) -> None:
    open_patient(page, lgc, "HOUILLES")
    wait_call(page, "insi", within="#identite")
    assert "aucune identité trouvée (01)" in page.locator("#insi-message").inner_text()
    assert status_of(page) == "provisoire"


def test_one_click_qualification_after_retrieval(page, lgc: Lgc, bench: Bench) -> None:
    pid = open_patient(page, lgc, "OPPOSANT")
    wait_call(page, "insi", within="#identite")
    page.wait_for_selector("#statut-identite[data-status=recuperee]", timeout=RESULT_WAIT_MS)
    page.select_option("#qualifier select[name=moyen]", "cni")
    page.click("#bouton-qualifier")
    page.wait_for_selector("#statut-identite[data-status=qualifiee]")
    assert "Carte nationale d'identité" in page.locator("#traits").inner_text()
    traces = httpx.get(f"{lgc.url}/patients/{pid}/traces", cookies=_cookies(page)).text
    assert "insi_recherche" in traces and "validation" in traces


def test_insi_failure_shows_the_reason_and_a_retry_that_works(page, lgc: Lgc, bench: Bench) -> None:
    page.goto(lgc.url + "/patients/nouveau")
    for name, value in (("birth_name", "CORSE"), ("first_names", "ANTHONY"), ("birth_date", "1980-03-02"),
                        ("birthplace_cog", "2B020")):
        page.fill(f"input[name={name}]", value)
    page.select_option("select[name=sex]", "M")
    bench.fault("insi", operation="rechercherInsAvecTraitsIdentite",
                effect={"type": "http_status", "status": 503})
    page.click("#formulaire-patient button[type=submit]")
    page.wait_for_selector("#statut-identite")
    page.reload()  # opening the file starts INSi
    wait_call(page, "insi", status="echec", within="#identite")
    status = page.locator("#identite [data-service=insi]")
    assert "503" in status.inner_text()
    assert status.locator("a", has_text="Météo des services").count() == 1
    bench.clear()
    status.locator("button", has_text="Réessayer").click()
    wait_call(page, "insi", within="#identite")
    assert "1800302000000" in page.locator("#comparaison").inner_text() or status_of(page) == "recuperee"


def test_ui_stays_usable_while_a_slow_call_is_in_flight(page, lgc: Lgc, bench: Bench) -> None:
    bench.fault("insi", operation="*", effect={"type": "latency", "ms": 3000})
    page.goto(lgc.url + "/patients/nouveau")
    for name, value in (("birth_name", "ADRTROIS"), ("first_names", "DOMINIQUE"), ("birth_date", "1997-02-26"),
                        ("birthplace_cog", "2A020")):
        page.fill(f"input[name={name}]", value)
    page.select_option("select[name=sex]", "F")
    page.click("#formulaire-patient button[type=submit]")
    page.wait_for_selector("#statut-identite")
    page.reload()
    started = time.monotonic()
    page.wait_for_selector("#identite [data-service=insi][data-status=en_cours]")
    assert time.monotonic() - started < 2.0  # the page came back while INSi was still answering
    # Another action: open the patient list and search, while the call is in flight.
    t0 = time.monotonic()
    page.goto(lgc.url + "/patients?nom=BOUCHER")
    elapsed = time.monotonic() - t0
    assert "BOUCHER" in page.locator("#liste-patients").inner_text()
    assert elapsed < 1.0, f"the patient list took {elapsed:.2f} s while INSi was slow"
    page.go_back()
    wait_call(page, "insi", within="#identite")


def _cookies(page) -> dict[str, str]:
    return {c["name"]: c["value"] for c in page.context.cookies()}
