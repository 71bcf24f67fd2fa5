"""Prescription → Ordonnance numérique (QR code) → DMP (durable outbox) → MSSanté to the patient, in Chromium
against the simulators; each service's journal says what was sent."""

from __future__ import annotations

import base64
import email
import io
import re
import zipfile

import httpx
from lgc_harness import Bench, Lgc
from lxml import etree
from test_lgc_dmp_access_ui import qualify_with_apcv
from test_lgc_identity_ui import wait_call

WAIT_MS = 20_000
CLERICO = "143110095083713"
NS = {"h": "urn:hl7-org:v3", "rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"}
# the PDF copy of a structured (N3) CDA: section FR-Document-PDF-copie, its attached document's observationMedia
PDF_COPY = ("string(h:component/h:structuredBody/h:component/h:section[h:templateId/@root='1.2.250.1.213.1.1.2.243']"
            "//h:observationMedia/h:value)")


def write_prescription(page, lgc: Lgc, pid: int, *, mss: bool = True, delay: str = "2") -> int:
    page.goto(f"{lgc.url}/patients/{pid}/ordonnances/nouvelle")
    page.fill("input[name=produit_0]", "PARACETAMOL 500 mg, comprimé")
    page.fill("input[name=posologie_0]", "1 comprimé 3 fois par jour si douleur")
    page.fill("input[name=duree_0]", "5")
    page.fill("input[name=produit_1]", "AMOXICILLINE 1 g, comprimé dispersible")
    page.fill("input[name=posologie_1]", "1 comprimé matin et soir")
    page.fill("input[name=duree_1]", "6")
    page.fill("input[name=delai]", delay)
    if not mss:
        page.uncheck("input[name=mss]")
    page.click("#enregistrer-ordonnance")
    page.wait_for_selector("#valider-ordonnance")
    return int(re.search(r"/ordonnances/(\d+)", page.url).group(1))


def dmp_submissions(bench: Bench, ins: str) -> list[str]:
    return [e["request"]["body"] for e in bench.journal("dmp", "ITI-41")
            if ins in (e["request"]["body"] or "") and (e.get("status") or 0) < 400]


def test_prescription_goes_to_on_dmp_and_mss_with_the_qr_code(page, lgc: Lgc, bench: Bench, decode_qr) -> None:
    pid = qualify_with_apcv(page, lgc, bench, "CLERICO", CLERICO)
    rx = write_prescription(page, lgc, pid)
    on_before = len(bench.journal("on"))
    page.click("#valider-ordonnance")
    wait_call(page, "on", within="#ordonnance")
    on_calls = bench.journal("on")[on_before:]
    assert [e["operation"] for e in on_calls] == ["creerEPrescription"]
    on_body = on_calls[0]["request"]["body"]
    assert f"NumIdentifiant>{CLERICO[:13]}<" in on_body and "PARACETAMOL" in on_body
    page.wait_for_selector("#numero-on", timeout=WAIT_MS)
    number = page.locator("#numero-on strong").inner_text()
    assert number and number in on_calls[0]["response"]["body"]

    # The PDF carries the QR code with the ON payload; the CDA sent embeds that PDF.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    doc_href = page.locator("#ouvrir-ordonnance").get_attribute("href")
    doc_id = int(doc_href.rsplit("/", 1)[1])
    pdf = httpx.get(f"{lgc.url}/documents/{doc_id}/pdf", cookies=cookies).content
    assert pdf.startswith(b"%PDF") and b"pdfaid" in pdf  # PDF/A identification
    assert b"/Subtype /Image" in pdf or b"/Subtype/Image" in pdf  # the QR code

    # DMP: deferred, then sent once through the outbox, with the prescription's metadata.
    page.wait_for_selector("#ordonnance [data-outbox][data-state=envoye]", timeout=WAIT_MS)
    sent = dmp_submissions(bench, CLERICO)
    assert len(sent) == 1
    body = sent[0]
    # "Prescription médicaments structurée" profile (SC.ORDN/CONF.06): the CDA R2 N3, formatCode of IHE PRE
    assert "57833-6" in body and "urn:ihe:pharm:pre:2010" in body and "urn:ihe:iti:xds-sd:pdf:2008" not in body
    assert f"{CLERICO}^^^&amp;1.2.250.1.213.1.4.10&amp;ISO^NH" in body or f"{CLERICO}^^^&1.2.250.1.213.1.4.10" in body
    cda_b64 = re.search(r"<(?:\w+:)?Document[^>]*>([A-Za-z0-9+/=\s]+)</", body)
    assert cda_b64, "the ITI-41 request carries the CDA inline"
    cda = etree.fromstring(base64.b64decode(cda_b64.group(1)))
    assert cda.xpath("string(h:recordTarget/h:patientRole/h:id/@extension)", namespaces=NS) == CLERICO
    assert cda.xpath("string(h:code/@code)", namespaces=NS) == "57833-6"
    # one substanceAdministration per line, and the printed PDF in the FR-Document-PDF-copie section
    assert len(cda.xpath("//h:substanceAdministration", namespaces=NS)) >= 1
    embedded = base64.b64decode(cda.xpath(PDF_COPY, namespaces=NS))
    assert embedded == pdf

    # MSSanté: to <INS>@patient.mssante.fr with IHE_XDM.zip holding the same CDA.
    wait_call(page, "mss", within="#ordonnance")
    address = f"{CLERICO}@patient.mssante.fr"
    msgs = bench.control("mss", "GET", f"/mss/mailboxes/{address}")["messages"]
    assert msgs, "the patient's mailbox received the prescription"
    raw = httpx.get(f"{bench.urls['mss']}/_bench/mss/mailboxes/{address}/messages/{msgs[-1]['uid']}").content
    assert b"XDM/1.0/DDM" in raw and b"X-MSS-" in raw.upper()
    message = email.message_from_bytes(raw)
    zips = [part.get_payload(decode=True) for part in message.walk() if part.get_filename() == "IHE_XDM.zip"]
    assert zips
    with zipfile.ZipFile(io.BytesIO(zips[0])) as z:
        names = z.namelist()
        assert "IHE_XDM/SUBSET01/METADATA.XML" in names
        xml_docs = [n for n in names if n.startswith("IHE_XDM/SUBSET01/") and n.endswith(".XML")
                    and not n.endswith("METADATA.XML")]
        assert any(etree.fromstring(z.read(n)).xpath("string(h:recordTarget/h:patientRole/h:id/@extension)",
                                                     namespaces=NS) == CLERICO for n in xml_docs)
    assert any(part.get_content_type() == "application/pdf" for part in message.walk())

    # The local record shows the prescription "envoyé au DMP".
    page.goto(f"{lgc.url}/patients/{pid}")
    row = page.locator(f"#documents-locaux tr[data-document='{doc_id}']")
    assert row.locator("[data-marker=envoye-dmp]").count() == 1
    assert rx > 0


