"""MSSanté wire specifics: SASL bearer mechanisms, message checks (X-MSS headers, XDM subject and archive,
CDA/metadata consistency), MDN building.

Everything here works on bytes and plain values, with no store or network, so each rule can be read (and
corrected) on its own. Facts: protocols.md §4.1–4.3; choices where public material is silent are listed in
README.md. Findings are dicts ``{"code", "severity", "message"}``: severity ``erreur`` (a rule of the
référentiel is broken; refused in strict mode) or ``avertissement`` (a recommendation) or ``info``.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime
from email import policy
from email.header import Header
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr

from simulators.core.xmlsafe import XmlRejected, parse_xml

PATIENT_DOMAIN = "patient.mssante.fr"
CSE_ADDRESS = "certificatsdesante@plateformecse.mssante.fr"
# Child health certificates the CSE platform takes (DSR: CS9 and CS24), by their CI-SIS templateId (volet CSE:
# 1.2.250.1.213.1.1.1.5 for every certificate, .5.2 the 9th-month one, .5.3 the 24th-month one; document code
# CERT_DECL of TRE_A05 1.2.250.1.213.1.1.4.12)
CSE_TEMPLATES = {"1.2.250.1.213.1.1.1.5.2": "CS9", "1.2.250.1.213.1.1.1.5.3": "CS24"}
TRUST_DOMAIN = "mssante.fr"
XDM_NAME = "IHE_XDM.zip"
SUBJECT_PREFIX = "XDM/1.0/DDM+"
INS_OIDS = {
    "1.2.250.1.213.1.4.8": "INS-NIR",
    "1.2.250.1.213.1.4.9": "INS-NIA",
    "1.2.250.1.213.1.4.10": "INS-NIR de test",
    "1.2.250.1.213.1.4.11": "INS-NIR de démonstration",
}
NS = {
    "cda": "urn:hl7-org:v3",
    "rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0",
    "lcm": "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0",
}
XDS_TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
XDS_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
XDS_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
MDN_ERRORS = {
    "900": "Version du format non supportée",
    "901": "Auteur non autorisé",
    "902": "Patient inconnu",
    "903": "Pas d'INS dans le document",
    "904": "INS incohérent",
    "905": "INS incomplet",
    "906": "Autre erreur",
}
_SUBJECT_RE = re.compile(r"^XDM/1\.0/DDM\+(?P<rest>.+) (?P<date>\d{2}/\d{2}/\d{4})$")
_INS_LOCAL = re.compile(r"^[12]\d{4}(?:\d{2}|2A|2B)\d{8}$", re.IGNORECASE)


# ----------------------------------------------------------------------------------------------------
# Addresses
# ----------------------------------------------------------------------------------------------------


def normalise_address(address: str) -> str:
    return parseaddr(address or "")[1].strip().lower()


def is_patient_address(address: str) -> bool:
    return normalise_address(address).endswith("@" + PATIENT_DOMAIN)


def patient_ins_of(address: str) -> str | None:
    local, _, domain = normalise_address(address).partition("@")
    if domain != PATIENT_DOMAIN:
        return None
    return local.upper() if _INS_LOCAL.match(local) else None


def in_trust_space(address: str) -> bool:
    domain = normalise_address(address).rpartition("@")[2]
    return domain == TRUST_DOMAIN or domain.endswith("." + TRUST_DOMAIN)


# ----------------------------------------------------------------------------------------------------
# SASL bearer mechanisms (protocols.md §4.1: XOAUTH2 reported, OAUTHBEARER accepted as well)
# ----------------------------------------------------------------------------------------------------


class SaslError(ValueError):
    pass


@dataclass(frozen=True)
class BearerCredentials:
    mechanism: str
    user: str
    token: str


def parse_xoauth2(raw: bytes) -> BearerCredentials:
    """``user=<bal>^Aauth=Bearer <token>^A^A`` (Google's XOAUTH2 layout)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError("réponse XOAUTH2 non UTF-8") from None
    fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
    user, auth = fields.get("user", ""), fields.get("auth", "")
    if not user or not auth.lower().startswith("bearer "):
        raise SaslError("réponse XOAUTH2 mal formée (attendu user=<BAL>\\x01auth=Bearer <jeton>\\x01\\x01)")
    return BearerCredentials("XOAUTH2", user.strip(), auth[7:].strip())


def parse_oauthbearer(raw: bytes) -> BearerCredentials:
    """RFC 7628: ``n,a=<bal>,^Ahost=…^Aport=…^Aauth=Bearer <token>^A^A``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError("réponse OAUTHBEARER non UTF-8") from None
    gs2, sep, rest = text.partition("\x01")
    if not sep or not gs2.startswith(("n,", "y,")):
        raise SaslError("en-tête GS2 OAUTHBEARER mal formé (attendu n,a=<BAL>,)")
    user = ""
    for part in gs2.split(",")[1:]:
        if part.startswith("a="):
            user = part[2:].replace("=2C", ",").replace("=3D", "=")
    fields = dict(part.split("=", 1) for part in rest.split("\x01") if "=" in part)
    auth = fields.get("auth", "")
    if not auth.lower().startswith("bearer "):
        raise SaslError("réponse OAUTHBEARER sans auth=Bearer <jeton>")
    return BearerCredentials("OAUTHBEARER", user.strip(), auth[7:].strip())


def parse_plain(raw: bytes) -> tuple[str, str]:
    parts = raw.split(b"\x00")
    if len(parts) != 3:
        raise SaslError("réponse PLAIN mal formée")
    return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")


def oauth_error_json(reason: str, status: str = "invalid_token") -> bytes:
    """Server challenge sent on failure (RFC 7628 §3.2.2); the client answers with an empty response."""
    return json.dumps({"status": status, "schemes": "bearer", "scope": "openid", "error_description": reason},
                      ensure_ascii=False).encode()


# ----------------------------------------------------------------------------------------------------
# Message parsing
# ----------------------------------------------------------------------------------------------------


def parse_message(raw: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(raw)  # type: ignore[return-value]


def ascii_text(text: str) -> bytes:
    """Accents removed, for protocol lines that must stay ASCII (IMAP response text, SMTP replies)."""
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).encode("ascii", "replace")


# ----------------------------------------------------------------------------------------------------
# MIME entities cut from the stored bytes (IMAP FETCH sections, RFC 3501 §6.4.5; boundaries, RFC 2046 §5.1.1)
# ----------------------------------------------------------------------------------------------------
# Sections are slices of the bytes as received, never a re-serialisation: header case, folding, preambles and
# blank lines are the sender's, so a signature over a part (S/MIME multipart/signed) still verifies.


def split_entity(raw: bytes) -> tuple[bytes, bytes]:
    """(header including the blank line that ends it, body). No blank line: all header, no body."""
    if raw.startswith(b"\r\n"):
        return b"\r\n", raw[2:]
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw, b""
    return raw[:end + 4], raw[end + 4:]


def entity_headers(header: bytes) -> Message:
    """The header fields parsed (compat32: values as written, encoded words included)."""
    return BytesHeaderParser().parsebytes(header)


def header_subset(header: bytes, names: list[str], *, negate: bool = False) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: the matching fields as written (continuation lines included), then the
    blank line (RFC 3501: the delimiting blank line is part of every header fetch)."""
    wanted = {n.lower() for n in names}
    fields: list[bytes] = []
    for line in header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        elif line:
            fields.append(line)
    kept = [f for f in fields if (f.split(b":", 1)[0].strip().decode("ascii", "replace").lower() in wanted) != negate]
    return b"".join(f + b"\r\n" for f in kept) + b"\r\n"


def mime_parts(header: bytes, body: bytes) -> list[bytes]:
    """The body parts of a multipart entity, each as the bytes between its delimiter lines ([] if not multipart).
    The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1)."""
    msg = entity_headers(header)
    boundary = msg.get_boundary() if msg.get_content_maintype() == "multipart" else None
    if not boundary:
        return []
    delimiter = re.compile(rb"(?:\A|\r\n)--" + re.escape(boundary.encode("ascii", "replace"))
                           + rb"(--)?[ \t]*(?=\r\n|\Z)")
    parts: list[bytes] = []
    start: int | None = None
    for m in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start:m.start()])
        if m.group(1):  # close delimiter: the epilogue is not a part
            return parts
        start = m.end() + 2
    if start is not None:  # no close delimiter: the last part runs to the end
        parts.append(body[start:])
    return parts


