"""Reading a received CDA (from the DMP or MSSanté): the ids used to avoid duplicates, the header shown in
lists, the embedded PDF of an N1, the narrative of an N3. Hardened parser: no DTD, no entities, no network."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from lxml import etree

NS = {"h": "urn:hl7-org:v3"}
MAX_BYTES = 20 * 1024 * 1024
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                          remove_comments=True)


class NotACda(ValueError):
    pass


@dataclass(frozen=True)
class CdaInfo:
    unique_id: str  # root[^extension]
    set_id: str
    version: int
    type_code: str
    type_label: str
    title: str
    effective_time: str  # YYYY-MM-DD when known
    author: str
    level: str  # "N1" (PDF in nonXMLBody) | "N3" (structured)
    pdf: bytes | None
    patient_ins: str = ""  # recordTarget's INS (an id under the INS OIDs 1.2.250.1.213.1.4.*)
    replaces: str = ""  # relatedDocument RPLC: the id of the document this version replaces


def _id(el: etree._Element | None) -> str:
    if el is None:
        return ""
    root, ext = el.get("root", ""), el.get("extension")
    return f"{root}^{ext}" if ext else root


def parse(data: bytes) -> tuple[etree._Element, CdaInfo]:
    if len(data) > MAX_BYTES:
        raise NotACda("document trop volumineux")
    if b"<!DOCTYPE" in data[:4096] or b"<!ENTITY" in data[:4096]:
        raise NotACda("DTD interdite dans un document CDA")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise NotACda(f"XML illisible ({exc})") from None
    if root.tag != "{urn:hl7-org:v3}ClinicalDocument":
        raise NotACda("ce n'est pas un document CDA (ClinicalDocument attendu)")
    code = root.find("h:code", NS)
    version_text = root.findtext("h:versionNumber", default="1", namespaces=NS)
    version_el = root.find("h:versionNumber", NS)
    if version_el is not None and version_el.get("value"):
        version_text = version_el.get("value")
    try:
        version = int(version_text or "1")
    except ValueError:
        version = 1
    eff = root.find("h:effectiveTime", NS)
    ts = eff.get("value", "") if eff is not None else ""
    person = root.find("h:author/h:assignedAuthor/h:assignedPerson/h:name", NS)
    author = " ".join(t.strip() for t in (person.itertext() if person is not None else []) if t.strip())
    nonxml = root.find("h:component/h:nonXMLBody/h:text", NS)
    # N1: the PDF body; N3: the PDF copy section (FR-Document-PDF-copie, 1.2.250.1.213.1.1.2.243), shown first
    copies = root.xpath("h:component/h:structuredBody/h:component/h:section[h:templateId/@root="
                        "'1.2.250.1.213.1.1.2.243']//h:observationMedia/h:value", namespaces=NS)
    carrier = nonxml if nonxml is not None else (copies[0] if copies else None)
    pdf = None
    if carrier is not None and (carrier.get("mediaType") == "application/pdf"):
        try:
            pdf = base64.b64decode("".join(carrier.itertext()), validate=False)
        except (binascii.Error, ValueError):
            pdf = None
        if pdf is not None and not pdf.startswith(b"%PDF-"):
            pdf = None
    info = CdaInfo(
        unique_id=_id(root.find("h:id", NS)), set_id=_id(root.find("h:setId", NS)), version=version,
        type_code=code.get("code", "") if code is not None else "",
        type_label=code.get("displayName", "") if code is not None else "",
        title=(root.findtext("h:title", default="", namespaces=NS) or "").strip(),
        effective_time=f"{ts[:4]}-{ts[4:6]}-{ts[6:8]}" if len(ts) >= 8 else "", author=author,
        level="N1" if nonxml is not None else "N3", pdf=pdf,
        patient_ins=next((i.get("extension", "") for i in root.findall("h:recordTarget/h:patientRole/h:id", NS)
                          if i.get("root", "").startswith("1.2.250.1.213.1.4.") and i.get("extension")), ""),
        replaces=_id(root.find("h:relatedDocument[@typeCode='RPLC']/h:parentDocument/h:id", NS)))
    return root, info


def narrative_html(root: etree._Element) -> str:
    """The sections of an N3 (title + narrative block) as simple HTML, escaped, for a readable rendering."""
    parts: list[str] = []
    for section in root.iterfind(".//h:structuredBody//h:section", NS):
        title = section.findtext("h:title", default="", namespaces=NS)
        text = section.find("h:text", NS)
        parts.append(f"<h3>{_esc(title)}</h3>")
        if text is not None:
            parts.append(_narrative(text))
    return "\n".join(parts)


_ALLOWED = {"paragraph": "p", "table": "table", "thead": "thead", "tbody": "tbody", "tr": "tr", "td": "td",
            "th": "th", "list": "ul", "item": "li", "br": "br", "content": "span", "caption": "caption"}


def _narrative(el: etree._Element) -> str:
    """Narrative block → HTML with an allow-list of elements (nothing from the document runs in the page)."""
    out = [_esc(el.text or "")]
    for child in el:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        tag = _ALLOWED.get(name, "span")
        out.append(f"<{tag}>{_narrative(child)}</{tag}>" if tag != "br" else "<br>")
        out.append(_esc(child.tail or ""))
    return "".join(out)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
