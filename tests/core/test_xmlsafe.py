"""Hardened XML parsing: every hostile fixture below is hand-written, not produced by our code."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest
from lxml import etree

from simulators.core import xmlsafe
from simulators.core.xmlsafe import (
    NS,
    XmlRejected,
    find,
    findall,
    localname,
    namespace,
    parse_xml,
    qname,
    text,
)

CANARY = "CANARY-7f3e-must-never-leak"

XXE_FILE = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE foo [
  <!ELEMENT foo ANY>
  <!ENTITY xxe SYSTEM "file:///etc/passwd">
]>
<foo>&xxe;</foo>
"""

XXE_HTTP = """<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "http://127.0.0.1:1/secret">]>
<foo>&xxe;</foo>"""

XXE_PARAMETER_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE foo [
  <!ENTITY % remote SYSTEM "http://127.0.0.1:1/evil.dtd">
  %remote;
]>
<foo/>"""

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ELEMENT lolz (#PCDATA)>
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""

# Quadratic blowup: one big entity referenced many times (no nesting, so naive limits miss it).
QUADRATIC_BLOWUP = (
    '<?xml version="1.0"?>\n<!DOCTYPE kaboom [<!ENTITY a "'
    + "a" * 50_000
    + '">]>\n<kaboom>'
    + "&a;" * 50_000
    + "</kaboom>"
)

EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE note SYSTEM "http://127.0.0.1:1/note.dtd">
<note><to>x</to></note>"""

EXTERNAL_DTD_PUBLIC = """<?xml version="1.0"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"/>"""

BARE_DOCTYPE = "<!DOCTYPE foo><foo/>"

UTF16_XXE_TEXT = """<?xml version="1.0" encoding="UTF-16"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<foo>&xxe;</foo>"""

HOSTILE_TEXT_FIXTURES = {
    "xxe_file": XXE_FILE,
    "xxe_http": XXE_HTTP,
    "xxe_parameter_entity": XXE_PARAMETER_ENTITY,
    "billion_laughs": BILLION_LAUGHS,
    "quadratic_blowup": QUADRATIC_BLOWUP,
    "external_dtd": EXTERNAL_DTD,
    "external_dtd_public": EXTERNAL_DTD_PUBLIC,
    "bare_doctype": BARE_DOCTYPE,
}

HOSTILE_BYTES_FIXTURES = {
    **{name: doc.encode("utf-8") for name, doc in HOSTILE_TEXT_FIXTURES.items()},
    "utf16_le_bom": UTF16_XXE_TEXT.encode("utf-16"),  # BOM + little endian
    "utf16_be_no_bom": UTF16_XXE_TEXT.encode("utf-16-be"),
    "utf32": UTF16_XXE_TEXT.replace("UTF-16", "UTF-32").encode("utf-32"),
}

PASSWD_MARKERS = ("root:", "/bin/", "nologin", "daemon")


def _assert_no_leak(exc: XmlRejected) -> None:
    for rendered in (str(exc), repr(exc), exc.reason):
        assert "Traceback" not in rendered
        assert len(rendered) < 300
        for marker in (*PASSWD_MARKERS, CANARY, "lollollol", "aaaaaaaaaa"):
            assert marker not in rendered


@pytest.mark.parametrize("name", sorted(HOSTILE_BYTES_FIXTURES))
def test_hostile_bytes_rejected_as_dtd(name: str) -> None:
    with pytest.raises(XmlRejected) as info:
        parse_xml(HOSTILE_BYTES_FIXTURES[name])
    assert info.value.kind == "dtd_forbidden"
    assert str(info.value) == "XML document type declarations (DTD) are not accepted"
    assert isinstance(info.value, ValueError)
    _assert_no_leak(info.value)


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXT_FIXTURES))
def test_hostile_str_rejected_as_dtd(name: str) -> None:
    with pytest.raises(XmlRejected) as info:
        parse_xml(HOSTILE_TEXT_FIXTURES[name])
    assert info.value.kind == "dtd_forbidden"
    _assert_no_leak(info.value)


def test_utf16_doctype_is_invisible_to_a_byte_regex() -> None:
    # Guards the point of the test above: a naive b"<!DOCTYPE" scan would not see these.
    for name in ("utf16_le_bom", "utf16_be_no_bom", "utf32"):
        assert b"<!DOCTYPE" not in HOSTILE_BYTES_FIXTURES[name]