def _is_rfc822(header: bytes) -> bool:
    return entity_headers(header).get_content_type() == "message/rfc822"


def imap_section(raw: bytes, path: list[int], kind: str = "", fields: list[str] | None = None,
                 negate: bool = False) -> bytes | None:
    """The bytes of a FETCH BODY[<section>] (RFC 3501 §6.4.5). ``path``: 1-based part numbers; ``kind``: "" (the
    whole entity at the top, the body of a part), ``HEADER``, ``TEXT``, ``MIME``; ``fields`` for HEADER.FIELDS.
    None when the part does not exist."""
    header, body = split_entity(raw)
    for depth, number in enumerate(path):
        if depth and _is_rfc822(header):  # a part that is a message: its parts are the encapsulated message's
            header, body = split_entity(body)
        parts = mime_parts(header, body)
        if parts:
            if not 1 <= number <= len(parts):
                return None
            header, body = split_entity(parts[number - 1])
        elif number != 1:  # a single-part entity has only part 1: its body
            return None
    if kind == "MIME":
        return header if path else None
    if path and kind in ("HEADER", "TEXT"):
        if not _is_rfc822(header):
            return None
        header, body = split_entity(body)
    if kind == "HEADER":
        return header_subset(header, fields, negate=negate) if fields is not None else header
    if kind == "TEXT":
        return body
    return body if path else raw


