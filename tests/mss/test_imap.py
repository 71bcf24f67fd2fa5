"""IMAP4rev1 access with stdlib imaplib: STARTTLS, AUTHENTICATE XOAUTH2/OAUTHBEARER, SELECT/SEARCH/FETCH/STORE,
token expiry in session, faults."""

from __future__ import annotations

import email
import imaplib
import time

import pytest

from .conftest import (
    CLERICO_BAL,
    KIT_BAL,
    ROBERT,
    ROBERT_BAL,
    SUBJECT,
    Mss,
    b64,
    cda,
    mail,
    oauthbearer,
    token,
    xdm_zip,
    xoauth2,
)
from .test_smtp import send


def connect(mss: Mss, *, tls: bool = True) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", mss.imap_port, timeout=10)
    if tls:
        client.starttls(ssl_context=mss.ca)
    return client


def login(client: imaplib.IMAP4, user: str = KIT_BAL, tok: str | None = None, mech: str = "XOAUTH2") -> tuple:
    tok = tok or token()
    payload = xoauth2(user, tok) if mech == "XOAUTH2" else oauthbearer(user, tok)
    return client.authenticate(mech, lambda _challenge: payload.encode())


def message_for_kit(mss: Mss) -> bytes:
    """ROBERT sends KIT a message over SMTP; returns what was sent."""
    msg = mail(sender=ROBERT_BAL, to=(KIT_BAL,), subject="Avis cardiologique CLERICO", xdm=None,
               headers={"X-MSS-CODECDA": None, "X-MSS-INS": None, "X-MSS-MES": None})
    send(mss, msg, user=ROBERT_BAL, tok=token(ROBERT))
    return msg.as_bytes()


def test_xoauth2_then_select_search_fetch(mss):
    message_for_kit(mss)
    inject = mss.post("/_bench/mss/inject", {"from": ROBERT_BAL, "to": KIT_BAL, "cda_base64": b64(cda()),
                                             "body": "CR joint"})
    assert inject.status_code == 201, inject.text
    with connect(mss) as client:
        caps = client.capabilities
        assert "AUTH=XOAUTH2" in caps and "AUTH=OAUTHBEARER" in caps and "AUTH=PLAIN" not in caps
        typ, _ = login(client)
        assert typ == "OK"
        typ, data = client.select("INBOX")
        assert typ == "OK" and data == [b"2"]
        typ, data = client.search(None, "ALL")
        assert data == [b"1 2"]
        typ, data = client.search(None, '(SUBJECT "Avis cardiologique")')
        assert data == [b"1"]
        typ, data = client.uid("SEARCH", None, "ALL")
        uids = data[0].split()
        assert len(uids) == 2
        typ, data = client.fetch("1", "(RFC822)")
        fetched = email.message_from_bytes(data[0][1])
        assert fetched["Subject"] == "Avis cardiologique CLERICO" and fetched["From"] == ROBERT_BAL
        assert fetched["X-MSS-NIL"] == "LGC-TEST-0001"
        typ, data = client.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT X-MSS-CODECDA X-MSS-INS)])")
        headers = data[0][1].decode()
        assert SUBJECT in headers and "X-MSS-CODECDA: 11488-4" in headers and "X-MSS-INS: O" in headers
        typ, data = client.fetch("2", "(BODYSTRUCTURE)")
        assert b'"IHE_XDM.zip"' in data[0] and b"MIXED" in data[0].upper()
        typ, data = client.uid("FETCH", uids[1].decode(), "(FLAGS)")
        assert b"FLAGS (\\Recent)" in data[0]  # this session was the first told of the message
        client.store("2", "+FLAGS", "\\Seen")
        typ, data = client.search(None, "UNSEEN")
        assert data == [b""]  # FETCH RFC822 set \Seen on message 1 (RFC 3501 §6.4.5)
        client.store("1", "-FLAGS", "\\Seen")
        typ, data = client.search(None, "UNSEEN")
        assert data == [b"1"]
        typ, data = client.list()
        assert any(b"INBOX" in line for line in data) and any(b"Sent" in line for line in data)
        client.logout()
    fetch = mss.journal("IMAP FETCH")
    assert fetch and all(e["protocol"] == "imap" and e["status"] == 200 for e in fetch)
    assert "Avis cardiologique" in fetch[0]["response"]["body"]
    auth = mss.journal("IMAP AUTHENTICATE")[-1]
    assert auth["status"] == 200 and auth["request"]["headers"][0][1] .endswith("AUTHENTICATE XOAUTH2")


