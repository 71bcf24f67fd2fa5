"""SMTP submission front end: aiosmtpd's SMTP protocol served by ``loop.create_server`` on the worker's loop.

* STARTTLS with the bench certificate (tls.py); by default nothing but EHLO/NOOP/QUIT/STARTTLS before TLS.
* AUTH XOAUTH2 and OAUTHBEARER (token checked by the core TokenValidator and against the mailbox's owner);
  PLAIN and LOGIN only when ``settings["legacy_auth"]`` is true. A failed bearer AUTH follows RFC 7628: a 334
  challenge carrying the JSON error, the client's empty answer, then ``535 5.7.8``.
* Token expiry during the session: the next MAIL/RCPT/DATA gets ``530 5.7.0`` and the session is
  unauthenticated, so the client can AUTH again with a fresh token on the same connection.
* Every reply line is ASCII and, ENHANCEDSTATUSCODES being advertised, carries an RFC 3463 code (``push``).
* Every command goes through the fault engine (operation ``SMTP <VERB>``) and is journalled; the faults of
  ``SMTP DATA`` apply once the content has been received (delay of the final reply, drop, 4xx/5xx).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import logging
import socket
import time
import warnings
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

from simulators.core.faults import Decision, Drop, Hang
from simulators.core.problems import log_internal_error
from simulators.core.service import ServiceContext

from . import trace, wire
from .model import AuthError, MssModel, Session


class _QuietLoginData(logging.Filter):
    """aiosmtpd warns at every successful AUTH that Session.login_data is deprecated: noise in the bench's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_QuietLoginData())

NEEDS_SESSION = ("MAIL", "RCPT", "DATA")
AUTH_LINE_LIMIT = 64 * 1024


