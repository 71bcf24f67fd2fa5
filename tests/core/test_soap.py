"""SOAP 1.2 helpers: inputs are hand-written envelopes; builder output is checked with plain lxml."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from simulators.core.soap import (
    SOAP_CONTENT_TYPE,
    Envelope,
    SoapError,
    SoapFaultSpec,
    action_from_content_type,
    build_envelope,
    build_fault,
    build_soap11_fault,
    check_content_type,
    fault_http_status,
    must_understand_fault,
    parse_envelope,
    soap_content_type,
)

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"
UUID_URN = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


def elements(el: etree._Element) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str)]


def resolve_qname(el: etree._Element, value: str) -> tuple[str | None, str]:
    """Resolve a QName found in element content against that element's in-scope namespaces."""
    prefix, _, local = value.strip().rpartition(":")
    return el.nsmap.get(prefix or None), local


def plain_parse(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))


# --- parse_envelope -----------------------------------------------------------------------------------

WEIRD_PREFIXES = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- leading comment -->
<S12:Envelope xmlns:S12="http://www.w3.org/2003/05/soap-envelope"
              xmlns:adr="http://www.w3.org/2005/08/addressing">
  <S12:Header>
    <adr:Action S12:mustUnderstand="true">
      urn:ihe:iti:2007:RegistryStoredQuery
    </adr:Action>
    <adr:MessageID>urn:uuid:6ad1e3b0-2a5b-4c61-a7b2-0f3b1c1d0e01</adr:MessageID>
    <adr:RelatesTo>urn:uuid:previous</adr:RelatesTo>
    <wss:Security xmlns:wss="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
                  S12:mustUnderstand="1"/>
    <x:Trace xmlns:x="urn:example:trace" S12:mustUnderstand="false"/>
    <x:Ext1 xmlns:x="urn:example:ext" S12:mustUnderstand=" true "/>
    <x:Ext2 xmlns:x="urn:example:ext" S12:mustUnderstand="true"
            S12:role="http://www.w3.org/2003/05/soap-envelope/role/none"/>
    <x:Ext3 xmlns:x="urn:example:ext" S12:mustUnderstand="true" S12:role="urn:some:other:role"/>
    <x:Ext4 xmlns:x="urn:example:ext" S12:mustUnderstand="true"
            S12:role="http://www.w3.org/2003/05/soap-envelope/role/next"/>
    <y:Other xmlns:y="urn:example:other" mustUnderstand="true"/>
  </S12:Header>
  <S12:Body>
    <!-- comment before the payload -->
    <AdhocQueryRequest xmlns="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"/>
  </S12:Body>
</S12:Envelope>
"""


def test_parse_envelope_weird_prefixes() -> None:
    env = parse_envelope(WEIRD_PREFIXES)
    assert isinstance(env, Envelope)
    assert env.action == "urn:ihe:iti:2007:RegistryStoredQuery"
    assert env.message_id == "urn:uuid:6ad1e3b0-2a5b-4c61-a7b2-0f3b1c1d0e01"
    assert env.relates_to == "urn:uuid:previous"
    assert env.root.tag == q(SOAP12, "Envelope")
    assert env.header is not None and env.header.tag == q(SOAP12, "Header")
    assert env.body.tag == q(SOAP12, "Body")
    assert env.body_element.tag == "{urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0}AdhocQueryRequest"
    wss = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    security = env.header_block(wss, "Security")
    assert security is not None and security.tag == q(wss, "Security")
    assert env.header_block(wss, "Missing") is None


def test_must_understand_blocks() -> None:
    env = parse_envelope(WEIRD_PREFIXES)
    wss = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    # wsa:Action (mU=true) is always understood; role "none" and foreign roles are not for us;
    # mU="false" and an unqualified mustUnderstand attribute do not count.
    assert [b.tag for b in env.must_understand_blocks()] == [
        q(wss, "Security"),
        q("urn:example:ext", "Ext1"),
        q("urn:example:ext", "Ext4"),
    ]
    assert [b.tag for b in env.must_understand_blocks([wss])] == [
        q("urn:example:ext", "Ext1"),
        q("urn:example:ext", "Ext4"),
    ]
    assert env.must_understand_blocks([wss, q("urn:example:ext", "Ext1"), q("urn:example:ext", "Ext4")]) == []


def test_minimal_envelope_without_header() -> None:
    env = parse_envelope(
        b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><p:x xmlns:p="urn:p"/>'
        b"</e:Body></e:Envelope>"
    )
    assert env.header is None and env.action is None and env.message_id is None
    assert env.header_blocks() == [] and env.must_understand_blocks() == []
    assert env.body_element.tag == "{urn:p}x"


SOAP11_ENVELOPE = b"""<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Header>
    <wsa:MessageID xmlns:wsa="http://www.w3.org/2005/08/addressing">urn:uuid:soap11-msg</wsa:MessageID>
  </soap:Header>
  <soap:Body><GetThing xmlns="urn:example"/></soap:Body>
