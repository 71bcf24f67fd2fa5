"""MSSanté client: SMTP submission and IMAP access with STARTTLS and the Pro Santé Connect token (SASL).

Endpoint settings (``ctx.endpoint.extra``, all strings):

* ``mailbox`` — the professional's BAL (personal or organisational), required;
* ``smtp_host`` / ``imap_host`` (default: host of ``ctx.endpoint.url``), ``smtp_port`` (587), ``imap_port`` (143);
* ``ca_file`` — PEM bundle to trust (the bench CA); ``tls_verify`` = ``false`` to skip verification (bench only);
* ``sasl`` — ``XOAUTH2`` (default) or ``OAUTHBEARER``;
* ``nil`` — value of ``X-MSS-NIL`` (product reference; default ``ctx.software.idam``).

Failures: ``ServiceRefused`` with ``code`` = ``token_expired`` / ``token_refused`` (refresh the PSC token and retry),
or the SMTP reply code (5xx); ``ServiceUnavailable`` for network/TLS trouble, timeouts and SMTP 4xx.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
import ssl
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr, parsedate_to_datetime
from typing import TypeVar
from urllib.parse import urlsplit

from .context import CallContext, ServiceRefused, ServiceUnavailable
from .transport import TlsSettings, ssl_context
from .xdm import SUBJECT_PREFIX, XDM_NAME, XdmAuthor, XdmPackage, build_xdm, read_cda_header, read_xdm

SERVICE = "MSSanté"
PATIENT_DOMAIN = "patient.mssante.fr"
CODE_TOKEN_EXPIRED = "token_expired"
CODE_TOKEN_REFUSED = "token_refused"
CODE_NO_TOKEN = "no_token"
# Short document types for the readable PDF name <date>_<type>_<NOM>_<PRENOM>.pdf.
PDF_TYPES = {"11488-4": "CR", "57833-6": "ORDONNANCE", "57828-6": "ORDONNANCE", "57832-8": "ORDONNANCE",
             "60591-5": "SYNTHESE", "CERT_DECL": "CERTIFICAT"}
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class SentMessage:
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    subject: str
    date: datetime
    raw: bytes  # as submitted (to archive in the patient file)


@dataclass(frozen=True)
class AttachmentInfo:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class MailSummary:
    uid: int
    sender: str  # address, lower case
    sender_name: str
    from_patient: bool  # sent from Mon espace santé (<INS>@patient.mssante.fr)
    subject: str  # as received
    display_subject: str  # without the XDM/1.0/DDM+ prefix (hidden in the UI)
    date: datetime | None
    message_id: str | None
    seen: bool
    has_xdm: bool
    is_mdn: bool  # a delivery/processing notification (multipart/report)
    attachments: tuple[AttachmentInfo, ...]  # what the user sees: IHE_XDM.zip plumbing left out
    x_mss: dict[str, str] = field(default_factory=dict)  # X-MSS-* headers, names upper-cased


@dataclass(frozen=True)
class MailMessage:
    summary: MailSummary
    text: str
    html: str | None
    attachments: tuple[Attachment, ...]  # IHE_XDM.zip left out (see xdm)
    xdm: XdmPackage | None
    raw: bytes


@dataclass(frozen=True)
class _Settings:
    mailbox: str
    smtp_host: str
    smtp_port: int
    imap_host: str
    imap_port: int
    sasl: str
    nil: str
    tls: ssl.SSLContext
    timeout: float


def _settings(ctx: CallContext) -> _Settings:
    extra = ctx.endpoint.extra
    mailbox = extra.get("mailbox", "").strip().lower()
    if not mailbox:
        raise ServiceRefused(f"{SERVICE} : aucune BAL configurée pour ce professionnel", code="config")
    host = urlsplit(ctx.endpoint.url).hostname or ctx.endpoint.url or "localhost"
    if extra.get("tls_verify", "true").lower() in ("false", "0", "no", "non"):
        tls = ssl_context(TlsSettings(verify=False))
    elif extra.get("ca_file"):
        tls = ssl_context(TlsSettings(ca_file=extra["ca_file"]))
    else:
        tls = ssl_context(ctx.endpoint.tls)  # the LGC's [tls] (bench CA, client certificate if any)
    sasl = extra.get("sasl", "XOAUTH2").upper()
    if sasl not in ("XOAUTH2", "OAUTHBEARER"):
        raise ValueError(f"mécanisme SASL {sasl!r} non pris en charge (XOAUTH2 ou OAUTHBEARER)")
    return _Settings(mailbox, extra.get("smtp_host") or host, int(extra.get("smtp_port") or 587),
                     extra.get("imap_host") or host, int(extra.get("imap_port") or 143), sasl,
                     extra.get("nil") or ctx.software.idam, tls, ctx.endpoint.timeout)


# ----------------------------------------------------------------------------------------------------
# SASL initial responses
# ----------------------------------------------------------------------------------------------------


def xoauth2_response(user: str, token: str) -> str:
    """Google XOAUTH2: ``user=<bal>^Aauth=Bearer <token>^A^A``."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def oauthbearer_response(user: str, token: str, host: str, port: int) -> str:
    """RFC 7628 §3.1: GS2 header ``n,a=<authzid>,`` then ``host``, ``port``, ``auth`` key/values."""
    authzid = user.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"


