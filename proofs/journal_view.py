"""Readable views of a simulator's raw journal (JSONL, one `Exchange.as_dict()` per line).

A reviewer at the ANS reads these, not the JSONL: one block per exchange with its timing (including the
latency the bench injected), the faults applied and both bodies pretty-printed. Bodies are untrusted input
from the LGC under test: XML goes through the simulators' hardened parser (no DTD, no entities, no network)
and anything that does not parse is shown as raw text; binary content is summarised by size and SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.header
import email.parser
import email.policy
import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message as EmailMessage
from pathlib import Path
from urllib.parse import parse_qsl

from lxml import etree

from simulators.core.xmlsafe import XmlRejected, parse_xml

# A body longer than this (after pretty-printing) is cut in the readable view; the raw JSONL keeps it whole.
MAX_BODY_CHARS = 64 * 1024
_MAX_MIME_DEPTH = 3  # multipart inside multipart inside…: deeper nesting is shown as raw text


@dataclass(frozen=True)
class Section:
    title: str
    text: str


@dataclass(frozen=True)
class ExchangeView:
    number: int
    id: str
    operation: str
    fields: list[tuple[str, str]]
    sections: list[Section]
    ok: bool  # False when no answer, an error status or a transport error: highlighted in the HTML view


@dataclass(frozen=True)
class JournalSummary:
    service: str
    count: int
    operations: list[tuple[str, int]]
    min_ms: float | None
    max_ms: float | None
    waited_total_ms: float
    with_faults: int
    without_response: int
    first: str | None
    last: str | None


@dataclass
class ServiceJournal:
    service: str
    entries: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unreadable lines, in French

    def summary(self) -> JournalSummary:
        durations = [float(e["duration_ms"]) for e in self.entries if _is_number(e.get("duration_ms"))]
        stamps = [_received(e) for e in self.entries]
        stamps = [s for s in stamps if s]
        return JournalSummary(
            service=self.service,
            count=len(self.entries),
            operations=sorted(Counter(str(e.get("operation") or "?") for e in self.entries).items()),
            min_ms=min(durations) if durations else None,
            max_ms=max(durations) if durations else None,
            waited_total_ms=round(sum(float(e["waited_ms"]) for e in self.entries
                                      if _is_number(e.get("waited_ms"))), 3),
            with_faults=sum(1 for e in self.entries if e.get("faults")),
            without_response=sum(1 for e in self.entries if e.get("response") is None),
            first=min(stamps) if stamps else None,
            last=max(stamps) if stamps else None,
        )

    def views(self) -> list[ExchangeView]:
        return [exchange_view(n, e) for n, e in enumerate(self.entries, start=1)]


def load_journal(path: Path) -> ServiceJournal:
    """Read a JSONL journal; a bad line is reported, not fatal (the rest is still a proof)."""
    journal = ServiceJournal(service=path.stem)
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                journal.problems.append(f"ligne {lineno} illisible (JSON invalide : {exc.msg})")
                continue
            if not isinstance(entry, dict):
                journal.problems.append(f"ligne {lineno} ignorée (objet JSON attendu)")
                continue
            journal.entries.append(entry)
    # Time order across the file, as the simulator may have written several worker processes' entries.
    journal.entries.sort(key=lambda e: (_received(e) or "", str(e.get("id") or "")))
    return journal


# -- one exchange ----------------------------------------------------------------------------------------


def exchange_view(number: int, entry: Mapping) -> ExchangeView:
    protocol = str(entry.get("protocol") or "http").lower()
    status = entry.get("status")
    response = entry.get("response")
    fields: list[tuple[str, str]] = [
        ("Reçu", _received(entry) or "?"),
        ("Répondu", _responded(entry) or "pas de réponse"),
        ("Durée", _ms(entry.get("duration_ms")) or "—"),
        ("Latence injectée (mesurée)", _ms(entry.get("waited_ms")) or "aucune"),
    ]
    if protocol == "http":
        version = entry.get("http_version") or "1.1"
        fields.append(("Requête", f"{entry.get('method') or '?'} {entry.get('url') or '?'} HTTP/{version}"))
    else:
        command = str(entry.get("operation") or entry.get("method") or "?")
        if not command.upper().startswith(protocol.upper()):
            command = f"{protocol.upper()} {command}"
        fields.append(("Commande", command))
    fields.append(("Statut", str(status) if status is not None else "aucune réponse"))
    fields.append(("Défauts appliqués", _faults(entry.get("faults")) or "aucun"))
    for label, key in (("Issue métier", "outcome"), ("Erreur", "error"), ("Run", "run"),
                       ("Corrélation", "correlation"), ("Client", "client"), ("Identifiant", "id")):
        if entry.get(key):
            fields.append((label, str(entry[key])))
    fields += _tls_fields(entry.get("tls"))

    sections = _message_sections("Requête", entry.get("request"), protocol)
    if response is None:
        sections.append(Section("Réponse", "(aucune réponse : connexion coupée, délai dépassé ou requête pendante)"))
    else:
        sections += _message_sections("Réponse", response, protocol)
    # HTTP, SMTP (reply code) and IMAP (200 OK / 400 NO / 500 BAD) all put failures at 400 and above.
    failed = response is None or bool(entry.get("error")) or (isinstance(status, int) and status >= 400)
    return ExchangeView(number, str(entry.get("id") or ""), str(entry.get("operation") or "?"), fields, sections,
                        not failed)


def _tls_fields(tls: object) -> list[tuple[str, str]]:
    """What the TLS handshake established: version, server name, and who connected (the client certificate)."""
    if not isinstance(tls, Mapping):
        return [("TLS", "non (HTTP en clair)")] if tls is None else []
    parts = [str(tls.get(k)) for k in ("version", "cipher") if tls.get(k)]
    if tls.get("alert"):
        parts.append(f"poignée de main refusée : alerte {tls['alert']}")
    fields = [("TLS", ", ".join(parts) or "oui")]
    if tls.get("sni"):
        fields.append(("Nom de serveur demandé (SNI)", str(tls["sni"])))
    cert = tls.get("client_cert")
    if isinstance(cert, Mapping):
        fields += [("Certificat client", str(cert.get("subject") or "?")),
                   ("Émetteur du certificat", str(cert.get("issuer") or "?")),
                   ("Numéro de série", str(cert.get("serial") or "?")),
                   ("Empreinte SHA-256", str(cert.get("sha256") or "?"))]
    else:
        fields.append(("Certificat client", "aucun"))
    return fields


def _message_sections(side: str, message: object, protocol: str) -> list[Section]:
    if not isinstance(message, Mapping):
        return [Section(side, "(absent du journal)")]
    headers = [(str(h[0]), str(h[1])) for h in message.get("headers") or [] if isinstance(h, Sequence) and len(h) == 2]
    sections = []
    if headers:
        sections.append(Section(f"{side} — en-têtes", "\n".join(f"{k}: {v}" for k, v in headers)))
    data = _body_bytes(message)
    content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
    kind, text = pretty_body(data, content_type, protocol=protocol)
    size = message.get("size")
    size = int(size) if _is_number(size) else len(data)
    notes = []
    if message.get("truncated"):
        notes.append(f"[le simulateur n'a conservé que les {len(data)} premiers octets sur {size}]")
    title = f"{side} — corps ({size} octets{', ' + kind if kind else ''})"
    sections.append(Section(title, "\n".join([*notes, _clip(text)])))
    return sections


def _body_bytes(message: Mapping) -> bytes:
    body = message.get("body") or ""
    if not isinstance(body, str):
        body = json.dumps(body, ensure_ascii=False)
    if message.get("encoding") == "base64":
        try:
            return base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError):
            return body.encode("utf-8")
    return body.encode("utf-8")


def pretty_body(data: bytes, content_type: str = "", *, protocol: str = "http", depth: int = 0) -> tuple[str, str]:
    """(kind, readable text) of a body. Never raises: whatever cannot be parsed is shown as it is."""
    if not data:
        return "", "(corps vide)"
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime.startswith("multipart/") and depth < _MAX_MIME_DEPTH:
        rendered = _pretty_multipart(data, content_type, depth)
        if rendered is not None:
            return "MIME multipart", rendered
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "binaire", binary_summary(data, mime)
    stripped = text.lstrip("\ufeff \t\r\n")
    if "xml" in mime or (not mime and stripped.startswith("<")):
        try:
            root = parse_xml(data)
        except XmlRejected as exc:
            return "XML non analysable, texte brut", f"[XML non analysable : {exc.reason}]\n{text}"
        etree.indent(root, space="  ")
        return "XML", etree.tostring(root, encoding="unicode")
    if "json" in mime or (not mime and stripped[:1] in ("{", "[")):
        try:
            return "JSON", json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except json.JSONDecodeError:
            return "JSON non analysable, texte brut", text
    if mime == "application/x-www-form-urlencoded":
        pairs = parse_qsl(text, keep_blank_values=True)
        if pairs:
            return "formulaire", "\n".join(f"{k} = {v}" for k, v in pairs)
    if (mime == "message/rfc822" or protocol == "smtp") and depth < _MAX_MIME_DEPTH and _looks_like_mail(text):
        return "message MIME", _pretty_mail(data, depth)
    return ("texte" if protocol == "http" else protocol.upper()), text


def binary_summary(data: bytes, mime: str = "") -> str:
    kind = f", type {mime}" if mime else ""
    return (f"[contenu binaire : {len(data)} octets{kind}, SHA-256 {hashlib.sha256(data).hexdigest()} — "
            "contenu complet (base64) dans le journal brut .jsonl]")


def _pretty_multipart(data: bytes, content_type: str, depth: int) -> str | None:
    # The email parser needs the boundary from the HTTP header: give it a one-line header block.
    head = f"Content-Type: {content_type}\r\n\r\n".encode("utf-8", "replace")
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + data)
    if not msg.is_multipart():
        return None
    return _render_parts(msg, depth)


def _looks_like_mail(text: str) -> bool:
    head = text.split("\n\n", 1)[0].split("\r\n\r\n", 1)[0]
    return bool(re.match(r"[A-Za-z][A-Za-z0-9-]*:", head)) and bool(re.search(r"(?im)^(mime-version|content-type):",
                                                                              head))


def _pretty_mail(data: bytes, depth: int) -> str:
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data)
    headers = "\n".join(f"{k}: {_header_text(v)}" for k, v in msg.raw_items())
    return f"{headers}\n\n{_render_parts(msg, depth) if msg.is_multipart() else _render_leaf(msg, depth)}"


def _header_text(value: object) -> str:
    """A header as a reader wants it: raw 8-bit UTF-8 (kept as surrogates by the bytes parser) and RFC 2047
    encoded words both decoded; anything odd is shown as it came."""
    text = str(value)
    with contextlib.suppress(UnicodeError):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8")
    if "=?" in text:
        with contextlib.suppress(Exception):  # a malformed encoded word is shown undecoded
            text = str(email.header.make_header(email.header.decode_header(text)))
    return text


def _render_parts(msg: EmailMessage, depth: int) -> str:
    parts = msg.get_payload()
    if not isinstance(parts, list):
        return _render_leaf(msg, depth)
    out = []
    for i, part in enumerate(parts, start=1):
        head = "\n".join(f"{k}: {_header_text(v)}" for k, v in part.raw_items())
        out.append(f"── partie {i}/{len(parts)} ({part.get_content_type()}) ──\n{head}\n")
        out.append(_render_parts(part, depth + 1) if part.is_multipart() else _render_leaf(part, depth))
    return "\n".join(out)


def _render_leaf(part: EmailMessage, depth: int) -> str:
    payload = part.get_payload(decode=True)  # undoes base64 / quoted-printable transfer encodings
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    mime = part.get_content_type()
    if part.get_content_maintype() in ("image", "audio", "video") or mime in (
            "application/pdf", "application/zip", "application/octet-stream"):
        return binary_summary(payload, mime)
    return pretty_body(payload, part.get("Content-Type", mime), depth=depth + 1)[1]


def _clip(text: str) -> str:
    if len(text) <= MAX_BODY_CHARS:
        return text
    rest = len(text) - MAX_BODY_CHARS
    return (f"{text[:MAX_BODY_CHARS]}\n[… tronqué pour la lecture : {rest} caractères de plus — "
            "corps complet dans le journal brut .jsonl]")


# -- field formatting ------------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ms(value: object) -> str | None:
    return f"{float(value):.3f} ms" if _is_number(value) else None


def _epoch_iso(value: object) -> str | None:
    if not _is_number(value):
        return None
    stamp = datetime.fromtimestamp(float(value), UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _received(entry: Mapping) -> str | None:
    return entry.get("received") or _epoch_iso(entry.get("received_at"))


def _responded(entry: Mapping) -> str | None:
    return entry.get("responded") or _epoch_iso(entry.get("responded_at"))


def _faults(faults: object) -> str:
    if not isinstance(faults, list):
        return ""
    out = []
    for f in faults:
        if not isinstance(f, Mapping):
            out.append(str(f))
            continue
        text = str(f.get("effect") or "?")
        if f.get("description"):
            text += f" — {f['description']}"
        extra = [f"règle {f['rule']}" if f.get("rule") else "", f"appel n°{f['call']}" if f.get("call") else "",
                 _ms(f.get("latency_ms")) or "", f"incident {f['incident']}" if f.get("incident") else ""]
        extra = [e for e in extra if e]
        out.append(f"{text} ({', '.join(extra)})" if extra else text)
    return " ; ".join(out)


# -- whole journal as text -------------------------------------------------------------------------------


def render_text(journal: ServiceJournal, *, title: str = "") -> str:
    s = journal.summary()
    lines = [f"Journal du service simulé « {journal.service} »" + (f" — {title}" if title else ""),
             f"{s.count} échange(s) ; latence injectée totale : {s.waited_total_ms:.3f} ms", ""]
    lines += [f"ATTENTION : {p}" for p in journal.problems]
    for view in journal.views():
        lines.append("=" * 100)
        lines.append(f"#{view.number} · {view.operation}" + ("" if view.ok else "   [ÉCHEC / SANS RÉPONSE]"))
        lines.append("=" * 100)
        width = max(len(label) for label, _ in view.fields)
        lines += [f"{label.ljust(width)} : {value}" for label, value in view.fields]
        for section in view.sections:
            lines += ["", f"--- {section.title} ---", section.text]
        lines.append("")
    return "\n".join(lines) + "\n"
