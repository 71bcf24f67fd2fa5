"""An unexpected error in an SMTP command is a 451 in SMTP's words, never Python's (issue 16: aiosmtpd's default
reply was '500 Error: (RuntimeError) <message>')."""

from __future__ import annotations

from .conftest import CLERICO_BAL, KIT_BAL, token
from .test_smtp import auth_xoauth2, connect


def test_an_internal_error_is_451_with_a_reference_and_the_session_goes_on(mss, monkeypatch, caplog):
    model = mss.ctx.models["mss"]

    def broken(address: str) -> str | None:
        raise RuntimeError("s3cr3t internal detail")

    monkeypatch.setattr(model, "recipient_check", broken)
    with connect(mss) as client:
        auth_xoauth2(client, KIT_BAL, token())
        assert client.mail(KIT_BAL)[0] == 250
        code, text = client.rcpt(CLERICO_BAL)
        assert code == 451, text
        assert text.startswith(b"4.3.0 ")
        for python in (b"RuntimeError", b"s3cr3t", b"Traceback"):
            assert python not in text
        ref = text.split(b"reference ")[1].split()[0].decode()
        assert any(ref in r.getMessage() and r.exc_info for r in caplog.records)  # the log has the exception
        assert client.noop()[0] == 250
    monkeypatch.undo()
    with connect(mss) as client:
        auth_xoauth2(client, KIT_BAL, token())
        assert client.mail(KIT_BAL)[0] == 250
        assert client.rcpt(CLERICO_BAL)[0] == 250
        client.rset()