def _token(ctx: CallContext) -> str:
    token = ctx.professional.access_token
    if not token:
        raise ServiceRefused(f"{SERVICE} : pas de jeton Pro Santé Connect, reconnectez-vous", code=CODE_NO_TOKEN)
    return token


def _auth_refused(text: str) -> ServiceRefused:
    expired = "expir" in text.lower()
    reason = (f"{SERVICE} : jeton Pro Santé Connect expiré, reconnectez-vous" if expired
              else f"{SERVICE} : authentification refusée ({text})")
    return ServiceRefused(reason, code=CODE_TOKEN_EXPIRED if expired else CODE_TOKEN_REFUSED, detail=text)


# ----------------------------------------------------------------------------------------------------
# SMTP
# ----------------------------------------------------------------------------------------------------


def _reply(err: smtplib.SMTPResponseException) -> str:
    raw = err.smtp_error
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _smtp_error(code: int, text: str, what: str) -> ServiceRefused | ServiceUnavailable:
    if code == 530 and "expir" in text.lower():  # token expired during the session
        return _auth_refused(text)
    if 400 <= code < 500:
        return ServiceUnavailable(f"{SERVICE} : {what} refusé temporairement ({code} {text})", code=str(code),
                                  detail=text)
    return ServiceRefused(f"{SERVICE} : {what} refusé ({code} {text})", code=str(code), detail=text)


@contextmanager
def _network(what: str, timeout: float) -> Iterator[None]:
    """Transport failures of smtplib/imaplib as ServiceUnavailable."""
    try:
        yield
    except TimeoutError:
        raise ServiceUnavailable(f"pas de réponse du service {SERVICE} ({what}) après {timeout:g} s",
                                 code="timeout") from None
    except ssl.SSLError as exc:
        raise ServiceUnavailable(f"{SERVICE} : échec de la négociation TLS ({what})", code="tls",
                                 detail=str(exc)) from None
    except (smtplib.SMTPServerDisconnected, imaplib.IMAP4.abort, ConnectionError, OSError) as exc:
        text = str(exc)
        if "expir" in text.lower():  # IMAP "* BYE [ALERT] Jeton ... expire"
            raise _auth_refused(text) from None
        raise ServiceUnavailable(f"{SERVICE} : connexion au serveur {what} impossible ou interrompue",
                                 code="network", detail=text) from None


def _smtp_session(ctx: CallContext, s: _Settings, work: Callable[[smtplib.SMTP], T]) -> T:
    token = _token(ctx)
    with _network("SMTP", s.timeout), smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout) as client:
        client.ehlo()
        if not client.has_extn("starttls"):  # never send a token in clear text
            raise ServiceUnavailable(f"{SERVICE} : le serveur SMTP ne propose pas STARTTLS", code="tls")
        client.starttls(context=s.tls)
        client.ehlo()
        initial = (xoauth2_response(s.mailbox, token) if s.sasl == "XOAUTH2"
                   else oauthbearer_response(s.mailbox, token, s.smtp_host, s.smtp_port))
        # Second call = the RFC 7628 error challenge: answer empty (XOAUTH2) / %x01 (OAUTHBEARER) to get the 5xx.
        try:
            client.auth(s.sasl, lambda challenge=None: initial if challenge is None else
                        ("" if s.sasl == "XOAUTH2" else "\x01"))
        except smtplib.SMTPAuthenticationError as exc:
            raise _auth_refused(f"{exc.smtp_code} {_reply(exc)}") from None
        except smtplib.SMTPResponseException as exc:
            raise _smtp_error(exc.smtp_code, _reply(exc), "authentification") from None
        return work(client)