@pytest.mark.parametrize("name", sorted(HOSTILE_BYTES_FIXTURES))
def test_second_barrier_alone_rejects_dtd(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Disable the prolog pre-scan: the post-parse docinfo check must still refuse every fixture.
    monkeypatch.setattr(xmlsafe, "_prescan", lambda raw, force_utf8: None)
    started = time.perf_counter()
    with pytest.raises(XmlRejected) as info:
        parse_xml(HOSTILE_BYTES_FIXTURES[name])
    assert time.perf_counter() - started < 1.0
    if name in ("billion_laughs", "quadratic_blowup"):
        # libxml2's own amplification guard fires mid-parse, before the docinfo check can run.
        assert info.value.kind == "malformed" and "amplification" in str(info.value)
    else:
        assert info.value.kind == "dtd_forbidden"
    _assert_no_leak(info.value)


def test_entity_expansion_attacks_fail_fast() -> None:
    for doc in (BILLION_LAUGHS, QUADRATIC_BLOWUP):
        started = time.perf_counter()
        with pytest.raises(XmlRejected):
            parse_xml(doc.encode())
        assert time.perf_counter() - started < 1.0


@pytest.fixture
def canary_server() -> Iterator[tuple[str, list[str]]]:
    """Local HTTP server recording every request, serving a DTD/entity containing the canary."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = f'<!ENTITY leak "{CANARY}">'.encode() if self.path.endswith(".dtd") else CANARY.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("disable_prescan", [False, True])
def test_no_network_or_file_access_and_no_leak(
    canary_server: tuple[str, list[str]], tmp_path, monkeypatch: pytest.MonkeyPatch, disable_prescan: bool
) -> None:
    base, hits = canary_server
    secret = tmp_path / "secret.txt"
    secret.write_text(CANARY)
    if disable_prescan:
        monkeypatch.setattr(xmlsafe, "_prescan", lambda raw, force_utf8: None)
    docs = [
        f'<!DOCTYPE foo [<!ENTITY xxe SYSTEM "{base}/entity">]><foo>&xxe;</foo>',
        f'<!DOCTYPE foo [<!ENTITY % p SYSTEM "{base}/param.dtd"> %p;]><foo>&leak;</foo>',
        f'<!DOCTYPE foo SYSTEM "{base}/external.dtd"><foo>&leak;</foo>',
        f'<!DOCTYPE foo [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]><foo>&xxe;</foo>',
        f'<!DOCTYPE foo SYSTEM "{secret.as_uri()}"><foo/>',
    ]
    for doc in docs:
        with pytest.raises(XmlRejected) as info:
            parse_xml(doc.encode())
        assert info.value.kind == "dtd_forbidden"
        _assert_no_leak(info.value)
    assert hits == []


# --- size / emptiness / well-formedness ---------------------------------------------------------------


def test_oversize_rejected_before_parsing() -> None:
    doc = b"<a>" + b"x" * 200 + b"</a>"
    with pytest.raises(XmlRejected) as info:
        parse_xml(doc, max_bytes=100)
    assert info.value.kind == "too_large"
    assert "100" in str(info.value)
    # Exactly at the limit is fine.
    assert parse_xml(doc, max_bytes=len(doc)).tag == "a"


def test_oversize_default_limit_and_str() -> None:
    # Not even well-formed: proves the size check runs before any parsing.
    with pytest.raises(XmlRejected) as info:
        parse_xml(b"<" * (10 * 1024 * 1024 + 1))
    assert info.value.kind == "too_large"
    # 60 characters but 120 UTF-8 bytes: the limit is on bytes.
    with pytest.raises(XmlRejected) as info:
        parse_xml("<a>" + "é" * 53 + "</a>", max_bytes=100)
    assert info.value.kind == "too_large"


@pytest.mark.parametrize(
    "doc",
    [
        b"<a><b></a>",
        b"not xml at all",
        b"<a>",
        b"<a/><b/>",
        b"<a>&undefined;</a>",
        b"<!-- only a comment -->",
        b"<p:a xmlns:q='urn:q'/>",
        "<a>\u00e9</a>".encode("latin-1"),  # invalid UTF-8 without declaration
    ],
)
def test_malformed(doc: bytes) -> None:
    with pytest.raises(XmlRejected) as info:
        parse_xml(doc)
    assert info.value.kind == "malformed"
    assert str(info.value).startswith("XML is not well-formed")
    assert "\n" not in str(info.value)
    _assert_no_leak(info.value)


@pytest.mark.parametrize("doc", [b"", b"   \r\n\t ", "", "  \n", b"\xef\xbb\xbf"])
def test_empty(doc: bytes | str) -> None:
    with pytest.raises(XmlRejected) as info:
        parse_xml(doc)
    assert info.value.kind == "empty"


def test_type_error_for_other_inputs() -> None:
    with pytest.raises(TypeError):
        parse_xml(123)  # type: ignore[arg-type]


# --- normal documents ---------------------------------------------------------------------------------

ODD_PREFIXES = """<?xml version="1.0" encoding="UTF-8"?>
<?app-instruction keep me?>
<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" xmlns:addr="http://www.w3.org/2005/08/addressing">
  <e:Header>
    <addr:Action>  urn:ihe:iti:2007:RegistryStoredQuery
    </addr:Action>
    <addr:MessageID>urn:uuid:<!-- split -->1234</addr:MessageID>
    <addr:To/>
  </e:Header>
  <e:Body>
    <AdhocQueryRequest xmlns="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
                       xmlns:r="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
      <r:AdhocQuery id="urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d">
        <r:Slot name="$XDSDocumentEntryPatientId"/>
        <r:Slot name="$XDSDocumentEntryStatus"/>
      </r:AdhocQuery>
    </AdhocQueryRequest>
  </e:Body>
</e:Envelope>"""


def test_arbitrary_prefixes_and_namespace_helpers() -> None:
    root = parse_xml(ODD_PREFIXES.encode())
    assert root.tag == qname(NS["soap12"], "Envelope")
    assert localname(root) == "Envelope"
    assert namespace(root) == NS["soap12"]
    # Our prefixes, not the document's, are used in paths.
    assert text(root, "soap12:Header/wsa:Action") == "urn:ihe:iti:2007:RegistryStoredQuery"
    assert text(root, "soap12:Header/wsa:MessageID") == "urn:uuid:1234"
    assert text(root, "soap12:Header/wsa:To") == ""
    assert text(root, "soap12:Header/wsa:ReplyTo") is None
    assert text(root, "soap12:Header/wsa:ReplyTo", default="anon") == "anon"
    query = find(root, "soap12:Body/query:AdhocQueryRequest")
    assert query is not None and localname(query) == "AdhocQueryRequest"
    slots = findall(query, "rim:AdhocQuery/rim:Slot")
    assert [s.get("name") for s in slots] == ["$XDSDocumentEntryPatientId", "$XDSDocumentEntryStatus"]
    # Clark notation and caller-supplied prefixes work too.
    assert find(root, f"{{{NS['soap12']}}}Body") is not None
    assert len(findall(query, "x:AdhocQuery/x:Slot", ns={"x": NS["rim"]})) == 2
    # None-tolerant helpers allow chaining on optional elements.
    assert find(None, "a") is None and findall(None, "a") == [] and text(None, "a", "d") == "d"
    # Processing instructions are kept (only DTDs are refused).
    assert isinstance(root.getprevious(), etree._ProcessingInstruction)
    assert localname(root.getprevious()) == "" and namespace(root.getprevious()) is None
    assert qname(None, "local") == "local" and qname("urn:x", "l") == "{urn:x}l"


def test_str_input_with_foreign_encoding_declaration() -> None:
    # A str is already decoded: its encoding declaration must not confuse the parser.
    root = parse_xml('<?xml version="1.0" encoding="ISO-8859-1"?><a>é€</a>')
    assert root.text == "é€"


def test_bytes_in_declared_encodings() -> None:
    assert parse_xml('<?xml version="1.0" encoding="ISO-8859-1"?><a>é</a>'.encode("latin-1")).text == "é"
    assert parse_xml('<?xml version="1.0" encoding="UTF-16"?><a>é</a>'.encode("utf-16")).text == "é"
    assert parse_xml(b"\xef\xbb\xbf<a>ok</a>").text == "ok"
    assert parse_xml(bytearray(b"<a>ok</a>")).text == "ok"


def test_deep_nesting_is_bounded() -> None:
    # huge_tree=False keeps libxml2's depth limit: absurd nesting is refused, not a stack/CPU hog.
    with pytest.raises(XmlRejected) as info:
        parse_xml(b"<a>" * 100_000 + b"</a>" * 100_000)
    assert info.value.kind == "malformed"
