"""Mailbox opening and listing on the wire: EXAMINE is read-only (RFC 3501 §6.3.2), FETCH BODY[] sets \\Seen in a
read-write session (§6.4.5), SELECT's required untagged responses (§6.3.1), LIST mailbox attributes (RFC 3348,
RFC 6154) and continuation requests with their space (§7.5)."""

from __future__ import annotations

import re

import pytest
from imapclient.exceptions import IMAPClientError

from .conftest import KIT_BAL, b64, token, xoauth2
from .imap_raw import RawImap, imapclient_for
from .test_imap import message_for_kit

# EXAMINE is read-only (RFC 3501 §6.3.2), FETCH BODY[] sets \Seen in a read-write session (§6.4.5)


def test_examine_is_read_only_and_select_read_write(mss):
    message_for_kit(mss)
    raw = RawImap(mss)
    raw.login()
    lines = raw.command(b"e1 EXAMINE INBOX")
    assert lines[-1].startswith(b"e1 OK [READ-ONLY]")
    assert b"* OK [PERMANENTFLAGS ()] No permanent flags permitted" in lines
    assert raw.command(b"e2 STORE 1 +FLAGS (\\Seen)")[-1].startswith(b"e2 NO")
    assert raw.command(b"e3 UID STORE 1:* +FLAGS (\\Flagged)")[-1].startswith(b"e3 NO")
    raw.command(b"e4 FETCH 1 (BODY[])")
    lines = raw.command(b"e5 FETCH 1 (FLAGS)")
    assert b"\\Seen" not in b"".join(lines)
    raw.close()
    client = imapclient_for(mss)
    info = client.select_folder("INBOX")
    assert info[b"READ-WRITE"]
    data = client.fetch([1], ["BODY[]"])[1]
    assert b"\\Seen" in data.get(b"FLAGS", ())  # flag change reported with the FETCH (SHOULD, §6.4.5)
    assert b"\\Seen" in client.get_flags([1])[1]
    client.unselect_folder()
    client.select_folder("INBOX", readonly=True)
    with pytest.raises(IMAPClientError):
        client.add_flags([1], [b"\\Flagged"])
    client.logout()

# SELECT / LIST / continuation formats (RFC 3501 §6.3.1, §6.3.8, §7.5; RFC 6154; RFC 3348)


def test_select_returns_the_required_untagged_responses(mss):
    message_for_kit(mss)
    raw = RawImap(mss)
    raw.login()
    lines = raw.command(b"s1 SELECT INBOX")
    assert lines[-1].startswith(b"s1 OK [READ-WRITE]")
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)" in lines
    assert b"* 1 EXISTS" in lines and b"* 1 RECENT" in lines
    permanent = next(line for line in lines if line.startswith(b"* OK [PERMANENTFLAGS ("))
    assert re.fullmatch(rb"\* OK \[PERMANENTFLAGS \([^)]*\\Seen[^)]*\\\*\)\] .+", permanent), permanent
    assert b"* OK [UNSEEN 1] First unseen message" in lines
    validity = next(line for line in lines if line.startswith(b"* OK [UIDVALIDITY "))
    assert re.fullmatch(rb"\* OK \[UIDVALIDITY \d+\] .+", validity)
    uidnext = next(line for line in lines if line.startswith(b"* OK [UIDNEXT "))
    assert re.fullmatch(rb"\* OK \[UIDNEXT \d+\] .+", uidnext)
    uid_lines = raw.command(b"u1 UID SEARCH ALL")
    uid = int(uid_lines[0].split()[-1])
    assert int(uidnext.split()[3].rstrip(b"]")) > uid
    # \Recent belongs to the first session that saw the message (RFC 3501 §2.3.2).
    second = RawImap(mss)
    second.login()
    assert b"* 0 RECENT" in second.command(b"s1 SELECT INBOX")
    second.close()
    status = raw.command(b"st1 STATUS INBOX (UIDNEXT MESSAGES)")
    assert int(re.search(rb"UIDNEXT (\d+)", status[0]).group(1)) == int(uidnext.split()[3].rstrip(b"]"))
    raw.close()


def test_list_returns_mailbox_attributes(mss):
    raw = RawImap(mss)
    raw.login()
    caps = raw.command(b"c1 CAPABILITY")[0]
    assert b" SPECIAL-USE" in caps and b" CHILDREN" in caps
    lines = raw.command(b'l1 LIST "" "*"')
    assert lines[-1].startswith(b"l1 OK")
    listed = {re.search(rb'"/" "?([^"]+)"?$', line).group(1): re.match(rb"\* LIST \(([^)]*)\)", line).group(1)
              for line in lines[:-1]}
    assert listed == {b"INBOX": b"\\HasNoChildren", b"Sent": b"\\HasNoChildren \\Sent"}, lines
    raw.close()


def test_continuation_requests_have_a_space(mss):
    raw = RawImap(mss)
    raw.send(b"a1 AUTHENTICATE XOAUTH2")
    assert raw.line() == b"+ "  # empty challenge: "+" SP and an empty base64 string
    raw.send(b64(xoauth2(KIT_BAL, token()).encode()).encode())
    assert raw.until_tagged(b"a1")[-1].startswith(b"a1 OK")
    raw.send(b"s1 SELECT {5}")
    continuation = raw.line()
    assert continuation.startswith(b"+ ") and len(continuation) > 2
    raw.send(b"INBOX")
    assert raw.until_tagged(b"s1")[-1].startswith(b"s1 OK")
    raw.close()


def test_fixed_folders_refuse_changes_in_ascii(mss):
    raw = RawImap(mss)
    raw.login()
    for tag, command in ((b"m1", b"CREATE Projets"), (b"m2", b"DELETE Sent"), (b"m3", b"RENAME Sent Archives"),
                         (b"m4", b"DELETE INBOX")):
        lines = raw.command(tag + b" " + command)
        assert lines[-1].startswith(tag + b" NO "), lines
        assert all(line.isascii() for line in lines), lines
    status = raw.command(b"st1 STATUS Sent (MESSAGES RECENT UIDNEXT UNSEEN)")
    assert re.fullmatch(rb"\* STATUS Sent \(MESSAGES 0 RECENT 0 UIDNEXT \d+ UNSEEN 0\)", status[0]), status
    raw.close()