def test_on_ko_then_no_answer_still_reach_the_dmp_without_qr_code(page, lgc: Lgc, bench: Bench) -> None:
    pid = qualify_with_apcv(page, lgc, bench, "BOUCHER", "167100093480710")
    for outcome in ("on.ko", "on.sans-reponse"):
        bench.clear()
        bench.fault("on", operation="*", effect={"type": "outcome", "name": outcome})
        write_prescription(page, lgc, pid, mss=False, delay="0")
        before = len(dmp_submissions(bench, "167100093480710"))
        page.click("#valider-ordonnance")
        wait_call(page, "on", status="echec", within="#ordonnance")
        assert "sans QR code" in page.locator("#sans-qr").inner_text()
        page.wait_for_selector("#ordonnance [data-outbox][data-state=envoye]", timeout=WAIT_MS)
        sent = dmp_submissions(bench, "167100093480710")
        assert len(sent) == before + 1
        cda_b64 = re.search(r"<(?:\w+:)?Document[^>]*>([A-Za-z0-9+/=\s]+)</", sent[-1])
        cda = etree.fromstring(base64.b64decode(cda_b64.group(1)))
        pdf = base64.b64decode(cda.xpath(PDF_COPY, namespaces=NS))
        assert pdf.startswith(b"%PDF")
        assert b"/Subtype /Image" not in pdf and b"/Subtype/Image" not in pdf  # no QR code image in the PDF


def test_a_sent_prescription_is_replaced_by_a_new_version_with_rplc(page, lgc: Lgc, bench: Bench) -> None:
    pid = qualify_with_apcv(page, lgc, bench, "CLERICO", CLERICO)
    write_prescription(page, lgc, pid, mss=False, delay="0")
    page.click("#valider-ordonnance")
    page.wait_for_selector("#ordonnance [data-outbox][data-state=envoye]", timeout=WAIT_MS)
    first = dmp_submissions(bench, CLERICO)[-1]
    page.click("#remplacer-ordonnance")
    page.wait_for_selector("#remplace")
    page.click("#valider-ordonnance")
    page.wait_for_selector("#ordonnance [data-outbox][data-state=envoye]", timeout=WAIT_MS)
    assert "version 2" in page.locator("#ordonnance").inner_text()
    second = dmp_submissions(bench, CLERICO)[-1]
    assert "RPLC" in second and "RPLC" not in first
    cda = etree.fromstring(base64.b64decode(re.search(r"<(?:\w+:)?Document[^>]*>([A-Za-z0-9+/=\s]+)</",
                                                      second).group(1)))
    first_cda = etree.fromstring(base64.b64decode(re.search(r"<(?:\w+:)?Document[^>]*>([A-Za-z0-9+/=\s]+)</",
                                                            first).group(1)))
    assert cda.xpath("string(h:versionNumber/@value)", namespaces=NS) == "2"
    assert cda.xpath("string(h:setId/@root)", namespaces=NS) == first_cda.xpath("string(h:setId/@root)",
                                                                                namespaces=NS)
    assert cda.xpath("string(h:relatedDocument/@typeCode)", namespaces=NS) == "RPLC"
    state = bench.control("dmp", "GET", f"/state?ins={CLERICO}")
    docs = [d for d in state.get("state", state)["documents"] if "Ordonnance" in (d.get("title") or "")]
    statuses = sorted(d["status"].rsplit(":", 1)[-1] for d in docs)
    assert statuses.count("Deprecated") >= 1 and statuses.count("Approved") >= 1
