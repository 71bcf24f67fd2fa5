"""Hardened XML parsing and namespace-aware lookup helpers.

Every XML payload received by a simulator comes from software under test, so it is treated as hostile:
no DTD of any kind (the root cause of XXE, billion laughs and quadratic blowup), no network or file
access, bounded size. Rejections raise :class:`XmlRejected` with a short, client-presentable message.

Two independent barriers reject DTDs, both driven by libxml2 itself so they work whatever the document
encoding (UTF-16, UTF-32, ...), unlike a byte regex:

1. a pre-scan with a parser *target* whose ``doctype`` callback aborts as soon as ``<!DOCTYPE`` is seen,
   before any declaration of the internal subset is processed (and which stops at the root start tag,
   so it only ever reads the prolog);
2. after the real parse, ``docinfo.doctype`` / ``internalDTD`` / ``externalDTD`` must all be empty.

Both parsers also run with entity resolution, DTD loading and network access disabled.
"""

from __future__ import annotations

import re
import threading
from typing import Literal

from lxml import etree

__all__ = [
    "DEFAULT_MAX_BYTES",
    "NS",
    "XmlRejected",
    "find",
    "findall",
    "leaf_text",
    "localname",
    "namespace",
    "parse_xml",
    "qname",
    "text",
]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024

RejectKind = Literal["too_large", "dtd_forbidden", "malformed", "empty"]

NS: dict[str, str] = {
    "soap12": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "saml2": "urn:oasis:names:tc:SAML:2.0:assertion",
    "xop": "http://www.w3.org/2004/08/xop/include",
    "rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0",
    "rs": "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0",
    "query": "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0",
    "xds": "urn:ihe:iti:xds-b:2007",
    "hl7": "urn:hl7-org:v3",
    "siram": "urn:siram",
}

_DTD_MESSAGE = "XML document type declarations (DTD) are not accepted"
_MAX_DETAIL_CHARS = 160


class XmlRejected(ValueError):
    """The input was refused; ``str(exc)`` is a short message safe to return to the client."""

    def __init__(self, reason: str, kind: RejectKind) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind: RejectKind = kind


class _DoctypeSeen(Exception):
    pass


class _RootReached(Exception):
    pass


class _PrologScanner:
    """Parser target used by the pre-scan: aborts on a DOCTYPE, stops at the root start tag."""

    def doctype(self, name: str | None, pubid: str | None, system: str | None) -> None:
        raise _DoctypeSeen()

    def start(self, tag: str, attrib: dict[str, str], nsmap: dict[str, str] | None = None) -> None:
        raise _RootReached()

    def close(self) -> None:
        return None


_local = threading.local()
# Encodings in which "<!DOCTYPE" can only be written as those very bytes.
_BYTE_SAFE_ENCODINGS = {"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin1", "latin-1", "iso-8859-15",
                        "windows-1252", "cp1252"}
_DECL_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]{1,40})["']""")


def _tree_parser(force_utf8: bool) -> etree.XMLParser:
    # Parsers are not thread-safe but are reusable: one per thread and flavour saves building one per call.
    key = "utf8" if force_utf8 else "auto"
    parser = getattr(_local, key, None)
    if parser is None:
        parser = _parser(force_utf8=force_utf8)
        setattr(_local, key, parser)
    return parser


def _needs_prescan(raw: bytes, force_utf8: bool) -> bool:
    """False when a plain byte search already proves there is no DOCTYPE (the common case, and cheap).

    Only for documents whose bytes are ASCII-compatible and whose declared encoding (if any) writes
    "<!DOCTYPE" as those bytes; anything else (UTF-16/32, UTF-7, EBCDIC…) goes through the parser-based
    pre-scan, which lets libxml2 do the decoding.
    """
    head = raw.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    if not head.startswith(b"<") or head[1:2] in (b"\x00", b""):
        return True
    if not force_utf8:
        declared = _DECL_ENCODING.match(head)
        if declared and declared.group(1).decode("ascii").lower() not in _BYTE_SAFE_ENCODINGS:
            return True
    return b"<!DOCTYPE" in raw


def _parser(*, target: object | None = None, force_utf8: bool = False) -> etree.XMLParser:
    return etree.XMLParser(
        target=target,
        encoding="utf-8" if force_utf8 else None,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        # collect_ids stays at its default on purpose: collect_ids=False sets XML_SKIP_IDS in libxml2's
        # loadsubset flags, which makes libxml2 try to load the *external* DTD despite load_dtd=False.
        recover=False,
    )


def _syntax_message(exc: etree.XMLSyntaxError) -> str:
    # libxml2 messages only echo names/positions from the input (entities are never expanded);
    # truncate anyway so a hostile document cannot make the error message arbitrarily large.
    msg = (getattr(exc, "msg", None) or str(exc) or "syntax error").splitlines()[0].strip()
    if len(msg) > _MAX_DETAIL_CHARS:
        msg = msg[: _MAX_DETAIL_CHARS - 3] + "..."
    return f"XML is not well-formed: {msg}"


def _prescan(raw: bytes, force_utf8: bool) -> None:
    """Barrier 1: read the prolog only; encoding-agnostic because libxml2 does the decoding."""
    try:
        etree.fromstring(raw, _parser(target=_PrologScanner(), force_utf8=force_utf8))
    except _DoctypeSeen:
        raise XmlRejected(_DTD_MESSAGE, "dtd_forbidden") from None
    except _RootReached:
        pass
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(_syntax_message(exc), "malformed") from None


