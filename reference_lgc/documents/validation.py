"""Validation of the CDA documents the LGC emits: our own XSD (``xsd/cda_lgc.xsd``) + business rules the schema
cannot express. Input is parsed with a hardened parser (no DTD, no entities, no network, size limit)."""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache
from pathlib import Path

from lxml import etree

from .cda import HL7, N1_TEMPLATES, N3_TEMPLATES
from .model import ins_key_ok

XSD_PATH = Path(__file__).parent / "xsd" / "cda_lgc.xsd"
MAX_CDA_BYTES = 20 * 1024 * 1024
_NS = {"h": HL7}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                          huge_tree=False, remove_comments=False)


class DocumentInvalid(ValueError):
    """The CDA is refused; ``errors`` lists each problem (French, XSD errors prefixed with their line)."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("Document CDA invalide :\n" + "\n".join(f" - {e}" for e in self.errors))


@lru_cache(maxsize=1)
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_PATH), _PARSER))


def parse(cda: bytes) -> etree._ElementTree:
    """Parse untrusted CDA bytes or raise :class:`DocumentInvalid` (size, syntax, DTD)."""
    if not isinstance(cda, bytes | bytearray):
        raise DocumentInvalid(["le document doit être fourni en octets (bytes)"])
    if len(cda) > MAX_CDA_BYTES:
        raise DocumentInvalid([f"document trop volumineux ({len(cda)} octets, maximum {MAX_CDA_BYTES})"])
    dtd = DocumentInvalid(["déclaration DOCTYPE/ENTITY interdite dans un document CDA"])
    if b"<!DOCTYPE" in cda or b"<!ENTITY" in cda:
        raise dtd
    try:
        tree = etree.fromstring(bytes(cda), _PARSER).getroottree()
    except etree.XMLSyntaxError as exc:
        raise DocumentInvalid([f"ligne {exc.lineno} : XML mal formé : {exc.msg}"]) from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:  # e.g. a UTF-16 document
        raise dtd
    return tree


def _readable(message: str) -> str:
    return message.replace(f"{{{HL7}}}", "")


def _where(tree: etree._ElementTree, path: str | None) -> str:
    """Readable element path (``ClinicalDocument/author/assignedAuthor/code``) from libxml2's positional one."""
    try:
        found = tree.xpath(path) if path else []
    except etree.XPathError:
        found = []
    if not found or not isinstance(found[0], etree._Element):
        return ""
    names = [etree.QName(el).localname for el in (found[0], *found[0].iterancestors())]
    return " (" + "/".join(reversed(names)) + ")"


def _xsd_errors(tree: etree._ElementTree) -> list[str]:
    xsd = schema()
    if xsd.validate(tree):
        return []
    return [f"ligne {e.line}{_where(tree, e.path)} : schéma cda_lgc.xsd : {_readable(e.message)}"
            for e in xsd.error_log]


def _s(root: etree._Element, path: str) -> str:
    return str(root.xpath(f"string({path})", namespaces=_NS)).strip()


