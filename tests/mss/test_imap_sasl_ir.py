"""AUTHENTICATE with an initial response (SASL-IR, RFC 4959) and, on a refused token, the RFC 7628 §3.2.2 error
challenge before the tagged NO, as the SMTP side does; a cancelled exchange gets BAD (RFC 3501 §6.2.2)."""

from __future__ import annotations

import base64
import json

import pytest

from .conftest import KIT_BAL, ROBERT, b64, oauthbearer, token, xoauth2
from .imap_raw import RawImap

# SASL-IR (RFC 4959) and the RFC 7628 error challenge


def test_sasl_ir_is_advertised_and_accepted(mss):
    raw = RawImap(mss)
    caps = raw.command(b"c1 CAPABILITY")[0]
    assert b" SASL-IR" in caps and b"AUTH=XOAUTH2" in caps
    lines = raw.command(b"a1 AUTHENTICATE XOAUTH2 " + b64(xoauth2(KIT_BAL, token()).encode()).encode())
    assert len(lines) == 1 and lines[0].startswith(b"a1 OK"), lines  # no continuation request
    raw.close()
    raw = RawImap(mss)
    lines = raw.command(b"a1 AUTHENTICATE OAUTHBEARER " + b64(oauthbearer(KIT_BAL, token()).encode()).encode())
    assert len(lines) == 1 and lines[0].startswith(b"a1 OK"), lines
    assert raw.command(b"s1 SELECT INBOX")[-1].startswith(b"s1 OK")
    raw.close()


@pytest.mark.parametrize(("mech", "payload", "answer"), [
    ("OAUTHBEARER", oauthbearer, b"AQ=="),  # RFC 7628 §3.2.3: the client answers %x01
    ("XOAUTH2", xoauth2, b""),  # Google's XOAUTH2: empty response
])
def test_bad_token_gets_the_rfc7628_error_challenge(mss, mech, payload, answer):
    raw = RawImap(mss)
    raw.send(f"a1 AUTHENTICATE {mech} ".encode() + b64(payload(KIT_BAL, token(exp_in=-60)).encode()).encode())
    challenge = raw.line()
    assert challenge.startswith(b"+ "), challenge
    error = json.loads(base64.b64decode(challenge[2:]))
    assert error["status"] == "invalid_token"
    raw.send(answer)
    final = raw.until_tagged(b"a1")
    assert final[-1].startswith(b"a1 NO [AUTHENTICATIONFAILED]") and b"expired" in final[-1], final
    # Same without SASL-IR: continuation, credentials, error challenge, answer, NO.
    raw.send(f"a2 AUTHENTICATE {mech}".encode())
    assert raw.line() == b"+ "
    raw.send(b64(payload(KIT_BAL, token(ROBERT)).encode()).encode())
    assert json.loads(base64.b64decode(raw.line()[2:]))["status"] == "invalid_token"
    raw.send(answer)
    assert raw.until_tagged(b"a2")[-1].startswith(b"a2 NO [AUTHENTICATIONFAILED]")
    # A client may cancel instead of answering: tagged BAD (RFC 3501 §6.2.2).
    raw.send(f"a3 AUTHENTICATE {mech} ".encode() + b64(payload(KIT_BAL, token(exp_in=-60)).encode()).encode())
    assert raw.line().startswith(b"+ ")
    raw.send(b"*")
    assert raw.until_tagged(b"a3")[-1].startswith(b"a3 BAD")
    lines = raw.command(b"a4 AUTHENTICATE XOAUTH2 " + b64(xoauth2(KIT_BAL, token()).encode()).encode())
    assert lines[-1].startswith(b"a4 OK")
    raw.close()


def test_malformed_initial_response_is_refused_cleanly(mss):
    raw = RawImap(mss)
    assert raw.command(b"a1 AUTHENTICATE XOAUTH2 not*base64")[-1].startswith(b"a1 BAD")
    assert raw.command(b"a2 AUTHENTICATE XOAUTH2 " + b64(b"garbage").encode())[-1].startswith(b"a2 NO")
    assert raw.command(b"a3 AUTHENTICATE XOAUTH2 =")[-1].startswith(b"a3 NO")  # empty initial response
    assert raw.command(b"a4 AUTHENTICATE FOO " + b64(b"x").encode())[-1].startswith(b"a4 NO")
    raw.login()
    raw.close()
