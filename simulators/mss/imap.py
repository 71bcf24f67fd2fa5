"""IMAP4rev1 front end: Twisted's ``IMAP4Server`` protocol, driven by asyncio.

Why not the Twisted reactor: the reactor is a process-wide singleton that cannot be restarted, and Twisted's
TLS needs pyOpenSSL, which the bench does not install. ``asyncioreactor`` would bind the reactor to one loop,
while the bench runs one loop per worker (and tests run several simulators, each on its own loop). So the
protocol object (parser, state machine, FETCH/SEARCH/STORE semantics — the part worth reusing) runs on the
worker's asyncio loop through a small adapter:

* ``_Transport`` gives the protocol what it needs from a Twisted transport (write, loseConnection, getPeer,
  startTLS — done with asyncio's ``loop.start_tls`` and the stdlib ``ssl`` context of tls.py, producers);
* ``TimeoutMixin.callLater`` and the FETCH scheduler use ``loop.call_later`` instead of the reactor;
* SEARCH is evaluated in one pass (Twisted's manual search reschedules itself on the global reactor).

Mailboxes live in the shared SQLite store (model.py), so SMTP deliveries and control-API injections from any
worker are seen at once. Authentication: AUTHENTICATE XOAUTH2 / OAUTHBEARER (PSC token, SASL-IR, RFC 7628
error challenge), PLAIN / LOGIN and the LOGIN command only in legacy mode. A session whose token expires gets
``* BYE`` on its next command.

Where Twisted strays from RFC 3501 it is overridden: FETCH sections are slices of the stored bytes, SELECT and
EXAMINE send every required response (EXAMINE read-only), LIST gives mailbox attributes, continuation requests
keep their space, and a selected session is told of new and expunged messages (before tagged replies, at once
during IDLE) against its own view of sequence numbers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import io
import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.parser import HeaderParser
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ITLSTransport
from twisted.mail import imap4
from twisted.mail.interfaces import (
    IAccountIMAP,
    ICloseableMailboxIMAP,
    IMailboxIMAP,
    IMessageIMAP,
    IMessageIMAPPart,
    INamespacePresenter,
)
from twisted.mail.interfaces import (
    IMessageIMAPFile as IMessageFile,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from simulators.core.faults import Decision, Drop, Hang
from simulators.core.service import ServiceContext

from . import trace, wire
from .model import AuthError, MssModel, Session

STATUS = {b"OK": 200, b"NO": 400, b"BAD": 500}

_twisted_disposition = imap4._MessageStructure._disposition


def _unquoted_disposition(self: Any, disp: Any) -> Any:
    # Twisted leaves the quotes around Content-Disposition parameters in BODYSTRUCTURE
    # ("filename" "\"IHE_XDM.zip\""); LGCs find attachments by that name, so unquote as for Content-Type.
    result = _twisted_disposition(self, disp)
    if isinstance(result, list) and result[1]:
        result[1] = [imap4.unquote(v.strip()) if v else v for v in result[1]]
    return result


imap4._MessageStructure._disposition = _unquoted_disposition
FLAGS = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
SPECIAL_USE = {"Sent": ["\\Sent"]}  # RFC 6154 attribute of each folder that has one


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# ----------------------------------------------------------------------------------------------------
# Messages and mailboxes backed by the store
# ----------------------------------------------------------------------------------------------------


@implementer(IMessageIMAPPart)
class Part:
    """A MIME entity served from its stored bytes (never re-serialised: wire.imap_section)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.header, self.body = wire.split_entity(raw)
        self.msg = wire.entity_headers(self.header)

    def getHeaders(self, negate: bool, *names: Any) -> dict[str, str]:
        # Parsed values, for BODYSTRUCTURE, ENVELOPE and SEARCH; FETCH of header bytes uses wire.imap_section.
        # 8-bit values are read as UTF-8 (RFC 6532), not as U+FFFD per octet.
        wanted = {_text(n).lower() for n in names}
        out: dict[str, str] = {}
        for key, value in HeaderParser().parsestr(_decoded(self.header)).items():
            if (key.lower() in wanted) != bool(negate):
                out[key.lower()] = _clean_params(value) if key.lower() == "content-type" else str(value)
        return out

    def getBodyFile(self) -> io.BytesIO:
        return io.BytesIO(self.body)

    def getSize(self) -> int:
        return len(self.body)  # BODYSTRUCTURE body-fld-octets: the body only (RFC822.SIZE: see spew_rfc822size)

    def isMultipart(self) -> bool:
        return self.msg.get_content_maintype() == "multipart"

    def getSubPart(self, part: int) -> Part:
        if self.msg.get_content_type() == "message/rfc822" and part == 0:
            return Part(self.body)  # Twisted's BODYSTRUCTURE asks for the encapsulated message this way
        parts = wire.mime_parts(self.header, self.body)
        if not 0 <= part < len(parts):
            raise IndexError(part)
        return Part(parts[part])


@implementer(IMessageIMAP, IMessageFile)
class StoredMessage(Part):
    def __init__(self, model: MssModel, row: dict, *, recent: bool = False) -> None:
        super().__init__(model.raw(row["uid"]))
        self.uid = row["uid"]
        self.flags = json.loads(row["flags"]) + (["\\Recent"] if recent else [])
        self.internal = row["internal_date"]
        self._search_texts: dict[bool, str] = {}  # search_text's, per header flag: one parse per SEARCH

    def open(self) -> io.BytesIO:
        return io.BytesIO(self.raw)  # RFC822 / BODY[]: the stored bytes

    def getUID(self) -> int:
        return self.uid

    def getFlags(self) -> list[str]:
        return list(self.flags)

    def getInternalDate(self) -> str:
        return format_datetime(datetime.fromtimestamp(self.internal, UTC))

    def search_text(self, *, header: bool) -> str:
        """What SEARCH BODY (header=False) or TEXT (header=True) looks into, casefolded (RFC 3501 §6.4.4: the
        match is a case-insensitive substring): the stored bytes of the body (of the header too for TEXT) and,
        as users expect of a server, the decoded content of the text parts (quoted-printable, base64, charsets)
        and, for TEXT, the header values with their encoded words (RFC 2047) decoded."""
        if header not in self._search_texts:
            texts = [_decoded(self.body)]
            parsed = message_from_bytes(self.raw, policy=policy.default)
            for part in parsed.walk():
                if part.get_content_maintype() == "text":
                    with contextlib.suppress(Exception):  # a part the email package cannot decode: raw bytes only
                        texts.append(part.get_content())
            if header:
                texts.append(_decoded(self.header))
                for name, value in parsed.items():
                    with contextlib.suppress(Exception):
                        texts.append(f"{name}: {value}")
            self._search_texts[header] = "\n".join(texts).casefold()
        return self._search_texts[header]


def _internal_day(msg: StoredMessage) -> date:
    return datetime.fromtimestamp(msg.internal, UTC).date()


def _clean_params(value: str) -> str:
    """A Content-Type without its parameters that have no "=": Twisted's BODYSTRUCTURE made a dict of every
    ";"-separated piece and broke on any other (a trailing ";" included)."""
    first, *params = value.split(";")
    return ";".join([first, *(p for p in params if "=" in p)])


class _Literal8:
    """A string with 8-bit characters in ENVELOPE or BODYSTRUCTURE, sent as a literal of its UTF-8 octets (quoted
    strings are 7-bit, RFC 3501 §4.3; Twisted's collapseNestedLists sends objects with read() as literals, and
    failed on any non-ASCII str: the FETCH response was left half-written and the connection closed)."""

    def __init__(self, text: str) -> None:
        self.data = text.encode("utf-8")

    def read(self) -> bytes:
        return self.data


def _imap_strings(item: Any) -> Any:
    if isinstance(item, str) and not item.isascii():
        return _Literal8(item)
    if isinstance(item, list | tuple):
        return [_imap_strings(i) for i in item]
    return item


