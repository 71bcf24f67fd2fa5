"""IMAP under bad input (issue 16): unexpected errors answered with a tagged NO/BAD in protocol terms (never a Python
exception on the wire), bounded literals, no temp file left by an aborted APPEND, SEARCH BODY/TEXT, invalid
arguments refused with the session still usable. Exchanges written by hand on a raw socket, or with stdlib imaplib."""

from __future__ import annotations

import logging

import pytest

from .imap_raw import RawImap, inject_for_kit

LEAKS = (b"Traceback", b"Error", b"Exception", b"secret-internal-detail", b"Server error", b"b'")


def assert_clean(lines: list[bytes]) -> None:
    """No Python exception (class name, message, repr, traceback) in what the client received."""
    wire = b"\r\n".join(lines)
    for leak in LEAKS:
        assert leak not in wire, (leak, lines)


def still_usable(raw: RawImap, tag: bytes = b"n1") -> None:
    lines = raw.command(tag + b" NOOP")
    assert lines[-1].startswith(tag + b" OK"), lines


def selected(mss, folder: bytes = b"INBOX") -> RawImap:
    raw = RawImap(mss)
    raw.login()
    assert raw.command(b"s1 SELECT " + folder)[-1].startswith(b"s1 OK")
    return raw


# Unexpected errors: NO [SERVERBUG] (RFC 5530) in protocol terms, the exception in the log, the session goes on


def _boom(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("secret-internal-detail")


@pytest.mark.parametrize(
    ("method", "command"),
    [
        ("folder_rows", b"FETCH 1 (FLAGS)"),
        ("folder_rows", b"UID FETCH 1:* (UID)"),
        ("folder_rows", b"SEARCH ALL"),
        ("folder_rows", b"STORE 1 +FLAGS (\\Flagged)"),
        ("folder_rows", b"COPY 1 Sent"),
        ("set_flags", b"STORE 1 +FLAGS (\\Flagged)"),
        ("raw", b"FETCH 1 (BODY.PEEK[])"),
        ("expunge", b"EXPUNGE"),
        ("expunge", b"CLOSE"),
        ("uidnext", b"STATUS INBOX (UIDNEXT MESSAGES)"),
        ("folder_uids", b"EXAMINE INBOX"),
        ("folders", b'LIST "" *'),
        ("store_message", b"APPEND Sent {12}"),
    ],
)
def test_an_internal_error_is_a_tagged_no_without_python_text(mss, monkeypatch, caplog, method, command):
    inject_for_kit(mss)
    raw = selected(mss)
    monkeypatch.setattr(mss.ctx.extras["mss"], method, _boom)
    caplog.set_level(logging.INFO)
    raw.send(b"x1 " + command)
    if command.endswith(b"}"):
        assert raw.line().startswith(b"+ ")
        raw.send(b"Subject: x\r\n")
    lines = raw.until_tagged(b"x1")
    assert lines[-1].startswith((b"x1 NO", b"x1 BAD")), lines
    assert_clean(lines)
    assert "secret-internal-detail" in caplog.text  # the exception went to the log
    monkeypatch.undo()
    still_usable(raw)
    raw.close()


def test_authentication_error_is_a_tagged_no(mss, monkeypatch):
    monkeypatch.setattr(mss.ctx.extras["mss"], "authenticate_bearer", _boom)
    raw = RawImap(mss)
    raw.send(b"a1 AUTHENTICATE XOAUTH2")
    assert raw.line().startswith(b"+")
    raw.send(b"dXNlcj1rAWF1dGg9QmVhcmVyIHgBAQ==")
    lines = raw.until_tagged(b"a1")
    assert lines[-1].startswith(b"a1 NO"), lines
    assert_clean(lines)
    monkeypatch.undo()
    raw.login()
    still_usable(raw)
    raw.close()


@pytest.mark.parametrize(
    "command",
    [
        b"STATUS INBOX (FOO)",  # Twisted's errback itself broke: no tagged reply at all
        b"STATUS INBOX ((((MESSAGES))))",
        b"FETCH 1 (FLAGS",
        b"FETCH 1 FOO",
        b"FETCH 1 BODY[]<-1>",
        b"FETCH 1:*:* FLAGS",
        b'COPY 1 "a\\"b" extra',
        b"UID FOO 1",
    ],
)
def test_invalid_arguments_are_bad_in_protocol_terms(mss, command):
    inject_for_kit(mss)
    raw = selected(mss)
    raw.sock.settimeout(5)
    lines = raw.command(b"x1 " + command)
    assert lines[-1].startswith(b"x1 BAD"), lines
    assert_clean(lines)
    still_usable(raw)
    raw.close()
