"""Ordonnance de produits de santé: PDF/A, CDA N1/N3, our XSD + business validation, DMP metadata and a real
ITI-41 feed to the DMP simulator (in-process)."""

from __future__ import annotations

import base64
import io
import re
import shutil
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest
from lxml import etree
from sims_dmp import CLERICO, KIT, TEST_OID, Sim, running_dmp

from reference_lgc.documents import (
    Author,
    DocumentInvalid,
    Patient,
    Prescription,
    PrescriptionLine,
    ProductCode,
    Structure,
    build_n1,
    build_n3,
    dmp_metadata,
    render_pdf,
    validate,
)
from reference_lgc.documents.model import ins_key_ok, uuid_oid
from reference_lgc.documents.pdf import NO_QR_TEXT, qr_png, render_html
from reference_lgc.services import dmp
from reference_lgc.services.xdm import read_cda_header

NS = {"h": "urn:hl7-org:v3"}
PARIS = timezone(timedelta(hours=1))
STRUCTURE = Structure(id=KIT.structure_id, name=KIT.structure_name, street="1 RUE NOIR", postal_code="75009",
                      city="PARIS", phone="01 23 45 67 89")
AUTHOR = Author(rpps=KIT.rpps, family_name=KIT.family_name, given_name=KIT.given_name, structure=STRUCTURE)
PATIENT = Patient(birth_family="CLERICO", birth_given_names=("COME",), sex="M", birth_date=date(1943, 11, 7),
                  ins=CLERICO, ins_oid=TEST_OID, used_family="CLÉRICO", used_given="Côme", birthplace_cog="63220")
LINES = (
    PrescriptionLine("PARACETAMOL 500 mg, comprimé", "1 comprimé 3 fois par jour si douleur", 5, "d", 2,
                     product=ProductCode("3400933516390", "CIP13")),
    PrescriptionLine("AMOXICILLINE 1 g, comprimé", "1 comprimé matin et soir", 6, "d", 1, renewals=1,
                     non_substitutable=True),
)
QR = "ON:1.0:ORD-2026-000123:899700366240"
ON_NUMBER = "ORD-2026-000123"


def prescription(**changes: object) -> Prescription:
    base = Prescription(id=uuid.UUID("6f1c1f55-0000-4000-8000-000000000001"),
                        created=datetime(2026, 11, 25, 9, 30, tzinfo=PARIS), patient=PATIENT, author=AUTHOR,
                        lines=LINES, notes="Revoir si la fièvre dure plus de 3 jours.", on_number=ON_NUMBER,
                        on_payload=QR)
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rx() -> Prescription:
    return prescription()


@pytest.fixture(scope="module")
def pdf(rx: Prescription) -> bytes:
    return render_pdf(rx, qr_payload=QR, on_number=ON_NUMBER)


@pytest.fixture(scope="module")
def pdf_no_qr(rx: Prescription) -> bytes:
    return render_pdf(rx, qr_payload=None, on_number=None)


@pytest.fixture(scope="module")
def n1(rx: Prescription, pdf: bytes) -> bytes:
    return build_n1(rx, pdf)


@pytest.fixture(scope="module")
def n3(rx: Prescription) -> bytes:
    return build_n3(rx)


def xp(doc: bytes, path: str) -> list:
    return etree.fromstring(doc).xpath(path, namespaces=NS)


def one(doc: bytes, path: str) -> str:
    found = xp(doc, path)
    assert len(found) == 1, f"{path}: {found!r}"
    return str(found[0])


# --- model ----------------------------------------------------------------------------------------------


def test_ins_key() -> None:
    assert ins_key_ok(CLERICO) and ins_key_ok("167100093480710") and ins_key_ok("279035121518989")
    assert not ins_key_ok(CLERICO[:-2] + "14") and not ins_key_ok("1431100950837") and not ins_key_ok("x" * 15)


# --- PDF ------------------------------------------------------------------------------------------------


