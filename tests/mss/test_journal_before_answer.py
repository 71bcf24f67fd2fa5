"""The mail front ends journal an exchange before its answer leaves (issue 22): a simulator killed right after a
client got its 250 or OK must not lose the entry. Made observable by slowing the journal down — the answer must
wait for it — with the stdlib clients."""

from __future__ import annotations

import imaplib
import smtplib
import time

import pytest

from .conftest import KIT_BAL, Mss, mail, token, xdm_zip
from .test_imap import login
from .test_smtp import auth_xoauth2

SLOW_S = 0.6


@pytest.fixture
def slow_journal(mss: Mss, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every journal write of the mail front ends takes SLOW_S; returns the operations written, in order."""
    journal = mss.ctx.journal
    written: list[str] = []
    submit = journal.submit

    def slow_submit(exchange) -> None:
        if exchange.protocol in ("smtp", "imap"):
            time.sleep(SLOW_S)
            written.append(exchange.operation)
        submit(exchange)

    monkeypatch.setattr(journal, "submit", slow_submit)
    return written


def timed(call) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def test_an_smtp_reply_waits_for_its_journal_entry(mss: Mss, slow_journal: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", mss.smtp_port, timeout=10) as client:
        assert timed(lambda: client.noop()) >= SLOW_S  # the 250 left after the entry was written
        assert slow_journal[-1] == "SMTP NOOP"
        client.starttls(context=mss.ca)
        client.ehlo("lgc.test")  # multi-line reply: one entry, written before its last line
        assert slow_journal[-1] == "SMTP EHLO"
        auth_xoauth2(client, KIT_BAL, token())
        # DATA: the 354 goes at once (the client must send the message), the final 250 waits for the entry
        assert timed(lambda: client.send_message(mail(xdm=xdm_zip()))) >= 3 * SLOW_S
        assert slow_journal[-3:] == ["SMTP MAIL", "SMTP RCPT", "SMTP DATA"]


def test_an_imap_tagged_reply_waits_for_its_journal_entry(mss: Mss, slow_journal: list[str]) -> None:
    with imaplib.IMAP4("127.0.0.1", mss.imap_port, timeout=10) as client:
        assert timed(lambda: client.noop()) >= SLOW_S
        assert slow_journal[-1] == "IMAP NOOP"
        client.starttls(ssl_context=mss.ca)
        assert login(client)[0] == "OK"
        assert timed(lambda: client.select("INBOX")) >= SLOW_S
        assert slow_journal[-1] == "IMAP SELECT"