def _submit(ctx: CallContext, msg: EmailMessage, recipients: Sequence[str]) -> None:
    s = _settings(ctx)

    def send(client: smtplib.SMTP) -> None:
        try:
            refused = client.send_message(msg, from_addr=s.mailbox, to_addrs=list(recipients))
        except smtplib.SMTPRecipientsRefused as exc:
            (addr, (code, text)), *_ = exc.recipients.items()
            raise _smtp_error(code, text.decode("utf-8", "replace"), f"destinataire {addr}") from None
        except smtplib.SMTPSenderRefused as exc:
            raise _smtp_error(exc.smtp_code, _reply(exc), "expéditeur") from None
        except smtplib.SMTPDataError as exc:
            raise _smtp_error(exc.smtp_code, _reply(exc), "message") from None
        if refused:  # some recipients got the message, not these ones
            addr, (code, text) = next(iter(refused.items()))
            raise _smtp_error(code, text.decode("utf-8", "replace"), f"destinataire {addr}")

    _smtp_session(ctx, s, send)


def _compose(ctx: CallContext, s: _Settings, *, to: Sequence[str], subject: str, body: str,
             attachments: Sequence[Attachment], headers: dict[str, str]) -> EmailMessage:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = s.mailbox
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = make_msgid(domain=s.mailbox.rpartition("@")[2] or "lgc.local")
    msg["X-MSS-NIL"] = s.nil
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(body)
    for att in attachments:
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(att.data, maintype=maintype, subtype=subtype or "octet-stream", filename=att.filename)
    return msg


def _sent(msg: EmailMessage, sender: str, to: Sequence[str]) -> SentMessage:
    return SentMessage(str(msg["Message-ID"]), sender, tuple(to), str(msg["Subject"]),
                       parsedate_to_datetime(str(msg["Date"])), msg.as_bytes())


def _author(ctx: CallContext) -> XdmAuthor:
    p = ctx.professional
    return XdmAuthor(p.national_id, p.family_name, p.given_name, p.profession, p.speciality, p.sector,
                     p.structure_name, p.structure_id)


def send(ctx: CallContext, to: Sequence[str], subject: str | None, body: str,
         attachments: Sequence[Attachment] = (), *, cda: Sequence[bytes] = (), pdf: Attachment | None = None,
         close_reply_channel: bool = False, receipt_to: str | None = None) -> SentMessage:
    """Send a message from the configured BAL. With ``cda``, the documents travel in ``IHE_XDM.zip`` and the
    subject (when None), ``X-MSS-CODECDA`` and ``X-MSS-INS`` are derived from them; ``pdf`` is the readable copy.
    ``close_reply_channel`` adds ``X-MSS-MES: FIN`` (messages to a patient only); ``receipt_to`` asks for an MDN."""
    s = _settings(ctx)
    headers: dict[str, str] = {}
    files = list(attachments)
    if cda:
        parsed = [read_cda_header(doc) for doc in cda]
        if subject is None:
            subject = parsed[0].subject()
        headers["X-MSS-CODECDA"] = ",".join(dict.fromkeys(h.type_code for h in parsed if h.type_code))
        headers["X-MSS-INS"] = "O" if all(h.qualified_ins for h in parsed) else "N"
        xdm = build_xdm(list(cda), _author(ctx), source_id=_source_id(ctx), software=ctx.software.name)
        files.insert(0, Attachment(XDM_NAME, "application/zip", xdm))
        if pdf is not None:
            files.insert(1, pdf)
    elif pdf is not None:
        files.append(pdf)
    if subject is None:
        raise ValueError("objet obligatoire pour un message sans document CDA")
    if close_reply_channel:
        headers["X-MSS-MES"] = "FIN"
    if receipt_to:
        headers["Disposition-Notification-To"] = receipt_to
    msg = _compose(ctx, s, to=to, subject=subject, body=body, attachments=files, headers=headers)
    _submit(ctx, msg, to)
    return _sent(msg, s.mailbox, to)