def test_oauthbearer_and_sent_folder(mss):
    send(mss, mail(xdm=xdm_zip()))
    with connect(mss) as client:
        assert login(client, mech="OAUTHBEARER")[0] == "OK"
        assert client.select("Sent") == ("OK", [b"1"])
        _, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert SUBJECT.encode() in data[0][1]


def test_login_is_disabled_unless_legacy(mss):
    with connect(mss) as client:
        assert "LOGINDISABLED" in client.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="LOGIN"):
            client.login(KIT_BAL, "mssante-banc")
    mss.settings["legacy_auth"] = True
    with connect(mss) as client:
        assert "AUTH=PLAIN" in client.capabilities
        assert client.login(KIT_BAL, "mssante-banc")[0] == "OK"
        assert client.select("INBOX")[0] == "OK"


def test_refused_tokens(mss):
    with connect(mss) as client:
        with pytest.raises(imaplib.IMAP4.error, match=r"AUTHENTICATIONFAILED.*expired"):
            login(client, tok=token(exp_in=-60))
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            login(client, tok=token(ROBERT))
        assert login(client)[0] == "OK"


def test_token_expiry_during_the_session_gets_bye(mss):
    client = connect(mss)
    login(client, tok=token(exp_in=300))
    assert client.select("INBOX")[0] == "OK"
    mss.post("/_bench/clock", {"advance": "PT10M"})
    with pytest.raises(imaplib.IMAP4.abort, match="expire"):
        client.search(None, "ALL")
    client.shutdown()
    entry = mss.journal("IMAP SEARCH")[-1]
    assert "BYE" in entry["response"]["body"]


def test_imap_faults(mss):
    message_for_kit(mss)
    mss.fault({"service": "mss", "operation": "IMAP SELECT", "effect": {"type": "outcome", "name": "mss.imap-no"},
               "first": 1})
    mss.fault({"service": "mss", "operation": "IMAP SEARCH", "effect": {"type": "latency", "ms": 500}})
    mss.fault({"service": "mss", "operation": "IMAP FETCH", "effect": {"type": "drop"}})
    client = connect(mss)
    login(client)
    typ, data = client.select("INBOX")
    assert typ == "NO" and b"UNAVAILABLE" in data[0]
    assert client.select("INBOX")[0] == "OK"
    started = time.monotonic()
    assert client.search(None, "ALL")[1] == [b"1"]
    assert time.monotonic() - started >= 0.5
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        client.fetch("1", "(RFC822)")
    client.shutdown()
    assert mss.journal("IMAP FETCH")[-1]["status"] is None


def test_bye_outcome(mss):
    mss.fault({"service": "mss", "operation": "IMAP NOOP", "effect": {"type": "outcome", "name": "mss.imap-bye"}})
    client = connect(mss)
    login(client)
    with pytest.raises(imaplib.IMAP4.abort):
        client.noop()
    client.shutdown()


def test_patient_mailbox_is_not_opened_with_a_psc_token(mss):
    expected = "ne s'ouvre pas avec un jeton Pro Sante Connect"
    with connect(mss) as client, pytest.raises(imaplib.IMAP4.error, match=expected):
        login(client, user=CLERICO_BAL)


def test_slow_transfer_of_a_fetch(mss):
    message_for_kit(mss)
    mss.fault({"service": "mss", "operation": "IMAP FETCH",
               "effect": {"type": "dribble", "chunk_bytes": 256, "interval_ms": 50}})
    with connect(mss) as client:
        login(client)
        client.select("INBOX")
        started = time.monotonic()
        _, data = client.fetch("1", "(RFC822)")
        elapsed = time.monotonic() - started
        assert email.message_from_bytes(data[0][1])["Subject"] == "Avis cardiologique CLERICO"
        assert elapsed >= 0.05 * (len(data[0][1]) // 256)
        assert client.noop()[0] == "OK"  # later replies are not slowed down
