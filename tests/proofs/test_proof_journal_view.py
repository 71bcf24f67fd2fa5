"""The readable journal: hostile or odd bodies are shown safely, never expanded, never fatal."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from proofs.journal_view import MAX_BODY_CHARS, exchange_view, load_journal, pretty_body, render_text


def test_xml_with_a_dtd_is_not_expanded_and_falls_back_to_raw_text() -> None:
    xxe = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><r>&e;</r>'
    kind, text = pretty_body(xxe, "application/soap+xml")
    assert kind == "XML non analysable, texte brut"
    assert "&e;" in text and "root:" not in text
    assert "DTD" in text


def test_malformed_xml_and_json_are_shown_as_they_came() -> None:
    assert pretty_body(b"<a><b></a>", "text/xml")[1].endswith("<a><b></a>")
    assert pretty_body(b'{"a": ', "application/json") == ("JSON non analysable, texte brut", '{"a": ')


def test_xml_is_indented_and_json_pretty_printed() -> None:
    assert pretty_body(b"<a><b>x</b></a>", "")[1] == "<a>\n  <b>x</b>\n</a>"
    assert pretty_body('{"é":[1,2]}'.encode(), "application/json")[1] == '{\n  "é": [\n    1,\n    2\n  ]\n}'


def test_binary_is_summarised_by_size_and_sha256() -> None:
    data = bytes(range(256))
    kind, text = pretty_body(data, "application/octet-stream")
    assert kind == "binaire"
    assert f"256 octets, type application/octet-stream, SHA-256 {hashlib.sha256(data).hexdigest()}" in text


def test_long_bodies_are_cut_with_a_note_and_truncated_journal_bodies_say_so() -> None:
    body = "x" * (MAX_BODY_CHARS + 10)
    entry = {"id": "1", "operation": "GET /big", "protocol": "http", "method": "GET", "url": "/big", "status": 200,
             "request": {"headers": [], "body": "", "encoding": None, "truncated": False, "size": 0},
             "response": {"headers": [["Content-Type", "text/plain"]], "body": body, "encoding": None,
                          "truncated": True, "size": 10 * MAX_BODY_CHARS}}
    view = exchange_view(1, entry)
    response_body = view.sections[-1]
    assert response_body.title == f"Réponse — corps ({10 * MAX_BODY_CHARS} octets, texte)"
    assert "n'a conservé que" in response_body.text
    assert "tronqué pour la lecture : 10 caractères de plus" in response_body.text
    assert view.ok


def test_base64_bodies_of_text_content_are_decoded() -> None:
    xml = "<r><s>é</s></r>".encode()
    entry = {"id": "2", "operation": "op", "status": None, "request": {
        "headers": [["Content-Type", "application/xml"]], "body": base64.b64encode(xml).decode(),
        "encoding": "base64", "truncated": False, "size": len(xml)}, "response": None}
    view = exchange_view(1, entry)
    assert "<r>\n  <s>é</s>\n</r>" in view.sections[1].text
    assert not view.ok
    assert ("Statut", "aucune réponse") in view.fields


def test_bad_journal_lines_are_reported_and_entries_sorted_by_time(tmp_path: Path) -> None:
    path = tmp_path / "insi.jsonl"
    late = {"id": "b", "received": "2026-11-25T09:00:02.000Z", "operation": "second", "waited_ms": 3000,
            "duration_ms": 3010.0, "request": {"headers": [], "body": ""}, "response": None}
    early = {**late, "id": "a", "received": "2026-11-25T09:00:01.000Z", "operation": "first", "waited_ms": 1.5,
             "duration_ms": 5.0, "faults": [{"effect": "latency"}]}
    path.write_text(json.dumps(late) + "\n{cassé\n\n[1]\n" + json.dumps(early) + "\n", encoding="utf-8")
    journal = load_journal(path)
    assert [e["id"] for e in journal.entries] == ["a", "b"]
    assert journal.problems == ["ligne 2 illisible (JSON invalide : Expecting property name enclosed in double "
                                "quotes)", "ligne 4 ignorée (objet JSON attendu)"]
    s = journal.summary()
    assert (s.count, s.min_ms, s.max_ms, s.waited_total_ms, s.with_faults, s.without_response) == (
        2, 5.0, 3010.0, 3001.5, 1, 2)
    text = render_text(journal)
    assert "ATTENTION : ligne 2 illisible" in text
    assert text.index("#1 · first") < text.index("#2 · second")
