"""IMAP under bad input (issue 16): unexpected errors answered with a tagged NO/BAD in protocol terms (never a Python
exception on the wire), bounded literals, no temp file left by an aborted APPEND, SEARCH BODY/TEXT, invalid
arguments refused with the session still usable. Exchanges written by hand on a raw socket, or with stdlib imaplib."""

from __future__ import annotations

import base64
import contextlib
import gc
import imaplib
import logging
import os
import tempfile
import time
from datetime import UTC, date, datetime, timedelta

import pytest

from .conftest import KIT_BAL, token, xoauth2
from .imap_raw import RawImap, inject_for_kit

LEAKS = (
    b"Traceback",
    b"Error",
    b"Exception",
    b"secret-internal-detail",
    b"Server error",
    b"b'",
    b"recursion",
    b"int()",
    b"failed:",  # Twisted's "<COMMAND> failed: " + str(exception)
)


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
    monkeypatch.setattr(mss.ctx.models["mss"], method, _boom)
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
    monkeypatch.setattr(mss.ctx.models["mss"], "authenticate_bearer", _boom)
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
        b"STORE 1 FOO (\\Deleted)",  # Twisted replaced the flags
        b"UID STORE 1 FLAGSX (\\Deleted)",
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
    assert mss.inbox(KIT_BAL)[0]["flags"] == []


# Literals (RFC 3501 §4.3, RFC 7888 non-synchronising "{N+}"): sizes bounded before anything is read


def closed_by_server(raw: RawImap) -> list[bytes]:
    """The lines the server sent before closing the connection."""
    lines = []
    with pytest.raises((ConnectionError, OSError)):
        while True:
            lines.append(raw.line())
    return lines


def test_oversize_synchronising_literal_is_refused_without_continuation(mss):
    mss.settings["max_message_bytes"] = 1000
    raw = RawImap(mss)
    raw.login()
    assert b" APPENDLIMIT=1000" in raw.command(b"c1 CAPABILITY")[0]  # RFC 7889
    lines = raw.command(b"a1 APPEND INBOX {1001}")
    assert len(lines) == 1 and lines[0].startswith(b"a1 NO [TOOBIG]"), lines  # no "+" continuation
    still_usable(raw)
    raw.send(b"a2 APPEND INBOX {1000}")
    assert raw.line().startswith(b"+ ")
    raw.send(b"Subject: juste\r\n\r\n" + b"x" * 982)
    assert raw.until_tagged(b"a2")[-1].startswith(b"a2 OK")
    lines = raw.command(b"l1 SELECT {5000}")  # other literals: Twisted's 4096-octet bound for strings
    assert len(lines) == 1 and lines[0].startswith(b"l1 NO [TOOBIG]"), lines
    still_usable(raw, b"n2")
    raw.close()


def test_oversize_append_with_imaplib_gets_toobig(mss):
    mss.settings["max_message_bytes"] = 1000
    client = imaplib.IMAP4("127.0.0.1", mss.imap_port, timeout=10)
    client.starttls(ssl_context=mss.ca)
    client.authenticate("XOAUTH2", lambda _challenge: xoauth2(KIT_BAL, token()).encode())
    typ, data = client.append("INBOX", None, None, b"Subject: trop grand\r\n\r\n" + b"y" * 2000)
    assert typ == "NO" and data[0].startswith(b"[TOOBIG]"), (typ, data)
    assert client.noop()[0] == "OK"
    client.logout()
    assert mss.inbox(KIT_BAL) == []


def test_legacy_login_literal_is_bounded(mss):
    mss.settings["legacy_auth"] = True
    raw = RawImap(mss)
    lines = raw.command(b"l1 LOGIN {5000}")
    assert len(lines) == 1 and lines[0].startswith(b"l1 NO [TOOBIG]"), lines
    raw.send(b"l2 LOGIN {" + str(len(KIT_BAL)).encode() + b"}")
    assert raw.line().startswith(b"+ ")
    raw.send(KIT_BAL.encode() + b" mssante-banc")
    assert raw.until_tagged(b"l2")[-1].startswith(b"l2 OK")
    raw.close()