# ----------------------------------------------------------------------------------------------------
# SMTP reply lines
# ----------------------------------------------------------------------------------------------------

# The bench's own reply texts (operators' texts are not public). ASCII only: RFC 5321 §4.2 textstring.
SMTP_TEMPFAIL = "451 4.3.0 Temporary failure simulated by the MSSante bench, try again later"
SMTP_REFUSED = "554 5.3.0 Refusal simulated by the MSSante bench"
SMTP_TOKEN_EXPIRED = ("530 5.7.0 Authentication required: Pro Sante Connect token expired, authenticate again "
                      "(AUTH)")
SMTP_STRICT_HEAD = "5.6.0 Message refuse par le banc MSSante (mode strict) :"

# Enhanced status code (RFC 3463) for replies whose text has none, by reply code; else "<class>.0.0".
# X.5.1 invalid command, X.5.2 syntax error, X.5.4 invalid arguments, X.7.0 security, X.3.4 message too big.
_ENHANCED_BY_CODE = {500: "5.5.2", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4", 530: "5.7.0",
                     538: "5.7.11", 552: "5.3.4", 553: "5.1.3", 555: "5.5.4", 454: "4.7.0"}
_HAS_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}(?: |$)")


def smtp_reply_lines(status: str | bytes, *, enhanced: bool = True) -> list[bytes]:
    """One reply as sent: each line folded to printable ASCII and, with ``enhanced``, given an RFC 3463 code
    when its text has none (RFC 2034 §4: every 2xx/4xx/5xx reply but the greeting and the answers to EHLO/HELO;
    3xx replies such as 334 and 354 carry none)."""
    text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
    out = []
    for line in text.split("\r\n"):
        line = re.sub(r"[\x00-\x08\x0a-\x1f\x7f]", "?", line)
        code, sep, rest = line[:3], line[3:4], line[4:]
        if (enhanced and code.isdigit() and code[0] in "245" and sep in (" ", "-", "")
                and not _HAS_ENHANCED.match(rest)):
            extra = _ENHANCED_BY_CODE.get(int(code), f"{code[0]}.0.0")
            line = f"{code}{sep or ' '}{extra}" + (f" {rest}" if rest else "")
        out.append(ascii_text(line))
    return out