</soap:Envelope>"""


def test_soap11_envelope_gives_version_mismatch() -> None:
    with pytest.raises(SoapError) as info:
        parse_envelope(SOAP11_ENVELOPE)
    err = info.value
    assert err.fault.code == "VersionMismatch"
    assert err.http_status == 500
    assert "SOAP 1.1" in str(err)
    assert err.content_type.startswith(SOAP_CONTENT_TYPE)

    root = plain_parse(err.to_bytes())
    assert root.tag == q(SOAP12, "Envelope")
    header, body = elements(root)
    code_value = body.find(f"{q(SOAP12, 'Fault')}/{q(SOAP12, 'Code')}/{q(SOAP12, 'Value')}")
    assert resolve_qname(code_value, code_value.text) == (SOAP12, "VersionMismatch")
    # SOAP 1.2 Part 1 §5.4.7: env:Upgrade header listing the supported envelope QName.
    upgrade = header.find(q(SOAP12, "Upgrade"))
    assert upgrade is not None
    supported = elements(upgrade)
    assert [s.tag for s in supported] == [q(SOAP12, "SupportedEnvelope")]
    assert resolve_qname(supported[0], supported[0].get("qname")) == (SOAP12, "Envelope")
    assert header.findtext(q(WSA, "RelatesTo")) == "urn:uuid:soap11-msg"
    assert header.findtext(q(WSA, "Action")) == FAULT_ACTION


def test_non_soap_root_gives_version_mismatch() -> None:
    for doc in (b"<Envelope/>", b'<x:Envelope xmlns:x="urn:not-soap"><x:Body/></x:Envelope>', b"<foo/>"):
        with pytest.raises(SoapError) as info:
            parse_envelope(doc)
        assert info.value.fault.code == "VersionMismatch"


@pytest.mark.parametrize(
    ("doc", "xml_kind"),
    [
        (b"<env:Envelope xmlns:env='http://www.w3.org/2003/05/soap-envelope'><env:Body>", "malformed"),
        (b"", "empty"),
        (
            b'<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<env:Envelope xmlns:env='http://www.w3.org/2003/05/soap-envelope'><env:Body>&x;</env:Body>"
            b"</env:Envelope>",
            "dtd_forbidden",
        ),
    ],
)
def test_not_acceptable_xml_gives_sender_fault(doc: bytes, xml_kind: str) -> None:
    with pytest.raises(SoapError) as info:
        parse_envelope(doc)
    err = info.value
    assert err.fault.code == "Sender" and err.http_status == 400 and err.xml_kind == xml_kind
    out = err.to_bytes()
    assert b"root:" not in out and b"Traceback" not in out
    code_value = plain_parse(out).find(f".//{q(SOAP12, 'Code')}/{q(SOAP12, 'Value')}")
    assert resolve_qname(code_value, code_value.text) == (SOAP12, "Sender")


def test_too_large_gives_sender_fault() -> None:
    with pytest.raises(SoapError) as info:
        parse_envelope(WEIRD_PREFIXES, max_bytes=100)
    assert info.value.xml_kind == "too_large" and info.value.http_status == 400


ENV_OPEN = (
    b'<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" '
    b'xmlns:wsa="http://www.w3.org/2005/08/addressing">'
)
HDR = b"<env:Header><wsa:MessageID>urn:uuid:req-1</wsa:MessageID></env:Header>"


@pytest.mark.parametrize(
    ("inner", "reason_part"),
    [
        (HDR, "env:Body"),  # no Body
        (b"", "env:Body"),  # nothing at all
        (b"<env:Body><x/></env:Body>" + HDR, "after env:Body"),  # Header after Body
        (HDR + b"<env:Body><x/></env:Body><env:Body><y/></env:Body>", "after env:Body"),
        (HDR + b"<env:Body/>", "empty"),
        (HDR + b"<env:Body>  <!-- nothing -->  </env:Body>", "empty"),
        (HDR + b"<env:Body>just text</env:Body>", "empty"),
        (HDR + b"stray<env:Body><x/></env:Body>", "character data"),
    ],
)
def test_structural_errors_give_sender_fault(inner: bytes, reason_part: str) -> None:
    with pytest.raises(SoapError) as info:
        parse_envelope(ENV_OPEN + inner + b"</env:Envelope>")
    err = info.value
    assert err.fault.code == "Sender" and err.http_status == 400
    assert reason_part in str(err)
    if inner.startswith(HDR):
        assert err.relates_to == "urn:uuid:req-1"
        assert plain_parse(err.to_bytes()).findtext(f".//{q(WSA, 'RelatesTo')}") == "urn:uuid:req-1"


# --- build_envelope -----------------------------------------------------------------------------------


def test_build_envelope_structure() -> None:
    payload = etree.fromstring(
        b'<r:RegistryResponse xmlns:r="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" status="ok"/>'
    )
    extra = etree.fromstring(b'<t:Trace xmlns:t="urn:trace">42</t:Trace>')
    out = build_envelope(
        payload, header_blocks=[extra], action="urn:ihe:iti:2007:RegisterResponse", relates_to="urn:uuid:req"
    )
    assert out.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = plain_parse(out)
    assert root.tag == q(SOAP12, "Envelope")
    header, body = elements(root)
    assert header.tag == q(SOAP12, "Header") and body.tag == q(SOAP12, "Body")
    assert [c.tag for c in elements(header)] == [
        q(WSA, "Action"),
        q(WSA, "MessageID"),
        q(WSA, "RelatesTo"),
        "{urn:trace}Trace",
    ]
    assert header.findtext(q(WSA, "Action")) == "urn:ihe:iti:2007:RegisterResponse"
    assert UUID_URN.match(header.findtext(q(WSA, "MessageID")))
    assert header.findtext(q(WSA, "RelatesTo")) == "urn:uuid:req"
    assert [c.tag for c in elements(body)] == ["{urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0}RegistryResponse"]
    # Inputs were copied, not moved out of the caller's trees.
    assert payload.getparent() is None and extra.getparent() is None
    # And the result is accepted by our own parser.
    env = parse_envelope(out)
    assert env.action == "urn:ihe:iti:2007:RegisterResponse" and env.relates_to == "urn:uuid:req"


def test_build_envelope_message_id_options_and_multiple_body_children() -> None:
    a, b = etree.Element("{urn:a}a"), etree.Element("{urn:b}b")
    root = plain_parse(build_envelope([a, b], message_id="urn:uuid:fixed"))
    header, body = elements(root)
    assert [c.tag for c in elements(header)] == [q(WSA, "MessageID")]
    assert header.findtext(q(WSA, "MessageID")) == "urn:uuid:fixed"
    assert [c.tag for c in elements(body)] == ["{urn:a}a", "{urn:b}b"]
    # message_id="" and nothing else: no Header at all; body=None gives an empty Body.
    root = plain_parse(build_envelope(None, message_id=""))
    assert [c.tag for c in elements(root)] == [q(SOAP12, "Body")]
    assert len(root[0]) == 0
    # Two builds never share a MessageID.
    ids = {plain_parse(build_envelope(None)).findtext(f".//{q(WSA, 'MessageID')}") for _ in range(5)}
    assert len(ids) == 5


# --- build_fault --------------------------------------------------------------------------------------


def _fault_parts(out: bytes) -> tuple[etree._Element, etree._Element]:
    root = plain_parse(out)
    assert root.tag == q(SOAP12, "Envelope")
    header, body = elements(root)
    assert [c.tag for c in elements(body)] == [q(SOAP12, "Fault")]
    return header, body[0]


def test_build_fault_full_structure() -> None:
    detail = etree.fromstring(b'<d:Erreur xmlns:d="urn:detail"><d:Code>40</d:Code></d:Erreur>')
    out = build_fault(
        "Sender",
        "Requête invalide : identifiant manquant",
        subcode="siram_40",
        detail=detail,
        relates_to="urn:uuid:req",
    )
    header, fault = _fault_parts(out)
    assert header.findtext(q(WSA, "Action")) == FAULT_ACTION
    assert header.findtext(q(WSA, "RelatesTo")) == "urn:uuid:req"
    assert UUID_URN.match(header.findtext(q(WSA, "MessageID")))

    # Fault children in the order mandated by SOAP 1.2 Part 1 §5.4.
    assert [c.tag for c in elements(fault)] == [q(SOAP12, "Code"), q(SOAP12, "Reason"), q(SOAP12, "Detail")]
    code, reason, detail_el = elements(fault)
    assert [c.tag for c in elements(code)] == [q(SOAP12, "Value"), q(SOAP12, "Subcode")]
    value = code[0]
    assert resolve_qname(value, value.text) == (SOAP12, "Sender")
    sub_values = elements(code[1])
    assert [c.tag for c in sub_values] == [q(SOAP12, "Value")]
    assert resolve_qname(sub_values[0], sub_values[0].text) == ("urn:siram", "siram_40")
    texts = elements(reason)
    assert [t.tag for t in texts] == [q(SOAP12, "Text")]
    assert texts[0].get(XML_LANG) == "fr"
    assert texts[0].text == "Requête invalide : identifiant manquant"
    assert [c.tag for c in elements(detail_el)] == ["{urn:detail}Erreur"]
    assert detail_el.findtext("{urn:detail}Erreur/{urn:detail}Code") == "40"
    assert detail.getparent() is None


@pytest.mark.parametrize(
    ("subcode", "kwargs", "expected"),
    [
        (("urn:custom", "Bad"), {}, ("urn:custom", "Bad")),
        ("{urn:custom}Bad", {}, ("urn:custom", "Bad")),
        ("siram:siram_12", {}, ("urn:siram", "siram_12")),
        ("x_1", {"subcode_ns": "urn:asip:dmp", "subcode_prefix": "dmp"}, ("urn:asip:dmp", "x_1")),
        ("rs:Failure", {}, ("urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0", "Failure")),
        (
            ("http://www.w3.org/2005/08/addressing", "InvalidAddressingHeader"),
            {},
            (WSA, "InvalidAddressingHeader"),
        ),
        # A prefix that would clash with "env" is renamed so the QName still resolves correctly.
        ("Bad", {"subcode_ns": "urn:clash", "subcode_prefix": "env"}, ("urn:clash", "Bad")),
    ],
)
def test_build_fault_subcode_qnames_resolve(subcode, kwargs, expected) -> None:
    _, fault = _fault_parts(build_fault("Receiver", "boom", subcode=subcode, lang="en", **kwargs))
    code = fault.find(q(SOAP12, "Code"))
    assert resolve_qname(code[0], code[0].text) == (SOAP12, "Receiver")
    sub_value = code.find(f"{q(SOAP12, 'Subcode')}/{q(SOAP12, 'Value')}")
    assert resolve_qname(sub_value, sub_value.text) == expected
    assert fault.find(f"{q(SOAP12, 'Reason')}/{q(SOAP12, 'Text')}").get(XML_LANG) == "en"
    assert fault.find(q(SOAP12, "Detail")) is None


@pytest.mark.parametrize(
    "code", ["Sender", "Receiver", "VersionMismatch", "MustUnderstand", "DataEncodingUnknown"]
)
def test_build_fault_all_codes(code: str) -> None:
    header, fault = _fault_parts(build_fault(code, "r", detail="texte libre", action=None))
    value = fault.find(f"{q(SOAP12, 'Code')}/{q(SOAP12, 'Value')}")
    assert resolve_qname(value, value.text) == (SOAP12, code)
    assert fault.findtext(q(SOAP12, "Detail")) == "texte libre"
    assert header.find(q(WSA, "Action")) is None
    assert (header.find(q(SOAP12, "Upgrade")) is not None) == (code == "VersionMismatch")


def test_build_fault_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        build_fault("Client", "SOAP 1.1 code")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build_fault("Sender", "r", subcode="not a qname")
    with pytest.raises(ValueError):
        build_fault("Sender", "r", subcode="unknownprefix:x")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("Sender", 400),
        ("Receiver", 500),
        ("VersionMismatch", 500),
        ("MustUnderstand", 500),
        ("DataEncodingUnknown", 500),
        ("env:Sender", 400),
        (f"{{{SOAP12}}}Sender", 400),
    ],
)
def test_fault_http_status(code: str, status: int) -> None:
    assert fault_http_status(code) == status


def test_fault_spec_and_must_understand_fault() -> None:
    spec = SoapFaultSpec("Receiver", "indisponible", subcode="siram_99")
    assert spec.http_status == 500
    _, fault = _fault_parts(spec.to_bytes(relates_to="urn:uuid:r", message_id="urn:uuid:m"))
    sub_value = fault.find(f".//{q(SOAP12, 'Subcode')}/{q(SOAP12, 'Value')}")
    assert resolve_qname(sub_value, sub_value.text) == ("urn:siram", "siram_99")

    env = parse_envelope(WEIRD_PREFIXES)
    mu = must_understand_fault(env.must_understand_blocks())
    assert mu.code == "MustUnderstand" and mu.http_status == 500
    header, fault = _fault_parts(SoapError(mu, relates_to=env.message_id).to_bytes())
    assert header.findtext(q(WSA, "RelatesTo")) == env.message_id
    # SOAP 1.2 Part 1 §5.4.8: one env:NotUnderstood per block, its qname attribute resolving.
    not_understood = header.findall(q(SOAP12, "NotUnderstood"))
    assert [resolve_qname(n, n.get("qname")) for n in not_understood] == [
        ("http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd", "Security"),
        ("urn:example:ext", "Ext1"),
        ("urn:example:ext", "Ext4"),
    ]


# --- content types ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (
            'application/soap+xml; charset=utf-8; action="urn:ihe:iti:2007:RegistryStoredQuery"',
            "urn:ihe:iti:2007:RegistryStoredQuery",
        ),
        (
            "application/soap+xml;action=urn:ihe:iti:2007:RegistryStoredQuery;charset=UTF-8",
            "urn:ihe:iti:2007:RegistryStoredQuery",
        ),
        ('Application/SOAP+XML; CharSet=UTF-8; ACTION = "urn:x"', "urn:x"),
        ('application/soap+xml; action="urn:a;b"', "urn:a;b"),
        # MTOM: action inside start-info (escaped quotes) ...
        (
            'multipart/related; type="application/xop+xml"; boundary="uuid:0ca0e16e";'
            ' start="<root.message@cxf.apache.org>";'
            ' start-info="application/soap+xml;'
            ' action=\\"urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b\\""',
            "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",
        ),
        # ... or start-info without quotes inside ...
        (
            'multipart/related; type="application/xop+xml"; start-info="application/soap+xml;action=urn:m"; '
            "boundary=MIMEBoundary_1",
            "urn:m",
        ),
        # ... or as a separate top-level parameter (Axis2 / .NET style) ...
        (
            'multipart/related; boundary="MIMEBoundary_action_x"; type="application/xop+xml";'
            ' start="<0.urn:uuid:1@apache.org>"; start-info="application/soap+xml";'
            ' action="urn:ihe:iti:2007:RetrieveDocumentSet"',
            "urn:ihe:iti:2007:RetrieveDocumentSet",
        ),
        # ... or broken nested quotes seen in the wild.
        ('multipart/related; start-info="application/soap+xml; action="urn:w""; boundary=x', "urn:w"),
        # XOP root part.
        ('application/xop+xml; charset=UTF-8; type="application/soap+xml; action=\\"urn:z\\""', "urn:z"),
        ("application/soap+xml; charset=utf-8", None),
        ('application/soap+xml; action=""', None),
        ("text/xml; charset=utf-8", None),
        (
            'multipart/related; type="application/xop+xml"; start-info="application/soap+xml"; boundary=b',
            None,
        ),
        ("", None),
        (None, None),
    ],
)
def test_action_from_content_type(content_type: str | None, expected: str | None) -> None:
    assert action_from_content_type(content_type) == expected


def test_soap_content_type() -> None:
    assert SOAP_CONTENT_TYPE == "application/soap+xml; charset=utf-8"
    assert soap_content_type() == SOAP_CONTENT_TYPE
    ct = soap_content_type("urn:ihe:iti:2007:RegistryStoredQueryResponse")
    assert ct == 'application/soap+xml; charset=utf-8; action="urn:ihe:iti:2007:RegistryStoredQueryResponse"'
    assert action_from_content_type(ct) == "urn:ihe:iti:2007:RegistryStoredQueryResponse"
    assert action_from_content_type(soap_content_type('urn:we"ird')) == 'urn:we"ird'


# --- what the binding and the header blocks refuse (issue 16) -------------------------------------------

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"


def _with_header(blocks: str) -> bytes:
    return (ENV_OPEN + b"<env:Header>" + blocks.encode() + b"<wsa:MessageID>urn:uuid:req-9</wsa:MessageID>"
            b"</env:Header><env:Body><p:x xmlns:p='urn:p'/></env:Body></env:Envelope>")


def _subcodes(fault_xml: bytes) -> list[tuple[str | None, str]]:
    out, sub = [], plain_parse(fault_xml).find(f".//{q(SOAP12, 'Code')}/{q(SOAP12, 'Subcode')}")
    while sub is not None:
        value = sub.find(q(SOAP12, "Value"))
        out.append(resolve_qname(value, value.text))
        sub = sub.find(q(SOAP12, "Subcode"))
    return out


@pytest.mark.parametrize("value", ["yes", "TRUE", "True", "2", "", "t rue", "-1"])
@pytest.mark.parametrize("attr", ["mustUnderstand", "relay"])
def test_soap_boolean_attributes_must_be_xs_boolean(attr: str, value: str) -> None:
    with pytest.raises(SoapError) as info:
        parse_envelope(_with_header(f'<x:H xmlns:x="urn:x" env:{attr}="{value}"/>'))
    err = info.value
    assert err.fault.code == "Sender" and err.http_status == 400 and err.relates_to == "urn:uuid:req-9"
    assert f"env:{attr}" in err.fault.reason and "{urn:x}H" in err.fault.reason and "xs:boolean" in err.fault.reason


@pytest.mark.parametrize("value", ["true", "false", "1", "0", " true", "false\n", "\t1 "])
def test_xs_boolean_lexical_forms_are_accepted(value: str) -> None:
    env = parse_envelope(_with_header(f'<x:H xmlns:x="urn:x" env:mustUnderstand="{value}" env:relay="{value}"/>'))
    assert [b.tag for b in env.header_blocks()] == [q("urn:x", "H"), q(WSA, "MessageID")]


@pytest.mark.parametrize("local", ["To", "From", "ReplyTo", "FaultTo", "Action", "MessageID"])
def test_single_addressing_headers_are_single(local: str) -> None:
    block = f"<wsa:{local}>urn:x</wsa:{local}>" if local not in ("From", "ReplyTo", "FaultTo") else (
        f"<wsa:{local}><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:{local}>")
    with pytest.raises(SoapError) as info:
        parse_envelope(_with_header(block * 2))
    err = info.value
    assert err.fault.code == "Sender" and err.http_status == 400
    root = plain_parse(err.to_bytes())
    assert _subcodes(err.to_bytes()) == [(WSA, "InvalidAddressingHeader"), (WSA, "InvalidCardinality")]
    problem = root.find(f".//{q(SOAP12, 'Detail')}/{q(WSA, 'ProblemHeaderQName')}")
    assert resolve_qname(problem, problem.text) == (WSA, local)
    assert root.findtext(f"{q(SOAP12, 'Header')}/{q(WSA, 'Action')}") == "http://www.w3.org/2005/08/addressing/fault"


def test_relates_to_may_repeat() -> None:
    env = parse_envelope(_with_header("<wsa:RelatesTo>urn:a</wsa:RelatesTo><wsa:RelatesTo>urn:b</wsa:RelatesTo>"))
    assert env.relates_to == "urn:a"


def test_one_security_header_per_role() -> None:
    sec = f'<s:Security xmlns:s="{WSSE}"{{}}/>'
    roles = ["", ' env:role="http://www.w3.org/2003/05/soap-envelope/role/next"', ' env:role="urn:other"']
    parse_envelope(_with_header("".join(sec.format(r) for r in roles)))  # one per role: accepted
    for twice in (sec.format("") * 2, sec.format("") + sec.format(' env:role=""'), sec.format(roles[2]) * 2):
        with pytest.raises(SoapError) as info:
            parse_envelope(_with_header(twice))
        assert info.value.fault.code == "Sender" and "wsse:Security" in info.value.fault.reason
        assert _subcodes(info.value.to_bytes()) == [(WSSE, "InvalidSecurity")]


@pytest.mark.parametrize("content_type", [
    "application/soap+xml", "application/soap+xml; charset=utf-8; action=\"urn:a\"", "APPLICATION/SOAP+XML",
])
def test_check_content_type_accepts_the_soap12_media_type(content_type: str) -> None:
    check_content_type(content_type)
    check_content_type(content_type, mtom=True)


MTOM_OK = 'multipart/related; boundary=b; type="application/xop+xml"; start="<r@x>"; start-info="application/soap+xml"'


@pytest.mark.parametrize(("content_type", "mtom", "code", "words"), [
    ("text/plain", False, "Sender", "text/plain"),
    ("application/json; charset=utf-8", True, "Sender", "application/json"),
    ("application/xml", False, "Sender", "application/xml"),
    ("", False, "Sender", "no Content-Type"),
    (None, True, "Sender", "no Content-Type"),
    (MTOM_OK, False, "Sender", "does not take MTOM"),
    ('multipart/related; boundary=b; type="text/xml"', True, "Sender", "type='text/xml'"),
    ('multipart/related; boundary=b; type="application/xop+xml"', True, "Sender", "start-info='(none)'"),
    ('multipart/mixed; boundary=b; type="application/xop+xml"', True, "Sender", "multipart/mixed"),
    ("text/xml; charset=utf-8", False, "VersionMismatch", "SOAP 1.1"),
    (MTOM_OK.replace('start-info="application/soap+xml"', 'start-info="text/xml"'), True, "VersionMismatch",
     "SOAP 1.1"),
])
def test_check_content_type_refusals_are_415(content_type: str | None, mtom: bool, code: str, words: str) -> None:
    for _ in range(2):  # the second time from the memo: a fresh error each time
        with pytest.raises(SoapError) as info:
            check_content_type(content_type, mtom=mtom)
        err = info.value
        assert err.fault.code == code and err.http_status == 415 and words in err.fault.reason
        err.relates_to = "urn:uuid:not-shared"
    check_content_type(MTOM_OK, mtom=True)


def test_soap11_version_mismatch_is_written_as_soap11() -> None:
    """SOAP 1.2 Part 1 Appendix A: a SOAP/1.1 sender gets a SOAP 1.1 fault it can read, with the Upgrade block."""
    with pytest.raises(SoapError) as info:
        check_content_type("text/xml")
    err = info.value
    assert err.content_type == "text/xml; charset=utf-8"
    root = plain_parse(err.to_bytes())
    assert root.tag == q(SOAP11, "Envelope")
    header, body = elements(root)
    assert header.tag == q(SOAP11, "Header")
    supported = header.find(f"{q(SOAP12, 'Upgrade')}/{q(SOAP12, 'SupportedEnvelope')}")
    assert resolve_qname(supported, supported.get("qname")) == (SOAP12, "Envelope")
    fault = body.find(q(SOAP11, "Fault"))
    code = fault.find("faultcode")
    assert resolve_qname(code, code.text) == (SOAP11, "VersionMismatch")
    assert "SOAP 1.1" in fault.findtext("faultstring")
    assert build_soap11_fault("Sender", "x").count(b"<faultcode>soap:Client</faultcode>") == 1


def test_build_fault_with_a_subsubcode() -> None:
    out = build_fault("Sender", "r", subcode=(WSA, "InvalidAddressingHeader"), subsubcode=("urn:z", "Deeper"))
    assert _subcodes(out) == [(WSA, "InvalidAddressingHeader"), ("urn:z", "Deeper")]
    assert _subcodes(build_fault("Sender", "r", subsubcode=("urn:z", "Deeper"))) == []  # needs a subcode
    spec = SoapFaultSpec("Sender", "r", subcode=(WSA, "A"), subsubcode=(WSA, "B"), status=415)
    assert spec.http_status == 415 and _subcodes(spec.to_bytes()) == [(WSA, "A"), (WSA, "B")]