def test_oversize_non_synchronising_literal_gets_bad_then_bye(mss):
    # The client streams the octets at once (no continuation to wait for): the server answers BAD [TOOBIG] and
    # closes (RFC 7888 §4 lets it read and discard them or close); nothing in them is taken for a command.
    mss.settings["max_message_bytes"] = 1000
    raw = RawImap(mss)
    raw.login()
    raw.sock.sendall(b"a1 APPEND INBOX {5000+}\r\n" + b"z1 NOOP\r\n" * 555 + b"z2 NOOP\r\n")
    lines = closed_by_server(raw)
    assert lines[0].startswith(b"a1 BAD [TOOBIG]"), lines
    assert lines[1].startswith(b"* BYE"), lines
    assert not any(line.startswith((b"z1", b"z2")) for line in lines), lines
    assert mss.inbox(KIT_BAL) == []


def test_non_synchronising_literals_within_bounds(mss):
    raw = RawImap(mss)
    raw.login()
    message = b"Subject: sans attente\r\n\r\nCorps\r\n"
    raw.sock.sendall(b"a1 APPEND INBOX {%d+}\r\n%b\r\n" % (len(message), message))
    lines = raw.until_tagged(b"a1")
    assert lines == [lines[-1]] and lines[-1].startswith(b"a1 OK"), lines  # no continuation request
    assert [m["subject"] for m in mss.inbox(KIT_BAL)] == ["sans attente"]
    raw.sock.sendall(b"s1 SELECT {5+}\r\nINBOX\r\n")
    assert raw.until_tagged(b"s1")[-1].startswith(b"s1 OK")
    # A command that takes no literal there: BAD, and the announced octets are skipped, never run as a command.
    raw.sock.sendall(b"f1 STATUS INBOX {9+}\r\nz9 NOOP\r\n\r\n")  # STATUS wants a list there
    lines = raw.until_tagged(b"f1")
    assert lines[-1].startswith(b"f1 BAD"), lines
    still_usable(raw)
    assert not any(line.startswith(b"z9") for line in lines + raw.buf.split(b"\r\n"))
    raw.close()


@pytest.mark.parametrize("marker", [b"{-1}", b"{abc}", b"{1x}", b"{99999999999999999999999}", b"{ 5}", b"{5"])
def test_malformed_literal_sizes_are_bad(mss, marker):
    raw = RawImap(mss)
    raw.login()
    raw.sock.settimeout(5)
    lines = raw.command(b"a1 APPEND INBOX " + marker)
    assert lines == [lines[-1]] and lines[-1].startswith(b"a1 BAD"), lines
    assert_clean(lines)
    lines = raw.command(b"a2 SELECT " + marker)
    assert lines == [lines[-1]] and lines[-1].startswith(b"a2 BAD"), lines
    still_usable(raw)
    raw.close()


def test_unreadable_non_synchronising_size_closes(mss):
    raw = RawImap(mss)
    raw.login()
    raw.sock.sendall(b"a1 APPEND INBOX {-1+}\r\nz1 NOOP\r\n")
    lines = closed_by_server(raw)
    assert lines[0].startswith(b"a1 BAD") and lines[1].startswith(b"* BYE"), lines
    assert not any(line.startswith(b"z1") for line in lines)


def test_overlong_command_line_gets_bye(mss):
    raw = RawImap(mss)
    raw.login()
    raw.sock.sendall(b"x1 NOOP " + b"a" * 20000 + b"\r\nz1 NOOP\r\n")
    lines = closed_by_server(raw)
    assert lines and lines[0].startswith(b"* BYE"), lines
    assert not any(line.startswith(b"z1") for line in lines)


# An APPEND cut off in the middle of its literal leaves no temp file behind