def _source_id(ctx: CallContext) -> str:
    """XDS sourceId: an OID of the sending software instance (2.25 = UUID arc)."""
    try:
        return f"2.25.{uuid.UUID(ctx.software.instance).int}"
    except ValueError:
        return "2.25.0"


def patient_address(ins: str) -> str:
    return f"{ins.strip().upper()}@{PATIENT_DOMAIN}"


def send_to_patient(ctx: CallContext, *, patient_ins: str, cda: bytes, document_pdf: bytes,
                    body: str = "Bonjour,\n\nVeuillez trouver ci-joint un document vous concernant.\n",
                    title: str | None = None, pdf_filename: str | None = None, close_reply_channel: bool = True,
                    receipt_to: str | None = None) -> SentMessage:
    """Send a document to the patient's Mon espace santé mailbox ``<INS>@patient.mssante.fr``: ``IHE_XDM.zip``
    (the CDA) + readable PDF ``<AAAAMMJJ>_<TYPE>_<NOM>_<PRENOM>.pdf``, subject ``XDM/1.0/DDM+<titre> <NOM>
    <PRENOM> <JJ/MM/AAAA>``, ``X-MSS-MES: FIN`` unless the PS lets the patient answer."""
    h = read_cda_header(cda)
    if not h.ins or h.ins.upper() != patient_ins.strip().upper():
        raise ValueError(f"l'INS du CDA ({h.ins}) n'est pas celui du destinataire ({patient_ins})")
    if pdf_filename is None:
        day = h.effective_time[:8] or datetime.now().strftime("%Y%m%d")
        kind = PDF_TYPES.get(h.type_code, "DOCUMENT")
        pdf_filename = "_".join(_file_part(x) for x in (day, kind, h.family or "", h.given or "") if x) + ".pdf"
    return send(ctx, [patient_address(patient_ins)], h.subject(title), body,
                cda=[cda], pdf=Attachment(pdf_filename, "application/pdf", document_pdf),
                close_reply_channel=close_reply_channel, receipt_to=receipt_to)


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-").upper()


# ----------------------------------------------------------------------------------------------------
# IMAP
# ----------------------------------------------------------------------------------------------------


def _imap_session(ctx: CallContext, work: Callable[[imaplib.IMAP4], T]) -> T:
    s = _settings(ctx)
    token = _token(ctx)
    with _network("IMAP", s.timeout):
        client = imaplib.IMAP4(s.imap_host, s.imap_port, timeout=s.timeout)
        try:
            client.starttls(ssl_context=s.tls)
            initial = (xoauth2_response(s.mailbox, token) if s.sasl == "XOAUTH2"
                       else oauthbearer_response(s.mailbox, token, s.imap_host, s.imap_port))
            calls = 0

            def answer(_challenge: bytes) -> bytes:
                nonlocal calls
                calls += 1  # first continuation: credentials; later ones: the RFC 7628 error challenge
                return initial.encode() if calls == 1 else (b"" if s.sasl == "XOAUTH2" else b"\x01")

            try:
                client.authenticate(s.sasl, answer)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                raise _auth_refused(str(exc)) from None
            return work(client)
        finally:
            with suppress(imaplib.IMAP4.error, OSError):
                client.logout()


def _check(typ: str, data: list, what: str) -> list:
    if typ != "OK":
        text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise ServiceUnavailable(f"{SERVICE} : {what} impossible ({typ} {text})", code=f"imap_{typ.lower()}")
    return data


def _select(client: imaplib.IMAP4, folder: str) -> None:
    try:
        _check(*client.select(folder, readonly=True), what=f"ouverture du dossier {folder}")
    except imaplib.IMAP4.abort:
        raise  # the server ended the session (BYE, e.g. token expired): the transport's to explain (_network)
    except imaplib.IMAP4.error as exc:
        raise ServiceRefused(f"{SERVICE} : dossier {folder} inaccessible ({exc})", code="imap_no") from None