class Handler:
    """aiosmtpd hooks: envelope checks and the submission itself."""

    def __init__(self, ctx: ServiceContext, model: MssModel) -> None:
        self.ctx = ctx
        self.model = model

    async def handle_EHLO(self, server: MssSMTP, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        # Every reply but the greeting and EHLO/HELO's carries an RFC 3463 code (MssSMTP.push): say so (RFC 2034).
        session.host_name = hostname
        return [*responses[:-1], "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(self, server: MssSMTP, session: Any, envelope: Any, address: str, options: list) -> str:
        if server.mss_session and wire.normalise_address(address) != server.mss_session.mailbox:
            return (f"553 5.7.1 <{address}>: the sender must be the authenticated mailbox "
                    f"<{server.mss_session.mailbox}>")
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: MssSMTP, session: Any, envelope: Any, address: str, options: list) -> str:
        reason = self.model.recipient_check(address)
        if reason:
            return f"550 5.1.1 {reason}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: MssSMTP, session: Any, envelope: Any) -> str:
        content = envelope.original_content or b""
        server.last_data = content
        decision = server.data_decision or Decision()
        server.data_decision = None
        if not await server.apply_delay_and_terminal(decision):
            return MISSING  # type: ignore[return-value]  # connection gone: nothing is pushed
        if decision.outcome == "mss.smtp-4xx":
            return wire.SMTP_TEMPFAIL
        if decision.outcome == "mss.smtp-5xx":
            return wire.SMTP_REFUSED
        # Off the event loop: checking a message inflates its IHE_XDM.zip and parses its CDA documents.
        sub = await asyncio.to_thread(self.model.submit, content, mail_from=envelope.mail_from,
                                      rcpts=list(envelope.rcpt_tos), session=server.mss_session)
        server.last_findings = sub.findings
        return sub.reply

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default reply is "500 Error: (ValueError) <message>": Python's words on the wire (issue 16).
        # A local error is 451 (RFC 5321 §4.2.3, "local error in processing"); the exception goes to the log.
        ref = log_internal_error(self.ctx.logger, "an SMTP command")
        return f"451 4.3.0 Local error in processing (reference {ref} in the simulator log)"


def _final(line: bytes) -> bool:
    """An SMTP reply line that ends the command's answer: `NNN ` (not `NNN-`), and not a 3xx that waits for more."""
    return line[:1] in (b"2", b"4", b"5") and (len(line) == 3 or line[3:4] == b" ")


class MssSMTP(SMTP):
    def __init__(self, front: SmtpFront, **kwargs: Any) -> None:
        super().__init__(front.handler, **kwargs)
        # A PSC token makes AUTH lines of 1-3 kB: allow them (the base class caps commands at 512 octets and
        # reads lines of 1001 octets at most; DATA lines are still checked against 1001 by the base class).
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit, {"AUTH": AUTH_LINE_LIMIT})
        self._stream_reader._limit = AUTH_LINE_LIMIT  # type: ignore[union-attr]
        self.front = front
        self.ctx = front.ctx
        self.model = front.model
        self.mss_session: Session | None = None
        self.data_decision: Decision | None = None
        self.last_data: bytes | None = None
        self.last_findings: list[dict] | None = None
        self._replies: list[bytes] = []
        self._unjournaled: tuple[str, str, float, Decision] | None = None  # the command whose entry is not written
        self._held: list[bytes] = []  # its continuation lines, sent with its final line
        self._gone = False
        for name, method in list(self._smtp_methods.items()):
            self._smtp_methods[name] = self._wrap(name, method)

    # ------------------------------------------------------------------------------------ plumbing
    async def push(self, status: Any) -> None:
        # Every line the server sends passes here (aiosmtpd's own replies too): ASCII, with an enhanced status
        # code except on the greeting (the first push) and on the replies to EHLO/HELO (RFC 2034).
        greeting, self._greeted = not self._greeted, True
        lines = wire.smtp_reply_lines(status, enhanced=not greeting and self._command not in ("EHLO", "HELO"))
        status = b"\r\n".join(lines)
        self._replies.append(status)
        if self._unjournaled is not None:
            # Journal before answering: a command's answer leaves only once its exchange is recorded (a kill right
            # after the client's 250 loses no journal entry). Continuation lines (250-…) wait with it, so a
            # multi-line reply still goes out in one write; 3xx replies (354, 334) go at once: the client must
            # answer them before the command can end.
            if _final(lines[-1]):
                self._journal(*self._unjournaled, None)
                self._unjournaled = None
            elif lines[-1][:1] != b"3":
                self._held.append(status)
                return
        held, self._held = self._held, []
        await self._write(b"".join(h + b"\r\n" for h in held) + status + b"\r\n")

    async def _write(self, data: bytes) -> None:
        if self.transport is None or self._gone:
            return
        dribble = self._dribble
        if dribble is None:
            self._writer.write(data)
        else:  # slow transfer: the reply goes out a few bytes at a time
            for i in range(0, len(data), dribble.chunk_bytes):
                self._writer.write(data[i:i + dribble.chunk_bytes])
                await self._writer.drain()
                await asyncio.sleep(dribble.interval_ms / 1000.0)
        await self._writer.drain()

    def _local(self) -> str | None:
        sock = self.transport.get_extra_info("sockname") if self.transport is not None else None
        return f"{sock[0]}:{sock[1]}" if isinstance(sock, tuple) else None

    def _peer(self) -> str:
        peer = self.session.peer if self.session else None
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def drop(self) -> None:
        self._gone = True
        if self.transport is not None:
            with contextlib.suppress(Exception):
                sock = self.transport.get_extra_info("socket")
                if sock is not None:  # RST rather than FIN: the client sees the connection cut
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.transport.abort()

    async def apply_delay_and_terminal(self, decision: Decision) -> bool:
        """Carry out latency, drop and hang; False when the connection is gone."""
        if decision.latency_s:
            await asyncio.sleep(decision.latency_s)
        if isinstance(decision.terminal, Drop):
            self.drop()
            return False
        if isinstance(decision.terminal, Hang):
            await asyncio.sleep(decision.terminal.max_s)
            self.drop()
            return False
        return True

    def _wrap(self, name: str, method: Any) -> Any:
        async def run(arg: str | None) -> None:
            self._command = name
            received = time.time()
            self._replies = []
            self.last_data = self.last_findings = None
            line = f"{name} {arg}" if arg else name
            shown = f"AUTH {arg.split()[0]} {trace.SECRET_MASK}" if name == "AUTH" and arg else line
            decision = trace.decide(self.ctx, "smtp", f"SMTP {name}", shown.encode(), self._attrs,
                                    trace.tls_of(self.transport))
            self._unjournaled = (name, shown, received, decision)
            self._current_outcome = decision.outcome
            self._dribble = decision.dribble
            error = None
            try:
                if name == "DATA":
                    self.data_decision = decision
                    if not await self._check_expiry(decision):
                        await method(arg)
                elif await self.apply_delay_and_terminal(decision):
                    if decision.outcome == "mss.smtp-4xx" and name not in ("QUIT",):
                        await self.push(wire.SMTP_TEMPFAIL)
                    elif decision.outcome == "mss.smtp-5xx" and name not in ("QUIT",):
                        await self.push(wire.SMTP_REFUSED)
                    elif name in NEEDS_SESSION and await self._check_expiry(decision):
                        pass
                    else:
                        await method(arg)
                else:
                    error = "connexion coupée (faute injectée)"
            except asyncio.CancelledError:
                error = "connexion perdue pendant la commande"
                raise
            finally:
                self._command = None
                if self._gone and error is None:
                    error = "connexion coupée (faute injectée)"
                if self._unjournaled is not None:  # no final reply was sent (cut, cancelled, or none due)
                    self._unjournaled = None
                    self._journal(name, shown, received, decision, error)
                    held, self._held = self._held, []
                    if held and error is None:
                        await self._write(b"".join(h + b"\r\n" for h in held))

        return run

    async def _check_expiry(self, decision: Decision) -> bool:
        if self.mss_session and self.model.session_expired(self.mss_session, decision.outcome):
            self.mss_session = None
            self.session.authenticated = False
            await self.push(wire.SMTP_TOKEN_EXPIRED)
            return True
        return False

    def _attrs(self) -> dict[str, str]:
        attrs = {}
        if self.mss_session:
            attrs["mailbox"] = self.mss_session.mailbox
        if self.envelope and self.envelope.mail_from:
            attrs["from"] = self.envelope.mail_from
        if self.envelope and self.envelope.rcpt_tos:
            attrs["rcpt"] = ",".join(self.envelope.rcpt_tos)
        return attrs

    def _journal(self, name: str, shown: str, received: float, decision: Decision, error: str | None) -> None:
        replies = [r for r in self._replies if r]
        if name == "DATA":
            replies = [r for r in replies if not r.startswith(b"354")] or replies
        reply = b"\r\n".join(self._replies) if self._replies else None
        status = None
        if replies and replies[-1][:3].isdigit():
            status = int(replies[-1][:3])
        tls = trace.tls_of(self.transport)
        headers = [("command", shown), ("tls", "oui" if tls else "non")]
        if self.mss_session:
            headers.append(("mailbox", self.mss_session.mailbox))
        body = self.last_data if name == "DATA" and self.last_data is not None else shown.encode()
        findings = [("x-mss-finding", f"{f['code']} {f['severity']} : {f['message']}")
                    for f in self.last_findings or []]
        trace.record(self.ctx, protocol="smtp", operation=f"SMTP {name}", received_at=received,
                     request_headers=headers, request_body=body, reply=reply, status=status, decision=decision,
                     client=self._peer(), server=self._local(), error=error, response_headers=findings,
                     waited_s=decision.latency_s or None, tls=tls)

    # ------------------------------------------------------------------------------------ SASL
    async def _initial(self, args: list[str]) -> bytes | None:
        if len(args) > 1:
            if args[1] == "=":
                return b""
            try:
                return base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await self.push("501 5.5.2 Can't decode base64")
                return None
        blob = await self.challenge_auth("")
        return None if blob is MISSING else blob

    async def _bearer(self, args: list[str], parse: Any) -> AuthResult:
        raw = await self._initial(args)
        if raw is None:
            return AuthResult(success=False, handled=True)
        try:
            creds = parse(raw)
        except wire.SaslError as exc:
            return AuthResult(success=False, handled=False, message=f"501 5.5.2 {exc}")
        decision_outcome = self._auth_outcome
        try:
            session = await asyncio.to_thread(self.model.authenticate_bearer, creds, outcome=decision_outcome)
        except AuthError as exc:
            # RFC 7628 §3.2.2: error challenge, empty client response, then the failure reply.
            if await self.challenge_auth(wire.oauth_error_json(exc.reason)) is MISSING:
                return AuthResult(success=False, handled=True)
            detail = "token expired" if exc.expired else exc.reason
            return AuthResult(success=False, handled=False,
                              message=f"535 5.7.8 Authentication credentials invalid: {detail}")
        self.mss_session = session
        return AuthResult(success=True, auth_data=session)

    async def auth_XOAUTH2(self, _: Any, args: list[str]) -> AuthResult:
        return await self._bearer(args, wire.parse_xoauth2)

    async def auth_OAUTHBEARER(self, _: Any, args: list[str]) -> AuthResult:
        return await self._bearer(args, wire.parse_oauthbearer)

    _auth_outcome: str | None = None

    def _password_auth(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        try:
            mss = self.model.authenticate_password(data.login.decode("utf-8", "replace"),
                                                   data.password.decode("utf-8", "replace"), mechanism,
                                                   outcome=self._auth_outcome)
        except AuthError as exc:
            return AuthResult(success=False, handled=False,
                              message=f"535 5.7.8 Authentication credentials invalid: {exc.reason}")
        self.mss_session = mss
        return AuthResult(success=True, auth_data=LoginPassword(data.login, b""))

    async def smtp_AUTH(self, arg: str) -> None:
        # The outcome chosen for this AUTH command (mss.auth-refusee / mss.jeton-expire) reaches the mechanisms.
        self._auth_outcome = self._current_outcome
        await super().smtp_AUTH(arg)

    _current_outcome: str | None = None
    _dribble: Any = None
    _greeted = False
    _command: str | None = None


class SmtpFront:
    """SMTP submission with STARTTLS, or (implicit=True) SMTP over TLS from the first byte (port 465 style)."""

    def __init__(self, ctx: ServiceContext, model: MssModel, tls: Any, *, implicit: bool = False) -> None:
        self.ctx = ctx
        self.model = model
        self.tls = tls
        self.implicit = implicit
        self.handler = Handler(ctx, model)
        self.server: asyncio.AbstractServer | None = None

    def protocol(self) -> MssSMTP:
        s = self.ctx.config.settings
        legacy = bool(s.get("legacy_auth"))
        # Over implicit TLS the connection is encrypted before the greeting: no STARTTLS to offer or require.
        require_tls = bool(s.get("require_tls", True)) and not self.implicit
        with warnings.catch_warnings():
            # aiosmtpd warns about AUTH without required TLS; over implicit TLS the connection is encrypted already.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            proto = MssSMTP(
                self,
                hostname=str(s.get("hostname", "mss.bench")),
                ident="segur-bench MSSante (simulateur)",
                tls_context=None if self.implicit else self.tls,
                require_starttls=require_tls,
                auth_required=True,
                auth_require_tls=require_tls,
                auth_exclude_mechanism=() if legacy else ("PLAIN", "LOGIN"),
                authenticator=None,
                data_size_limit=int(s.get("max_message_bytes", 20 * 1024 * 1024)),
                timeout=float(s.get("smtp_timeout_s", 300)),
                loop=asyncio.get_running_loop(),
            )
        proto._authenticator = proto._password_auth
        proto._auth_callback = None
        return proto

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        tls = {"ssl": self.tls, "ssl_handshake_timeout": 10} if self.implicit else {}
        self.server = await loop.create_server(self.protocol, host, port, reuse_port=True, reuse_address=True, **tls)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