def temp_files_open() -> int:
    """Open descriptors of this process (the simulator runs in it) on deleted temp files (TemporaryFile)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            count += target.startswith(tempfile.gettempdir()) and target.endswith("(deleted)")
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_aborted_appends_leave_no_temp_file_open(mss):
    # The garbage collector would close them some day (the session is a reference cycle): held off here, so that
    # the test sees whether the server releases them on disconnect, as it must for a long-running worker.
    gc.disable()
    try:
        before = temp_files_open()
        for _ in range(8):
            raw = RawImap(mss)
            raw.login()
            raw.send(b"a1 APPEND INBOX {15000000}")  # above Twisted's 10 MiB in-memory bound: a temp file
            assert raw.line().startswith(b"+ ")
            raw.sock.sendall(b"Subject: coupe\r\n\r\n" + b"x" * 4096)
            raw.close()  # disconnects in the middle of the literal
        deadline = time.monotonic() + 5
        while temp_files_open() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert temp_files_open() <= before
    finally:
        gc.enable()
    assert mss.inbox(KIT_BAL) == []


# SEARCH BODY / TEXT (RFC 3501 §6.4.4): case-insensitive substring, BODY in the body, TEXT in header and body

SEARCHED = [
    (  # 1: 8-bit UTF-8 body
        b"From: robert@medecin.mssante.fr\r\nSubject: Compte rendu cardiologie\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"Le patient pr\xc3\xa9sente une HYPERTENSION art\xc3\xa9rielle.\r\n"
    ),
    (  # 2: quoted-printable body
        b"From: robert@medecin.mssante.fr\r\nSubject: Biologie\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"R=C3=A9sultat : glyc=C3=A9mie normale, contr=C3=B4le dans six=\r\n mois.\r\n"
    ),
    (  # 3: multipart, a base64 text part
        b"From: robert@medecin.mssante.fr\r\nSubject: Rappel\r\nX-Note: dossier Clerico\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nVoir la piece.\r\n"
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes("Rappel du vaccin antitétanique".encode()).replace(b"\n", b"\r\n")
        + b"--b1--\r\n"
    ),
    (  # 4: the word only in a header
        b"From: robert@medecin.mssante.fr\r\nSubject: Ordonnance ECHOGRAPHIE\r\n\r\nrien\r\n"
    ),
]


def test_search_body_and_text_with_imaplib(mss):
    client = imaplib.IMAP4("127.0.0.1", mss.imap_port, timeout=10)
    client.starttls(ssl_context=mss.ca)
    client.authenticate("XOAUTH2", lambda _challenge: xoauth2(KIT_BAL, token()).encode())
    for message in SEARCHED:
        assert client.append("INBOX", None, None, message)[0] == "OK"
    assert client.select("INBOX") == ("OK", [b"4"])

    def found(*criteria: str) -> list[int]:
        typ, data = client.search(None, *criteria)
        assert typ == "OK", (criteria, data)
        return [int(n) for n in data[0].split()]

    assert found("BODY", "hypertension") == [1]  # case-insensitive
    assert found("TEXT", "HyperTension") == [1]
    assert found("BODY", "echographie") == []  # only in the Subject
    assert found("TEXT", "echographie") == [4]
    assert found("TEXT", '"Compte rendu"') == [1]
    assert found("TEXT", "x-note") == [3]  # header field names are header text too
    assert found("BODY", "antit") == [3]  # base64 text part, decoded
    assert found("BODY", '"dans six mois"') == [2]  # quoted-printable soft line break, decoded
    assert found("BODY", "piece") == [3]
    assert found("BODY", "robert") == []
    assert found("TEXT", "robert") == [1, 2, 3, 4]
    assert found("OR", "BODY", "hypertension", "TEXT", "echographie") == [1, 4]
    assert found("NOT", "BODY", "e") == []
    assert found("BODY", '""') == [1, 2, 3, 4]  # the empty string is a substring of every body
    typ, data = client.uid("SEARCH", None, "TEXT", "biologie")
    assert typ == "OK" and len(data[0].split()) == 1
    assert client.noop()[0] == "OK"
    client.logout()


# Bad arguments: a tagged NO or BAD, the session still usable


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        (b'COPY 1 "../../etc"', b"x1 NO [TRYCREATE]"),
        (b'COPY 1 "INBOX/../Sent"', b"x1 NO [TRYCREATE]"),
        (b'COPY 1 "/etc/passwd"', b"x1 NO [TRYCREATE]"),
        (b'COPY 1 ""', b"x1 NO [TRYCREATE]"),
        (b'COPY 1 "&Jjo"', b"x1 NO"),  # not modified UTF-7
        (b'COPY 1 "' + b"a" * 3000 + b'"', b"x1 NO [TRYCREATE]"),
        (b'SELECT "../../etc"', b"x1 NO"),
        (b'STATUS "../INBOX" (MESSAGES)', b"x1 NO"),
        (b'APPEND "../../etc" {4}', b"x1 NO [TRYCREATE]"),
    ],
)
def test_traversal_and_invalid_mailbox_names(mss, command, answer):
    inject_for_kit(mss)
    raw = selected(mss)
    raw.sock.settimeout(5)
    raw.send(b"x1 " + command)
    if command.endswith(b"}"):
        assert raw.line().startswith(b"+ ")
        raw.send(b"abcd")
    lines = raw.until_tagged(b"x1")
    assert lines[-1].startswith(answer), lines
    assert_clean(lines)
    still_usable(raw)
    raw.close()
    assert len(mss.inbox(KIT_BAL)) == 1 and mss.inbox(KIT_BAL, "Sent") == []


def test_fetch_of_a_part_a_single_part_message_does_not_have(mss):
    inject_for_kit(mss)  # text/plain, one part: only part 1 exists (RFC 3501 §6.4.5)
    raw = selected(mss)
    lines = raw.command(b"f1 FETCH 1 (BODY.PEEK[1.2.3] BODY.PEEK[1.2.3.MIME] BODY.PEEK[2] BODY.PEEK[1])")
    assert lines[-1].startswith(b"f1 OK"), lines
    joined = b"\r\n".join(lines)
    assert b"BODY[1.2.3] NIL" in joined and b"BODY[1.2.3.MIME] NIL" in joined and b"BODY[2] NIL" in joined
    assert b"BODY[1] {" in joined
    lines = raw.command(b"f2 FETCH 1 BODY.PEEK[0]")  # section-part is nz-number (RFC 3501 §9)
    assert lines[-1].startswith(b"f2 BAD"), lines
    still_usable(raw)
    raw.close()


@pytest.mark.parametrize("depth", [8, 50, 2000])
def test_deeply_nested_fetch_is_bad(mss, depth):
    inject_for_kit(mss)
    raw = selected(mss)
    lines = raw.command(b"f1 FETCH 1 " + b"(" * depth + b"FLAGS" + b")" * depth)
    assert lines == [lines[-1]] and lines[-1].startswith(b"f1 BAD"), lines
    assert_clean(lines)
    still_usable(raw)
    raw.close()


@pytest.mark.parametrize(
    "keys",
    [
        b"FOO",
        b"",
        b"LARGER abc",
        b"BEFORE 99-Foo-9999",
        b"SINCE yesterday",
        b"HEADER",
        b"HEADER Subject",
        b"SUBJECT",
        b"UID 1:*:*",
        b"NOT",
        b"OR ALL",
        b"NOT " * 3000 + b"ALL",
        b"(" * 3000 + b"ALL" + b")" * 3000,
        b"OR ALL " * 2000 + b"ALL",
        b"(ALL",
        b"ALL)",
    ],
)
def test_malformed_search_keys_are_bad(mss, keys):
    inject_for_kit(mss)
    raw = selected(mss)
    lines = raw.command(b"s2 SEARCH " + keys)
    assert lines == [lines[-1]] and lines[-1].startswith(b"s2 BAD"), lines
    assert_clean(lines)
    lines = raw.command(b"s3 UID SEARCH " + keys)
    assert lines == [lines[-1]] and lines[-1].startswith(b"s3 BAD"), lines
    still_usable(raw)
    raw.close()


def test_search_charset_and_literals(mss):
    raw = selected(mss)
    raw.send(b"a1 APPEND INBOX {%d}" % len(SEARCHED[0]))
    assert raw.line().startswith(b"+ ")
    raw.send(SEARCHED[0])
    assert raw.until_tagged(b"a1")[-1].startswith(b"a1 OK")
    lines = raw.command(b"s1 SEARCH CHARSET X-INCONNU ALL")
    assert lines[-1].startswith(b"s1 NO [BADCHARSET"), lines  # RFC 3501 §6.4.4
    raw.send(b"s2 SEARCH CHARSET UTF-8 BODY {9}")  # "présente": 8-bit, so a literal (RFC 3501 §6.4.4)
    assert raw.line().startswith(b"+ ")
    raw.send("présente".encode())
    assert raw.until_tagged(b"s2")[-2:] == [b"* SEARCH 1", b"s2 OK SEARCH completed"]
    raw.sock.sendall(b"s3 SEARCH TEXT {6+}\r\nCOMPTE SUBJECT {5+}\r\nrendu NOT BODY {5+}\r\nxyzzy\r\n")
    assert raw.until_tagged(b"s3")[-2:] == [b"* SEARCH 1", b"s3 OK SEARCH completed"]
    lines = raw.command(b"s4 SEARCH TEXT {5000}")
    assert lines == [lines[-1]] and lines[-1].startswith(b"s4 NO [TOOBIG]"), lines
    still_usable(raw)
    raw.close()


# SEARCH dates (internal date / Date header, time and zone disregarded), sizes (RFC822.SIZE), keywords


MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def test_search_dates_sizes_and_keywords(mss):
    dated = [
        b"Subject: janvier\r\nDate: Mon, 15 Jan 2024 09:00:00 +0100\r\n\r\ncourt\r\n",
        b"Subject: mars\r\nDate: Wed, 20 Mar 2024 23:30:00 -0500\r\n\r\n" + b"long " * 1000 + b"\r\n",
        b"Subject: sans date\r\n\r\nrien\r\n",
    ]
    client = imaplib.IMAP4("127.0.0.1", mss.imap_port, timeout=10)
    client.starttls(ssl_context=mss.ca)
    client.authenticate("XOAUTH2", lambda _challenge: xoauth2(KIT_BAL, token()).encode())
    assert client.append("INBOX", "($MDNSent)", None, dated[0])[0] == "OK"
    for message in dated[1:]:
        assert client.append("INBOX", None, None, message)[0] == "OK"
    client.select("INBOX")
    day = imaplib.Internaldate2tuple(client.fetch("1", "(INTERNALDATE)")[1][0])
    today = datetime.fromtimestamp(time.mktime(day), UTC).date()  # the internal date, in the server's zone (UTC)

    def found(*criteria: str) -> list[int]:
        typ, data = client.search(None, *criteria)
        assert typ == "OK", (criteria, data)
        return [int(n) for n in data[0].split()]

    def imap_day(d: date) -> str:
        return f"{d.day}-{MONTHS[d.month - 1]}-{d.year}"

    assert found("SENTBEFORE", "1-Feb-2024") == [1]
    assert found("SENTON", "15-Jan-2024") == [1]
    assert found("SENTON", "20-Mar-2024") == [2]  # the date as written in its zone
    assert found("SENTSINCE", "20-Mar-2024") == [2]
    assert found("SENTSINCE", "01-Jan-2000") == [1, 2]  # no Date header: no sent date
    assert found("ON", imap_day(today)) == [1, 2, 3]
    assert found("SINCE", imap_day(today)) == [1, 2, 3]
    assert found("BEFORE", imap_day(today)) == []
    assert found("BEFORE", imap_day(today + timedelta(days=1))) == [1, 2, 3]
    assert found("SINCE", imap_day(today + timedelta(days=1))) == []
    assert found("LARGER", "4000") == [2]
    assert found("SMALLER", str(len(dated[0]) + 1)) == [1, 3]  # RFC822.SIZE: the whole message
    assert found("LARGER", str(len(dated[0]))) == [2]
    assert found("KEYWORD", "$MDNSent") == [1]
    assert found("KEYWORD", "$mdnsent") == [1]
    assert found("UNKEYWORD", "$MDNSent") == [2, 3]
    with pytest.raises(imaplib.IMAP4.error, match="date"):  # no such day: BAD
        client.search(None, "SENTON", "31-Feb-2024")
    assert client.noop()[0] == "OK"
    client.logout()


# LIST patterns (RFC 3501 §6.3.8): the whole name, and in time whatever the wildcards


def test_list_patterns_match_whole_names_quickly(mss):
    raw = RawImap(mss)
    raw.login()
    raw.sock.settimeout(5)

    def listed(pattern: bytes) -> list[bytes]:
        lines = raw.command(b'l1 LIST "" ' + pattern)
        assert lines[-1].startswith(b"l1 OK"), lines
        return [line.rsplit(b" ", 1)[-1].strip(b'"') for line in lines[:-1]]

    assert listed(b"S") == []  # was a prefix match: Sent
    assert listed(b"IN") == []
    assert listed(b'"Se*"') == [b"Sent"]
    assert sorted(listed(b"%")) == [b"INBOX", b"Sent"]
    assert listed(b"inbox") == [b"INBOX"]
    assert listed(b"*t") == [b"Sent"]
    started = time.monotonic()
    assert listed(b'"' + b"*" * 300 + b"%" * 300 + b'z"') == []  # Twisted's regexp backtracked for hours
    assert listed(b'"' + b"*%" * 300 + b'"') == [b"INBOX", b"Sent"]
    assert time.monotonic() - started < 2
    still_usable(raw)
    raw.close()


# FETCH of structures Twisted could not describe: answered, or a tagged NO, never a half-written response and a close

MALFORMED = [
    b"Subject: point-virgule final\r\nContent-Type: text/plain; charset=utf-8;\r\n\r\ncorps\r\n",
    b"Subject: parametres casses\r\nContent-Type: text/plain;;; x\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''%ff%fe\r\n\r\ncorps\r\n",
    "From: Élodie Dupré <elodie.dupre@medecin.mssante.fr>\r\nSubject: Résultat d'analyse\r\n\r\ncorps\r\n".encode(),
    b"Subject: piece au nom accentue\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\ntexte\r\n'
    b'--b\r\nContent-Type: application/pdf; name="R\xc3\xa9sultat.pdf"\r\n'
    b'Content-Disposition: attachment; filename="R\xc3\xa9sultat.pdf"\r\n\r\n%PDF-1.4\r\n--b--\r\n',
]


def test_fetch_structures_of_malformed_and_8bit_messages(mss):
    raw = RawImap(mss)
    raw.login()
    for n, message in enumerate(MALFORMED):
        raw.send(b"a%d APPEND INBOX {%d}" % (n, len(message)))
        assert raw.line().startswith(b"+ ")
        raw.send(message)
        assert raw.until_tagged(b"a%d" % n)[-1].startswith(b"a%d OK" % n)
    assert raw.command(b"s1 SELECT INBOX")[-1].startswith(b"s1 OK")
    lines = raw.command(b"f1 FETCH 1:* (ENVELOPE BODYSTRUCTURE BODY)")
    assert lines[-1].startswith(b"f1 OK"), lines
    assert [line.split(b" ", 2)[1] for line in lines[:-1]] == [b"1", b"2", b"3", b"4"], lines
    joined = b"\r\n".join(lines)
    assert "Résultat d'analyse".encode() in joined and "Élodie Dupré".encode() in joined  # 8-bit: as literals
    assert "Résultat.pdf".encode() in joined
    still_usable(raw)
    raw.close()


def test_an_error_while_rendering_a_fetch_is_a_tagged_no(mss, monkeypatch):
    inject_for_kit(mss)
    inject_for_kit(mss)
    raw = selected(mss)
    calls = []

    def flags_once_then_boom(message: object) -> list[str]:
        calls.append(message)
        if len(calls) > 1:
            raise RuntimeError("secret-internal-detail")
        return []

    monkeypatch.setattr("simulators.mss.imap.StoredMessage.getFlags", flags_once_then_boom)
    lines = raw.command(b"f1 FETCH 1:2 (UID FLAGS)")
    assert lines[-1].startswith(b"f1 NO [SERVERBUG]"), lines
    assert len(lines) == 2 and lines[0].startswith(b"* 1 FETCH (UID ") and lines[0].endswith(b")"), lines
    assert_clean(lines)
    monkeypatch.undo()
    still_usable(raw)
    assert raw.command(b"f2 FETCH 2 (FLAGS)")[-1].startswith(b"f2 OK")
    raw.close()
