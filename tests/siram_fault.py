"""Reading a teleservice SOAP 1.2 fault (INSi, ApCV, ON) by namespace-aware XPath, for the service tests."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from lxml import etree

NSMAP = {
    "soap": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "siram": "urn:siram",
}


SOAP12 = NSMAP["soap"]


@dataclass
class Fault:
    status: int
    code: str  # as written, e.g. "soap:Sender"
    subcode: str  # as written, e.g. "S:siram_40"
    detail_code: str | None
    severite: str | None
    reason: str  # Fault/Reason/Text: the generic user message
    relates_to: str | None
    detail: str = ""  # the text of Detail/siram:Erreur: the precise reason
    message_id: str | None = None  # Detail/siram:Erreur/@messageID
    code_qname: str = ""  # "{ns}local", resolved against the Value element's in-scope namespaces
    subcode_qname: str = ""
    reason_lang: str | None = None


def _resolved(root: etree._Element, path: str) -> str:
    found = root.xpath(path, namespaces=NSMAP)
    if not found or not (found[0].text or "").strip():
        return ""
    prefix, _, local = found[0].text.strip().rpartition(":")
    return f"{{{found[0].nsmap.get(prefix or None, '')}}}{local}"


def read_fault(resp: httpx.Response, erreur_xsd: etree.XMLSchema | None = None) -> Fault:
    """The fault in `resp`; fails the test if there is none or a traceback leaked."""
    assert resp.headers["content-type"].startswith("application/soap+xml"), resp.text
    assert "Traceback" not in resp.text
    root = etree.fromstring(resp.content)
    assert root.xpath("/soap:Envelope/soap:Body/soap:Fault", namespaces=NSMAP), resp.text
    if erreur_xsd is not None:
        for erreur in root.xpath("//soap:Fault/soap:Detail/siram:Erreur", namespaces=NSMAP):
            erreur_xsd.assertValid(erreur)

    def x(path: str) -> str:
        return root.xpath(f"string({path})", namespaces=NSMAP).strip()

    return Fault(
        status=resp.status_code,
        code=x("//soap:Fault/soap:Code/soap:Value"),
        subcode=x("//soap:Fault/soap:Code/soap:Subcode/soap:Value"),
        detail_code=x("//soap:Fault/soap:Detail/siram:Erreur/@code") or None,
        severite=x("//soap:Fault/soap:Detail/siram:Erreur/@severite") or None,
        reason=x("//soap:Fault/soap:Reason/soap:Text"),
        relates_to=x("/soap:Envelope/soap:Header/wsa:RelatesTo") or None,
        detail=x("//soap:Fault/soap:Detail/siram:Erreur"),
        message_id=x("//soap:Fault/soap:Detail/siram:Erreur/@messageID") or None,
        code_qname=_resolved(root, "//soap:Fault/soap:Code/soap:Value"),
        subcode_qname=_resolved(root, "//soap:Fault/soap:Code/soap:Subcode/soap:Value"),
        reason_lang=x("//soap:Fault/soap:Reason/soap:Text/@xml:lang") or None,
    )