def _fold(text: str) -> str:
    """Upper-case, accents removed, whitespace collapsed: how subjects are compared."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.upper().split())


@dataclass
class CdaInfo:
    path: str
    code: str | None = None
    title: str | None = None
    uid: str | None = None
    ins: str | None = None
    ins_oid: str | None = None
    family: str | None = None
    given: str | None = None
    birth: date | None = None
    gender: str | None = None
    related: list[tuple[str, str]] = field(default_factory=list)  # (typeCode, parent id)
    templates: list[str] = field(default_factory=list)  # ClinicalDocument/templateId/@root
    error: str | None = None

    @property
    def qualified_ins(self) -> bool:
        return bool(self.ins and self.ins_oid and self.family and self.given and self.birth and self.gender)

    def as_dict(self) -> dict:
        return {"path": self.path, "code": self.code, "title": self.title, "id": self.uid, "ins": self.ins,
                "ins_oid": self.ins_oid, "family": self.family, "given": self.given,
                "birth": self.birth.isoformat() if self.birth else None, "gender": self.gender,
                "related": [{"type": t, "parent": p} for t, p in self.related], "error": self.error}


def parse_cda(path: str, data: bytes) -> CdaInfo:
    info = CdaInfo(path)
    try:
        root = parse_xml(data)
    except XmlRejected as exc:
        info.error = f"CDA illisible : {exc}"
        return info
    if root.tag != "{urn:hl7-org:v3}ClinicalDocument":
        info.error = f"pas un ClinicalDocument CDA R2 (racine {root.tag})"
        return info

    def first(xpath: str) -> str | None:
        found = root.xpath(f"string({xpath})", namespaces=NS)
        return found.strip() or None

    info.code = first("cda:code/@code")
    info.templates = [t.strip() for t in root.xpath("cda:templateId/@root", namespaces=NS)]
    info.title = first("cda:title")
    root_id, ext = first("cda:id/@root"), first("cda:id/@extension")
    info.uid = f"{root_id}^{ext}" if root_id and ext else root_id
    role = "cda:recordTarget/cda:patientRole"
    for ident in root.xpath(f"{role}/cda:id", namespaces=NS):
        if ident.get("root") in INS_OIDS:
            info.ins, info.ins_oid = (ident.get("extension") or "").strip() or None, ident.get("root")
            break
    patient = f"{role}/cda:patient"
    info.family = first(f"{patient}/cda:name/cda:family[@qualifier='BR']") or first(f"{patient}/cda:name/cda:family")
    info.given = first(f"{patient}/cda:name/cda:given[@qualifier='BR']") or first(f"{patient}/cda:name/cda:given")
    info.gender = first(f"{patient}/cda:administrativeGenderCode/@code")
    birth = first(f"{patient}/cda:birthTime/@value")
    if birth and len(birth) >= 8:
        try:
            info.birth = datetime.strptime(birth[:8], "%Y%m%d").date()
        except ValueError:
            info.error = f"birthTime illisible : {birth!r}"
    for rel in root.xpath("cda:relatedDocument", namespaces=NS):
        parent = rel.xpath("string(cda:parentDocument/cda:id/@root)", namespaces=NS)
        info.related.append((rel.get("typeCode") or "", parent))
    return info


def _cse_findings(xdm: XdmInfo | None) -> list[dict]:
    """A message to the CSE platform (LGC.CSE.12) carries one child health certificate, CS9 or CS24, in CDA."""
    cdas = [c for c in xdm.documents.values() if not c.error] if xdm is not None else []
    if not cdas:
        return [_finding("CSE", "erreur", f"message à {CSE_ADDRESS} sans certificat de santé de l'enfant en CDA dans "
                         "IHE_XDM.zip (LGC.CSE.12 : le CS9 ou le CS24 validé)")]
    out = []
    for cda in cdas:
        kinds = sorted({CSE_TEMPLATES[t] for t in cda.templates if t in CSE_TEMPLATES})
        if len(kinds) != 1 or "1.2.250.1.213.1.1.1.5" not in cda.templates or cda.code != "CERT_DECL":
            out.append(_finding("CSE", "erreur", f"{cda.path} n'est pas un certificat CS9 ou CS24 (templateId "
                                f"{', '.join(cda.templates) or 'absent'}, code {cda.code}) : la plateforme CSE ne "
                                "reçoit que ceux-là"))
        else:
            out.append(_finding("CSE", "info", f"{cda.path} : certificat de santé {kinds[0]} de {cda.family or '?'} "
                                f"{cda.given or ''}".rstrip()))
    if len(cdas) > 1:
        out.append(_finding("CSE", "avertissement", f"{len(cdas)} documents dans un message à la plateforme CSE (un "
                            "certificat par message attendu)"))
    return out


@dataclass
class XdmInfo:
    members: list[str]
    documents: dict[str, CdaInfo]  # URI -> parsed CDA
    metadata: list[dict]  # one per ExtrinsicObject
    findings: list[dict]


def _finding(code: str, severity: str, message: str) -> dict:
    return {"code": code, "severity": severity, "message": message}


# Bounds on what an IHE_XDM.zip may inflate to (a zip bomb would otherwise be inflated whole, issue 16). Real XDM
# archives hold a few CDA documents (PDFs embedded in base64 included): tens of MB at most, and XML or base64
# compresses 2 to 50 times, not hundreds. Both bounds are the bench's choice.
XDM_MAX_INFLATED = 64 * 1024 * 1024  # bytes, all members together
XDM_MAX_RATIO = 200  # inflated / compressed, for a member above 1 MB
_RATIO_FLOOR = 1024 * 1024


class _TooLarge(Exception):
    pass


def _zip_bounds(zf: zipfile.ZipFile) -> None:
    """Refuse an archive whose declared sizes go beyond the bounds. zipfile never inflates a member past its
    declared size (the CRC check fails instead), so checking the declarations bounds the work."""
    total = 0
    for info in zf.infolist():
        total += info.file_size
        if total > XDM_MAX_INFLATED:
            raise _TooLarge(f"IHE_XDM.zip se décompresse en plus de {XDM_MAX_INFLATED // (1024 * 1024)} Mo : "
                            "archive refusée sans être décompressée")
        if info.file_size > _RATIO_FLOOR and info.file_size > XDM_MAX_RATIO * max(info.compress_size, 1):
            raise _TooLarge(f"{info.filename} : taux de compression {info.file_size // max(info.compress_size, 1)}:1 "
                            f"au-delà de {XDM_MAX_RATIO}:1 (bombe zip ?) : archive refusée sans être décompressée")


def parse_xdm(data: bytes) -> XdmInfo:
    """What an IHE_XDM.zip holds, with findings; a broken or hostile archive is a finding, never an exception."""
    try:
        return _parse_xdm(data)
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError) as exc:
        # a member whose CRC, compression method or encryption zipfile refuses while inflating it
        return XdmInfo([], {}, [], [_finding("XDM-ZIP-ILLISIBLE", "erreur",
                                             f"un membre de IHE_XDM.zip est illisible : {exc}")])


def _parse_xdm(data: bytes) -> XdmInfo:
    out = XdmInfo([], {}, [], [])
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = zf.namelist()
        _zip_bounds(zf)
    except (zipfile.BadZipFile, ValueError) as exc:
        out.findings.append(_finding("XDM-ZIP-ILLISIBLE", "erreur", f"IHE_XDM.zip n'est pas une archive zip : {exc}"))
        return out
    except _TooLarge as exc:
        out.members = names
        out.findings.append(_finding("XDM-ZIP-VOLUMINEUX", "erreur", str(exc)))
        return out
    out.members = names
    upper = {n.upper(): n for n in names}
    for required in ("INDEX.HTM", "README.TXT"):
        if required not in upper:
            out.findings.append(_finding("XDM-STRUCTURE", "erreur", f"{required} absent à la racine de IHE_XDM.zip"))
    meta_name = upper.get("IHE_XDM/SUBSET01/METADATA.XML")
    if meta_name is None:
        out.findings.append(_finding("XDM-STRUCTURE", "erreur", "IHE_XDM/SUBSET01/METADATA.XML absent"))
        return out
    subset = [n for n in names if n.upper().startswith("IHE_XDM/SUBSET01/") and not n.endswith("/")
              and n != meta_name]
    if not subset:
        out.findings.append(_finding("XDM-STRUCTURE", "erreur", "aucun document dans IHE_XDM/SUBSET01/"))
    try:
        meta = parse_xml(zf.read(meta_name))
    except XmlRejected as exc:
        out.findings.append(_finding("XDM-METADATA", "erreur", f"METADATA.XML illisible : {exc}"))
        return out
    if meta.tag != "{urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0}SubmitObjectsRequest":
        out.findings.append(_finding("XDM-METADATA", "erreur",
                                     f"METADATA.XML n'est pas un lcm:SubmitObjectsRequest (racine {meta.tag})"))
    for eo in meta.iter("{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}ExtrinsicObject"):
        entry: dict = {"id": eo.get("id")}
        for slot in eo.findall("rim:Slot", NS):
            values = [v.text or "" for v in slot.iterfind("rim:ValueList/rim:Value", NS)]
            if slot.get("name") == "URI":
                entry["uri"] = "".join(values).strip()
        for cl in eo.findall("rim:Classification", NS):
            if cl.get("classificationScheme") == XDS_TYPE_CODE:
                entry["typeCode"] = cl.get("nodeRepresentation")
        for ext in eo.findall("rim:ExternalIdentifier", NS):
            if ext.get("identificationScheme") == XDS_UNIQUE_ID:
                entry["uniqueId"] = ext.get("value")
            elif ext.get("identificationScheme") == XDS_PATIENT_ID:
                entry["patientId"] = ext.get("value")
        out.metadata.append(entry)
    if not out.metadata:
        out.findings.append(_finding("XDM-METADATA", "erreur", "METADATA.XML ne décrit aucun document "
                                     "(rim:ExtrinsicObject)"))
    by_base = {n.rsplit("/", 1)[-1]: n for n in subset}
    referenced = set()
    for entry in out.metadata:
        uri = entry.get("uri")
        if not uri:
            out.findings.append(_finding("XDM-METADATA", "erreur", f"document {entry['id']} sans slot URI"))
            continue
        member = by_base.get(uri) or upper.get(("IHE_XDM/SUBSET01/" + uri).upper())
        if member is None:
            out.findings.append(_finding("XDM-METADATA", "erreur",
                                         f"le slot URI « {uri} » ne désigne aucun fichier de IHE_XDM/SUBSET01/"))
            continue
        referenced.add(member)
        cda = parse_cda(member, zf.read(member))
        out.documents[uri] = cda
        if cda.error:
            out.findings.append(_finding("XDM-CDA", "erreur", f"{uri} : {cda.error}"))
            continue
        if entry.get("typeCode") and cda.code and entry["typeCode"] != cda.code:
            out.findings.append(_finding("XDM-METADATA-CDA", "erreur", f"{uri} : typeCode {entry['typeCode']} "
                                         f"dans METADATA.XML mais code {cda.code} dans le CDA"))
        if entry.get("uniqueId") and cda.uid and entry["uniqueId"] != cda.uid:
            out.findings.append(_finding("XDM-METADATA-CDA", "erreur", f"{uri} : uniqueId {entry['uniqueId']} "
                                         f"dans METADATA.XML mais id {cda.uid} dans le CDA"))
        pid = entry.get("patientId")
        if pid and cda.ins and not pid.startswith(cda.ins + "^"):
            out.findings.append(_finding("XDM-METADATA-CDA", "erreur",
                                         f"{uri} : patientId {pid} ne correspond pas à l'INS {cda.ins} du CDA"))
    for member in subset:
        if member not in referenced:
            out.findings.append(_finding("XDM-METADATA", "avertissement",
                                         f"{member} n'est décrit par aucun document de METADATA.XML"))
    return out


# ----------------------------------------------------------------------------------------------------
# Checks on a submitted message
# ----------------------------------------------------------------------------------------------------


@dataclass
class CheckResult:
    findings: list[dict]
    xdm: XdmInfo | None
    subject: str
    message_id: str | None
    patient_recipients: list[str]
    closes_channel: bool

    @property
    def errors(self) -> list[dict]:
        return [f for f in self.findings if f["severity"] == "erreur"]

    def summary(self) -> dict:
        docs = [d.as_dict() for d in self.xdm.documents.values()] if self.xdm else []
        return {"subject": self.subject, "message_id": self.message_id, "documents": docs,
                "patient_recipients": self.patient_recipients, "closes_channel": self.closes_channel}


def attachments(msg: Message) -> list[tuple[str, str, bytes]]:
    out = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        if filename or part.get_content_disposition() == "attachment":
            payload = part.get_payload(decode=True) or b""
            out.append((filename or "", part.get_content_type(), payload))
    return out


def check_message(raw: bytes, *, mail_from: str, rcpts: list[str], authenticated: str | None) -> CheckResult:
    msg = parse_message(raw)
    findings: list[dict] = []
    subject = str(msg.get("Subject", "") or "")
    add = findings.append

    if not msg.get("X-MSS-NIL"):
        add(_finding("X-MSS-NIL", "erreur", "en-tête X-MSS-NIL absent (référence du logiciel, obligatoire sur "
                     "tout message, ECO.2.4.3)"))
    if not msg.get("Message-ID"):
        add(_finding("MESSAGE-ID", "avertissement", "en-tête Message-ID absent"))
    if not msg.get("Date"):
        add(_finding("DATE", "avertissement", "en-tête Date absent"))
    from_addrs = [a.lower() for _, a in getaddresses([str(v) for v in msg.get_all("From", [])]) if a]
    sender = normalise_address(mail_from)
    if authenticated and sender and sender != authenticated.lower():
        add(_finding("EXPEDITEUR", "erreur", f"MAIL FROM <{sender}> n'est pas la BAL authentifiée <{authenticated}>"))
    if not from_addrs:
        add(_finding("EXPEDITEUR", "erreur", "en-tête From absent"))
    elif sender and sender not in from_addrs:
        add(_finding("EXPEDITEUR", "erreur", f"en-tête From {from_addrs[0]} différent de MAIL FROM <{sender}>"))

    parts = attachments(msg)
    xdm_parts = [p for p in parts if p[0].upper() == XDM_NAME.upper()]
    other_zip = [p for p in parts if p[0].lower().endswith(".zip") and p not in xdm_parts]
    pdfs = [p for p in parts if p[1] == "application/pdf" or p[0].lower().endswith(".pdf")]
    xdm: XdmInfo | None = None
    if other_zip and not xdm_parts:
        add(_finding("XDM-NOM", "erreur", f"archive « {other_zip[0][0]} » jointe : l'archive IHE XDM doit "
                     f"s'appeler {XDM_NAME}"))
    if len(xdm_parts) > 1:
        add(_finding("XDM-NOM", "erreur", f"{len(xdm_parts)} pièces jointes {XDM_NAME} (une seule attendue)"))
    codes_header = msg.get("X-MSS-CODECDA")
    ins_header = msg.get("X-MSS-INS")
    patients = [normalise_address(r) for r in rcpts if is_patient_address(r)]
    if xdm_parts:
        xdm = parse_xdm(xdm_parts[0][2])
        findings.extend(xdm.findings)
        cdas = [c for c in xdm.documents.values() if not c.error]
        # Subject
        m = _SUBJECT_RE.match(subject.strip())
        if not subject.startswith(SUBJECT_PREFIX):
            add(_finding("OBJET", "erreur", f"objet « {subject} » : avec une archive IHE_XDM, l'objet doit être "
                         f"« XDM/1.0/DDM+<titre> <NOM> <prénom> <JJ/MM/AAAA> »"))
        elif m is None:
            add(_finding("OBJET", "erreur", f"objet « {subject} » : la date de naissance JJ/MM/AAAA manque à la fin"))
        elif cdas:
            cda = cdas[0]
            try:
                subject_birth = datetime.strptime(m.group("date"), "%d/%m/%Y").date()
            except ValueError:
                subject_birth = None
            if subject_birth is None:
                add(_finding("OBJET", "erreur", f"objet : date {m.group('date')} invalide"))
            elif cda.birth and subject_birth != cda.birth:
                add(_finding("OBJET", "erreur", f"objet : date de naissance {m.group('date')} différente de celle du "
                             f"CDA ({cda.birth:%d/%m/%Y})"))
            expected = " ".join(x for x in (cda.title, cda.family, cda.given) if x)
            if expected and _fold(m.group("rest")) != _fold(expected):
                add(_finding("OBJET", "erreur", f"objet « {subject} » : attendu « {SUBJECT_PREFIX}{expected} "
                             f"{cda.birth:%d/%m/%Y} » d'après le CDA (titre, nom de naissance, premier prénom)"
                             if cda.birth else f"objet « {subject} » : attendu « {SUBJECT_PREFIX}{expected} …»"))
        # X-MSS-CODECDA
        expected_codes = sorted({c.code for c in cdas if c.code})
        if not codes_header:
            add(_finding("X-MSS-CODECDA", "erreur", "en-tête X-MSS-CODECDA absent alors qu'une archive IHE_XDM avec "
                         f"CDA est jointe (attendu {','.join(expected_codes) or 'le code du CDA'}, ECO.2.4.1)"))
        else:
            got = sorted({c.strip() for c in str(codes_header).split(",") if c.strip()})
            if cdas and got != expected_codes:
                add(_finding("X-MSS-CODECDA", "erreur", f"X-MSS-CODECDA « {codes_header} » ne correspond pas aux "
                             f"codes des CDA ({','.join(expected_codes)})"))
        # X-MSS-INS
        expected_ins = "O" if cdas and all(c.qualified_ins for c in cdas) else "N"
        if not ins_header:
            add(_finding("X-MSS-INS", "erreur", f"en-tête X-MSS-INS absent (attendu {expected_ins}, ECO.2.4.2)"))
        elif str(ins_header).strip() not in ("O", "N"):
            add(_finding("X-MSS-INS", "erreur", f"X-MSS-INS « {ins_header} » : valeurs permises O ou N"))
        elif cdas and str(ins_header).strip() != expected_ins:
            add(_finding("X-MSS-INS", "erreur", f"X-MSS-INS « {ins_header} » alors que l'archive "
                         f"{'contient' if expected_ins == 'O' else 'ne contient pas'} d'INS qualifié"))
        if not pdfs:
            add(_finding("PDF-LISIBLE", "avertissement", "pas de PDF lisible joint à côté de IHE_XDM.zip"))
        for cda in cdas:
            for rel_type, parent in cda.related:
                add(_finding("CDA-RELATED", "info", f"{cda.path} remplace ({rel_type}) le document {parent}"))
            for patient in patients:
                ins = patient_ins_of(patient)
                if cda.ins and ins and cda.ins.upper() != ins:
                    add(_finding("PATIENT-INS", "erreur", f"destinataire {patient} : l'INS du CDA est {cda.ins}"))
    else:
        if subject.startswith(SUBJECT_PREFIX):
            add(_finding("OBJET", "erreur", f"objet « {subject} » annonce un document XDM, mais aucune pièce jointe "
                         f"{XDM_NAME}"))
        if codes_header:
            add(_finding("X-MSS-CODECDA", "erreur", "X-MSS-CODECDA présent sans archive IHE_XDM (doit être absent)"))
        if ins_header:
            add(_finding("X-MSS-INS", "erreur", "X-MSS-INS présent sans archive IHE_XDM (doit être absent)"))

    if CSE_ADDRESS in {normalise_address(r) for r in rcpts}:
        findings.extend(_cse_findings(xdm))

    mes = msg.get("X-MSS-MES")
    closes = False
    if patients:
        if mes is None:
            add(_finding("X-MSS-MES", "erreur", "message à un patient sans « X-MSS-MES: FIN » : le canal de réponse "
                         "du patient n'est pas fermé (ECO.2.2.8, SC.MSS/CONF.21)"))
        elif str(mes).strip().upper() != "FIN":
            add(_finding("X-MSS-MES", "erreur", f"X-MSS-MES « {mes} » : seule la valeur FIN est définie"))
        else:
            closes = True
    elif mes is not None:
        add(_finding("X-MSS-MES", "avertissement", "X-MSS-MES n'a de sens que sur un message adressé à un patient"))
    return CheckResult(findings, xdm, subject, msg.get("Message-ID"), patients, closes)


# ----------------------------------------------------------------------------------------------------
# Building messages (injection, MDN)
# ----------------------------------------------------------------------------------------------------


def build_message(*, sender: str, to: list[str], subject: str, body: str, headers: dict[str, str] | None = None,
                  attachments_: list[tuple[str, str, bytes]] = (), when: datetime | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when) if when else format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = make_msgid(domain="mss.bench")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    for filename, ctype, data in attachments_:
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    return msg.as_bytes()


def build_mdn(original: bytes, *, reporter: str, error: str | None = None, when: datetime | None = None) -> bytes:
    """RFC 8098 MDN about `original`, sent by `reporter`; `error` is one of the 900–906 codes (protocols.md §4.3)."""
    orig = parse_message(original)
    subject = str(orig.get("Subject", ""))
    sender = str(orig.get("Disposition-Notification-To") or orig.get("From") or "")
    disposition = "automatic-action/MDN-sent-automatically; processed"
    if error is not None:
        disposition += f"/Error: {error}^{MDN_ERRORS[error]}"
        subject = f"[KO Intégration système !][{error}] {subject}"
    else:
        subject = f"Accusé de réception : {subject}"
    from email.mime.application import MIMEApplication
    from email.mime.base import MIMEBase
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    report = MIMEMultipart("report", report_type="disposition-notification")
    report["From"] = reporter
    report["To"] = sender
    report["Subject"] = str(Header(subject, "utf-8"))
    report["Date"] = format_datetime(when or datetime.now().astimezone())
    report["Message-ID"] = make_msgid(domain="mss.bench")
    report.attach(MIMEText(f"Le message {orig.get('Message-ID', '')} a été "
                           + ("traité." if error is None else f"rejeté : {error} {MDN_ERRORS[error]}."), "plain",
                           "utf-8"))
    fields = MIMEBase("message", "disposition-notification")
    fields.set_payload(f"Reporting-UA: segur-bench-mss\r\nOriginal-Recipient: rfc822;{reporter}\r\n"
                       f"Final-Recipient: rfc822;{reporter}\r\nOriginal-Message-ID: {orig.get('Message-ID', '')}"
                       f"\r\nDisposition: {disposition}\r\n")
    report.attach(fields)
    for filename, ctype, data in attachments(orig):
        if filename.upper() == XDM_NAME.upper() or ctype == "application/pdf":
            part = MIMEApplication(data, ctype.partition("/")[2] or "octet-stream")
            part.add_header("Content-Disposition", "attachment", filename=filename)
            report.attach(part)
    return report.as_bytes()


def build_xdm(cda: bytes, filename: str = "DOC0001.XML") -> tuple[bytes, CdaInfo]:
    """An ``IHE_XDM.zip`` around one CDA (used by the control API to inject incoming documents)."""
    info = parse_cda(filename, cda)
    if info.error:
        raise ValueError(info.error)
    from xml.sax.saxutils import quoteattr

    patient_id = f"{info.ins}^^^&{info.ins_oid}&ISO" if info.ins else ""
    metadata = f"""<?xml version="1.0" encoding="UTF-8"?>
