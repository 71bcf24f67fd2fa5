"""Reference LGC: child health certificates (LGC.CSE.12) — the CDA of a CS9 read back with lxml, the draft kept
until validation, one validation only, and the send started by the validation alone."""

from __future__ import annotations

import html
import json
import re
import uuid
from datetime import UTC, date, datetime

from conftest import LGC
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree
from test_lgc_csrf import form_token

from reference_lgc.documents.cse import ChildCertificate, build_cse
from reference_lgc.documents.model import Author, Patient, Structure

NS = {"h": "urn:hl7-org:v3"}


def test_the_cs9_cda_carries_what_the_volet_checks_in_its_header_and_sections() -> None:
    child = Patient("PETIT", ("LOUIS",), "M", date(2026, 2, 9), "126026322012345", "1.2.250.1.213.1.4.8")
    author = Author("99700366240", "DOC0036624", "KIT", Structure("499700366240007", "Cabinet", "1 rue", "63000",
                                                                  "Clermont-Ferrand"))
    cert = ChildCertificate(uuid.uuid4(), datetime(2026, 12, 4, 10, tzinfo=UTC), child, author, "CS9",
                            date(2026, 12, 1), 8.9, 71.5, 44.5)
    root = etree.fromstring(build_cse(cert))
    x = lambda path: root.xpath(path, namespaces=NS)  # noqa: E731
    assert {"1.2.250.1.213.1.1.1.5", "1.2.250.1.213.1.1.1.5.2"} <= set(x("h:templateId/@root"))
    assert x("string(h:code/@code)") == "CERT_DECL" and x("string(h:code/@codeSystem)") == "1.2.250.1.213.1.1.4.12"
    assert x("string(h:documentationOf/h:serviceEvent/h:code/@code)") == "11429006"
    assert x("string(h:documentationOf/h:serviceEvent/h:effectiveTime/h:low/@value)") == "20261201"
    assert x("string(h:documentationOf/h:serviceEvent/h:performer/h:assignedEntity/h:id/@extension)") == \
        "899700366240"
    assert x("string(h:recordTarget/h:patientRole/h:id/@extension)") == "126026322012345"
    sections = x("h:component/h:structuredBody/h:component/h:section/h:templateId/@root")
    assert len(sections) == 7 and "1.3.6.1.4.1.19376.1.7.3.1.1.13.4" in sections
    vitals = {o.xpath("string(h:code/@code)", namespaces=NS): o.xpath("string(h:value/@value)", namespaces=NS)
              for o in x("//h:organizer/h:component/h:observation")}
    assert vitals == {"29463-7": "8.9", "8302-2": "71.5", "8287-5": "44.5"}


def post(client: FlaskClient, path: str, pid: int, **data: str):
    token = form_token(client, f"/patients/{pid}")
    return client.post(LGC + path, data={**data, "csrf_token": token}, headers={"Origin": LGC},
                       follow_redirects=True)


def test_a_draft_then_one_validation_that_starts_the_send(app: Flask, doctor: FlaskClient) -> None:
    db = app.config["DB"]
    pid = app.config["RECORDS"].search(name="PETIT")[0].id
    page = post(doctor, f"/patients/{pid}/certificats", pid, type="CS9", date_examen="2026-12-01", poids_kg="8,9",
                taille_cm="71.5", perimetre_cm="44.5")
    assert "brouillon" in html.unescape(page.get_data(as_text=True))
    doc = db.one("SELECT * FROM documents WHERE type_code='CERT_DECL'")
    assert doc["validated_at"] is None and json.loads(bytes(doc["content"]))["poids_kg"] == 8.9
    assert not db.all("SELECT 1 FROM service_calls WHERE operation='envoi_cse'")  # nothing before validation
    post(doctor, f"/patients/{pid}/certificats/{doc['id']}/valider", pid)
    again = post(doctor, f"/patients/{pid}/certificats/{doc['id']}/valider", pid)
    assert "Certificat déjà validé" in html.unescape(again.get_data(as_text=True))
    sends = db.all("SELECT params FROM service_calls WHERE operation='envoi_cse'")
    assert [json.loads(s["params"])["document"] for s in sends] == [doc["id"]]  # one send, by the validation
    validated = db.one("SELECT cda, validated_at FROM documents WHERE id=?", (doc["id"],))
    assert validated["validated_at"] and b"1.2.250.1.213.1.1.1.5.2" in bytes(validated["cda"])


def test_measurements_out_of_bounds_are_refused_in_words(app: Flask, doctor: FlaskClient) -> None:
    pid = app.config["RECORDS"].search(name="PETIT")[0].id
    page = post(doctor, f"/patients/{pid}/certificats", pid, type="CS9", date_examen="2026-12-01", poids_kg="8900",
                taille_cm="71.5", perimetre_cm="44.5")
    assert re.search(r"hors des bornes.*unités", html.unescape(page.get_data(as_text=True)))
    assert not app.config["DB"].all("SELECT 1 FROM documents WHERE type_code='CERT_DECL'")