def business_errors(root: etree._Element) -> list[str]:
    """Rules outside the XSD: INS key, versionNumber ≥ 1, setId, RPLC iff version > 1, templates, N1 PDF."""
    errors: list[str] = []
    if root.tag != f"{{{HL7}}}ClinicalDocument":
        return [f"la racine doit être ClinicalDocument (espace de noms {HL7}), trouvé {root.tag}"]
    ins = _s(root, "h:recordTarget/h:patientRole/h:id/@extension")
    if not ins:
        errors.append("INS absente (recordTarget/patientRole/id/@extension)")
    elif not re.fullmatch(r"[1-8]\d{4}(\d{2}|2[AB])\d{8}", ins):
        errors.append(f"INS {ins} : matricule mal formé (15 caractères : 13 + clé)")
    elif not ins_key_ok(ins):
        errors.append(f"INS {ins} : clé de contrôle incorrecte (97 - matricule modulo 97)")
    if not _s(root, "h:author/h:assignedAuthor/h:id/@extension"):
        errors.append("identifiant national de l'auteur absent (author/assignedAuthor/id, « 8 » + RPPS)")
    if not root.xpath("h:setId[@root]", namespaces=_NS):
        errors.append("setId absent : l'identifiant de l'ensemble des versions est obligatoire")
    version_text = _s(root, "h:versionNumber/@value")
    version = int(version_text) if version_text.isdigit() else None
    if version is None:
        errors.append(f"versionNumber absent ou non entier ({version_text or 'vide'})")
    elif version < 1:
        errors.append(f"versionNumber {version} : doit être supérieur ou égal à 1")
    rplc = root.xpath("h:relatedDocument[@typeCode='RPLC']/h:parentDocument/h:id/@root", namespaces=_NS)
    if version is not None and version > 1 and not rplc:
        errors.append(f"versionNumber {version} > 1 sans relatedDocument RPLC (parentDocument/id du document "
                      "remplacé) : un remplacement doit désigner le document remplacé")
    if version == 1 and root.xpath("h:relatedDocument", namespaces=_NS):
        errors.append("relatedDocument RPLC présent alors que versionNumber vaut 1 (première version)")
    if rplc and rplc[0] == _s(root, "h:id/@root") and not _s(root, "h:id/@extension"):
        errors.append("relatedDocument : le document remplacé ne peut pas être le document lui-même")
    templates = {t for t in root.xpath("h:templateId/@root", namespaces=_NS)}
    n1 = bool(root.xpath("h:component/h:nonXMLBody", namespaces=_NS))
    required = N1_TEMPLATES if n1 else N3_TEMPLATES
    missing = [t for t in required if t not in templates]
    if missing:
        errors.append(f"templateId manquant(s) pour un CDA {'N1' if n1 else 'N3'} : {', '.join(missing)}")
    if n1:
        b64 = "".join(_s(root, "h:component/h:nonXMLBody/h:text").split())
        try:
            data = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            errors.append("nonXMLBody/text : contenu base64 invalide")
        else:
            if not data.startswith(b"%PDF-"):
                errors.append("nonXMLBody/text : le contenu décodé n'est pas un PDF (%PDF- attendu)")
    else:
        copies = root.xpath("h:component/h:structuredBody/h:component/h:section[h:templateId/@root="
                            "'1.2.250.1.213.1.1.2.243']//h:observationMedia/h:value", namespaces=_NS)
        for value in copies:
            try:
                data = base64.b64decode("".join((value.text or "").split()), validate=True)
            except (binascii.Error, ValueError):
                errors.append("copie PDF (FR-Document-PDF-copie) : contenu base64 invalide")
                continue
            if not data.startswith(b"%PDF-"):
                errors.append("copie PDF (FR-Document-PDF-copie) : le contenu décodé n'est pas un PDF (%PDF- attendu)")
        ids = set(root.xpath("//h:*/@ID", namespaces=_NS))
        for ref in root.xpath("//h:reference/@value", namespaces=_NS):
            if ref.startswith("#") and ref[1:] not in ids:
                errors.append(f"référence narrative {ref} sans élément ID correspondant dans section/text")
    return errors


def validate(cda: bytes, *, type_code: str = "57833-6") -> None:
    """Raise :class:`DocumentInvalid` listing every XSD error (line + message) and every business-rule failure.
    `type_code`: the LOINC type the document must have (a prescription unless said otherwise)."""
    tree = parse(cda)
    errors = _xsd_errors(tree) + business_errors(tree.getroot())
    found = _s(tree.getroot(), "h:code/@code")
    if found and found != type_code:
        errors.append(f"typeCode {found} (ClinicalDocument/code) : {type_code} attendu pour ce document")
    if errors:
        raise DocumentInvalid(errors)
