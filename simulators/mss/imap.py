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
worker are seen at once. Authentication: AUTHENTICATE XOAUTH2 / OAUTHBEARER (PSC token), PLAIN / LOGIN and
the LOGIN command only in legacy mode. A session whose token expires gets ``* BYE`` on its next command.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from email.utils import format_datetime
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
FLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# ----------------------------------------------------------------------------------------------------
# Messages and mailboxes backed by the store
# ----------------------------------------------------------------------------------------------------


def _split(raw: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        _head, found, body = raw.partition(sep)
        if found:
            return body
    return b""


@implementer(IMessageIMAPPart)
class Part:
    def __init__(self, msg: Message, raw: bytes) -> None:
        self.msg = msg
        self.raw = raw

    def getHeaders(self, negate: bool, *names: Any) -> dict[str, str]:
        wanted = {_text(n).lower() for n in names}
        out: dict[str, str] = {}
        for key, value in self.msg.items():
            if (key.lower() in wanted) != bool(negate):
                out[key.lower()] = str(value)
        return out

    def getBodyFile(self) -> io.BytesIO:
        return io.BytesIO(_split(self.raw))

    def getSize(self) -> int:
        return len(self.raw)

    def isMultipart(self) -> bool:
        return self.msg.is_multipart()

    def getSubPart(self, part: int) -> Part:
        parts = self.msg.get_payload()
        if not isinstance(parts, list) or not 0 <= part < len(parts):
            raise IndexError(part)
        sub = parts[part]
        return Part(sub, sub.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


@implementer(IMessageIMAP)
class StoredMessage(Part):
    def __init__(self, model: MssModel, row: dict) -> None:
        raw = model.raw(row["uid"])
        super().__init__(message_from_bytes(raw), raw)
        self.uid = row["uid"]
        self.flags = json.loads(row["flags"])
        self.internal = row["internal_date"]

    def getUID(self) -> int:
        return self.uid

    def getFlags(self) -> list[str]:
        return list(self.flags)

    def getInternalDate(self) -> str:
        return format_datetime(datetime.fromtimestamp(self.internal, UTC))


@implementer(IMailboxIMAP, ICloseableMailboxIMAP)
class Folder:
    def __init__(self, model: MssModel, address: str, name: str) -> None:
        self.model = model
        self.address = address
        self.name = name
        self.listeners: list[Any] = []

    def _rows(self) -> list[dict]:
        return self.model.folder_rows(self.address, self.name)

    def getFlags(self) -> list[str]:
        return list(FLAGS)

    def getHierarchicalDelimiter(self) -> str:
        return "/"

    def getUIDValidity(self) -> int:
        box = self.model.mailbox(self.address)
        return int(box["uidvalidity"]) if box else 1

    def getUIDNext(self) -> int:
        return self.model.next_uid()

    def getUID(self, message: int) -> int:
        return self._rows()[message - 1]["uid"]

    def getMessageCount(self) -> int:
        return len(self._rows())

    def getRecentCount(self) -> int:
        return 0

    def getUnseenCount(self) -> int:
        return sum(1 for r in self._rows() if "\\Seen" not in json.loads(r["flags"]))

    def isWriteable(self) -> bool:
        return True

    def destroy(self) -> None:
        raise imap4.MailboxException("les dossiers du banc ne peuvent pas être supprimés")

    def requestStatus(self, names: list[Any]) -> dict:
        return imap4.statusRequestHelper(self, [_text(n).upper() for n in names])

    def addListener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def removeListener(self, listener: Any) -> None:
        with contextlib.suppress(ValueError):
            self.listeners.remove(listener)

    def addMessage(self, message: Any, flags: Any = (), date: Any = None) -> defer.Deferred:
        data = message.read() if hasattr(message, "read") else bytes(message)
        uid = self.model.store_message(self.address, self.name, data, origin="imap-append",
                                       flags=[_text(f) for f in flags or ()])
        return defer.succeed(uid)

    def expunge(self) -> list[int]:
        rows = self._rows()
        gone = set(self.model.expunge(self.address, self.name))
        # Sequence numbers shift as messages go: report them the way EXPUNGE responses expect.
        out, shift = [], 0
        for seq, row in enumerate(rows, start=1):
            if row["uid"] in gone:
                out.append(seq - shift)
                shift += 1
        return out

    def _select(self, messages: Any, uid: bool) -> list[tuple[int, dict]]:
        rows = self._rows()
        if not rows:
            return []
        if uid:
            messages.last = rows[-1]["uid"]
            return [(seq, r) for seq, r in enumerate(rows, start=1) if r["uid"] in messages]
        messages.last = len(rows)
        return [(seq, r) for seq, r in enumerate(rows, start=1) if seq in messages]

    def fetch(self, messages: Any, uid: bool) -> list[tuple[int, StoredMessage]]:
        return [(seq, StoredMessage(self.model, r)) for seq, r in self._select(messages, uid)]

    def store(self, messages: Any, flags: Any, mode: int, uid: bool) -> dict[int, list[str]]:
        flags = [_text(f) for f in flags]
        out = {}
        for seq, row in self._select(messages, uid):
            current = set(json.loads(row["flags"]))
            if mode == -1:
                current -= set(flags)
            elif mode == 0:
                current = set(flags)
            else:
                current |= set(flags)
            self.model.set_flags(row["uid"], sorted(current))
            out[seq] = sorted(current)
        return out

    def close(self) -> None:
        pass


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
        raise imap4.MailboxException("création de dossier non prise en charge par le banc")

    def create(self, pathspec: Any) -> bool:
        return False

    def select(self, name: Any, rw: bool = True) -> Folder | None:
        return self._folder(name)

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
        pattern = imap4.wildcardToRegexp(_text(ref) + _text(wildcard), "/")
        return [(name, Folder(self.model, self.session.mailbox, name))
                for name in self.model.folders(self.session.mailbox) if pattern.match(name)]

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
                return model.authenticate_bearer(parsed, outcome=outcome)
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
        self.pending: dict[bytes, _Pending] = {}
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
        if not self.front.legacy:
            cap[b"LOGINDISABLED"] = None
        if self.front.implicit:
            cap.pop(b"STARTTLS", None)  # encrypted from the first byte
        elif self.front.require_tls and not self.startedTLS:
            cap.pop(b"AUTH", None)  # no mechanism is usable before STARTTLS: none is advertised (RFC 9051 §6.2.1)
        return cap

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.front.implicit:
            self.startedTLS = True  # IMAP over TLS (port 993 style): as if STARTTLS had been done
            self.canStartTLS = False

    def do_AUTHENTICATE(self, tag: bytes, args: bytes) -> None:
        if self.front.require_tls and not self.startedTLS:
            # A bearer token must never cross the network in clear: the same rule as SMTP's AUTH before STARTTLS.
            self.sendNegativeResponse(tag, b"[PRIVACYREQUIRED] AUTHENTICATE refuse avant STARTTLS : "
                                           b"chiffrez la connexion d'abord")
            return
        super().do_AUTHENTICATE(tag, args)

    unauth_AUTHENTICATE = (do_AUTHENTICATE, imap4.IMAP4Server.arg_atom)

    def authenticateLogin(self, user: bytes, passwd: bytes) -> Any:
        creds = imap4.credentials.UsernamePassword(user, passwd)
        return self.portal.login(creds, None, IAccountIMAP)

    def do_LOGIN(self, tag: bytes, user: bytes, passwd: bytes) -> None:
        if not self.front.legacy:
            self.sendNegativeResponse(tag, b"[PRIVACYREQUIRED] LOGIN desactive : AUTHENTICATE XOAUTH2 ou "
                                           b"OAUTHBEARER avec un jeton Pro Sante Connect")
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
            self.sendNegativeResponse(tag, b"[AUTHENTICATIONFAILED] " + reason)
        else:
            self.sim.logger.error("IMAP authentication error: %s", failure.getErrorMessage())
            self.sendBadResponse(tag, b"Server error: login failed unexpectedly")

    def _IMAP4Server__cbManualSearch(self, result: list, tag: bytes, mbox: Any, query: Any, uid: int,
                                     searchResults: Any = None) -> None:
        query = _text_search_args(query)
        found = []
        last_seq = result and result[-1][0]
        last_uid = result and result[-1][1].getUID()
        for seq, msg in result:
            if self._searchFilter(copy.deepcopy(query), seq, msg, last_seq, last_uid):
                found.append(b"%d" % (msg.getUID() if uid else seq,))
        self.sendUntaggedResponse(b"SEARCH " + b" ".join(found) if found else b"SEARCH")
        self.sendPositiveResponse(tag, b"SEARCH completed")

    # ------------------------------------------------------------------------------------ faults, journal
    def lineReceived(self, line: bytes) -> None:
        if self.blocked is not None or self.parseState != "command":
            super().lineReceived(line)
            return
        parts = line.split(None, 2)
        if len(parts) < 2:
            super().lineReceived(line)
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
        decision = trace.decide(self.sim, "imap", operation, shown, lambda: attrs)
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
        if (self.mss_session is not None and not pending.operation.endswith("LOGOUT")
                and self.model.session_expired(self.mss_session, decision.outcome)):
            self.sendLine(b"* BYE [ALERT] Jeton Pro Sante Connect expire : reconnectez-vous")
            self._finish(tag, 0, "jeton expiré en cours de session")
            self.bridge.close()
            return
        super().lineReceived(line)

    def on_write(self, data: bytes) -> None:
        for tag, pending in list(self.pending.items()):
            pending.out.append(data)
            if data.startswith(tag + b" "):
                word = data[len(tag) + 1:].split(b" ", 1)[0].strip()
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
        trace.record(self.sim, protocol="imap", operation=pending.operation, received_at=pending.received,
                     request_headers=headers, request_body=pending.shown, reply=reply, status=status or None,
                     decision=pending.decision, client=self.bridge.peer, error=error,
                     waited_s=pending.decision.latency_s or None, tls=tls)

    def connectionLost(self, reason: Any) -> None:
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
        if self.dribble is not None or self._slow:
            self._slow.append((data, self.dribble))
            if self._slow_task is None:
                self._slow_task = self.loop.create_task(self._drain_slowly())
        else:
            self.transport.write(data)
        if self.server is not None:
            self.server.on_write(data)

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
                    self.transport.write(data[i:i + dribble.chunk_bytes])
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

    def __init__(self, ctx: ServiceContext, model: MssModel, tls: Any, *, implicit: bool = False) -> None:
        self.ctx = ctx
        self.model = model
        self.tls = tls
        self.implicit = implicit
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        tls = {"ssl": self.tls, "ssl_handshake_timeout": 10} if self.implicit else {}
        self.server = await loop.create_server(lambda: Bridge(self), host, port, reuse_port=True,
                                               reuse_address=True, **tls)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