def parse_xml(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse untrusted XML and return its root element, or raise :class:`XmlRejected`."""
    if isinstance(data, str):
        # Cheap check on the character count first (a char is >= 1 byte) to avoid encoding a huge string.
        if len(data) > max_bytes:
            raise XmlRejected(f"XML document exceeds the maximum size of {max_bytes} bytes", "too_large")
        raw = data.encode("utf-8")
        force_utf8 = True  # the str was already decoded: ignore any encoding="..." in its declaration
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        force_utf8 = False
    else:
        raise TypeError(f"parse_xml expects bytes or str, not {type(data).__name__}")

    if len(raw) > max_bytes:
        raise XmlRejected(f"XML document exceeds the maximum size of {max_bytes} bytes", "too_large")
    if not raw.removeprefix(b"\xef\xbb\xbf").strip():
        raise XmlRejected("XML document is empty", "empty")

    prescanned = _needs_prescan(raw, force_utf8)
    if prescanned:
        _prescan(raw, force_utf8)  # barrier 1

    try:
        root = etree.fromstring(raw, _tree_parser(force_utf8))
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(_syntax_message(exc), "malformed") from None
    if root is None:  # defensive: lxml returns None for some degenerate inputs in recover mode
        raise XmlRejected("XML document has no root element", "malformed")

    # Barrier 2: whatever slipped through the pre-scan must not carry a DTD. Not needed when the bytes
    # themselves proved there is no "<!DOCTYPE" (no DTD can be declared without it).
    if prescanned:
        docinfo = root.getroottree().docinfo
        if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
            raise XmlRejected(_DTD_MESSAGE, "dtd_forbidden")
    return root


# --- namespace-aware helpers -------------------------------------------------------------------------


def _nsmap(ns: dict[str, str] | None) -> dict[str, str]:
    # Paths always use *our* prefixes (NS + caller extras), never the document's, so lookups do not
    # depend on whichever prefixes the sender picked.
    return NS if not ns else {**NS, **ns}


_PREFIXED = re.compile(r"\{[^}]*\}|([A-Za-z_][\w.-]*):([A-Za-z_*][\w.-]*)")
_clark_cache: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}


def _clark(path: str, ns: dict[str, str] | None) -> str:
    """`ctxlps:LPS/ctxlps:IDAM` → `{urn:siram:lps:ctxlps}LPS/{…}IDAM`, cached: lxml then skips its own
    per-call namespace handling (it sorts the whole mapping on every find)."""
    key = (path, tuple(sorted(ns.items())) if ns else ())
    clark = _clark_cache.get(key)
    if clark is None:
        mapping = _nsmap(ns)

        def sub(m: re.Match) -> str:
            if m.group(1) is None:  # already Clark notation: {uri}
                return m.group(0)
            uri = mapping.get(m.group(1))
            if uri is None:
                raise SyntaxError(f"prefix {m.group(1)!r} not found in prefix map")
            return f"{{{uri}}}{m.group(2)}"

        clark = _PREFIXED.sub(sub, path)
        if len(_clark_cache) < 4096:
            _clark_cache[key] = clark
    return clark


def find(el: etree._Element | None, path: str, ns: dict[str, str] | None = None) -> etree._Element | None:
    """First element matching ``path`` (e.g. ``"soap12:Header/wsa:Action"``), or None."""
    if el is None:
        return None
    if "[" in path:  # predicates may hold colons in literals: let lxml resolve the prefixes
        return el.find(path, namespaces=_nsmap(ns))
    return el.find(_clark(path, ns))


def findall(el: etree._Element | None, path: str, ns: dict[str, str] | None = None) -> list[etree._Element]:
    """All elements matching ``path`` (empty list when ``el`` is None)."""
    if el is None:
        return []
    if "[" in path:
        return el.findall(path, namespaces=_nsmap(ns))
    return el.findall(_clark(path, ns))


def text(
    el: etree._Element | None,
    path: str | None = None,
    default: str | None = None,
    ns: dict[str, str] | None = None,
) -> str | None:
    """Stripped text content of ``el`` (or of its first ``path`` match); ``default`` when not found.

    Text of descendant elements is included (comments/PIs are not), so a value split by a comment
    still reads back whole. A present but empty element yields ``""``, not ``default``.
    """
    target = el if not path else find(el, path, ns)
    if target is None:
        return default
    return leaf_text(target)


def leaf_text(el: etree._Element) -> str:
    """Stripped text content of ``el`` (see :func:`text`); a leaf's is its ``.text``, read without itertext."""
    if len(el):
        return "".join(el.itertext()).strip()
    return (el.text or "").strip()


def localname(el: etree._Element) -> str:
    """Local name of an element ("" for comments / processing instructions)."""
    if not isinstance(el.tag, str):
        return ""
    return etree.QName(el).localname


def namespace(el: etree._Element) -> str | None:
    """Namespace URI of an element (None when unqualified or not an element)."""
    if not isinstance(el.tag, str):
        return None
    return etree.QName(el).namespace


def qname(ns_uri: str | None, local: str) -> str:
    """Clark notation ``{ns}local`` as used by lxml tags (plain ``local`` when ns_uri is empty)."""
    return f"{{{ns_uri}}}{local}" if ns_uri else local
