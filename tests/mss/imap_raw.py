"""Hand-written IMAP exchanges (raw socket, the lines exactly as the server sends them) and helpers shared by the
IMAP wire-fidelity tests."""

from __future__ import annotations

import re
import socket

from imapclient import IMAPClient

from .conftest import KIT_BAL, ROBERT, ROBERT_BAL, Mss, b64, token, xoauth2
from .test_smtp import auth_xoauth2
from .test_smtp import connect as smtp_connect


class RawImap:
    """IMAP by hand: the lines exactly as the server sends them (literals appended to their line)."""

    def __init__(self, mss: Mss, *, tls: bool = True) -> None:
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", mss.imap_port), timeout=10)
        self.buf = b""
        self.greeting = self.line()
        if tls:
            assert self.command(b"t0 STARTTLS")[-1].startswith(b"t0 OK")
            self.sock = mss.ca.wrap_socket(self.sock, server_hostname="127.0.0.1")

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        literal = re.search(rb"\{(\d+)\}$", line)
        if literal:
            size = int(literal.group(1))
            while len(self.buf) < size:
                self._fill()
            data, self.buf = self.buf[:size], self.buf[size:]
            return line + b"\r\n" + data + self.line()
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data + b"\r\n")

    def until_tagged(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            lines.append(self.line())
            if lines[-1].startswith(tag + b" "):
                return lines

    def command(self, line: bytes) -> list[bytes]:
        self.send(line)
        return self.until_tagged(line.split(b" ", 1)[0])

    def login(self, user: str = KIT_BAL) -> None:
        """AUTHENTICATE with a continuation (no SASL-IR): works whatever the server advertises."""
        self.send(b"t1 AUTHENTICATE XOAUTH2")
        assert self.line().startswith(b"+")
        self.send(b64(xoauth2(user, token()).encode()).encode())
        assert self.until_tagged(b"t1")[-1].startswith(b"t1 OK")

    def close(self) -> None:
        self.sock.close()


def inject_for_kit(mss: Mss, subject: str = "Nouveau message") -> None:
    resp = mss.post("/_bench/mss/inject", {"from": ROBERT_BAL, "to": KIT_BAL, "subject": subject, "body": "Texte"})
    assert resp.status_code == 201, resp.text


def send_raw(mss: Mss, raw: bytes, *, to: str = KIT_BAL) -> None:
    with smtp_connect(mss) as client:
        auth_xoauth2(client, ROBERT_BAL, token(ROBERT))
        assert client.sendmail(ROBERT_BAL, [to], raw, mail_options=["BODY=8BITMIME"]) == {}


def imapclient_for(mss: Mss, user: str = KIT_BAL) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=mss.imap_port, ssl=False, timeout=10)
    client.starttls(mss.ca)
    client.oauth2_login(user, token())
    client.use_uid = False  # the tests name messages by sequence number
    return client


def fetch_one(client: IMAPClient, item: str, msgid: int = 1) -> bytes:
    data = client.fetch([msgid], [item])[msgid]
    values = [v for k, v in data.items() if k not in (b"SEQ", b"UID")]
    assert len(values) == 1, data
    return values[0]
