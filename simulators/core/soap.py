"""SOAP 1.2 (+ WS-Addressing 2005/08) envelope parsing and building.

Parsing goes through :func:`simulators.core.xmlsafe.parse_xml` (no DTD, bounded size). Any problem with
the incoming envelope raises :class:`SoapError`, which carries a ready-to-send SOAP 1.2 fault and its
HTTP status, so an endpoint can simply ``except SoapError as e: return e.to_bytes(), e.http_status``.

What every SOAP service gets from here, once (issue 16: each of these used to be accepted):

* :func:`check_content_type` — the SOAP 1.2 HTTP binding's media type (Part 2 §7), or MTOM's XOP package where a
  service takes it; SOAP 1.1's ``text/xml`` is a VersionMismatch answered the SOAP 1.1 way (Part 1 Appendix A),
  anything else HTTP 415;
* :func:`parse_envelope` — the envelope's structure and version, ``env:mustUnderstand`` / ``env:relay`` values
  (xs:boolean, Part 1 §5.2.3-4), at most one of each single WS-Addressing header (WS-Addressing 1.0 Core §3.2,
  fault of the SOAP Binding §6.4.1) and one ``wsse:Security`` per role (WS-Security 1.1 SOAP Message Security §5).

References: SOAP 1.2 Part 1 §5 (envelope, faults, Upgrade / NotUnderstood header blocks) and Appendix A (SOAP 1.1
senders), SOAP 1.2 Part 2 §7 (HTTP binding; §7.5.1.2 fault -> HTTP status), RFC 3902 (application/soap+xml action
parameter), XOP/MTOM (multipart/related type and start-info), WS-Addressing 1.0 SOAP binding (faults and their
action URIs), WS-Security 1.1 (wsse:InvalidSecurity).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from lxml import etree

from simulators.core.ids import uuid4
from simulators.core.xmlsafe import DEFAULT_MAX_BYTES, NS, XmlRejected, leaf_text, namespace, parse_xml, qname, text

__all__ = [
    "FAULT_CODES",
    "ROLE_NEXT",
    "ROLE_NONE",
    "ROLE_ULTIMATE_RECEIVER",
    "SOAP11_CONTENT_TYPE",
    "SOAP11_NS",
    "SOAP12_NS",
    "SOAP_CONTENT_TYPE",
    "UNSUPPORTED_MEDIA_TYPE",
    "WSA_ADDRESSING_FAULT_ACTION",
    "WSA_FAULT_ACTION",
    "WSA_NS",
    "Envelope",
    "SoapError",
    "SoapFaultSpec",
    "action_from_content_type",
    "build_envelope",
    "build_fault",
    "build_soap11_fault",
    "check_content_type",
    "envelope_bytes",
    "escape_text",
    "fault_http_status",
    "must_understand_fault",
    "new_message_id",
    "parse_envelope",
    "soap_content_type",
]

SOAP12_NS = NS["soap12"]
SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSA_NS = NS["wsa"]
XML_NS = "http://www.w3.org/XML/1998/namespace"
WSA_FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"  # faults SOAP defines
WSA_ADDRESSING_FAULT_ACTION = "http://www.w3.org/2005/08/addressing/fault"  # faults WS-Addressing defines
SOAP_CONTENT_TYPE = "application/soap+xml; charset=utf-8"
SOAP11_CONTENT_TYPE = "text/xml; charset=utf-8"
UNSUPPORTED_MEDIA_TYPE = 415

ROLE_NEXT = "http://www.w3.org/2003/05/soap-envelope/role/next"
ROLE_NONE = "http://www.w3.org/2003/05/soap-envelope/role/none"
ROLE_ULTIMATE_RECEIVER = "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver"

FaultCode = Literal["Sender", "Receiver", "VersionMismatch", "MustUnderstand", "DataEncodingUnknown"]
FAULT_CODES: frozenset[str] = frozenset(
    {"Sender", "Receiver", "VersionMismatch", "MustUnderstand", "DataEncodingUnknown"}
)
Subcode = str | tuple[str, str]
Detail = etree._Element | Sequence[etree._Element] | str | None

_ENV = "env"  # prefix we always bind to SOAP12_NS on our own envelopes
_RESERVED_PREFIXES = frozenset({_ENV, "wsa", "xml", "xmlns"})
_TRUE = frozenset({"true", "1"})


def _q(local: str) -> str:
    return qname(SOAP12_NS, local)


# --- content types -------------------------------------------------------------------------------------


def soap_content_type(action: str | None = None) -> str:
    """``application/soap+xml; charset=utf-8`` plus the RFC 3902 ``action`` parameter when given."""
    if not action:
        return SOAP_CONTENT_TYPE
    escaped = action.replace("\\", "\\\\").replace('"', '\\"')
    return f'{SOAP_CONTENT_TYPE}; action="{escaped}"'


def _content_type_params(value: str) -> dict[str, str]:
    """Parameters of a MIME content type; quoted-strings (with backslash escapes) may contain ';'."""
    params: dict[str, str] = {}
    i, n = value.find(";"), len(value)
    if i < 0:
        return params
    while i < n:
        while i < n and value[i] in "; \t\r\n":
            i += 1
        start = i
        while i < n and value[i] not in "=;":
            i += 1
        name = value[start:i].strip().lower()
        if i >= n or value[i] == ";":
            continue  # bare token without '=' (seen in broken clients): ignore
        i += 1  # skip '='
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(value[i])
                i += 1
            i += 1  # closing quote
            val = "".join(chars)
            while i < n and value[i] != ";":  # junk after a closing quote
                i += 1
        else:
            start = i
            while i < n and value[i] != ";":
                i += 1
            val = value[start:i].strip()
        if name:
            params.setdefault(name, val)
    return params


# Last resort for clients that nest unescaped quotes, e.g. start-info="application/soap+xml; action="urn:x"".
_LOOSE_ACTION = re.compile(r'(?:^|[;\s"\\])action\s*=\s*\\?"?\s*([^"\\;\s]+)', re.IGNORECASE)


def action_from_content_type(content_type: str | None) -> str | None:
    """SOAP action carried by an HTTP Content-Type, or None.

    Handles ``application/soap+xml; action="..."`` (RFC 3902), MTOM ``multipart/related`` where the
    action is either a top-level parameter or inside ``start-info``, and the ``application/xop+xml``
    root part where it sits inside ``type``. Quotes are optional.
    """
    if not content_type:
        return None
    found = _structured_action(content_type, depth=0)
    if found:
        return found
    match = _LOOSE_ACTION.search(content_type)
    return match.group(1) if match else None


def _structured_action(content_type: str, depth: int) -> str | None:
    params = _content_type_params(content_type)
    action = params.get("action", "").strip()
    if action:
        return action
    if depth < 2:  # the nested value is itself a content type; bounded recursion
        for key in ("start-info", "type"):
            if params.get(key):
                nested = _structured_action(params[key], depth + 1)
                if nested:
                    return nested
    return None


_MEDIA_TYPES: dict[tuple[str, bool], SoapError | None] = {}


def check_content_type(content_type: str | None, *, mtom: bool = False) -> None:
    """Refuse a request the SOAP 1.2 HTTP binding does not carry; raise :class:`SoapError` (HTTP 415).

    ``application/soap+xml`` (Part 2 §7.1.4) passes, and with ``mtom`` a XOP package: ``multipart/related`` whose
    ``type`` is ``application/xop+xml`` and whose ``start-info`` is ``application/soap+xml``. ``text/xml`` is the
    SOAP 1.1 binding: a VersionMismatch fault written as SOAP 1.1 (Part 1 Appendix A), with the Upgrade header
    block. Anything else (none included) is refused as an unsupported media type. The status is 415, as a JAX-WS
    (Metro) endpoint answers an unsupported content type; Metro sends no body, we send the fault to say why.
    Memoised: clients send the same few content types over and over, and INSi checks on its hot path.
    """
    key = (content_type or "", mtom)
    try:
        refusal = _MEDIA_TYPES[key]
    except KeyError:
        refusal = _media_type_refusal(content_type or "", mtom)
        if len(_MEDIA_TYPES) < 1024:
            _MEDIA_TYPES[key] = refusal
    if refusal is not None:
        # A fresh error each time: callers set relates_to on it.
        raise SoapError(refusal.fault, xml_kind=refusal.xml_kind)


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _media_type_refusal(content_type: str, mtom: bool) -> SoapError | None:
    media = _media_type(content_type)
    if media == "application/soap+xml":
        return None
    expected = "application/soap+xml" + (" (or an MTOM/XOP multipart/related package)" if mtom else "")
    if media == "text/xml":
        return _soap11_sender(f"Content-Type text/xml is the SOAP 1.1 HTTP binding; this endpoint speaks SOAP 1.2 "
                              f"only: send the SOAP 1.2 envelope ({SOAP12_NS}) as {expected}")
    if media == "multipart/related" and mtom:
        params = _content_type_params(content_type)
        package = _media_type(params.get("type", ""))
        if package != "application/xop+xml":
            return _unsupported(f"multipart/related with type={package or '(none)'!r}: an MTOM message is a XOP "
                                "package, type=\"application/xop+xml\"")
        start_info = _media_type(params.get("start-info", ""))
        if start_info == "text/xml":
            return _soap11_sender("XOP package with start-info=\"text/xml\" carries a SOAP 1.1 message; this "
                                  "endpoint speaks SOAP 1.2 only: start-info=\"application/soap+xml\"")
        if start_info != "application/soap+xml":
            return _unsupported(f"XOP package with start-info={start_info or '(none)'!r}: the SOAP 1.2 MTOM binding "
                                "says start-info=\"application/soap+xml\"")
        return None
    if media == "multipart/related":
        why = "this service does not take MTOM/XOP packages"
    elif media:
        why = f"Content-Type {media} is not a SOAP 1.2 message"
    else:
        why = "no Content-Type"
    return _unsupported(f"Unsupported media type ({why}): the SOAP 1.2 HTTP binding sends {expected}")


def _unsupported(reason: str) -> SoapError:
    return SoapError(SoapFaultSpec("Sender", reason, lang="en", status=UNSUPPORTED_MEDIA_TYPE))


def _soap11_sender(reason: str) -> SoapError:
    return SoapError(SoapFaultSpec("VersionMismatch", reason, lang="en", status=UNSUPPORTED_MEDIA_TYPE, soap11=True))


# --- faults ---------------------------------------------------------------------------------------------


def fault_http_status(code: str) -> int:
    """HTTP status for a fault code, per SOAP 1.2 Part 2 §7.5.1.2: Sender -> 400, anything else -> 500."""
    local = code.rsplit("}", 1)[-1].rsplit(":", 1)[-1]  # accept "env:Sender" / "{ns}Sender" too
    return 400 if local == "Sender" else 500


def new_message_id() -> str:
    return f"urn:uuid:{uuid4()}"


@dataclass
class SoapFaultSpec:
    """Everything needed to serialise a SOAP 1.2 fault; see :func:`build_fault` for the fields."""

    code: FaultCode
    reason: str
    subcode: Subcode | None = None
    detail: Detail = None
    lang: str = "fr"
    subcode_ns: str = NS["siram"]
    subcode_prefix: str = "siram"
    header_blocks: Sequence[etree._Element] = field(default_factory=tuple)
    action: str | None = WSA_FAULT_ACTION
    subsubcode: Subcode | None = None  # a Subcode inside the Subcode (WS-Addressing's InvalidCardinality…)
    status: int | None = None  # HTTP status when not the one of the code (e.g. 415 for a refused media type)
    soap11: bool = False  # written as a SOAP 1.1 fault, for a SOAP 1.1 sender (Part 1 Appendix A)

    @property
    def http_status(self) -> int:
        return self.status or fault_http_status(self.code)

    @property
    def content_type(self) -> str:
        return SOAP11_CONTENT_TYPE if self.soap11 else soap_content_type(self.action)

    def to_bytes(self, *, relates_to: str | None = None, message_id: str | None = None) -> bytes:
        if self.soap11:
            return build_soap11_fault(self.code, self.reason)
        return build_fault(
            self.code,
            self.reason,
            subcode=self.subcode,
            subsubcode=self.subsubcode,
            subcode_ns=self.subcode_ns,
            subcode_prefix=self.subcode_prefix,
            lang=self.lang,
            detail=self.detail,
            action=self.action,
            relates_to=relates_to,
            message_id=message_id,
            header_blocks=self.header_blocks,
        )


class SoapError(Exception):
    """An incoming message cannot be processed; carries the fault to send back.

    ``xml_kind`` is the :class:`XmlRejected` kind when the payload was refused by the XML layer
    (e.g. "too_large", should the caller prefer an HTTP 413), else None.
    """

    def __init__(self, fault: SoapFaultSpec, *, relates_to: str | None = None, xml_kind: str | None = None):
        super().__init__(fault.reason)
        self.fault = fault
        self.relates_to = relates_to
        self.xml_kind = xml_kind

    @property
    def http_status(self) -> int:
        return self.fault.http_status

    @property
    def content_type(self) -> str:
        return self.fault.content_type

    def to_bytes(self) -> bytes:
        return self.fault.to_bytes(relates_to=self.relates_to)


def _resolve_subcode(subcode: Subcode, default_ns: str, default_prefix: str) -> tuple[str, str, str]:
    """(namespace, prefix, local) for a subcode given as bare local, "{ns}local", "prefix:local" or tuple."""
    if isinstance(subcode, tuple):
        ns_uri, local = subcode
    elif subcode.startswith("{"):
        ns_uri, _, local = subcode[1:].partition("}")
    elif ":" in subcode:
        prefix, _, local = subcode.partition(":")
        if prefix == default_prefix:
            ns_uri = default_ns
        elif prefix in NS:
            ns_uri = NS[prefix]
        else:
            raise ValueError(f"unknown prefix in fault subcode {subcode!r}; pass (namespace, local) instead")
    else:
        ns_uri, local = default_ns, subcode
    if not ns_uri:
        raise ValueError("a fault subcode must be namespace-qualified")
    etree.QName(ns_uri, local)  # validates local as an NCName (raises ValueError)
    if ns_uri == SOAP12_NS:
        return ns_uri, _ENV, local
    if ns_uri == WSA_NS:
        return ns_uri, "wsa", local
    known_prefix = next((p for p, u in NS.items() if u == ns_uri), "sc")
    prefix = default_prefix if ns_uri == default_ns else known_prefix
    if prefix in _RESERVED_PREFIXES or not prefix:
        prefix = "sc"
    return ns_uri, prefix, local


def _upgrade_block() -> etree._Element:
    # SOAP 1.2 Part 1 §5.4.7: tell a SOAP 1.1 (or other) sender which envelope version we support.
    upgrade = etree.Element(_q("Upgrade"), nsmap={_ENV: SOAP12_NS})
    etree.SubElement(upgrade, _q("SupportedEnvelope"), qname=f"{_ENV}:Envelope")
    return upgrade


def build_fault(
    code: FaultCode,
    reason: str,
    *,
    subcode: Subcode | None = None,
    subsubcode: Subcode | None = None,
    subcode_ns: str = NS["siram"],
    subcode_prefix: str = "siram",
    lang: str = "fr",
    detail: Detail = None,
    action: str | None = WSA_FAULT_ACTION,
    relates_to: str | None = None,
    message_id: str | None = None,
    header_blocks: Iterable[etree._Element] = (),
) -> bytes:
    """Serialise a SOAP 1.2 fault envelope.

    ``subcode`` is a QName: a bare local name ("siram_40") is put in ``subcode_ns`` with
    ``subcode_prefix`` (declared on the Value element so the QName resolves); "{ns}local",
    "prefix:local" (prefix from NS) or a (ns, local) tuple are accepted too; ``subsubcode`` (same forms)
    nests a second Subcode in the first. A VersionMismatch fault automatically gets the env:Upgrade header
    block. ``detail`` elements are copied, never moved.
    """
    if code not in FAULT_CODES:
        raise ValueError(f"invalid SOAP 1.2 fault code {code!r}; expected one of {sorted(FAULT_CODES)}")
    fault = etree.Element(_q("Fault"), nsmap={_ENV: SOAP12_NS})
    code_el = etree.SubElement(fault, _q("Code"))
    etree.SubElement(code_el, _q("Value")).text = f"{_ENV}:{code}"
    parent = code_el
    for sub in (subcode, subsubcode if subcode is not None else None):
        if sub is None:
            break
        sub_ns, prefix, local = _resolve_subcode(sub, subcode_ns, subcode_prefix)
        parent = etree.SubElement(parent, _q("Subcode"))
        nsmap = None if prefix in (_ENV, "wsa") else {prefix: sub_ns}
        etree.SubElement(parent, _q("Value"), nsmap=nsmap).text = f"{prefix}:{local}"
    reason_el = etree.SubElement(fault, _q("Reason"))
    etree.SubElement(reason_el, _q("Text"), {qname(XML_NS, "lang"): lang}).text = reason
    if detail is not None:
        detail_el = etree.SubElement(fault, _q("Detail"))
        if isinstance(detail, str):
            detail_el.text = detail
        else:
            for item in [detail] if isinstance(detail, etree._Element) else detail:
                detail_el.append(copy.deepcopy(item))
    blocks = list(header_blocks)
    if code == "VersionMismatch":
        blocks.insert(0, _upgrade_block())
    return build_envelope(
        fault, header_blocks=blocks, action=action, relates_to=relates_to, message_id=message_id
    )


_SOAP11_CODES = {"Sender": "Client", "Receiver": "Server"}  # SOAP 1.1 §4.4.1 names


def build_soap11_fault(code: FaultCode, reason: str) -> bytes:
    """A SOAP 1.1 fault envelope, for a SOAP 1.1 sender: SOAP 1.2 Part 1 Appendix A says a SOAP 1.2 node answers
    a SOAP/1.1 message with a VersionMismatch fault it can read, carrying the Upgrade header block."""
    root = etree.Element(qname(SOAP11_NS, "Envelope"), nsmap={"soap": SOAP11_NS})
    if code == "VersionMismatch":
        etree.SubElement(root, qname(SOAP11_NS, "Header")).append(_upgrade_block())
    fault = etree.SubElement(etree.SubElement(root, qname(SOAP11_NS, "Body")), qname(SOAP11_NS, "Fault"))
    etree.SubElement(fault, "faultcode").text = f"soap:{_SOAP11_CODES.get(code, code)}"  # unqualified children
    etree.SubElement(fault, "faultstring").text = reason
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(root, encoding="UTF-8")


def must_understand_fault(
    blocks: Iterable[etree._Element], reason: str = "Header block(s) not understood", lang: str = "en"
) -> SoapFaultSpec:
    """MustUnderstand fault with one env:NotUnderstood header block per block (SOAP 1.2 Part 1 §5.4.8)."""
    not_understood = []
    for block in blocks:
        q = etree.QName(block)
        prefix = "ns1" if q.namespace else None
        nsmap = {_ENV: SOAP12_NS, **({prefix: q.namespace} if prefix else {})}
        el = etree.Element(_q("NotUnderstood"), nsmap=nsmap)
        el.set("qname", f"{prefix}:{q.localname}" if prefix else q.localname)
        not_understood.append(el)
    return SoapFaultSpec("MustUnderstand", reason, lang=lang, header_blocks=tuple(not_understood))


# --- envelopes ------------------------------------------------------------------------------------------


def build_envelope(
    body: etree._Element | Sequence[etree._Element] | None,
    *,
    header_blocks: Iterable[etree._Element] = (),
    action: str | None = None,
    relates_to: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """Serialise a SOAP 1.2 envelope (UTF-8, with XML declaration).

    WS-Addressing headers come first: wsa:Action (if given), wsa:MessageID (a new urn:uuid when
    ``message_id`` is None; pass "" to omit it), wsa:RelatesTo (if given); then ``header_blocks``.
    ``body`` / ``header_blocks`` elements are deep-copied, so the caller's trees are left untouched.
    """
    root = etree.Element(_q("Envelope"), nsmap={_ENV: SOAP12_NS, "wsa": WSA_NS})
    header = etree.Element(_q("Header"))
    if action:
        etree.SubElement(header, qname(WSA_NS, "Action")).text = action
    if message_id is None:
        message_id = new_message_id()
    if message_id:
        etree.SubElement(header, qname(WSA_NS, "MessageID")).text = message_id
    if relates_to:
        etree.SubElement(header, qname(WSA_NS, "RelatesTo")).text = relates_to
    for block in header_blocks:
        header.append(copy.deepcopy(block))
    if len(header):
        root.append(header)
    body_el = etree.SubElement(root, _q("Body"))
    if body is not None:
        for item in [body] if isinstance(body, etree._Element) else body:
            body_el.append(copy.deepcopy(item))
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(
        root, encoding="UTF-8", xml_declaration=False
    )


_ENVELOPE_OPEN = (f'<?xml version="1.0" encoding="UTF-8"?>\n<{_ENV}:Envelope xmlns:{_ENV}="{SOAP12_NS}"'
                  f' xmlns:wsa="{WSA_NS}">').encode()
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


def escape_text(value: str) -> str:
    """Character data escaped exactly as lxml (libxml2) serialises it: &, <, > and carriage return."""
    if "&" in value or "<" in value or ">" in value or "\r" in value:
        return value.translate(_TEXT_ESCAPES)
    return value  # the usual case (ids, actions): four scans cost less than a translation


def envelope_bytes(body_xml: bytes, *, action: str | None = None, relates_to: str | None = None,
                   message_id: str | None = None) -> bytes:
    """The bytes :func:`build_envelope` writes for one body element already serialised on its own
    (``etree.tostring(element, encoding="UTF-8")`` of an element declaring its own namespaces), without
    building a tree: for answers sent thousands of times a second. No header blocks."""
    if message_id is None:
        message_id = new_message_id()
    header = []
    if action:
        header.append(f"<wsa:Action>{escape_text(action)}</wsa:Action>")
    if message_id:
        header.append(f"<wsa:MessageID>{escape_text(message_id)}</wsa:MessageID>")
    if relates_to:
        header.append(f"<wsa:RelatesTo>{escape_text(relates_to)}</wsa:RelatesTo>")
    head = f"<{_ENV}:Header>{''.join(header)}</{_ENV}:Header>".encode() if header else b""
    return b"".join((_ENVELOPE_OPEN, head, b"<env:Body>", body_xml, b"</env:Body></env:Envelope>"))


@dataclass
class Envelope:
    """A parsed, structurally valid SOAP 1.2 envelope."""

    root: etree._Element
    header: etree._Element | None
    body: etree._Element
    body_element: etree._Element
    action: str | None
    message_id: str | None
    relates_to: str | None = None
    _blocks: list[etree._Element] | None = field(default=None, repr=False, compare=False)

    def header_blocks(self) -> list[etree._Element]:
        # Computed once: the envelope is read-only once parsed, and services ask several times per request.
        if self._blocks is None:
            self._blocks = [] if self.header is None else list(self.header.iterchildren(etree.Element))
        return list(self._blocks)

    def header_block(self, ns_uri: str, local: str) -> etree._Element | None:
        """First header block with the given expanded name, or None."""
        tag = qname(ns_uri, local)
        if self._blocks is None:
            self.header_blocks()
        return next((b for b in self._blocks if b.tag == tag), None)  # type: ignore[union-attr]

    def must_understand_blocks(self, understood: Iterable[str] = ()) -> list[etree._Element]:
        """Header blocks targeted at us with env:mustUnderstand true that the caller does not handle.

        ``understood`` holds namespace URIs and/or "{ns}local" names; WS-Addressing is always
        understood (this module processes it). Only blocks for the roles we play (none given,
        "next" or "ultimateReceiver") count, per SOAP 1.2 Part 1 §2.4 / §2.7.
        """
        known = {WSA_NS, *understood}
        result = []
        for block in self.header_blocks():
            if (block.get(_MUST_UNDERSTAND) or "").strip() not in _TRUE:
                continue
            role = (block.get(_ROLE) or "").strip()
            if role and role not in (ROLE_NEXT, ROLE_ULTIMATE_RECEIVER):
                continue
            if block.tag in known or namespace(block) in known:
                continue
            result.append(block)
        return result


def _sender(reason: str, relates_to: str | None = None, xml_kind: str | None = None) -> SoapError:
    return SoapError(SoapFaultSpec("Sender", reason, lang="en"), relates_to=relates_to, xml_kind=xml_kind)


def parse_envelope(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Envelope:
    """Parse and structurally check a SOAP 1.2 envelope; raise :class:`SoapError` otherwise.

    Not XML / DTD / too large / empty -> Sender. Root other than {soap12}Envelope -> VersionMismatch
    (SOAP 1.2 Part 1 §5.4.7 applies to any wrong namespace or local name, SOAP 1.1 included).
    Missing/misplaced Body, extra children, or empty Body -> Sender. Header blocks (issue 16): an
    env:mustUnderstand or env:relay that is not an xs:boolean -> Sender; a single WS-Addressing header
    (To, From, ReplyTo, FaultTo, Action, MessageID) present twice -> Sender wsa:InvalidAddressingHeader /
    wsa:InvalidCardinality; two wsse:Security blocks for one role -> Sender wsse:InvalidSecurity. Faults relate
    to the incoming wsa:MessageID when it could be read.
    """
    try:
        root = parse_xml(data, max_bytes=max_bytes)
    except XmlRejected as exc:
        raise _sender(str(exc), xml_kind=exc.kind) from exc

    if root.tag != _q("Envelope"):
        # Best effort: a SOAP 1.1 envelope may still carry a WS-Addressing MessageID.
        relates_to = text(root, "*/wsa:MessageID") or None
        if namespace(root) == SOAP11_NS:
            reason = (
                f"SOAP 1.1 envelopes are not supported, this endpoint only accepts SOAP 1.2 ({SOAP12_NS})"
            )
        else:
            reason = f"Root element is not a SOAP 1.2 Envelope ({{{SOAP12_NS}}}Envelope)"
        fault = SoapFaultSpec("VersionMismatch", reason, lang="en")
        raise SoapError(fault, relates_to=relates_to)

    children = [c for c in root if isinstance(c.tag, str)]
    header = children[0] if children and children[0].tag == _HEADER else None
    # One pass over the header: its blocks (kept for the services), the first of each WS-Addressing field, and the
    # first block refused (raised after the pass, so that the fault relates to the request's MessageID). Runs on
    # INSi's hot path: one read of each block's attribute names, a set lookup for the few blocks that must be single.
    blocks: list[etree._Element] = []
    wsa: dict[str, str | None] = {}
    refused: SoapError | None = None
    if header is not None:
        single: set[tuple[str, str]] = set()
        for block in header.iterchildren(etree.Element):
            blocks.append(block)
            tag = block.tag
            if tag in _WSA_FIELDS and tag not in wsa:
                wsa[tag] = leaf_text(block) or None
            if refused is not None:
                continue
            names = block.keys()  # the attribute names: cheaper than looking each SOAP attribute up
            if names:
                for attr in _BOOLEAN_ATTRS:
                    if attr in names:
                        value = block.get(attr) or ""
                        if value not in _BOOLEANS and value.strip(_XML_SPACE) not in _BOOLEANS:
                            refused = _not_boolean(block, attr, value)
            if tag in _SINGLE_BLOCKS:
                key = (tag, _role_of(block) if _ROLE in names else ROLE_ULTIMATE_RECEIVER)
                if key in single:
                    refused = _repeated(tag, key[1])
                single.add(key)
    relates_to = wsa.get(_WSA_MESSAGE_ID)
    if refused is not None:
        refused.relates_to = relates_to
        raise refused
    rest = children[1:] if header is not None else children
    if not rest or rest[0].tag != _BODY:
        raise _sender("SOAP Envelope must contain an optional env:Header followed by an env:Body", relates_to)
    body = rest[0]
    if len(rest) > 1:
        raise _sender("SOAP Envelope must not contain elements after env:Body", relates_to)
    if (root.text or "").strip() or any((c.tail or "").strip() for c in root):
        raise _sender("SOAP Envelope must not contain character data", relates_to)

    body_children = [c for c in body if isinstance(c.tag, str)]
    if not body_children:
        raise _sender("SOAP Body is empty", relates_to)

    return Envelope(
        root=root,
        header=header,
        body=body,
        body_element=body_children[0],
        action=wsa.get(_WSA_ACTION),
        message_id=relates_to,
        relates_to=wsa.get(_WSA_RELATES_TO),
        _blocks=blocks,
    )


_HEADER, _BODY = _q("Header"), _q("Body")
_MUST_UNDERSTAND, _ROLE = _q("mustUnderstand"), _q("role")
_WSA_ACTION, _WSA_MESSAGE_ID, _WSA_RELATES_TO = (qname(WSA_NS, n) for n in ("Action", "MessageID", "RelatesTo"))
_WSA_FIELDS = frozenset((_WSA_ACTION, _WSA_MESSAGE_ID, _WSA_RELATES_TO))

# env:mustUnderstand and env:relay are xs:boolean (SOAP 1.2 Part 1 §5.2.3, §5.2.4): whitespace collapsed, then one of
# four literals ("TRUE", "yes" are not).
_BOOLEAN_ATTRS = (_MUST_UNDERSTAND, _q("relay"))
_BOOLEANS = frozenset({"true", "false", "1", "0"})
_XML_SPACE = " \t\r\n"
_WSSE_SECURITY = qname(NS["wsse"], "Security")
# WS-Addressing 1.0 Core §3.2: every message addressing property but [relationship] (wsa:RelatesTo, 0..n) is single.
_WSA_SINGLE = frozenset(qname(WSA_NS, n) for n in ("To", "From", "ReplyTo", "FaultTo", "Action", "MessageID"))
_SINGLE_BLOCKS = _WSA_SINGLE | {_WSSE_SECURITY}


def _role_of(block: etree._Element) -> str:
    # No role and an empty one both target the ultimate receiver (SOAP 1.2 Part 1 §5.2.2).
    return (block.get(_ROLE) or "").strip(_XML_SPACE) or ROLE_ULTIMATE_RECEIVER


def _block_name(block: etree._Element) -> str:
    q = etree.QName(block)
    return f"{{{q.namespace}}}{q.localname}" if q.namespace else q.localname


def _not_boolean(block: etree._Element, attr: str, value: str) -> SoapError:
    shown = value if len(value) <= 40 else value[:37] + "..."
    local = etree.QName(attr).localname
    return _sender(f"env:{local}={shown!r} on header block {_block_name(block)} is not an xs:boolean: \"true\", "
                   f"\"false\", \"1\" or \"0\" (SOAP 1.2 Part 1 §5.2.{3 if local == 'mustUnderstand' else 4})")


def _repeated(tag: str, role: str) -> SoapError:
    if tag == _WSSE_SECURITY:
        target = "the ultimate receiver (no role)" if role == ROLE_ULTIMATE_RECEIVER else f"role {role[:200]}"
        return SoapError(SoapFaultSpec(
            "Sender", f"Two wsse:Security header blocks for {target}: WS-Security allows one per role (WS-Security "
                      "1.1 SOAP Message Security §5)", subcode=(NS["wsse"], "InvalidSecurity"), lang="en"))
    local = etree.QName(tag).localname
    problem = etree.Element(qname(WSA_NS, "ProblemHeaderQName"), nsmap={"wsa": WSA_NS})
    problem.text = f"wsa:{local}"
    return SoapError(SoapFaultSpec(
        "Sender", f"Invalid WS-Addressing header: wsa:{local} appears more than once, a message carries at most one "
                  "(WS-Addressing 1.0 Core §3.2)",
        subcode=(WSA_NS, "InvalidAddressingHeader"), subsubcode=(WSA_NS, "InvalidCardinality"), detail=problem,
        lang="en", action=WSA_ADDRESSING_FAULT_ACTION))
