"""FETCH serves the stored bytes exactly (RFC 3501 §6.4.5): BODY[], RFC822, BODY[HEADER], HEADER.FIELDS, parts and
their MIME headers, partial fetches; RFC822.SIZE is the length of BODY[]. Judged with imapclient and an S/MIME
signature made by the openssl CLI, verified again after the round trip."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from .conftest import KIT_BAL, ROBERT_BAL
from .imap_raw import RawImap, fetch_one, imapclient_for, send_raw

# Stored bytes served exactly (RFC 3501 §6.4.5), S/MIME signature still valid

SIGNED_PART = (b"Content-Type: text/plain; charset=utf-8\r\n"
               b"Content-ID: <part1@lgc.test>\r\n"
               b"content-transfer-encoding: 8bit\r\n"
               b"\r\n"
               b"Compte rendu sign\xc3\xa9 par le LGC.\r\n"
               b"  Ligne indent\xc3\xa9e, puis une ligne vide :\r\n"
               b"\r\n"
               b"Fin.\r\n")


@pytest.fixture
def smime_message(tmp_path: Path) -> bytes:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    key, cert, part = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "part.txt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=robert.specialiste"], check=True, capture_output=True)
    part.write_bytes(SIGNED_PART)
    signed = subprocess.run(["openssl", "smime", "-sign", "-binary", "-in", str(part), "-signer", str(cert),
                             "-inkey", str(key)], check=True, capture_output=True).stdout
    signed = re.sub(rb"(?<!\r)\n", b"\r\n", signed)  # SMTP lines end in CRLF (the signed part already does)
    head = (f"From: {ROBERT_BAL}\r\n"
            f"To: {KIT_BAL}\r\n"
            "Subject: Compte rendu signe\r\n"
            f"Date: {format_datetime(datetime.now().astimezone())}\r\n"
            "Message-ID: <smime-1@lgc.test>\r\n"
            "x-mss-nil: LGC-TEST-0001\r\n"
            "X-Folded: a header value\r\n"
            "  folded on two lines\r\n").encode()
    return head + signed


def _verify(tmp_path: Path, data: bytes) -> subprocess.CompletedProcess:
    path = tmp_path / "fetched.eml"
    path.write_bytes(data)
    return subprocess.run(["openssl", "smime", "-verify", "-noverify", "-in", str(path), "-out", str(tmp_path / "o")],
                          capture_output=True)


def test_smime_signed_message_is_fetched_byte_for_byte(mss, smime_message, tmp_path):
    assert _verify(tmp_path, smime_message).returncode == 0  # the test's own message is valid
    send_raw(mss, smime_message)
    client = imapclient_for(mss)
    client.select_folder("INBOX", readonly=True)
    body = fetch_one(client, "BODY.PEEK[]")
    assert body == smime_message
    assert fetch_one(client, "RFC822.SIZE") == len(body)
    assert fetch_one(client, "RFC822") == smime_message
    verified = _verify(tmp_path, body)
    assert verified.returncode == 0, verified.stderr.decode()
    header = smime_message[:smime_message.index(b"\r\n\r\n") + 4]
    assert fetch_one(client, "BODY.PEEK[HEADER]") == header
    assert fetch_one(client, "RFC822.HEADER") == header
    assert fetch_one(client, "BODY.PEEK[TEXT]") == smime_message[len(header):]
    assert fetch_one(client, "BODY.PEEK[HEADER.FIELDS (X-MSS-NIL X-FOLDED)]") == (
        b"x-mss-nil: LGC-TEST-0001\r\nX-Folded: a header value\r\n  folded on two lines\r\n\r\n")
    assert b"x-mss-nil" not in fetch_one(client, "BODY.PEEK[HEADER.FIELDS.NOT (X-MSS-NIL)]").lower()
    assert fetch_one(client, "BODY.PEEK[1]") == SIGNED_PART[SIGNED_PART.index(b"\r\n\r\n") + 4:]
    assert fetch_one(client, "BODY.PEEK[1.MIME]") == SIGNED_PART[:SIGNED_PART.index(b"\r\n\r\n") + 4]
    assert fetch_one(client, "BODY.PEEK[]<0.20>") == smime_message[:20]
    client.logout()


def test_sections_on_the_wire_and_a_missing_part(mss):
    raw_message = (b"From: " + ROBERT_BAL.encode() + b"\r\nTo: " + KIT_BAL.encode() + b"\r\n"
                   b"Subject: deux parties\r\nMIME-Version: 1.0\r\n"
                   b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
                   b"preambule\r\n--b1\r\nContent-Type: text/plain\r\n\r\nun\r\n"
                   b"--b1\r\ncontent-type: message/rfc822\r\n\r\n"
                   b"subject: interne\r\n\r\ncorps interne\r\n--b1--\r\nepilogue\r\n")
    send_raw(mss, raw_message)
    raw = RawImap(mss)
    raw.login()
    raw.command(b"s1 EXAMINE INBOX")
    lines = raw.command(b"f1 FETCH 1 (BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[9] BODY.PEEK[1]<1.50>)")
    joined = b"\r\n".join(lines)
    assert b"BODY[2.HEADER] {20}\r\nsubject: interne\r\n\r\n" in joined
    assert b"BODY[2.TEXT] {13}\r\ncorps interne " in joined  # the CRLF before a delimiter is not the part's
    assert b"BODY[9] NIL" in joined
    assert b"BODY[1]<1> {1}\r\nn" in joined
    assert lines[-1].startswith(b"f1 OK")
    lines = raw.command(b"f2 FETCH 1 (RFC822.SIZE BODYSTRUCTURE)")
    assert b"RFC822.SIZE %d" % len(raw_message) in lines[0]
    assert b'("TEXT" "PLAIN" NIL NIL NIL NIL 2 1 ' in lines[0].upper()  # body octets and lines of part 1
    raw.close()