_UID_RE = re.compile(rb"UID (\d+)")
_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")


def _fetch_full(client: imaplib.IMAP4, uids: str) -> list[tuple[int, bool, bytes]]:
    """(uid, seen, raw message) for a UID set; BODY.PEEK so listing does not mark messages read."""
    data = _check(*client.uid("FETCH", uids, "(UID FLAGS BODY.PEEK[])"), what="lecture des messages")
    out = []
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, raw = item[0], item[1]
        m = _UID_RE.search(head)
        if m is None:
            continue
        flags = _FLAGS_RE.search(head)
        seen = bool(flags and b"\\Seen" in flags.group(1))
        out.append((int(m.group(1)), seen, raw))
    return out


def _parts(msg: Message) -> list[Attachment]:
    out = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        if filename or part.get_content_disposition() == "attachment":
            out.append(Attachment(filename or "", part.get_content_type(), part.get_payload(decode=True) or b""))
    return out


def _summary(uid: int, seen: bool, raw: bytes) -> tuple[MailSummary, EmailMessage, list[Attachment]]:
    msg: EmailMessage = BytesParser(policy=policy.default).parsebytes(raw)  # type: ignore[assignment]
    name, address = parseaddr(str(msg.get("From", "")))
    address = address.lower()
    subject = str(msg.get("Subject", "") or "")
    try:
        when = parsedate_to_datetime(str(msg["Date"])) if msg.get("Date") else None
    except (TypeError, ValueError):
        when = None
    parts = _parts(msg)
    xdm = [p for p in parts if p.filename.upper() == XDM_NAME.upper()]
    shown = tuple(AttachmentInfo(p.filename, p.content_type, p.size) for p in parts if p not in xdm)
    # Header names are case-insensitive (some IMAP servers re-case them): keys upper-cased.
    x_mss = {k.upper(): str(v) for k, v in msg.items() if k.upper().startswith("X-MSS-")}
    summary = MailSummary(
        uid=uid, sender=address, sender_name=name, from_patient=address.endswith("@" + PATIENT_DOMAIN),
        subject=subject, display_subject=subject.removeprefix(SUBJECT_PREFIX), date=when,
        message_id=str(msg["Message-ID"]) if msg.get("Message-ID") else None, seen=seen, has_xdm=bool(xdm),
        is_mdn=msg.get_content_type() == "multipart/report", attachments=shown, x_mss=x_mss)
    return summary, msg, parts


def list_inbox(ctx: CallContext, *, folder: str = "INBOX") -> list[MailSummary]:
    """Messages of the folder, oldest first, without marking them read."""

    def work(client: imaplib.IMAP4) -> list[MailSummary]:
        _select(client, folder)
        data = _check(*client.uid("SEARCH", None, "ALL"), what="recherche des messages")
        uids = b" ".join(d for d in data if d).split()
        if not uids:
            return []
        rows = _fetch_full(client, b",".join(uids).decode())
        return [_summary(uid, seen, raw)[0] for uid, seen, raw in sorted(rows)]

    return _imap_session(ctx, work)


def fetch(ctx: CallContext, uid: int, *, folder: str = "INBOX") -> MailMessage | None:
    """The whole message (text, attachments, decoded IHE_XDM.zip); None if the UID is not in the folder."""

    def work(client: imaplib.IMAP4) -> MailMessage | None:
        _select(client, folder)
        rows = _fetch_full(client, str(uid))
        row = next((r for r in rows if r[0] == uid), None)
        if row is None:
            return None
        summary, msg, parts = _summary(*row)
        body = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        xdm = next((p for p in parts if p.filename.upper() == XDM_NAME.upper()), None)
        return MailMessage(
            summary=summary, text=body.get_content() if body is not None else "",
            html=html.get_content() if html is not None else None,
            attachments=tuple(p for p in parts if p is not xdm), xdm=read_xdm(xdm.data) if xdm else None, raw=row[2])

    return _imap_session(ctx, work)


def recipients_of(msg: Message) -> list[str]:
    """Addresses in To and Cc (to build a reply-all)."""
    return [a.lower() for _, a in getaddresses([str(v) for v in msg.get_all("To", []) + msg.get_all("Cc", [])]) if a]
