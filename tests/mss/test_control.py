"""Control API: mailboxes from the personas, injection (professional, patient, XDM CDA), patient channel, MDN,
auto-configuration, CA; plus malformed commands on raw sockets."""

from __future__ import annotations

import email
import io
import socket
import ssl
import zipfile

import httpx

from .conftest import CLERICO_BAL, CSE, KIT_BAL, KIT_ORG, ROBERT_BAL, SUBJECT, b64, cda, mail, xdm_zip
from .test_smtp import send


def test_mailboxes_come_from_the_personas(mss):
    boxes = {b["address"]: b for b in mss.get("/_bench/mss/mailboxes")}
    assert boxes[KIT_BAL]["kind"] == "PER" and boxes[KIT_BAL]["owner"] == "kit-doc0036624"
    assert boxes[KIT_ORG]["kind"] == "ORG"
    assert boxes[CLERICO_BAL]["kind"] == "PAT" and boxes[CLERICO_BAL]["owner"] == "clerico-come"
    assert boxes[CSE]["kind"] == "CSE"
    assert "secretariat@hopital-generique.mssante.fr" in boxes
    state = mss.get("/_bench/state")["state"]
    assert {k: state["ports"][k] for k in ("smtp", "imap")} == {"smtp": mss.smtp_port, "imap": mss.imap_port}
    assert state["ports"]["smtps"] not in (0, 2465) and state["ports"]["imaps"] not in (0, 2993)


def test_inject_a_cda_wrapped_in_an_xdm_archive(mss):
    resp = mss.post("/_bench/mss/inject", {"from": ROBERT_BAL, "to": [KIT_BAL], "cda_base64": b64(cda()),
                                           "body": "Compte rendu"})
    assert resp.status_code == 201, resp.text
    uid = resp.json()["delivered"][0]["uid"]
    (msg,) = mss.inbox(KIT_BAL)
    assert msg["subject"] == SUBJECT and msg["origin"] == "injection"
    assert msg["x_mss"] == {"X-MSS-CODECDA": "11488-4", "X-MSS-INS": "O", "X-MSS-NIL": "segur-bench-mss"}
    raw = mss.http.get(f"{mss.server.url}/_bench/mss/mailboxes/{KIT_BAL}/messages/{uid}")
    assert raw.headers["content-type"] == "message/rfc822"
    parsed = email.message_from_bytes(raw.content)
    (zip_part,) = [p for p in parsed.walk() if p.get_filename() == "IHE_XDM.zip"]
    names = zipfile.ZipFile(io.BytesIO(zip_part.get_payload(decode=True))).namelist()
    assert names == ["INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML", "IHE_XDM/SUBSET01/DOC0001.XML"]


def test_patient_reply_refused_once_the_channel_is_closed(mss):
    reply = {"from": CLERICO_BAL, "to": KIT_BAL, "subject": "Re: compte rendu", "body": "Merci docteur"}
    assert mss.post("/_bench/mss/inject", reply).status_code == 201  # channel still open
    send(mss, mail(xdm=xdm_zip()))  # X-MSS-MES: FIN closes it
    resp = mss.post("/_bench/mss/inject", reply)
    assert resp.status_code == 409 and "canal fermé" in resp.json()["detail"]
    assert [m["subject"] for m in mss.inbox(KIT_BAL)] == ["Re: compte rendu"]
    assert mss.findings()[-1]["findings"][0]["code"] == "CANAL-FERME"


def test_mdn_with_an_error_code_goes_back_to_the_sender(mss):
    send(mss, mail(xdm=xdm_zip(), headers={"Disposition-Notification-To": KIT_BAL}))
    (received,) = mss.inbox(CLERICO_BAL)
    resp = mss.post("/_bench/mss/mdn", {"mailbox": CLERICO_BAL, "uid": received["uid"], "error": "902"})
    assert resp.status_code == 201, resp.text
    (mdn,) = mss.inbox(KIT_BAL)
    assert mdn["subject"] == f"[KO Intégration système !][902] {SUBJECT}"
    raw = mss.http.get(f"{mss.server.url}/_bench/mss/mailboxes/{KIT_BAL}/messages/{mdn['uid']}").content
    parsed = email.message_from_bytes(raw)
    assert parsed.get_content_type() == "multipart/report"
    report = next(p for p in parsed.walk() if p.get_content_type() == "message/disposition-notification")
    text = report.as_string()
    assert "processed/Error: 902^Patient inconnu" in text and "Original-Message-ID:" in text
    assert any(p.get_filename() == "IHE_XDM.zip" for p in parsed.walk())
    bad = mss.post("/_bench/mss/mdn", {"mailbox": CLERICO_BAL, "uid": received["uid"], "error": "999"})
    assert bad.status_code == 400


def test_autoconfig_and_ca(mss):
    resp = httpx.get(mss.server.url + "/.well-known/autoconfig/mail/config-v1.1.xml")
    assert resp.status_code == 200
    assert f"<port>{mss.smtp_port}</port>" in resp.text and "<authentication>OAuth2</authentication>" in resp.text
    pem = httpx.get(mss.server.url + "/_bench/mss/ca.pem").text
    with socket.create_connection(("127.0.0.1", mss.smtp_port), timeout=5) as raw:
        raw.recv(1024)
        raw.sendall(b"EHLO x\r\n")
        raw.recv(4096)
        raw.sendall(b"STARTTLS\r\n")
        assert raw.recv(1024).startswith(b"220")
        with ssl.create_default_context(cadata=pem).wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"EHLO x\r\n")
            reply = b""
            while b"\r\n250 " not in reply:
                reply += tls.recv(4096)
            assert b"250-AUTH OAUTHBEARER XOAUTH2" in reply


def _exchange(sock: socket.socket, line: bytes) -> bytes:
    """Send one command, read the whole reply (SMTP: up to the 'NNN ' line; IMAP: up to the tagged line)."""
    sock.sendall(line + b"\r\n")
    tag = line.split(b" ", 1)[0]
    reply = b""
    while True:
        reply += sock.recv(4096)
        last = reply.rstrip(b"\r\n").split(b"\r\n")[-1]
        if reply.endswith(b"\r\n") and (last[3:4] == b" " or last.startswith(tag + b" ")):
            return reply


def test_malformed_commands_on_raw_sockets(mss):
    with socket.create_connection(("127.0.0.1", mss.smtp_port), timeout=5) as raw:
        assert raw.recv(1024).startswith(b"220")
        assert _exchange(raw, b"MAIL FROM:<x@y>").startswith(b"530 5.7.0 Must issue a STARTTLS")
        assert _exchange(raw, b"BOGUS").startswith(b"530")
        assert _exchange(raw, b"EHLO lgc").startswith(b"250")
        assert _exchange(raw, b"AUTH XOAUTH2 dGVzdA==").startswith(b"530")  # STARTTLS first
        assert _exchange(raw, b"QUIT").startswith(b"221")
    with socket.create_connection(("127.0.0.1", mss.imap_port), timeout=5) as raw:
        assert raw.recv(1024).startswith(b"* OK [CAPABILITY IMAP4rev1")
        assert _exchange(raw, b"a1 FROBNICATE").startswith(b"a1 BAD")
        assert _exchange(raw, b"a2 SELECT INBOX").startswith(b"a2 BAD")  # not authenticated
        assert b"a3 NO" in _exchange(raw, b"a3 LOGIN kit x")
    entries = mss.get("/_bench/journal")["entries"]
    ops = [e["operation"] for e in entries]
    assert "SMTP BOGUS" not in ops and "IMAP FROBNICATE" in ops