def _image_xobjects(pdf: bytes) -> list[tuple[dict[str, int], bytes]]:
    """Image XObjects of an uncompressed-xref PDF (PDF/A-1b from WeasyPrint): (dict numbers, stream bytes)."""
    out = []
    for m in re.finditer(rb"<<(/Type /XObject/Subtype /Image.*?)>>\s*stream\r?\n", pdf, re.S):
        head = m.group(1)
        nums = {k.decode(): int(v) for k, v in re.findall(rb"/(Width|Height|BitsPerComponent|Colors|Length) (\d+)",
                                                          head)}
        out.append((nums, pdf[m.end():m.end() + nums["Length"]]))
    return out


def _png_from_predictor_stream(nums: dict[str, int], data: bytes) -> bytes:
    """A Flate + PNG-predictor image stream is a PNG IDAT: wrap it back into a PNG file."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    color = {1: 0, 3: 2}[nums.get("Colors", 1)]
    ihdr = struct.pack(">IIBBBBB", nums["Width"], nums["Height"], nums["BitsPerComponent"], color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _decode_qr(png: bytes) -> list[str]:
    zxingcpp = pytest.importorskip("zxingcpp")
    image = pytest.importorskip("PIL.Image")
    return [r.text for r in zxingcpp.read_barcodes(image.open(io.BytesIO(png)).convert("L"))]


def test_pdf_is_pdfa_1b_with_embedded_fonts(pdf: bytes) -> None:
    assert pdf.startswith(b"%PDF-1.4")
    assert b'pdfaid:part="1"' in pdf and b'pdfaid:conformance="B"' in pdf
    assert b"/OutputIntent" in pdf or b"/OutputIntents" in pdf
    fonts = set(re.findall(rb"/BaseFont /[A-Z]{6}\+([\w-]+)", pdf))
    assert fonts and all(f.startswith(b"DejaVu") for f in fonts), fonts
    assert pdf.count(b"/FontFile2") == len(fonts)  # every font embedded
    assert pdf.rstrip().endswith(b"%%EOF")


def test_pdf_qr_code_is_drawn_and_decodes(pdf: bytes, pdf_no_qr: bytes) -> None:
    images = _image_xobjects(pdf)
    assert len(images) == 1, "exactly one image: the ON QR code"
    assert _decode_qr(qr_png(QR)) == [QR]  # the generator itself
    nums, data = images[0]
    assert _decode_qr(_png_from_predictor_stream(nums, data)) == [QR]  # the very pixels embedded in the PDF
    assert _image_xobjects(pdf_no_qr) == []


def test_pdf_layout_texts(rx: Prescription) -> None:
    html = render_html(rx, qr_payload=QR, on_number=ON_NUMBER)
    for text in ("RPPS : 99700366240", "CABINET M DOC0036624", "75009 PARIS", "CLERICO", "Né le 07/11/1943",
                 f"INS : {CLERICO}", "Le 25/11/2026", "PARACETAMOL 500 mg", "[NON SUBSTITUABLE]",
                 "À renouveler 1 fois", "Signature du prescripteur", f'<div class="on">{ON_NUMBER}</div>'):
        assert text in html, text
    assert NO_QR_TEXT not in html
    bare = render_html(rx, qr_payload=None, on_number=None)
    assert NO_QR_TEXT in bare and "<img" not in bare
    assert NO_QR_TEXT == "Ordonnance numérique non enregistrée : pas de QR code"


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm absent: page rendering not checked")
def test_pdf_page_renders_with_qr(pdf: bytes, tmp_path) -> None:  # pragma: no cover - depends on poppler
    import subprocess

    (tmp_path / "o.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "200", "-png", "-singlefile", str(tmp_path / "o.pdf"), str(tmp_path / "p")],
                   check=True)
    assert QR in _decode_qr((tmp_path / "p.png").read_bytes())


# --- CDA: schema + XPath hand checks ---------------------------------------------------------------------


def test_n1_and_n3_validate(n1: bytes, n3: bytes) -> None:
    validate(n1)
    validate(n3)


@pytest.mark.parametrize("level", ["N1", "N3"])
def test_header_fields_by_xpath(level: str, n1: bytes, n3: bytes, rx: Prescription) -> None:
    doc = n1 if level == "N1" else n3
    assert one(doc, "/h:ClinicalDocument/h:realmCode/@code") == "FR"
    assert one(doc, "h:typeId/@extension") == "POCD_HD000040" and one(doc, "h:typeId/@root") == "2.16.840.1.113883.1.3"
    templates = xp(doc, "h:templateId/@root")
    assert {"2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1"} <= set(templates)
    assert ("1.3.6.1.4.1.19376.1.2.20" in templates) == (level == "N1")
    assert ("1.2.250.1.213.1.1.1.39" in templates) == (level == "N3")
    assert one(doc, "h:id/@root") == "2.25." + str(int("6f1c1f55000040008000000000000001", 16))  # UUID, 2.25 arc
    assert one(doc, "h:code/@code") == "57833-6" and one(doc, "h:code/@codeSystem") == "2.16.840.1.113883.6.1"
    assert one(doc, "h:code/@displayName") == "Prescription de produits de santé"
    assert one(doc, "h:effectiveTime/@value") == "20261125093000+0100"
    assert one(doc, "h:confidentialityCode/@code") == "N"
    assert one(doc, "h:confidentialityCode/@codeSystem") == "2.16.840.1.113883.5.25"
    assert one(doc, "h:languageCode/@code") == "fr-FR"
    assert one(doc, "h:setId/@root") == one(doc, "h:id/@root")  # first version: setId = id
    assert one(doc, "h:versionNumber/@value") == "1"
    assert xp(doc, "h:relatedDocument") == []
    # INS: root = INS OID, extension = matricule
    assert one(doc, "h:recordTarget/h:patientRole/h:id/@root") == "1.2.250.1.213.1.4.10"
    assert one(doc, "h:recordTarget/h:patientRole/h:id/@extension") == "143110095083713"
    pat = "h:recordTarget/h:patientRole/h:patient/"
    assert one(doc, pat + "h:name/h:family[@qualifier='BR']/text()") == "CLERICO"
    assert one(doc, pat + "h:name/h:given[@qualifier='BR']/text()") == "COME"
    assert one(doc, pat + "h:name/h:given[@qualifier='CL']/text()") == "Côme"
    assert one(doc, pat + "h:administrativeGenderCode/@code") == "M"
    assert one(doc, pat + "h:birthTime/@value") == "19431107"
    assert one(doc, pat + "h:birthplace/h:place/h:addr/h:county/text()") == "63220"
    # author: 8 + RPPS under the PS national id OID
    aa = "h:author/h:assignedAuthor/"
    assert one(doc, aa + "h:id/@root") == "1.2.250.1.71.4.2.1"
    assert one(doc, aa + "h:id/@extension") == "899700366240" == "8" + KIT.rpps
    assert one(doc, aa + "h:code/@code") == "G15_10/SM26"
    assert one(doc, aa + "h:assignedPerson/h:name/h:family/text()") == "DOC0036624"
    assert one(doc, aa + "h:representedOrganization/h:id/@extension") == "499700366240007"
    assert one(doc, "h:custodian/h:assignedCustodian/h:representedCustodianOrganization/h:id/@extension") \
        == "499700366240007"
    assert one(doc, "h:legalAuthenticator/h:assignedEntity/h:id/@extension") == "899700366240"
    assert one(doc, "h:documentationOf/h:serviceEvent/h:performer/h:assignedEntity/h:representedOrganization/"
                    "h:standardIndustryClassCode/@code") == "AMBULATOIRE"
    assert one(doc, "h:documentationOf/h:serviceEvent/h:effectiveTime/h:high/@value") == "20270223093000+0100"
    hcf = "h:componentOf/h:encompassingEncounter/h:location/h:healthCareFacility/h:code/"
    assert (one(doc, hcf + "@code"), one(doc, hcf + "@codeSystem")) == ("SA07", "1.2.250.1.71.4.2.4")


def test_n1_body_is_the_pdf(n1: bytes, pdf: bytes) -> None:
    text = xp(n1, "h:component/h:nonXMLBody/h:text")[0]
    assert (text.get("mediaType"), text.get("representation")) == ("application/pdf", "B64")
    assert base64.b64decode(text.text, validate=True) == pdf
    assert xp(n1, "h:component/h:structuredBody") == []


def test_n3_body_entries(n3: bytes) -> None:
    sec = "h:component/h:structuredBody/h:component/h:section/"
    assert one(n3, sec + "h:code/@code") == "57828-6"
    sas = xp(n3, sec + "h:entry/h:substanceAdministration")
    assert len(sas) == len(LINES)
    first, second = sas
    assert first.get("moodCode") == "INT"
    mat = "h:consumable/h:manufacturedProduct/h:manufacturedMaterial/"
    assert first.xpath(f"string({mat}h:code/@code)", namespaces=NS) == "3400933516390"
    assert first.xpath(f"string({mat}h:code/@codeSystem)", namespaces=NS) == "1.2.250.1.213.2.3.2"
    assert first.xpath(f"string({mat}h:name)", namespaces=NS) == "PARACETAMOL 500 mg, comprimé"
    assert second.xpath(f"string({mat}h:code/@nullFlavor)", namespaces=NS) == "UNK"
    assert "1 comprimé matin et soir, pendant 6 jours" in second.xpath("string(h:text)", namespaces=NS)
    assert second.xpath("string(h:effectiveTime/h:width/@value)", namespaces=NS) == "6"
    assert second.xpath("string(h:effectiveTime/@xsi:type)",
                        namespaces={**NS, "xsi": "http://www.w3.org/2001/XMLSchema-instance"}) == "IVL_TS"
    assert second.xpath("string(h:entryRelationship/h:supply/h:repeatNumber/@value)", namespaces=NS) == "1"
    assert second.xpath("string(h:entryRelationship/h:act/h:code/@displayName)", namespaces=NS) == "Non substituable"
    assert first.xpath("h:entryRelationship/h:act", namespaces=NS) == []
    rows = xp(n3, sec + "h:text/h:table/h:tbody/h:tr")
    assert [r.get("ID") for r in rows] == ["ligne-1", "ligne-2"]
    assert rows[1].xpath("string(h:td[6])", namespaces=NS) == "Non substituable"
    assert xp(n3, sec + "h:text/h:paragraph/text()") == ["Revoir si la fièvre dure plus de 3 jours."]


def test_version_2_replaces_with_rplc() -> None:
    v1 = prescription()
    v2 = prescription(id=uuid.uuid4(), set_id=v1.id, version=2, parent_id=v1.id)
    doc = build_n3(v2)
    validate(doc)
    assert one(doc, "h:versionNumber/@value") == "2"
    assert one(doc, "h:setId/@root") == uuid_oid(v1.id) != one(doc, "h:id/@root")
    assert one(doc, "h:relatedDocument/@typeCode") == "RPLC"
    assert one(doc, "h:relatedDocument/h:parentDocument/h:id/@root") == uuid_oid(v1.id)
    with pytest.raises(ValueError, match="parent_id"):
        build_n3(prescription(version=2))


@pytest.mark.parametrize("level", ["N1", "N3"])
def test_mssante_reader_reads_our_header(level: str, n1: bytes, n3: bytes) -> None:
    h = read_cda_header(n1 if level == "N1" else n3)
    assert h.unique_id == uuid_oid(prescription().id)
    assert (h.type_code, h.type_system) == ("57833-6", "2.16.840.1.113883.6.1")
    assert (h.ins, h.ins_oid) == (CLERICO, TEST_OID)
    assert (h.family, h.given, h.birth_date, h.gender) == ("CLERICO", "COME", date(1943, 11, 7), "M")
    assert h.qualified_ins and h.patient_id == f"{CLERICO}^^^&{TEST_OID}&ISO^NH"
    assert (h.author_id, h.author_family, h.author_given) == ("899700366240", "DOC0036624", "KIT")
    assert (h.facility_code, h.practice_code, h.confidentiality, h.language) == ("SA07", "AMBULATOIRE", "N", "fr-FR")
    assert h.unstructured == (level == "N1")
    assert h.subject() == "XDM/1.0/DDM+Ordonnance de produits de santé CLERICO COME 07/11/1943"


# --- CDA: broken documents are refused ---------------------------------------------------------------------


def mutate(doc: bytes, change: Callable[[etree._Element], None]) -> bytes:
    root = etree.fromstring(doc)
    change(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _first(root: etree._Element, path: str) -> etree._Element:
    return root.xpath(path, namespaces=NS)[0]


def _remove(path: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        el = _first(root, path)
        el.getparent().remove(el)
    return change


def _set(path: str, attr: str, value: str) -> Callable[[etree._Element], None]:
    return lambda root: _first(root, path).set(attr, value)


def _set_text(path: str, value: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        _first(root, path).text = value
    return change


BROKEN = {
    "setId absent": (_remove("h:setId"), ["setId"]),
    "OID INS inconnu": (_set("h:recordTarget/h:patientRole/h:id", "root", "1.2.250.1.213.1.4.99"),
                        ["1.2.250.1.213.1.4.99", "root"]),
    "clé INS fausse": (_set("h:recordTarget/h:patientRole/h:id", "extension", CLERICO[:-2] + "14"),
                       ["143110095083714", "clé"]),
    "matricule INS mal formé": (_set("h:recordTarget/h:patientRole/h:id", "extension", "14311009508371X"),
                                ["14311009508371X"]),
    "id auteur absent": (_remove("h:author/h:assignedAuthor/h:id"), ["assignedAuthor", "id"]),
    "id auteur sans le 8": (_set("h:author/h:assignedAuthor/h:id", "extension", KIT.rpps), [KIT.rpps]),
    "base64 corrompu": (_set_text("h:component/h:nonXMLBody/h:text", "%%% pas du base64 !!!"), ["base64"]),
    "base64 qui n'est pas un PDF": (_set_text("h:component/h:nonXMLBody/h:text",
                                              base64.b64encode(b"<html>bonjour</html>").decode()), ["PDF"]),
    "confidentialité inconnue": (_set("h:confidentialityCode", "code", "X"), ["confidentialityCode", "'X'"]),
    "version 2 sans RPLC": (_set("h:versionNumber", "value", "2"), ["RPLC", "versionNumber 2"]),
    "version 0": (_set("h:versionNumber", "value", "0"), ["versionNumber", "0"]),
    "RPLC en version 1": (lambda root: _first(root, "h:componentOf").addprevious(etree.fromstring(
        '<relatedDocument xmlns="urn:hl7-org:v3" typeCode="RPLC"><parentDocument><id root="1.2.3"/>'
        "</parentDocument></relatedDocument>")), ["relatedDocument", "versionNumber vaut 1"]),
    "typeCode autre": (_set("h:code", "code", "11488-4"), ["57833-6"]),
    "mediaType autre": (_set("h:component/h:nonXMLBody/h:text", "mediaType", "text/plain"), ["mediaType"]),
    "templateId XDS-SD absent": (_remove("h:templateId[@root='1.3.6.1.4.1.19376.1.2.20']"),
                                 ["1.3.6.1.4.1.19376.1.2.20"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_n1_is_refused_with_the_problem_named(case: str, n1: bytes) -> None:
    change, expected = BROKEN[case]
    broken = mutate(n1, change)
    assert broken != n1
    with pytest.raises(DocumentInvalid) as exc:
        validate(broken)
    message = str(exc.value)
    assert message.startswith("Document CDA invalide")
    for word in expected:
        assert word in message, f"{case}: {word!r} not in {message}"
    assert exc.value.errors


def test_xsd_errors_carry_their_line(n1: bytes) -> None:
    with pytest.raises(DocumentInvalid) as exc:
        validate(mutate(n1, _set("h:confidentialityCode", "code", "X")))
    line = n1.decode().splitlines().index(
        next(x for x in n1.decode().splitlines() if "confidentialityCode" in x)) + 1
    assert exc.value.errors[0].startswith(f"ligne {line} (ClinicalDocument/confidentialityCode) : schéma cda_lgc.xsd")
    assert "'X'" in exc.value.errors[0]


def test_broken_n3_entries_are_refused(n3: bytes) -> None:
    mat = ("h:component/h:structuredBody/h:component/h:section/h:entry/h:substanceAdministration/h:consumable/"
           "h:manufacturedProduct/h:manufacturedMaterial/h:code")
    with pytest.raises(DocumentInvalid, match="codeSystem"):
        validate(mutate(n3, _set(mat, "codeSystem", "1.2.3.4")))
    with pytest.raises(DocumentInvalid, match="#poso-1"):
        validate(mutate(n3, lambda r: [td.attrib.pop("ID") for td in r.xpath("//h:td[@ID='poso-1']", namespaces=NS)]))
    with pytest.raises(DocumentInvalid, match="templateId manquant"):
        validate(mutate(n3, _remove("h:templateId[@root='1.2.250.1.213.1.1.1.39']")))


def test_hostile_xml_is_refused(n1: bytes) -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            b'<ClinicalDocument xmlns="urn:hl7-org:v3">&b;</ClinicalDocument>')
    with pytest.raises(DocumentInvalid, match="DOCTYPE"):
        validate(bomb)
    with pytest.raises(DocumentInvalid, match="mal formé"):
        validate(n1[:-40])
    with pytest.raises(DocumentInvalid, match="volumineux"):
        validate(b"<a>" + b" " * (21 * 1024 * 1024) + b"</a>")


# --- DMP metadata + feed to the DMP simulator ---------------------------------------------------------------


def test_dmp_metadata_values(rx: Prescription, n1: bytes, n3: bytes) -> None:
    m1, m3 = dmp_metadata(rx, "N1", n1), dmp_metadata(rx, "N3", n3)
    assert (m1.class_code.code, m1.class_code.scheme) == ("42", "1.2.250.1.213.1.1.4.1")
    assert (m1.type_code.code, m1.type_code.scheme) == ("57833-6", "2.16.840.1.113883.6.1")
    assert (m1.format_code.code, m1.format_code.scheme) == ("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3")
    assert m3.format_code.code != m1.format_code.code
    assert m1.unique_id == one(n1, "h:id/@root") == read_cda_header(n1).unique_id
    assert m1.mime_type == "text/xml" and m1.confidentiality == "N" and m1.language == "fr-FR"
    assert m1.creation_time == rx.created and m1.title == "Ordonnance de produits de santé"
    assert m1.healthcare_facility_type is not None and m1.healthcare_facility_type.code == "SA07"
    assert (m1.practice_setting.code, m1.practice_setting.scheme) == ("AMBULATOIRE", "1.2.250.1.213.1.1.4.9")
    with pytest.raises(ValueError, match="N3"):
        dmp_metadata(rx, "N3", n1)


@pytest.fixture(scope="module")
def dmp_sim() -> Iterator[Sim]:
    with running_dmp() as sim:
        sim.reset()
        yield sim


def test_n1_then_n3_v2_are_accepted_by_the_dmp(dmp_sim: Sim) -> None:
    v1 = prescription(id=uuid.uuid4())
    pdf = render_pdf(v1, qr_payload=None, on_number=None)  # ON failed: sent to the DMP without the QR code
    n1 = build_n1(v1, pdf)
    validate(n1)
    ctx = dmp_sim.ctx()
    sub = dmp.provide_document(ctx, CLERICO, TEST_OID, n1, dmp_metadata(v1, "N1", n1))
    assert sub.unique_id == uuid_oid(v1.id)
    docs = {d["unique_id"]: d for d in dmp_sim.state(CLERICO)["documents"]}
    stored = docs[uuid_oid(v1.id)]
    assert stored["type_code"].startswith("57833-6") and stored["class_code"].startswith("42")
    assert stored["set_id"] == uuid_oid(v1.id) and stored["version_number"] == 1

    v2 = prescription(id=uuid.uuid4(), set_id=v1.id, version=2, parent_id=v1.id,
                      lines=(*LINES, PrescriptionLine("IBUPROFENE 200 mg", "1 comprimé si besoin", 3)))
    n3 = build_n3(v2)
    validate(n3)
    dmp.provide_document(ctx, CLERICO, TEST_OID, n3, dmp_metadata(v2, "N3", n3), replaces=sub.entry_uuid)
    docs = {d["unique_id"]: d for d in dmp_sim.state(CLERICO)["documents"]}
    assert docs[uuid_oid(v2.id)]["version_number"] == 2 and docs[uuid_oid(v2.id)]["set_id"] == uuid_oid(v1.id)
    assert docs[uuid_oid(v1.id)]["status"].endswith("Deprecated")


# --- a note of the record sent as a historical document (SC.DMP/HISTO.05) ------------------------------------


def test_a_note_of_an_earlier_episode_keeps_its_act_date_type_and_author() -> None:
    from reference_lgc.documents import ClinicalNote, build_note_n1, render_note_pdf

    act = datetime(2026, 10, 2, tzinfo=PARIS)
    note = ClinicalNote(id=uuid.uuid4(), created=act, patient=PATIENT, author=AUTHOR,
                        title="Note de consultation — bilan annuel", text="Bilan annuel sans particularité.\nRAS.")
    pdf_bytes = render_note_pdf(note)
    assert pdf_bytes.startswith(b"%PDF-1.4") and b"pdfaid" in pdf_bytes
    cda = build_note_n1(note, pdf_bytes)
    validate(cda, type_code="11488-4")
    doc = etree.fromstring(cda)

    def one(path: str) -> str:
        (value,) = doc.xpath(path, namespaces=NS)
        return str(value)

    assert one("h:code/@code") == "11488-4" and one("h:title/text()") == note.title
    # the date of the act, not of the sending, wherever the header dates the document
    for path in ("h:effectiveTime/@value", "h:author/h:time/@value",
                 "h:documentationOf/h:serviceEvent/h:effectiveTime/h:low/@value",
                 "h:componentOf/h:encompassingEncounter/h:effectiveTime/h:low/@value"):
        assert one(path).startswith("20261002"), path
    assert one("h:author/h:assignedAuthor/h:id/@extension") == "8" + KIT.rpps
    assert one("h:recordTarget/h:patientRole/h:id/@extension") == PATIENT.ins
    assert one("h:id/@root") == one("h:setId/@root") == uuid_oid(note.id) and one("h:versionNumber/@value") == "1"
    assert base64.b64decode(one("h:component/h:nonXMLBody/h:text/text()")) == pdf_bytes
    # a prescription is expected unless the caller says which type the document has
    with pytest.raises(DocumentInvalid, match="57833-6 attendu"):
        validate(cda)


# --- the structured prescription with its PDF copy (SC.ORDN/CONF.06, SC.CDA/DD.21) ----------------------------


def test_the_n3_carries_the_printed_pdf_in_the_pdf_copy_section(rx: Prescription, pdf: bytes) -> None:
    from reference_lgc import cda_reader

    n3 = build_n3(rx, pdf)
    validate(n3)
    doc = etree.fromstring(n3)
    (section,) = doc.xpath("h:component/h:structuredBody/h:component/h:section[h:templateId/@root="
                           "'1.2.250.1.213.1.1.2.243']", namespaces=NS)
    assert section.xpath("string(h:code/@code)", namespaces=NS) == "55108-5"
    assert section.xpath("string(h:code/@codeSystem)", namespaces=NS) == "2.16.840.1.113883.6.1"
    (organizer,) = section.xpath("h:entry/h:organizer", namespaces=NS)
    assert (organizer.get("classCode"), organizer.get("moodCode")) == ("CLUSTER", "EVN")
    assert organizer.xpath("string(h:templateId/@root)", namespaces=NS) == "1.2.250.1.213.1.1.3.18"
    assert organizer.xpath("string(h:code/@code)", namespaces=NS) == "55107-7"
    kind = organizer.xpath("h:component/h:observation", namespaces=NS)[0]
    assert set(kind.xpath("h:templateId/@root", namespaces=NS)) == {
        "1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.2.250.1.213.1.1.3.48", "1.2.250.1.213.1.1.3.48.18"}
    assert kind.xpath("string(h:code/@code)", namespaces=NS) == "69764-9"
    (media,) = organizer.xpath("h:component/h:observationMedia/h:value", namespaces=NS)
    assert (media.get("mediaType"), media.get("representation")) == ("application/pdf", "B64")
    assert base64.b64decode(media.text) == pdf
    # the narrative points at the media; the prescription section is still first, untouched
    assert section.xpath("string(h:text/h:renderMultiMedia/@referencedObject)", namespaces=NS) == \
        media.getparent().get("ID")
    assert len(doc.xpath("//h:substanceAdministration", namespaces=NS)) == len(rx.lines)
    # a reader shows the copy first, as for an N1
    _root, info = cda_reader.parse(n3)
    assert info.level == "N3" and info.pdf == pdf


def test_a_pdf_copy_that_is_not_a_pdf_is_refused(rx: Prescription, pdf: bytes) -> None:
    doc = etree.fromstring(build_n3(rx, pdf))
    (media,) = doc.xpath("//h:observationMedia/h:value", namespaces=NS)
    media.text = base64.b64encode(b"<html>pas un PDF</html>").decode()
    with pytest.raises(DocumentInvalid, match="copie PDF"):
        validate(etree.tostring(doc, xml_declaration=True, encoding="UTF-8"))
    with pytest.raises(ValueError, match="PDF"):
        build_n3(rx, b"<html/>")


def test_the_reader_finds_the_patients_ins_and_the_replaced_document() -> None:
    """A received CDA (hand-written here): the INS under an INS OID of recordTarget, and the RPLC parent's id."""
    from reference_lgc import cda_reader

    cda = (b'<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3">'
           b'<id root="1.2.250.1.999.2" extension="42"/><code code="11502-2" displayName="CR de biologie"/>'
           b'<title>Bilan</title><setId root="1.2.3.4"/><versionNumber value="2"/>'
           b'<recordTarget><patientRole><id root="1.2.250.1.999.9" extension="LOCAL-7"/>'
           b'<id root="1.2.250.1.213.1.4.10" extension="114026322090185"/></patientRole></recordTarget>'
           b'<relatedDocument typeCode="RPLC"><parentDocument><id root="1.2.250.1.999.2" extension="41"/>'
           b'</parentDocument></relatedDocument><component><nonXMLBody><text mediaType="text/plain">x</text>'
           b'</nonXMLBody></component></ClinicalDocument>')
    _root, info = cda_reader.parse(cda)
    assert (info.patient_ins, info.replaces, info.version) == ("114026322090185", "1.2.250.1.999.2^41", 2)
    _root, first = cda_reader.parse(cda.replace(b'<relatedDocument typeCode="RPLC"><parentDocument><id '
                                                b'root="1.2.250.1.999.2" extension="41"/></parentDocument>'
                                                b'</relatedDocument>', b""))
    assert first.replaces == ""