def _decoded(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


@dataclass
class Changes:
    """What a session must be told of its selected folder (RFC 3501 §7.3.1, §7.4.1)."""

    expunged: list[int]  # sequence numbers, in the order the EXPUNGE responses are sent
    exists: int | None  # new message count, when messages were added
    recent: int | None


@implementer(IMailboxIMAP, ICloseableMailboxIMAP)
class Folder:
    """A folder as one session sees it. Once selected (``open``), sequence numbers are those of the session's view
    (``uids``): messages delivered or expunged by others enter or leave it only when the session is told
    (``changes``), so the numbers the client knows stay right."""

    def __init__(self, model: MssModel, address: str, name: str, *, readonly: bool = False) -> None:
        self.model = model
        self.address = address
        self.name = name
        self.readonly = readonly
        self.listeners: list[Any] = []
        self.uids: list[int] | None = None  # None: not selected (STATUS, APPEND, COPY target)
        self.recent: set[int] = set()
        self.highest = 0

    def open(self) -> None:
        self.uids = self.model.folder_uids(self.address, self.name)
        self.highest = max(self.uids, default=0)
        self.recent = self._take_recent(self.uids)

    def _take_recent(self, uids: list[int]) -> set[int]:
        # A read-only session reports \Recent without taking it from the next read-write one (RFC 3501 §6.3.2).
        return self.model.still_recent(uids) if self.readonly else self.model.claim_recent(uids)

    def _view(self) -> list[int]:
        return self.uids if self.uids is not None else self.model.folder_uids(self.address, self.name)

    def changes(self, *, allow_expunge: bool) -> Changes:
        """Bring the view up to date with the store: EXPUNGEs only where allowed, new messages always."""
        current = self.model.folder_uids(self.address, self.name)
        if self.uids is None:
            return Changes([], None, None)
        expunged: list[int] = []
        if allow_expunge:
            present = set(current)
            kept = []
            for seq, uid in enumerate(self.uids, start=1):
                if uid in present:
                    kept.append(uid)
                else:  # each EXPUNGE renumbers the messages after it at once
                    expunged.append(seq - len(expunged))
            self.uids = kept
            self.recent &= present
        new = [u for u in current if u > self.highest]
        if not new:
            return Changes(expunged, None, None)
        self.uids.extend(new)
        self.highest = new[-1]
        self.recent |= self._take_recent(new)
        return Changes(expunged, len(self.uids), len(self.recent))

    def getFlags(self) -> list[str]:
        return list(FLAGS)

    def getMailboxAttributes(self) -> list[str]:
        # LIST attributes: no hierarchy under the two fixed folders (RFC 3348), special use (RFC 6154).
        return ["\\HasNoChildren", *SPECIAL_USE.get(self.name, [])]

    def getHierarchicalDelimiter(self) -> str:
        return "/"

    def getUIDValidity(self) -> int:
        box = self.model.mailbox(self.address)
        return int(box["uidvalidity"]) if box else 1

    def getUIDNext(self) -> int:
        return self.model.uidnext(self.address, self.name)

    def getUID(self, message: int) -> int:
        return self._view()[message - 1]

    def getMessageCount(self) -> int:
        return len(self._view())

    def getRecentCount(self) -> int:
        if self.uids is None:  # STATUS: messages no session has been told of
            return len(self.model.still_recent(self._view()))
        return len(self.recent)

    def getUnseenCount(self) -> int:
        return sum(1 for r in self._rows().values() if "\\Seen" not in json.loads(r["flags"]))

    def first_unseen(self) -> int | None:
        rows = self._rows()
        for seq, uid in enumerate(self._view(), start=1):
            if uid in rows and "\\Seen" not in json.loads(rows[uid]["flags"]):
                return seq
        return None

    def isWriteable(self) -> bool:
        return not self.readonly

    def destroy(self) -> None:
        raise imap4.MailboxException("les dossiers du banc ne peuvent pas etre supprimes")

    def requestStatus(self, names: list[Any]) -> dict:
        items = [_text(n).upper() if isinstance(n, bytes | str) else "" for n in names]
        unknown = [i for i in items if i not in ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN")]
        if unknown or not items:  # status-att of RFC 3501 §9 (Twisted's helper raised KeyError)
            raise imap4.IllegalClientResponse("STATUS items expected: MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN")
        return imap4.statusRequestHelper(self, items)

    def addListener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def removeListener(self, listener: Any) -> None:
        with contextlib.suppress(ValueError):
            self.listeners.remove(listener)

    def addMessage(self, message: Any, flags: Any = (), date: Any = None) -> defer.Deferred:
        data = message.read() if hasattr(message, "read") else bytes(message)
        uid = self.model.store_message(
            self.address,
            self.name,
            data,
            origin="imap-append",
            flags=[_text(f) for f in flags or () if _text(f) != "\\Recent"],
        )
        return defer.succeed(uid)

    def expunge(self) -> list[int]:
        """EXPUNGE/CLOSE by this session: the sequence numbers of its view, each as the EXPUNGE response gives it."""
        gone = set(self.model.expunge(self.address, self.name))
        view = self._view()
        out = []
        for seq, uid in enumerate(view, start=1):
            if uid in gone:
                out.append(seq - len(out))
        if self.uids is not None:
            self.uids = [u for u in view if u not in gone]
            self.recent -= gone
        return out

    def _rows(self) -> dict[int, dict]:
        return {r["uid"]: r for r in self.model.folder_rows(self.address, self.name)}

    def _select(self, messages: Any, uid: bool) -> list[tuple[int, dict]]:
        view = self._view()
        if not view:
            return []
        rows = self._rows()  # messages expunged by another session, not yet announced, are left out
        if uid:
            messages.last = view[-1]
            return [(seq, rows[u]) for seq, u in enumerate(view, start=1) if u in messages and u in rows]
        messages.last = len(view)
        return [(seq, rows[u]) for seq, u in enumerate(view, start=1) if seq in messages and u in rows]

    def fetch(self, messages: Any, uid: bool) -> list[tuple[int, StoredMessage]]:
        return [
            (seq, StoredMessage(self.model, r, recent=r["uid"] in self.recent))
            for seq, r in self._select(messages, uid)
        ]

    def store(self, messages: Any, flags: Any, mode: int, uid: bool) -> dict[int, list[str]]:
        if self.readonly:
            raise imap4.ReadOnlyMailbox()
        flags = {_text(f) for f in flags} - {"\\Recent"}  # \Recent is the server's (RFC 3501 §2.3.2)
        out = {}
        for seq, row in self._select(messages, uid):
            current = set(json.loads(row["flags"]))
            if mode == -1:
                current -= flags
            elif mode == 0:
                current = set(flags)
            else:
                current |= flags
            self.model.set_flags(row["uid"], sorted(current))
            out[seq] = sorted(current) + (["\\Recent"] if row["uid"] in self.recent else [])
        return out

    def mark_seen(self, messages: Any, uid: bool) -> bool:
        """Implicit \\Seen of FETCH BODY[…]/RFC822/RFC822.TEXT (RFC 3501 §6.4.5); True if a flag changed."""
        changed = False
        unresolved = imap4.MessageSet()  # a copy: "*" can be resolved once per set, and FETCH resolves the original
        unresolved.ranges = list(messages.ranges)
        for _seq, row in self._select(unresolved, uid):
            current = set(json.loads(row["flags"]))
            if "\\Seen" not in current:
                self.model.set_flags(row["uid"], sorted(current | {"\\Seen"}))
                changed = True
        return changed

    def close(self) -> None:
        pass


def _list_match(pattern: str, name: str, delimiter: str = "/") -> bool:
    """LIST pattern against a whole mailbox name (RFC 3501 §6.3.8: "*" any characters, "%" any but the hierarchy
    delimiter), without regard to case like SELECT here. Twisted's regular expression matched a prefix ("S" listed
    Sent) and backtracked polynomially in adjacent wildcards (hundreds held the event loop for hours); this walks
    the name once per pattern character: the positions of the name the pattern so far can reach."""
    pattern, name = pattern.casefold(), name.casefold()
    reach = {0}
    for char in pattern:
        if char == "*":
            reach = set(range(min(reach), len(name) + 1))
        elif char == "%":
            grown = set(reach)
            for at in reach:
                while at < len(name) and name[at] != delimiter:
                    at += 1
                    grown.add(at)
            reach = grown
        else:
            reach = {at + 1 for at in reach if at < len(name) and name[at] == char}
        if not reach:
            return False
    return len(name) in reach


@implementer(IAccountIMAP, INamespacePresenter)
class Account:
    def __init__(self, model: MssModel, session: Session) -> None:
        self.model = model
        self.session = session

    def _folder(self, name: Any) -> Folder | None:
        name = _text(name)
        for folder in self.model.folders(self.session.mailbox):
            if folder.upper() == name.upper():
                return Folder(self.model, self.session.mailbox, folder)
        return None

    def addMailbox(self, name: Any, mbox: Any = None) -> None:
        raise imap4.MailboxException("creation de dossier non prise en charge par le banc")  # IMAP text is ASCII

    def create(self, pathspec: Any) -> bool:
        return False

    def select(self, name: Any, rw: bool = True) -> Folder | None:
        folder = self._folder(name)
        if folder is not None:
            folder.readonly = not rw
        return folder

    def delete(self, name: Any) -> None:
        raise imap4.MailboxException("suppression de dossier non prise en charge par le banc")

    def rename(self, oldname: Any, newname: Any) -> None:
        raise imap4.MailboxException("renommage de dossier non pris en charge par le banc")

    def isSubscribed(self, name: Any) -> bool:
        return self._folder(name) is not None

    def subscribe(self, name: Any) -> None:
        pass

    def unsubscribe(self, name: Any) -> None:
        pass

    def listMailboxes(self, ref: Any, wildcard: Any) -> list[tuple[str, Folder]]:
        pattern = _text(ref) + _text(wildcard)
        return [
            (name, Folder(self.model, self.session.mailbox, name))
            for name in self.model.folders(self.session.mailbox)
            if _list_match(pattern, name)
        ]

    def getPersonalNamespaces(self) -> list:
        return [[b"", b"/"]]

    def getSharedNamespaces(self) -> None:
        return None

    def getOtherNamespaces(self) -> None:
        return None

    def getUserNamespaces(self) -> None:
        return None


# ----------------------------------------------------------------------------------------------------
# SASL challengers (Twisted IChallengeResponse) and the portal
# ----------------------------------------------------------------------------------------------------


class _BearerChallenge:
    mechanism = b""
    parse: Callable[[bytes], wire.BearerCredentials]

    def __init__(self) -> None:
        self.response: bytes | None = None

    def getChallenge(self) -> bytes:
        return b""

    def setResponse(self, response: bytes) -> None:
        self.response = response

    def moreChallenges(self) -> bool:
        return False


class XOAuth2Challenge(_BearerChallenge):
    mechanism = b"XOAUTH2"
    parse = staticmethod(wire.parse_xoauth2)


class OAuthBearerChallenge(_BearerChallenge):
    mechanism = b"OAUTHBEARER"
    parse = staticmethod(wire.parse_oauthbearer)


class _TokenRefused(AuthError):
    """A well-formed bearer response whose token is refused (as opposed to a malformed SASL message)."""


class Portal:
    """What Twisted's IMAP4Server calls `portal.login(credentials, mind, IAccount)`."""

    def __init__(self, server: MssIMAP) -> None:
        self.server = server

    def login(self, creds: Any, mind: Any, *interfaces: Any) -> defer.Deferred:
        server = self.server
        model = server.model
        outcome = server.auth_outcome

        def check() -> Session:
            if isinstance(creds, _BearerChallenge):
                try:
                    parsed = creds.parse(creds.response or b"")
                except wire.SaslError as exc:
                    raise AuthError(str(exc)) from None
                try:
                    return model.authenticate_bearer(parsed, outcome=outcome)
                except AuthError as exc:  # the token itself: RFC 7628 error challenge before the NO
                    raise _TokenRefused(exc.reason, expired=exc.expired) from None
            user = _text(getattr(creds, "username", b""))
            password = _text(getattr(creds, "password", b""))
            mechanism = _text(getattr(creds, "mechanism", None) or "LOGIN")
            return model.authenticate_password(user, password, mechanism, outcome=outcome)

        future = asyncio.ensure_future(asyncio.to_thread(check))
        d = defer.Deferred.fromFuture(future)

        def done(session: Session) -> tuple:
            server.mss_session = session
            return IAccountIMAP, Account(model, session), lambda: None

        def failed(failure: Failure) -> Failure:
            if failure.check(AuthError):
                server.auth_failure = failure.value.reason
                server.oauth_error = (
                    wire.oauth_error_json(failure.value.reason) if failure.check(_TokenRefused) else None
                )
                return Failure(UnauthorizedLogin(failure.value.reason))
            return failure

        return d.addCallbacks(done, failed)


# ----------------------------------------------------------------------------------------------------
# The protocol
# ----------------------------------------------------------------------------------------------------

_TEXT_KEYS = {b"SUBJECT": 1, b"FROM": 1, b"TO": 1, b"CC": 1, b"BCC": 1, b"BODY": 1, b"TEXT": 1, b"HEADER": 2}


def _text_search_args(query: list) -> list:
    """Twisted compares the string arguments of SUBJECT/FROM/… (bytes) with header values (str): decode them."""
    out: list = []
    pending = 0
    for item in query:
        if isinstance(item, list):
            out.append(_text_search_args(item))
            continue
        if pending and isinstance(item, bytes):
            out.append(item.decode("utf-8", "replace"))
            pending -= 1
            continue
        out.append(item)
        if isinstance(item, bytes | str):
            key = item.encode() if isinstance(item, str) else item
            pending = _TEXT_KEYS.get(key.upper(), 0)
    return out


# SEARCH keys (RFC 3501 §6.4.4, search-key of §9). Twisted evaluates the keys as it finds them: an unknown key, a
# missing or malformed argument broke in the middle of the evaluation (IndexError, ValueError…) and NOT/OR/()
# chains recursed until RecursionError. The keys are checked against the grammar before anything runs (BAD) and
# their nesting is bounded.
_SEARCH_FLAG_KEYS = {
    b"ALL", b"ANSWERED", b"DELETED", b"DRAFT", b"FLAGGED", b"NEW", b"OLD", b"RECENT", b"SEEN",
    b"UNANSWERED", b"UNDELETED", b"UNDRAFT", b"UNFLAGGED", b"UNSEEN",
}  # fmt: skip
_SEARCH_STRING_KEYS = {b"BCC", b"BODY", b"CC", b"FROM", b"SUBJECT", b"TEXT", b"TO", b"KEYWORD", b"UNKEYWORD"}
_SEARCH_DATE_KEYS = {b"BEFORE", b"ON", b"SINCE", b"SENTBEFORE", b"SENTON", b"SENTSINCE"}
_SEARCH_DATE = re.compile(rb"(\d{1,2})-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-(\d{4})", re.IGNORECASE)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
SEARCH_MAX_DEPTH = 100  # NOT / OR / parentheses: far beyond what clients send, far below Python's recursion limit


def _search_day(arg: Any) -> date:
    """A SEARCH date argument (date-text of RFC 3501 §9: d-Mon-yyyy)."""
    found = _SEARCH_DATE.fullmatch(arg.encode() if isinstance(arg, str) else arg)
    try:
        if found is None:
            raise ValueError(arg)
        return date(int(found[3]), _MONTHS.index(found[2].decode().lower()) + 1, int(found[1]))
    except ValueError:
        raise imap4.IllegalClientResponse("SEARCH: date expected (d-Mon-yyyy)") from None


def _sent_day(msg: Part) -> date | None:
    """The day of the Date header as written (its own zone); None without a readable one."""
    value = msg.msg.get("Date")
    try:
        return parsedate_to_datetime(str(value)).date() if value else None
    except (TypeError, ValueError):
        return None


def _check_search_keys(keys: list, depth: int = 0) -> None:
    if not keys:
        raise imap4.IllegalClientResponse("SEARCH: search key expected")
    at = 0
    while at < len(keys):
        at = _check_search_key(keys, at, depth)


def _check_search_key(keys: list, at: int, depth: int) -> int:
    """Check the search key at keys[at]; the index of the next one."""
    if depth > SEARCH_MAX_DEPTH:
        raise imap4.IllegalClientResponse(f"SEARCH keys nested more than {SEARCH_MAX_DEPTH} deep")
    if at >= len(keys):
        raise imap4.IllegalClientResponse("SEARCH: search key expected")
    key = keys[at]
    if isinstance(key, list):
        _check_search_keys(key, depth + 1)
        return at + 1
    word = key.upper()

    def argument(offset: int = 1) -> bytes:
        if at + offset >= len(keys) or not isinstance(keys[at + offset], bytes):
            raise imap4.IllegalClientResponse(f"SEARCH {_text(word)}: argument expected")
        return keys[at + offset]

    if word in _SEARCH_FLAG_KEYS:
        return at + 1
    if word in _SEARCH_STRING_KEYS:
        argument()
        return at + 2
    if word in _SEARCH_DATE_KEYS:
        _search_day(argument())
        return at + 2
    if word in (b"LARGER", b"SMALLER"):
        if not re.fullmatch(rb"\d{1,20}", argument()):
            raise imap4.IllegalClientResponse(f"SEARCH {_text(word)}: number expected")
        return at + 2
    if word == b"HEADER":
        argument(1), argument(2)
        return at + 3
    if word == b"UID":
        imap4.parseIdList(argument())  # IllegalIdentifierError: BAD
        return at + 2
    if word == b"NOT":
        return _check_search_key(keys, at + 1, depth + 1)
    if word == b"OR":
        return _check_search_key(keys, _check_search_key(keys, at + 1, depth + 1), depth + 1)
    if word[:1].isdigit() or word[:1] == b"*":
        imap4.parseIdList(word)  # a sequence set
        return at + 1
    raise imap4.IllegalClientResponse("unknown SEARCH key")


def _sets_seen(item: Any) -> bool:
    return (
        item.type == "body" and not item.peek and bool(item.header or item.text or item.mime or item.empty)
    ) or item.type in ("rfc822", "rfc822text")


# Errors and their answers. Twisted answers most failures with "Server error: " + str(exception) (or the errback
# itself breaks and no tagged reply comes at all): exception texts, reprs of client bytes and internal details
# reached the client. Here every failure goes through MssIMAP._command_failed: the exceptions that *are* IMAP
# answers keep their text (Twisted's syntax messages, the bench's refusals), anything else is a server bug.
_SYNTAX_ERRORS = (
    imap4.IllegalClientResponse,
    imap4.IllegalQueryError,
    imap4.IllegalIdentifierError,
    imap4.MismatchedNesting,
    imap4.MismatchedQuoting,
)  # BAD (RFC 3501 §7.1.3)
_REFUSALS = (imap4.IllegalOperation, imap4.IllegalMailboxEncoding, imap4.MailboxException)  # NO (§7.1.2)
_BYTES_REPR = re.compile(r"""\s*:?\s*\bb['"].*$""", re.DOTALL)  # Twisted appends repr(client bytes) to messages
SERVER_BUG = b"[SERVERBUG] Erreur interne du simulateur, commande non executee (detail dans son log)"


# Literals (RFC 3501 §4.3 "{N}", RFC 7888 non-synchronising "{N+}"). The size is a number (RFC 9051 number64: 20
# digits at most); "{-1}", "{1x}" or an empty size are syntax errors.
_LITERAL = re.compile(rb"\{(\d{1,20})(\+?)\}")
_NON_SYNC_END = re.compile(rb"\{([^{}]*)\+\}$")  # what looks like a non-synchronising literal ending a line
DEFAULT_MAX_MESSAGE_BYTES = 20 * 1024 * 1024  # the default of the max_message_bytes setting, as SMTP's


class _LiteralTooBig(imap4.IllegalClientResponse):
    """A literal announced beyond the bound of its argument: refused before any of it is read."""

    def __init__(self, size: int, limit: int, sync: bool) -> None:
        super().__init__(f"literal of {size} octets refused: at most {limit}")
        self.size, self.limit, self.sync = size, limit, sync


def _close_literal(data: Any) -> None:
    """Close the file a literal was read into (Twisted's LiteralFile: BytesIO or TemporaryFile; a LiteralString
    holds a list)."""
    close = getattr(data, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


class _Discard:
    """The octets of a non-synchronising literal no argument took (the command was refused): read and dropped, so
    that none of them is taken for a command. Same interface as Twisted's LiteralString/LiteralFile."""

    def __init__(self, size: int) -> None:
        self.size = size

    def write(self, data: bytes) -> bytes | None:
        if len(data) < self.size:
            self.size -= len(data)
            return None
        rest, self.size = data[self.size :], 0
        return rest


class _UnparsedArguments(imap4.IllegalClientResponse):
    """An argument parser of Twisted's broke on the client's input (e.g. a FETCH list nested too deep)."""


def _wire_text(text: str, fallback: str) -> bytes:
    """An exception's message as IMAP resp-text: no repr of client bytes, ASCII, one line, bounded."""
    text = _BYTES_REPR.sub("", text)
    text = " ".join(wire.ascii_text(text).decode("ascii").split())
    text = "".join(c for c in text if " " <= c <= "~")[:200].strip()
    return (text or fallback).encode("ascii")


def _guarded(parser: Callable[[Any, bytes], Any], command: bytes) -> Callable[[Any, bytes], Any]:
    """A Twisted argument parser whose unexpected exceptions are a syntax error of the client's (BAD), not a server
    error: they come from input the parser did not foresee (bare Exception, ValueError, RecursionError…)."""

    def parse(server: Any, line: bytes) -> Any:
        try:
            return parser(server, line)
        except imap4.IMAP4Exception:
            raise
        except Exception as exc:
            server.sim.logger.info(
                "IMAP %s: arguments not understood (%s)", command.decode("ascii", "replace"), type(exc).__name__
            )
            raise _UnparsedArguments(command.decode("ascii", "replace") + " arguments not understood") from exc

    return parse


class _Timer:
    def __init__(self, loop: asyncio.AbstractEventLoop, period: float, func: Callable[[], Any]) -> None:
        self.loop = loop
        self.func = func
        self._active = True
        self._handle = loop.call_later(period, self._fire)

    def _fire(self) -> None:
        self._active = False
        self.func()

    def reset(self, period: float) -> None:
        self._handle.cancel()
        self._active = True
        self._handle = self.loop.call_later(period, self._fire)

    def cancel(self) -> None:
        self._handle.cancel()
        self._active = False

    def active(self) -> bool:
        return self._active


@dataclass
class _Pending:
    operation: str
    shown: bytes
    received: float
    decision: Decision
    out: list[bytes] = field(default_factory=list)


_NO_EXPUNGE = {"IMAP FETCH", "IMAP STORE", "IMAP SEARCH"}  # MSN commands (UID ones may, RFC 3501 §7.4.1)
_NO_ANNOUNCE = {"IMAP SELECT", "IMAP EXAMINE", "IMAP CLOSE", "IMAP UNSELECT", "IMAP LOGOUT"}


class MssIMAP(imap4.IMAP4Server):
    IDENT = b"segur-bench MSSante IMAP4rev1 (simulateur)"

    def __init__(self, front: ImapFront, bridge: Bridge) -> None:
        challengers: dict[bytes, Any] = {b"XOAUTH2": XOAuth2Challenge, b"OAUTHBEARER": OAuthBearerChallenge}
        if front.legacy:
            challengers[b"PLAIN"] = imap4.PLAINCredentials
            challengers[b"LOGIN"] = imap4.LOGINCredentials
        super().__init__(challengers, contextFactory=front.tls, scheduler=bridge.iterate)
        self.front = front
        self.sim = front.ctx  # (self.ctx is Twisted's TLS context factory)
        self.model = front.model
        self.bridge = bridge
        self.portal = Portal(self)
        self.mss_session: Session | None = None
        self.auth_outcome: str | None = None
        self.auth_failure: str | None = None
        self.oauth_error: bytes | None = None  # RFC 7628 error JSON of the last refused token
        self.pending: dict[bytes, _Pending] = {}
        self.literal_taken = False  # whether the line being parsed announced a literal an argument took
        self.hung_up = False  # BYE sent on a protocol violation: nothing more is read
        self.fetch_tag = b"*"  # the tag of the FETCH being answered
        self._idle_timer: asyncio.TimerHandle | None = None
        self.timeOut = int(front.ctx.config.settings.get("imap_timeout_s", 60))

    # Twisted's timers on the asyncio loop
    def callLater(self, period: float, func: Callable[[], Any]) -> _Timer:
        return _Timer(self.bridge.loop, period, func)

    def do_STARTTLS(self, tag: bytes) -> None:
        # Same as Twisted's, minus adding PLAIN/LOGIN after TLS: those stay a legacy-mode switch.
        if self.startedTLS:
            self.sendNegativeResponse(tag, b"TLS already negotiated")
        elif self.front.tls and self.canStartTLS:
            self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
            self.transport.startTLS(self.front.tls)
            self.startedTLS = True
        else:
            self.sendNegativeResponse(tag, b"TLS not available")

    unauth_STARTTLS = (do_STARTTLS,)

    def capabilities(self) -> dict:
        cap = super().capabilities()
        cap[b"UNSELECT"] = None
        cap[b"CHILDREN"] = None  # \HasNoChildren in LIST (RFC 3348)
        cap[b"SPECIAL-USE"] = None  # \Sent in LIST (RFC 6154)
        if not self.front.legacy:
            cap[b"LOGINDISABLED"] = None
        if self.front.implicit:
            cap.pop(b"STARTTLS", None)  # encrypted from the first byte
        elif self.front.require_tls and not self.startedTLS:
            cap.pop(b"AUTH", None)  # no mechanism is usable before STARTTLS: none is advertised (RFC 9051 §6.2.1)
        if b"AUTH" in cap:
            cap[b"SASL-IR"] = None  # AUTHENTICATE <mechanism> <initial response> (RFC 4959)
        cap[b"APPENDLIMIT"] = [b"%d" % self.front.max_message_bytes]  # RFC 7889: the bound APPEND applies
        return cap

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.front.implicit:
            self.startedTLS = True  # IMAP over TLS (port 993 style): as if STARTTLS had been done
            self.canStartTLS = False

    def do_AUTHENTICATE(self, tag: bytes, args: bytes | None) -> None:
        if self.front.require_tls and not self.startedTLS:
            # A bearer token must never cross the network in clear: the same rule as SMTP's AUTH before STARTTLS.
            self.sendNegativeResponse(
                tag, b"[PRIVACYREQUIRED] AUTHENTICATE refuse avant STARTTLS : chiffrez la connexion d'abord"
            )
            return
        mechanism, _, initial = (args or b"").strip().partition(b" ")
        mechanism, initial = mechanism.upper(), initial.strip()
        if not mechanism:
            self.sendBadResponse(tag, b"AUTHENTICATE: mechanism expected")
        elif mechanism not in self.challengers:
            self.sendNegativeResponse(tag, b"AUTHENTICATE method unsupported")
        elif not initial:
            self.authenticate(self.challengers[mechanism](), tag)  # "+ " continuation, then the response
        else:
            # SASL-IR (RFC 4959): the first response on the command line, "=" for an empty one.
            self._IMAP4Server__cbAuthChunk(b"" if initial == b"=" else initial, self.challengers[mechanism](), tag)

    unauth_AUTHENTICATE = (do_AUTHENTICATE, imap4.IMAP4Server.arg_line)

    def _IMAP4Server__cbAuthChunk(self, result: bytes, chal: Any, tag: bytes) -> None:
        # Twisted's decoding is lenient and takes "*" as data: RFC 3501 §6.2.2 wants BAD for both.
        line = result.strip()
        if line == b"*":
            self.sendBadResponse(tag, b"AUTHENTICATE cancelled")
            return
        try:
            response = base64.b64decode(line, validate=True)
        except binascii.Error:
            self.sendBadResponse(tag, b"AUTHENTICATE: the response is not base64")
            return
        chal.setResponse(response)
        if chal.moreChallenges():
            self._setupChallenge(chal, tag)
        else:
            self.portal.login(chal, None, IAccountIMAP).addCallbacks(
                self._IMAP4Server__cbAuthResp, self._IMAP4Server__ebAuthResp, (tag,), None, (tag,), None
            )

    def authenticateLogin(self, user: bytes, passwd: bytes) -> Any:
        creds = imap4.credentials.UsernamePassword(user, passwd)
        return self.portal.login(creds, None, IAccountIMAP)

    def do_LOGIN(self, tag: bytes, user: bytes, passwd: bytes) -> None:
        if not self.front.legacy:
            self.sendNegativeResponse(
                tag,
                b"[PRIVACYREQUIRED] LOGIN desactive : AUTHENTICATE XOAUTH2 ou "
                b"OAUTHBEARER avec un jeton Pro Sante Connect",
            )
            return
        super().do_LOGIN(tag, user, passwd)

    unauth_LOGIN = (do_LOGIN, imap4.IMAP4Server.arg_astring, imap4.IMAP4Server.arg_finalastring)

    def _IMAP4Server__ebAuthResp(self, failure: Failure, tag: bytes) -> None:
        self._auth_failed(failure, tag)

    def _IMAP4Server__ebLogin(self, failure: Failure, tag: bytes) -> None:
        self._auth_failed(failure, tag)

    def _auth_failed(self, failure: Failure, tag: bytes) -> None:
        if failure.check(UnauthorizedLogin):
            reason = wire.ascii_text(self.auth_failure or "authentification refusée")
            challenge, self.oauth_error = self.oauth_error, None
            if challenge is not None:
                # RFC 7628 §3.2.2 (as on SMTP): error challenge, the client's answer (%x01, or empty for
                # XOAUTH2), then the tagged NO; "*" cancels (BAD).
                self.parseState = "pending"
                self._pendingLiteral = defer.Deferred()
                self._pendingLiteral.addCallback(self._oauth_error_answered, tag, reason)
                self.sendContinuationRequest(base64.b64encode(challenge))
                return
            self.sendNegativeResponse(tag, b"[AUTHENTICATIONFAILED] " + reason)
        else:
            self._command_failed(failure, tag)

    def _oauth_error_answered(self, line: bytes, tag: bytes, reason: bytes) -> None:
        if line.strip() == b"*":
            self.sendBadResponse(tag, b"AUTHENTICATE cancelled")
        else:
            self.sendNegativeResponse(tag, b"[AUTHENTICATIONFAILED] " + reason)

    def _IMAP4Server__cbManualSearch(
        self, result: list, tag: bytes, mbox: Any, query: Any, uid: int, searchResults: Any = None
    ) -> None:
        query = _text_search_args(query)
        found = []
        last_seq = result and result[-1][0]
        last_uid = result and result[-1][1].getUID()
        for seq, msg in result:
            if self._searchFilter(copy.deepcopy(query), seq, msg, last_seq, last_uid):
                found.append(b"%d" % (msg.getUID() if uid else seq,))
        self.sendUntaggedResponse(b"SEARCH " + b" ".join(found) if found else b"SEARCH")
        self.sendPositiveResponse(tag, b"SEARCH completed")

    def do_SEARCH(self, tag: bytes, charset: bytes | None, query: list, uid: int = 0) -> None:
        if charset is not None and _text(charset).upper() not in ("US-ASCII", "UTF-8"):
            self.sendNegativeResponse(tag, b"[BADCHARSET (US-ASCII UTF-8)] charset not supported")  # RFC 3501 §6.4.4
            return
        super().do_SEARCH(tag, charset, query, uid)

    select_SEARCH = (do_SEARCH, imap4.IMAP4Server.opt_charset, imap4.IMAP4Server.arg_searchkeys)

    def arg_searchkeys(self, line: bytes) -> Any:
        return self._search_keys(b"", line or b"")

    def _search_keys(self, done: bytes, line: bytes) -> Any:
        """SEARCH strings may be literals (8-bit ones must be, RFC 3501 §6.4.4), which Twisted never read (the
        client waited for a continuation, or its literal was taken for an empty string). Each is read through the
        bounded literal path, then written back where it was, as "{N}" CRLF octets, the form parseNestedParens
        reads; the keys are parsed once the line is complete."""
        end = re.search(rb"\{(\d{1,20})(\+?)\}$", line)
        if end is None:
            if re.search(rb"\{[^{}]*\}$", line):
                raise imap4.IllegalClientResponse("malformed literal: {<number>} or {<number>+} expected")
            try:
                keys = imap4.parseNestedParens(done + line)
            except imap4.IMAP4Exception:
                raise
            except Exception as exc:  # ValueError, RecursionError (parentheses thousands deep)
                raise imap4.IllegalClientResponse("malformed SEARCH keys") from exc
            _check_search_keys(keys)
            return (keys, b"")
        head = done + line[: end.start()] + b"{%s}\r\n" % end[1]
        d = self._stringLiteral(int(end[1]), not end[2])
        return d.addCallback(lambda read: self._search_keys(head + read[0], read[1]))

    # Twisted's BODY and TEXT compared a str with the bytes of the body file (TypeError as soon as a folder held a
    # message), and its TEXT looked into the body only.
    def search_BODY(self, query: list, id: int, msg: StoredMessage) -> bool:
        return _text(query.pop(0)).casefold() in msg.search_text(header=False)

    def search_TEXT(self, query: list, id: int, msg: StoredMessage) -> bool:
        return _text(query.pop(0)).casefold() in msg.search_text(header=True)

    # Dates (RFC 3501 §6.4.4): the internal date (UTC here) for BEFORE/ON/SINCE, the Date header for SENT*, as
    # days, time and zone disregarded. Twisted matched a str pattern on the bytes argument (TypeError), compared
    # whole time tuples for ON (a message matched only at midnight) and broke on a message without Date.
    def search_BEFORE(self, query: list, id: int, msg: StoredMessage) -> bool:
        return _internal_day(msg) < _search_day(query.pop(0))

    def search_ON(self, query: list, id: int, msg: StoredMessage) -> bool:
        return _internal_day(msg) == _search_day(query.pop(0))

    def search_SINCE(self, query: list, id: int, msg: StoredMessage) -> bool:
        return _internal_day(msg) >= _search_day(query.pop(0))  # "within or later than"

    def search_SENTBEFORE(self, query: list, id: int, msg: StoredMessage) -> bool:
        day, sent = _search_day(query.pop(0)), _sent_day(msg)
        return sent is not None and sent < day

    def search_SENTON(self, query: list, id: int, msg: StoredMessage) -> bool:
        day, sent = _search_day(query.pop(0)), _sent_day(msg)
        return sent is not None and sent == day

    def search_SENTSINCE(self, query: list, id: int, msg: StoredMessage) -> bool:
        day, sent = _search_day(query.pop(0)), _sent_day(msg)
        return sent is not None and sent >= day

    # Sizes are RFC822.SIZE (RFC 3501 §6.4.4), Twisted's the body's; keywords are flags the store keeps ($MDNSent),
    # Twisted's KEYWORD was always false. Keywords compare without case (RFC 3501 is silent: the bench's choice).
    def search_LARGER(self, query: list, id: int, msg: StoredMessage) -> bool:
        return len(msg.raw) > int(query.pop(0))

    def search_SMALLER(self, query: list, id: int, msg: StoredMessage) -> bool:
        return len(msg.raw) < int(query.pop(0))

    def search_KEYWORD(self, query: list, id: int, msg: StoredMessage) -> bool:
        return _text(query.pop(0)).lower() in {f.lower() for f in msg.getFlags()}

    def search_UNKEYWORD(self, query: list, id: int, msg: StoredMessage) -> bool:
        return not self.search_KEYWORD(query, id, msg)

    # ------------------------------------------------------------------------------------ literals
    # Twisted parses "{N}" with int() (so "{-1}" waited forever for -1 octets and "{N+}" was a syntax error whose
    # octets were then run as commands) and bounds only string literals. Here every literal marker is parsed
    # strictly and bounded before anything is read: APPEND's message by max_message_bytes, other strings by
    # _literalStringLimit (4096, Twisted's). "{N+}" (RFC 7888) is read without a continuation request although
    # LITERAL+ is not advertised: its octets are on their way whatever the server says.
    def _literal_marker(self, arg: bytes) -> tuple[int, bool] | None:
        """(size, synchronising) of the literal an argument announces; None if the argument is not a literal."""
        if not arg.startswith(b"{"):
            return None
        found = _LITERAL.fullmatch(arg)
        if found is None:
            raise imap4.IllegalClientResponse("malformed literal: {<number>} or {<number>+} expected")
        return int(found[1]), not found[2]

    def arg_astring(self, line: bytes, final: bool = False) -> Any:
        marker = self._literal_marker((line or b"").strip())
        if marker is None:
            return super().arg_astring(line, final)
        size, sync = marker
        if final and not size:
            return (b"", b"")
        return self._stringLiteral(size, sync)

    def arg_literal(self, line: bytes) -> Any:
        marker = self._literal_marker((line or b"").strip())
        if marker is None:
            return super().arg_literal(line)  # "Missing argument", "Missing literal"
        return self._fileLiteral(*marker)

    def _stringLiteral(self, size: int, sync: bool = True) -> defer.Deferred:
        return self._read_literal(imap4.LiteralString, size, self._literalStringLimit, sync)

    def _fileLiteral(self, size: int, sync: bool = True) -> defer.Deferred:
        return self._read_literal(imap4.LiteralFile, size, self.front.max_message_bytes, sync)

    def _read_literal(self, kind: Any, size: int, limit: int, sync: bool) -> defer.Deferred:
        if size > limit:
            raise _LiteralTooBig(size, limit, sync)
        d: defer.Deferred = defer.Deferred()
        self.parseState = "pending"
        self._pendingLiteral = kind(size, d)
        self.literal_taken = True
        if sync:
            self.sendContinuationRequest(b"Ready for %d octets" % size)
        self.setRawMode()
        return d

    def _skip_literal(self, line: bytes) -> None:
        """After a line ending with "{N+}" whose literal no argument took: drop its N octets and the rest of the
        command line (see _Discard); an unreadable size cannot be skipped: BYE."""
        if self.literal_taken or self.hung_up:
            return
        found = _NON_SYNC_END.search(line)
        if found is None:
            return
        size = int(found[1]) if re.fullmatch(rb"\d{1,20}", found[1]) else None
        if size is None or size > self.front.max_message_bytes:
            self._hang_up(b"* BYE Litteral non synchronisant illisible ou trop grand : connexion fermee")
            return
        self._pendingLiteral = _Discard(size)
        self.parseState = "discard"
        self.setRawMode()

    def parse_discard(self, line: bytes) -> None:
        self.parseState = "command"  # the rest of the refused command's line: dropped (it may announce another)

    def _hang_up(self, bye: bytes) -> None:
        """BYE and close, and nothing more read: octets already received are not taken for commands."""
        if self.hung_up:
            return
        self.hung_up = True
        self.sendLine(bye)
        self.clearLineBuffer()
        self.paused = True  # LineReceiver.dataReceived stops at once
        self.bridge.close()

    def lineLengthExceeded(self, line: bytes) -> None:
        # Twisted closed without a word: say why (BYE, RFC 3501 §7.1.5). 16384 octets (LineReceiver.MAX_LENGTH)
        # are twice the 8192 RFC 7162 §4 asks servers to accept, and hold a PSC token's AUTHENTICATE line.
        self._hang_up(b"* BYE Ligne de commande trop longue (%d octets au plus) : connexion fermee" % self.MAX_LENGTH)

    # ------------------------------------------------------------------------------------ errors
    def _command_failed(self, failure: Failure, tag: bytes, *_: Any) -> None:
        """The one error path of every command (see _SYNTAX_ERRORS): BAD for syntax, NO for a refusal, each with
        its protocol text; any other exception is logged with its traceback and answered NO [SERVERBUG] (RFC 5530)
        with a fixed text. The session goes on."""
        exc = failure.value
        if isinstance(exc, _LiteralTooBig):
            text = b"[TOOBIG] " + _wire_text(str(exc), "literal too big")
            if exc.sync:  # no continuation was sent: the client keeps its octets (RFC 3501 §7.5; TOOBIG: RFC 7889)
                self.sendNegativeResponse(tag, text)
            else:  # the octets are on their way: RFC 7888 lets the server close rather than read them all
                self.sendBadResponse(tag, text)
                self._hang_up(b"* BYE [TOOBIG] Litteral non synchronisant trop grand : connexion fermee")
        elif isinstance(exc, _SYNTAX_ERRORS):
            self.sendBadResponse(tag, b"Illegal syntax: " + _wire_text(str(exc), "malformed command arguments"))
        elif isinstance(exc, _REFUSALS):
            self.sendNegativeResponse(tag, _wire_text(str(exc), "operation refusee"))
        else:
            pending = self.pending.get(tag)
            self.sim.logger.error(
                "IMAP %s: internal error\n%s", pending.operation if pending else tag, failure.getTraceback()
            )
            self.sendNegativeResponse(tag, SERVER_BUG)

    # Twisted's errbacks, all of them through _command_failed (same arguments: failure, tag[, …]).
    _IMAP4Server__ebDispatch = _command_failed
    _IMAP4Server__ebAuthChunk = _command_failed
    _ebListWork = _command_failed
    _ebStatusGotMailbox = _command_failed
    _IMAP4Server__ebStatus = _command_failed
    _ebAppendGotMailbox = _command_failed
    _IMAP4Server__ebAppend = _command_failed
    _IMAP4Server__ebCheck = _command_failed
    _IMAP4Server__ebClose = _command_failed
    _IMAP4Server__ebExpunge = _command_failed
    _IMAP4Server__ebSearch = _command_failed
    _IMAP4Server__ebStore = _command_failed
    _ebCopySelectedMailbox = _command_failed
    _IMAP4Server__ebCopy = _command_failed

    def _ebSelectWork(self, failure: Failure, cmdName: bytes, tag: bytes) -> None:
        self._command_failed(failure, tag)

    def _IMAP4Server__ebFetch(self, failure: Failure, tag: bytes) -> None:
        if hasattr(self, "_oldTimeout"):  # what Twisted's errback does: the idle timeout suspended by do_FETCH
            self.setTimeout(self._oldTimeout)
            del self._oldTimeout
        self._command_failed(failure, tag)
        if self.blocked is not None:  # set when the FETCH began sending: later commands wait on it
            self._unblock()

    def _IMAP4Server__ebSpewMessage(self, failure: Failure) -> None:
        # spewMessage sent nothing of the failed message: the FETCH can end with its tagged reply (Twisted closed the
        # connection, its response being half-written).
        self._IMAP4Server__ebFetch(failure, self.fetch_tag)

    def lookupCommand(self, cmd: bytes) -> Any:
        found = super().lookupCommand(cmd)
        if not found:
            return found
        # Twisted's command tables hold its own parser functions: take this class's (same name) so that the
        # overrides apply (arg_astring, arg_literal), each guarded.
        parsers = (_guarded(getattr(type(self), arg.__name__, arg), cmd) if callable(arg) else arg for arg in found[1:])
        return (found[0], *parsers)

    def dispatchCommand(self, tag: bytes, cmd: bytes, rest: bytes | None, uid: int | None = None) -> None:
        # Twisted's parse_command catches three exception classes; anything else raised by a command run at once
        # (NOOP, EXPUNGE, …) became an untagged "* BAD Server error: …" and the command never got its tagged reply.
        try:
            super().dispatchCommand(tag, cmd, rest, uid)
        except Exception:
            self._command_failed(Failure(), tag)

    def _parse(self, line: bytes) -> None:
        """Twisted's lineReceived, with a tagged reply and the log instead of "* BAD Server error: <exception>"."""
        if self.blocked is not None:
            self.blocked.append(line)
            return
        self.resetTimeout()
        state = self.parseState
        self.literal_taken = False
        try:
            getattr(self, "parse_" + state)(line)
        except Exception:
            self.sim.logger.exception("IMAP: line not processed (state %s)", state)
            words = line.split(None, 1)
            tag = words[0] if state == "command" and words else getattr(self, "parseTag", None)
            self.sendNegativeResponse(tag, SERVER_BUG)
        self._skip_literal(line)

    # ------------------------------------------------------------------------------------ new mail, IDLE
    def _respond(self, state: bytes, tag: bytes | None, message: bytes | None) -> None:
        # Before a tagged completion, tell the session what changed in its folder (RFC 3501 §7: untagged updates
        # may come with any command; EXISTS anywhere, EXPUNGE not during FETCH/STORE/SEARCH, §7.4.1).
        if tag and tag != b"*" and state in (b"OK", b"NO", b"BAD") and self.mbox is not None:
            pending = self.pending.get(tag)
            operation = pending.operation if pending else ""
            if operation not in _NO_ANNOUNCE:
                self.announce(allow_expunge=bool(pending) and operation not in _NO_EXPUNGE)
        super()._respond(state, tag, message)

    def announce(self, *, allow_expunge: bool) -> None:
        mbox = self.mbox
        if mbox is None or self.bridge.closed:
            return
        try:
            changes = mbox.changes(allow_expunge=allow_expunge)
        except Exception:  # e.g. the store busy: tell next time rather than lose the command's reply
            self.sim.logger.exception("IMAP: new-mail check failed")
            return
        for seq in changes.expunged:
            self.sendUntaggedResponse(b"%d EXPUNGE" % seq)
        if changes.exists is not None:
            self.sendUntaggedResponse(b"%d EXISTS" % changes.exists)
            self.sendUntaggedResponse(b"%d RECENT" % (changes.recent or 0))

    def do_IDLE(self, tag: bytes) -> None:
        # RFC 2177: "+ idling", then untagged updates as they happen, until the client's DONE. Deliveries in this
        # process wake the session at once (ImapFront.stored); a short poll catches other workers'.
        self.sendContinuationRequest(b"idling")
        self.parseTag = tag
        self.lastState = self.parseState
        self.parseState = "idle"
        self.front.idling.add(self)
        self.announce(allow_expunge=True)
        self._poll_idle()

    def _poll_idle(self) -> None:
        if self.parseState != "idle" or self.bridge.closed:
            return
        self.announce(allow_expunge=True)
        self._idle_timer = self.bridge.loop.call_later(self.front.idle_poll_s, self._poll_idle)

    def _stop_idle(self) -> None:
        self.front.idling.discard(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def parse_idle(self, line: bytes) -> None:
        self._stop_idle()
        self.parseState = self.lastState
        tag = self.parseTag
        del self.lastState, self.parseTag
        if line.strip().upper() == b"DONE":
            self.sendPositiveResponse(tag, b"IDLE terminated")
        else:
            self.sendBadResponse(tag, b"IDLE terminated: DONE expected")

    select_IDLE = (do_IDLE,)
    auth_IDLE = select_IDLE

    # ------------------------------------------------------------------------------------ responses, SELECT, LIST
    def sendContinuationRequest(self, msg: bytes | None = b"Ready for additional command text") -> None:
        # RFC 3501 continue-req is "+" SP (resp-text / base64): the space is there even for an empty challenge.
        self.sendLine(b"+ " + (msg or b""))

    def _cbSelectWork(self, mbox: Folder | None, cmdName: bytes, tag: bytes) -> None:
        # RFC 3501 §6.3.1: FLAGS, EXISTS, RECENT, OK [UNSEEN] (if any), OK [PERMANENTFLAGS], OK [UIDNEXT],
        # OK [UIDVALIDITY], then the tagged OK [READ-WRITE] / [READ-ONLY] (§6.3.2).
        if mbox is None:
            self.sendNegativeResponse(tag, b"No such mailbox")
            return
        mbox.open()
        self.sendUntaggedResponse(b"FLAGS (" + " ".join(FLAGS).encode() + b")")
        if mbox.readonly:
            self.sendPositiveResponse(None, b"[PERMANENTFLAGS ()] No permanent flags permitted")
        else:
            self.sendPositiveResponse(None, b"[PERMANENTFLAGS (" + " ".join(FLAGS).encode() + b" \\*)] Limited")
        self.sendUntaggedResponse(b"%d EXISTS" % mbox.getMessageCount())
        self.sendUntaggedResponse(b"%d RECENT" % mbox.getRecentCount())
        unseen = mbox.first_unseen()
        if unseen is not None:
            self.sendPositiveResponse(None, b"[UNSEEN %d] First unseen message" % unseen)
        self.sendPositiveResponse(None, b"[UIDVALIDITY %d] UIDs valid" % mbox.getUIDValidity())
        self.sendPositiveResponse(None, b"[UIDNEXT %d] Predicted next UID" % mbox.getUIDNext())
        mbox.addListener(self)
        mode = b"[READ-ONLY] " if mbox.readonly else b"[READ-WRITE] "
        self.sendPositiveResponse(tag, mode + cmdName + b" completed")
        self.state = "select"
        self.mbox = mbox

    def _cbListWork(self, mailboxes: list, tag: bytes, sub: int, cmdName: bytes) -> None:
        # Mailbox name attributes (RFC 3501 §7.2.2), not the message flags Twisted put there.
        for name, box in mailboxes:
            if not sub or self.account.isSubscribed(name):
                attrs = " ".join(box.getMailboxAttributes()).encode()
                quoted = imap4._quote(name.encode("imap4-utf-7"))
                self.sendUntaggedResponse(cmdName + b" (" + attrs + b') "/" ' + quoted)
        self.sendPositiveResponse(tag, cmdName + b" completed")

    def _cbAppendGotMailbox(self, mbox: Folder | None, tag: bytes, flags: Any, date: Any, message: Any) -> None:
        # Twisted's version answers a missing folder with a str (and breaks), fails on APPEND without a flag
        # list, and sends the *target* folder's count as EXISTS even when another folder is selected: the
        # selected folder's EXISTS comes from the announcement before the tagged reply.
        if mbox is None:
            _close_literal(message)
            self.sendNegativeResponse(tag, b"[TRYCREATE] No such mailbox")
            return

        d = defer.maybeDeferred(mbox.addMessage, message, [_text(f) for f in flags or ()], date)

        def released(result: Any) -> Any:
            _close_literal(message)  # now, not at the next garbage collection
            return result

        d.addBoth(released)
        d.addCallbacks(
            lambda _uid: self.sendPositiveResponse(tag, b"APPEND completed"), self._command_failed, errbackArgs=(tag,)
        )

    def _cbCopySelectedMailbox(self, mbox: Folder | None, tag: bytes, messages: Any, mailbox: Any, uid: int) -> None:
        if mbox is None:  # same str bug as APPEND
            self.sendNegativeResponse(tag, b"[TRYCREATE] No such mailbox")
            return
        super()._cbCopySelectedMailbox(mbox, tag, messages, mailbox, uid)

    def do_UNSELECT(self, tag: bytes) -> None:
        # RFC 3691 (in IMAP4rev2's base, RFC 9051 §6.4.2): leave the folder without expunging.
        if self.mbox is not None:
            self.mbox.removeListener(self)
        self.mbox = None
        self.state = "auth"
        self.sendPositiveResponse(tag, b"UNSELECT completed")

    select_UNSELECT = (do_UNSELECT,)

    def do_STORE(self, tag: bytes, messages: Any, mode: bytes, flags: Any, uid: int = 0) -> None:
        if not re.fullmatch(rb"[+-]?FLAGS(\.SILENT)?", mode, re.IGNORECASE):
            # store-att-flags (RFC 3501 §9); Twisted took any other word for FLAGS and replaced the flags
            self.sendBadResponse(tag, b"Illegal syntax: FLAGS, +FLAGS or -FLAGS expected (.SILENT optional)")
            return
        if self.mbox is not None and self.mbox.readonly:
            self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox opened with EXAMINE: flags cannot be changed")
            return
        super().do_STORE(tag, messages, mode, flags, uid)

    select_STORE = (do_STORE, imap4.IMAP4Server.arg_seqset, imap4.IMAP4Server.arg_atom, imap4.IMAP4Server.arg_flaglist)

    def do_FETCH(self, tag: bytes, messages: Any, query: list, uid: int = 0) -> None:
        self.fetch_tag = tag  # for _IMAP4Server__ebSpewMessage, which Twisted calls without it
        if any(p < 0 for item in query if item.type == "body" and item.part for p in item.part):
            # Twisted reads BODY[0] as part -1: section-part is nz-number (RFC 3501 §9)
            self.sendBadResponse(tag, b"Illegal syntax: body part numbers start at 1")
            return
        # BODY[…] (not PEEK), RFC822 and RFC822.TEXT set \Seen in a read-write session; the new flags go with the
        # FETCH responses (RFC 3501 §6.4.5). Never in a read-only one (EXAMINE).
        if (
            query
            and self.mbox is not None
            and not self.mbox.readonly
            and any(map(_sets_seen, query))
            and self.mbox.mark_seen(messages, uid)
            and not any(p.type == "flags" for p in query)
        ):
            query = [*query, imap4._FetchParser.Flags()]
        super().do_FETCH(tag, messages, query, uid)

    select_FETCH = (do_FETCH, imap4.IMAP4Server.arg_seqset, imap4.IMAP4Server.arg_fetchatt)

    # ------------------------------------------------------------------------------------ FETCH from the stored bytes
    # Twisted rebuilds headers from a parsed dict (re-cased names, lost folding) and serves parts re-serialised;
    # here every section is a slice of the stored bytes (RFC 3501 §6.4.5), so signatures over parts verify.
    def _literal_or_nil(self, data: bytes | None) -> bytes:
        return b"NIL" if data is None else b"{%d}\r\n%b" % (len(data), data)

    def spew_body(self, part: Any, id: int, msg: Any, _w: Any = None, _f: Any = None) -> Any:
        if not (part.header or part.text or part.mime or part.empty):
            if part.part:
                return super().spew_body(part, id, msg, _w, _f)
            structure = _imap_strings(imap4.getBodyStructure(msg))  # BODY: the non-extended structure
            (_w or self.transport.write)(b"BODY " + imap4.collapseNestedLists([structure]))
            return None
        _w = _w or self.transport.write
        path = [p + 1 for p in part.part]
        section = b".".join(b"%d" % p for p in path)
        fields = None
        if part.header:
            kind = "HEADER"
            spec = b"HEADER"
            if part.header.fields:
                fields = [_text(f) for f in part.header.fields]
                spec += b".FIELDS.NOT" if part.header.negate else b".FIELDS"
                spec += b" (" + b" ".join(f.encode("ascii", "replace") for f in fields) + b")"
            negate = bool(part.header.negate)
        else:
            kind = "TEXT" if part.text else "MIME" if part.mime else ""
            spec, negate = kind.encode(), False
        section = section + b"." + spec if section and spec else section or spec
        # A part the message does not have (BODY[1.2.3] of a single-part message, which has only part 1, RFC 3501
        # §6.4.5) is NIL: RFC 3501 and RFC 9051 do not say what such a FETCH answers, their grammar allows NIL
        # ("BODY" section ["<" number ">"] SP nstring, RFC 3501 §9 msg-att-static, same in RFC 9051 §9), and a
        # client cannot take NIL for content, as it could an empty string.
        data = wire.imap_section(msg.raw, path, kind, fields, negate)
        origin = b""
        if part.partialBegin is not None and data is not None:
            data = data[part.partialBegin : part.partialBegin + part.partialLength]
            origin = b"<%d>" % part.partialBegin  # RFC 3501 §7.4.2: the response gives the origin octet only
        _w(b"BODY[" + section + b"]" + origin + b" " + self._literal_or_nil(data))
        return None

    def spew_envelope(self, id: int, msg: Any, _w: Any = None, _f: Any = None) -> None:
        envelope = _imap_strings(imap4.getEnvelope(msg))
        (_w or self.transport.write)(b"ENVELOPE " + imap4.collapseNestedLists([envelope]))

    def spew_bodystructure(self, id: int, msg: Any, _w: Any = None, _f: Any = None) -> None:
        structure = _imap_strings(imap4.getBodyStructure(msg, True))
        (_w or self.transport.write)(b"BODYSTRUCTURE " + imap4.collapseNestedLists([structure]))

    def spewMessage(self, id: int, msg: Any, query: list, uid: int) -> defer.Deferred:
        """One message's FETCH response, rendered whole before any of it is sent. Twisted wrote it item by item: an
        error in the middle (a structure it could not describe) left a half-written response that only closing the
        connection could end. Now nothing of that message is sent and the FETCH ends with a tagged NO (earlier
        messages' responses are complete), see _IMAP4Server__ebSpewMessage."""
        items: list[bytes] = []
        try:
            for item in query:
                chunk: list[bytes] = []
                if item.type == "body":
                    self.spew_body(item, id, msg, chunk.append, None)
                else:
                    getattr(self, "spew_" + item.type)(id, msg, chunk.append, None)
                items.append(b"".join(chunk))
            if uid and not any(item.type == "uid" for item in query):
                items.append(b"UID %d" % msg.getUID())
        except Exception:
            return defer.fail()
        self.transport.write(b"* %d FETCH (%b)\r\n" % (id, b" ".join(items)))
        return defer.succeed(None)

    def spew_rfc822(self, id: int, msg: Any, _w: Any = None, _f: Any = None) -> None:
        (_w or self.transport.write)(b"RFC822 " + self._literal_or_nil(msg.raw))

    def spew_rfc822header(self, id: int, msg: Any, _w: Any = None, _f: Any = None) -> None:
        (_w or self.transport.write)(b"RFC822.HEADER " + self._literal_or_nil(msg.header))

    def spew_rfc822text(self, id: int, msg: Any, _w: Any = None, _f: Any = None) -> None:
        (_w or self.transport.write)(b"RFC822.TEXT " + self._literal_or_nil(msg.body))

    def spew_rfc822size(self, id: int, msg: Any, _w: Any = None, _f: Any = None) -> None:
        (_w or self.transport.write)(b"RFC822.SIZE %d" % len(msg.raw))  # the length of BODY[]

    # ------------------------------------------------------------------------------------ faults, journal
    def lineReceived(self, line: bytes) -> None:
        if self.blocked is not None or self.parseState != "command":
            self._parse(line)
            return
        parts = line.split(None, 2)
        if len(parts) < 2:
            self._parse(line)
            return
        tag, verb = parts[0], parts[1].upper()
        if verb == b"UID" and len(parts) == 3:
            verb = b"UID " + parts[2].split(None, 1)[0].upper()
        operation = "IMAP " + verb.decode("ascii", "replace")
        shown = line
        if verb == b"LOGIN":
            shown = b" ".join(line.split(None, 3)[:3]) + b" " + trace.SECRET_MASK.encode()
        elif verb == b"AUTHENTICATE" and len(line.split()) > 3:
            shown = b" ".join(line.split()[:3]) + b" " + trace.SECRET_MASK.encode()
        attrs = {"mailbox": self.mss_session.mailbox} if self.mss_session else {}
        decision = trace.decide(self.sim, "imap", operation, shown, lambda: attrs, trace.tls_of(self.bridge.transport))
        pending = _Pending(operation, shown, time.time(), decision)
        self.pending[tag] = pending
        if decision.latency_s:
            self.blocked = []
            self.bridge.loop.call_later(decision.latency_s, self._resume, tag, line, decision)
            return
        self._carry(tag, line, decision)

    def _resume(self, tag: bytes, line: bytes, decision: Decision) -> None:
        queued, self.blocked = self.blocked or [], None
        if self.bridge.closed:
            return
        self._carry(tag, line, decision)
        if self.blocked is None:
            while queued and self.blocked is None:
                self.lineReceived(queued.pop(0))
        if queued and self.blocked is not None:
            self.blocked.extend(queued)

    def _carry(self, tag: bytes, line: bytes, decision: Decision) -> None:
        pending = self.pending[tag]
        self.bridge.dribble = decision.dribble
        if isinstance(decision.terminal, Drop):
            self._finish(tag, None, "connexion coupée (faute injectée)")
            self.bridge.abort()
            return
        if isinstance(decision.terminal, Hang):
            self.blocked = []
            self.bridge.loop.call_later(decision.terminal.max_s, self.bridge.abort)
            return
        if decision.outcome == "mss.imap-no":
            self.sendNegativeResponse(tag, b"[UNAVAILABLE] Erreur simulee par le banc MSSante")
            return
        if decision.outcome == "mss.imap-bye":
            self.sendLine(b"* BYE [UNAVAILABLE] Service MSSante interrompu (simulation)")
            self._finish(tag, 0, "BYE (issue simulée)")
            self.bridge.close()
            return
        if decision.outcome in ("mss.auth-refusee", "mss.jeton-expire"):
            self.auth_outcome = decision.outcome
        if (
            self.mss_session is not None
            and not pending.operation.endswith("LOGOUT")
            and self.model.session_expired(self.mss_session, decision.outcome)
        ):
            self.sendLine(b"* BYE [ALERT] Jeton Pro Sante Connect expire : reconnectez-vous")
            self._finish(tag, 0, "jeton expiré en cours de session")
            self.bridge.close()
            return
        self._parse(line)

    def on_write(self, data: bytes) -> None:
        for tag, pending in list(self.pending.items()):
            pending.out.append(data)
            if data.startswith(tag + b" "):
                word = data[len(tag) + 1 :].split(b" ", 1)[0].strip()
                self._finish(tag, STATUS.get(word), None)
                self.bridge.dribble = None

    def _finish(self, tag: bytes, status: int | None, error: str | None) -> None:
        pending = self.pending.pop(tag, None)
        if pending is None:
            return
        tls = trace.tls_of(self.bridge.transport)
        headers = [("command", pending.shown.decode("utf-8", "replace")), ("tls", "oui" if tls else "non")]
        if self.mss_session:
            headers.append(("mailbox", self.mss_session.mailbox))
        reply = b"".join(pending.out) if (pending.out or status is not None) else None
        trace.record(
            self.sim,
            protocol="imap",
            operation=pending.operation,
            received_at=pending.received,
            request_headers=headers,
            request_body=pending.shown,
            reply=reply,
            status=status or None,
            decision=pending.decision,
            client=self.bridge.peer,
            server=self.bridge.local,
            error=error,
            waited_s=pending.decision.latency_s or None,
            tls=tls,
        )

    def connectionLost(self, reason: Any) -> None:
        # A literal cut off by the disconnection: its file (a temp file above Twisted's 10 MiB in-memory bound)
        # would stay open until the garbage collector breaks the session's reference cycle, if ever.
        literal, self._pendingLiteral = self._pendingLiteral, None
        _close_literal(getattr(literal, "data", None))
        self._stop_idle()
        for tag in list(self.pending):
            self._finish(tag, None, "connexion fermée avant la réponse")
        super().connectionLost(reason)


# ----------------------------------------------------------------------------------------------------
# asyncio <-> Twisted protocol adapter
# ----------------------------------------------------------------------------------------------------


@implementer(ITLSTransport)
class _Transport:
    """The subset of a Twisted TCP/TLS transport that IMAP4Server uses, over an asyncio transport."""

    disconnecting = False

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.producer: Any = None

    def write(self, data: bytes) -> None:
        self.bridge.write(data)

    def writeSequence(self, seq: list[bytes]) -> None:
        for data in seq:
            self.bridge.write(data)

    def loseConnection(self) -> None:
        self.disconnecting = True
        self.bridge.close()

    def abortConnection(self) -> None:
        self.bridge.abort()

    def getPeer(self) -> IPv4Address:
        host, port = self.bridge.peer_tuple
        return IPv4Address("TCP", host, port)

    def getHost(self) -> IPv4Address:
        sock = self.bridge.transport.get_extra_info("sockname") if self.bridge.transport else None
        return IPv4Address("TCP", *(sock[:2] if sock else ("127.0.0.1", 0)))

    def startTLS(self, ctx: Any, normal: bool = True) -> None:
        self.bridge.start_tls(ctx)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        if not streaming:  # pull producer: ask for data until it unregisters
            while self.producer is producer and not self.bridge.closed:
                producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self.producer = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


class Bridge(asyncio.Protocol):
    def __init__(self, front: ImapFront) -> None:
        self.front = front
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.server: MssIMAP | None = None
        self.closed = False
        self.peer_tuple: tuple[str, int] = ("127.0.0.1", 0)
        self.dribble: Any = None  # the Dribble effect of the command being answered, if any
        self._slow: list[tuple[bytes, Any]] = []
        self._slow_task: asyncio.Task | None = None

    @property
    def peer(self) -> str:
        return f"{self.peer_tuple[0]}:{self.peer_tuple[1]}"

    @property
    def local(self) -> str | None:
        sock = self.transport.get_extra_info("sockname") if getattr(self, "transport", None) else None
        return f"{sock[0]}:{sock[1]}" if isinstance(sock, tuple) else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer_tuple = (peer[0], peer[1])
        self.server = MssIMAP(self.front, self)
        self.server.makeConnection(_Transport(self))

    def data_received(self, data: bytes) -> None:
        if self.server is not None and not self.closed:
            try:
                self.server.dataReceived(data)
            except Exception:
                self.front.ctx.logger.exception("IMAP protocol error")
                self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.server is not None:
            self.server.connectionLost(Failure(ConnectionDone()))
            self.server = None

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            return
        dribble = self.dribble  # read first: the tagged reply of a dribbled command resets it (on_write)
        # Journal before answering: when this is a command's tagged reply, on_write records the exchange before
        # the bytes can reach the client (a kill right after the client's OK loses no journal entry).
        if self.server is not None:
            self.server.on_write(data)
        if dribble is not None or self._slow:
            self._slow.append((data, dribble))
            if self._slow_task is None:
                self._slow_task = self.loop.create_task(self._drain_slowly())
        else:
            self.transport.write(data)

    async def _drain_slowly(self) -> None:
        """Slow transfer (dribble effect): chunks of the replies, in order, with pauses."""
        try:
            while self._slow and not self.closed and self.transport is not None:
                data, dribble = self._slow.pop(0)
                if dribble is None:
                    self.transport.write(data)
                    continue
                for i in range(0, len(data), dribble.chunk_bytes):
                    if self.closed or self.transport is None:
                        return
                    self.transport.write(data[i : i + dribble.chunk_bytes])
                    await asyncio.sleep(dribble.interval_ms / 1000.0)
        finally:
            self._slow_task = None

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            with contextlib.suppress(Exception):
                sock = self.transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.transport.abort()

    def start_tls(self, ctx: Any) -> None:
        transport = self.transport
        assert transport is not None
        transport.pause_reading()  # the client's ClientHello must not reach the IMAP parser

        async def upgrade() -> None:
            try:
                new = await self.loop.start_tls(transport, self, ctx, server_side=True)
            except Exception as exc:
                self.front.ctx.logger.info("IMAP STARTTLS failed: %s", exc)
                transport.abort()
                return
            self.transport = new  # type: ignore[assignment]

        self.loop.create_task(upgrade())

    def iterate(self, iterator: Any) -> defer.Deferred:
        """Twisted's iterateInReactor, on the asyncio loop."""
        d: defer.Deferred = defer.Deferred()

        def go(last: Any) -> None:
            try:
                r = next(iterator)
            except StopIteration:
                d.callback(last)
            except BaseException:
                d.errback()
            else:
                if isinstance(r, defer.Deferred):
                    r.addCallback(go)
                else:
                    self.loop.call_soon(go, r)

        go(None)
        return d


class ImapFront:
    """IMAP4rev1 with STARTTLS, or (implicit=True) IMAP over TLS from the first byte (port 993 style)."""

    @property
    def legacy(self) -> bool:
        return bool(self.ctx.config.settings.get("legacy_auth"))

    @property
    def require_tls(self) -> bool:
        return bool(self.ctx.config.settings.get("require_tls", True))

    @property
    def max_message_bytes(self) -> int:
        return int(self.ctx.config.settings.get("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES))

    @property
    def idle_poll_s(self) -> float:
        return float(self.ctx.config.settings.get("imap_idle_poll_s", 1.0))

    def __init__(self, ctx: ServiceContext, model: MssModel, tls: Any, *, implicit: bool = False) -> None:
        self.ctx = ctx
        self.model = model
        self.tls = tls
        self.implicit = implicit
        self.server: asyncio.AbstractServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.idling: set[MssIMAP] = set()

    def stored(self, mailbox: str, folder: str) -> None:
        """model.listeners hook, called from any thread: wake the IDLE sessions on that folder."""
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: shutting down
                self.loop.call_soon_threadsafe(self._wake, mailbox, folder)

    def _wake(self, mailbox: str, folder: str) -> None:
        for server in list(self.idling):
            if (
                server.mss_session is not None
                and server.mss_session.mailbox == mailbox
                and server.mbox is not None
                and server.mbox.name == folder
            ):
                server.announce(allow_expunge=True)

    async def start(self, host: str, port: int) -> int:
        loop = self.loop = asyncio.get_running_loop()
        self.model.listeners.append(self.stored)
        tls = {"ssl": self.tls, "ssl_handshake_timeout": 10} if self.implicit else {}
        self.server = await loop.create_server(
            lambda: Bridge(self), host, port, reuse_port=True, reuse_address=True, **tls
        )
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.model.listeners.remove(self.stored)
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
