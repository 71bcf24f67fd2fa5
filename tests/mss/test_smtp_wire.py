"""SMTP reply lines on the wire, read from a raw socket: ASCII only (RFC 5321 §4.2 textstring), and the enhanced
status codes (RFC 3463) announced by ENHANCEDSTATUSCODES (RFC 2034) on every reply but the greeting and the
replies to EHLO/HELO; 3xx intermediate replies carry none (class 2, 4 or 5 only)."""

from __future__ import annotations

import base64
import re
import socket

from .conftest import CLERICO_BAL, KIT_BAL, ROBERT_BAL, Mss, mail, token, xdm_zip, xoauth2

_ENHANCED = re.compile(rb"^(?P<code>[2-5]\d\d)[ -](?P<class>[245])\.\d{1,3}\.\d{1,3}( |$)")


class RawSmtp:
    def __init__(self, mss: Mss) -> None:
        self.mss = mss
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", mss.smtp_port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()
        self.replies: list[tuple[bytes, list[bytes]]] = []  # (command, reply lines), EHLO/HELO left out

    def reply(self) -> list[bytes]:
        lines = []
        while True:
            line = self.file.readline()
            assert line.endswith(b"\r\n"), (lines, line)
            lines.append(line[:-2])
            if line[3:4] != b"-":
                return lines

    def send(self, data: bytes, *, shown: bytes | None = None) -> list[bytes]:
        self.sock.sendall(data + b"\r\n")
        lines = self.reply()
        verb = data.split(b" ", 1)[0].upper()
        if verb not in (b"EHLO", b"HELO"):
            self.replies.append((shown or data[:40], lines))
        return lines

    def starttls(self) -> None:
        assert self.send(b"STARTTLS")[0].startswith(b"220")
        self.file.close()
        self.sock = self.mss.ca.wrap_socket(self.sock, server_hostname="127.0.0.1")
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _auth(user: str, tok: str) -> bytes:
    return b"AUTH XOAUTH2 " + base64.b64encode(xoauth2(user, tok).encode())


def test_every_reply_line_is_ascii_with_an_enhanced_status_code(mss):
    mss.fault({"service": "mss", "operation": "SMTP NOOP", "effect": {"type": "outcome", "name": "mss.smtp-4xx"},
               "first": 1})
    mss.fault({"service": "mss", "operation": "SMTP RSET", "effect": {"type": "outcome", "name": "mss.smtp-5xx"},
               "first": 1})
    smtp = RawSmtp(mss)
    ehlo = smtp.send(b"EHLO lgc.test")
    assert any(line[4:] == b"ENHANCEDSTATUSCODES" for line in ehlo), ehlo
    assert smtp.send(b"NOOP")[0].startswith(b"451 4.")
    for line in (b"NOOP", b"RSET", b"HELP", b"VRFY someone", b"MAIL FROM:<x@y>", b"BOGUS", b"DATA",
                 b"AUTH XOAUTH2 dGVzdA=="):
        smtp.send(line)
    smtp.starttls()
    assert any(line[4:] == b"ENHANCEDSTATUSCODES" for line in smtp.send(b"EHLO lgc.test"))
    assert smtp.send(b"RSET")[0].startswith(b"554 5.")
    for line in (b"MAIL FROM:<x@y>", b"AUTH", b"AUTH FOO", b"AUTH XOAUTH2 not-base64!"):
        smtp.send(line)
    first = smtp.send(_auth(KIT_BAL, token(exp_in=-60)), shown=b"AUTH expired")
    assert first[0].startswith(b"334 ")  # RFC 7628 error challenge: no enhanced code on a 3xx
    smtp.send(b"")  # the client's empty answer: 535
    smtp.send(_auth(KIT_BAL, token()), shown=b"AUTH ok")
    for line in (b"HELP", b"HELP MAIL", b"VRFY someone", b"NOOP", b"RSET", b"BOGUS"):
        smtp.send(line)
    smtp.send(_auth(KIT_BAL, token()), shown=b"AUTH again")  # already authenticated
    smtp.send(f"MAIL FROM:<{ROBERT_BAL}>".encode())  # not the authenticated mailbox
    smtp.send(b"MAIL FROM:<kit\xc3\xa9@medecin.mssante.fr>")  # 8-bit address without SMTPUTF8
    smtp.send(f"MAIL FROM:<{KIT_BAL}>".encode())
    smtp.send(b"MAIL FROM:<x@y>")  # nested MAIL
    for rcpt in ("someone@gmail.com", "inconnu@medecin.mssante.fr", "12345@patient.mssante.fr", "bad address"):
        smtp.send(f"RCPT TO:<{rcpt}>".encode())
    smtp.send(f"RCPT TO:<{CLERICO_BAL}>".encode())
    assert smtp.send(b"DATA")[0].startswith(b"354 ")
    content = mail(xdm=xdm_zip()).as_bytes().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
    smtp.send(content.replace(b"\r\n.", b"\r\n..") + b".", shown=b"<message>")  # accepted: 250
    mss.settings["strict"] = True
    smtp.send(f"MAIL FROM:<{KIT_BAL}>".encode())
    smtp.send(f"RCPT TO:<{CLERICO_BAL}>".encode())
    smtp.send(b"DATA")
    bad = mail(xdm=xdm_zip(), subject="Compte rendu sans l'objet attendu",
               headers={"X-MSS-NIL": None}).as_bytes().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
    refused = smtp.send(bad.replace(b"\r\n.", b"\r\n..") + b".", shown=b"<strict message>")
    assert refused[0].startswith(b"554-5.6.0") and len(refused) > 2
    mss.post("/_bench/clock", {"advance": "PT20M"})  # the token expires during the session
    expired = smtp.send(f"MAIL FROM:<{KIT_BAL}>".encode())
    assert expired[0].startswith(b"530 5.7.0") and b"expired" in expired[0]
    smtp.send(b"QUIT")
    smtp.close()

    assert smtp.greeting[0].startswith(b"220 ") and smtp.greeting[0].isascii()
    problems = []
    for command, lines in smtp.replies:
        for line in lines:
            if not re.fullmatch(rb"[\x20-\x7e\t]*", line):
                problems.append((command, line, "not ASCII text"))
            if line[:1] in b"245":
                m = _ENHANCED.match(line)
                if m is None or m.group("class") != line[:1]:
                    problems.append((command, line, "no matching enhanced status code"))
    assert problems == [], "\n".join(repr(p) for p in problems)
    assert len(smtp.replies) > 30
