"""The byte-level shortcut of parse_xml must never let a DTD through, whatever the encoding trick."""

from __future__ import annotations

import pytest

from simulators.core.xmlsafe import XmlRejected, parse_xml

UTF7_DOCTYPE = (
    b'<?xml version="1.0" encoding="UTF-7"?>'
    b'+ADwAIQ-DOCTYPE r +AFsAPAAh-ENTITY x SYSTEM +ACI-file:///etc/passwd+ACIAPgBd-+AD4-'
    b"+ADw-r+AD4AJg-x+ADsAPA-/r+AD4-"
)


def test_utf7_declared_document_takes_the_slow_path_and_is_refused() -> None:
    with pytest.raises(XmlRejected) as info:
        parse_xml(UTF7_DOCTYPE)
    assert info.value.kind in ("dtd_forbidden", "malformed")
    assert "root:" not in str(info.value)


def test_doctype_after_leading_whitespace_and_bom_is_refused() -> None:
    data = b"\xef\xbb\xbf \n<!DOCTYPE r [<!ENTITY a 'x'>]><r>&a;</r>"
    with pytest.raises(XmlRejected) as info:
        parse_xml(data)
    assert info.value.kind == "dtd_forbidden"


def test_doctype_words_inside_a_comment_or_text_do_not_cause_a_false_refusal() -> None:
    root = parse_xml(b"<r><!-- an example: <!DOCTYPE html> --><t>&lt;!DOCTYPE&gt;</t></r>")
    assert root.findtext("t") == "<!DOCTYPE>"


@pytest.mark.parametrize("encoding", ["UTF-8", "ISO-8859-1", "windows-1252"])
def test_byte_safe_encodings_parse_normally(encoding: str) -> None:
    text = f'<?xml version="1.0" encoding="{encoding}"?><r>caf\u00e9</r>'
    root = parse_xml(text.encode("utf-8" if encoding == "UTF-8" else "latin-1"))
    assert root.text == "café"


def test_the_parser_is_reused_safely_across_documents() -> None:
    assert parse_xml(b"<a/>").tag == "a"
    with pytest.raises(XmlRejected):
        parse_xml(b"<a><b></a>")
    assert parse_xml(b"<c>ok</c>").text == "ok"


def test_lookups_accept_our_prefixes_clark_notation_and_predicates_alike() -> None:
    from simulators.core.xmlsafe import find, findall, text

    root = parse_xml(b'<a xmlns:z="urn:siram"><z:E code="1">x</z:E><z:E>y</z:E></a>')
    assert find(root, "{urn:siram}E").text == "x"
    assert text(root, "siram:E") == "x"
    assert [e.text for e in findall(root, "siram:E")] == ["x", "y"]
    assert find(root, 'siram:E[@code="1"]').text == "x"
    with pytest.raises(SyntaxError):
        find(root, "unknown:E")