<lcm:SubmitObjectsRequest xmlns:lcm="{NS['lcm']}" xmlns:rim="{NS['rim']}">
 <rim:RegistryObjectList>
  <rim:ExtrinsicObject id="Document01" mimeType="text/xml"
      objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">
   <rim:Slot name="URI"><rim:ValueList><rim:Value>{filename}</rim:Value></rim:ValueList></rim:Slot>
   <rim:Name><rim:LocalizedString value={quoteattr(info.title or "")}/></rim:Name>
   <rim:Classification classificationScheme="{XDS_TYPE_CODE}" classifiedObject="Document01" id="cl01"
       nodeRepresentation={quoteattr(info.code or "")}/>
   <rim:ExternalIdentifier identificationScheme="{XDS_PATIENT_ID}" id="ei01" registryObject="Document01"
       value={quoteattr(patient_id)}/>
   <rim:ExternalIdentifier identificationScheme="{XDS_UNIQUE_ID}" id="ei02" registryObject="Document01"
       value={quoteattr(info.uid or "")}/>
  </rim:ExtrinsicObject>
 </rim:RegistryObjectList>
</lcm:SubmitObjectsRequest>
"""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("INDEX.HTM", "<html><body><a href=\"IHE_XDM/SUBSET01/METADATA.XML\">SUBSET01</a></body></html>")
        zf.writestr("README.TXT", "Archive IHE XDM produite par le banc segur-bench (simulateur MSSanté).\r\n")
        zf.writestr("IHE_XDM/SUBSET01/METADATA.XML", metadata)
        zf.writestr(f"IHE_XDM/SUBSET01/{filename}", cda)
    return buf.getvalue(), info
