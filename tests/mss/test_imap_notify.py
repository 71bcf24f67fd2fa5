"""New mail is announced to IMAP sessions: untagged EXISTS/RECENT before the tagged completion of any command
(RFC 3501 §7.3.1, §5.2), EXPUNGE only where §7.4.1 allows it, and at once during IDLE (RFC 2177), whether the
message came over SMTP or through the control API."""

from __future__ import annotations

import time

from imapclient import IMAPClient

from .imap_raw import RawImap, imapclient_for, inject_for_kit
from .test_imap import message_for_kit

# New mail is announced (RFC 3501 §7.3.1, §7.4.1, §5.2; RFC 2177)


def test_noop_and_other_commands_announce_new_mail(mss):
    message_for_kit(mss)
    raw = RawImap(mss)
    raw.login()
    lines = raw.command(b"s1 SELECT INBOX")
    assert b"* 1 EXISTS" in lines and b"* 1 RECENT" in lines
    inject_for_kit(mss)  # delivered by the control API
    lines = raw.command(b"n1 NOOP")
    assert lines[:-1] == [b"* 2 EXISTS", b"* 2 RECENT"], lines
    assert len(raw.command(b"n2 NOOP")) == 1  # announced once only
    message_for_kit(mss)  # delivered over SMTP; announced by a FETCH too (EXISTS may be sent anywhere)
    lines = raw.command(b"f1 FETCH 1 (FLAGS)")
    assert lines[1:] == [b"* 3 EXISTS", b"* 3 RECENT", b"f1 OK FETCH completed"], lines
    assert lines[0].startswith(b"* 1 FETCH (FLAGS (")
    assert any(line.startswith(b"* 3 FETCH (FLAGS (") for line in raw.command(b"f2 FETCH 3 (FLAGS)"))
    raw.close()


def test_expunge_by_another_session_waits_for_a_command_that_allows_it(mss):
    message_for_kit(mss)
    inject_for_kit(mss)
    watcher = RawImap(mss)
    watcher.login()
    watcher.command(b"s1 SELECT INBOX")
    other = RawImap(mss)
    other.login()
    other.command(b"s1 SELECT INBOX")
    assert other.command(b"d1 STORE 1 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"d1 OK")
    assert other.command(b"d2 EXPUNGE")[:-1] == [b"* 1 EXPUNGE"]
    # RFC 3501 §7.4.1: no EXPUNGE during FETCH, STORE or SEARCH; sequence numbers stay those the client knows.
    lines = watcher.command(b"f1 FETCH 2 (UID)")
    assert not any(line.endswith(b"EXPUNGE") for line in lines)
    assert any(line.startswith(b"* 2 FETCH (UID ") for line in lines), lines
    assert not any(line.endswith(b"EXPUNGE") for line in watcher.command(b"f2 SEARCH ALL"))
    assert watcher.command(b"n1 NOOP")[:-1] == [b"* 1 EXPUNGE"]
    lines = watcher.command(b"f3 SEARCH ALL")
    assert lines[0] == b"* SEARCH 1"
    watcher.close()
    other.close()


def test_idle_is_told_of_new_mail_at_once(mss):
    message_for_kit(mss)
    idler = imapclient_for(mss)
    idler.select_folder("INBOX")
    idler.idle()
    try:
        other = imapclient_for(mss)  # IDLE does not hold up other connections
        assert other.select_folder("INBOX")[b"EXISTS"] == 1
        other.logout()
        message_for_kit(mss)  # over SMTP
        seen = _idle_until(idler, (2, b"EXISTS"))
        assert (2, b"RECENT") in seen or (2, b"RECENT") in _idle_until(idler, (2, b"RECENT"))
        inject_for_kit(mss)  # over the control API
        _idle_until(idler, (3, b"EXISTS"))
    finally:
        idler.idle_done()
    assert idler.noop()[0].startswith(b"NOOP")
    idler.logout()


def _idle_until(client: IMAPClient, wanted: tuple, timeout: float = 10) -> list:
    seen: list = []
    deadline = time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline:
        seen += client.idle_check(timeout=max(0.1, deadline - time.monotonic()))
    assert wanted in seen, seen
    return seen


def test_idle_continuation_and_done_on_the_wire(mss):
    raw = RawImap(mss)
    raw.login()
    raw.command(b"s1 SELECT INBOX")
    raw.send(b"i1 IDLE")
    assert raw.line().startswith(b"+ ")  # RFC 3501 continue-req: "+" SP text
    inject_for_kit(mss)
    assert raw.line() == b"* 1 EXISTS"
    assert raw.line() == b"* 1 RECENT"
    raw.send(b"DONE")
    assert raw.until_tagged(b"i1") == [b"i1 OK IDLE terminated"]
    raw.send(b"i2 IDLE")
    assert raw.line().startswith(b"+ ")
    raw.send(b"NOT-DONE")
    assert raw.until_tagged(b"i2")[-1].startswith(b"i2 BAD")
    assert raw.command(b"n1 NOOP")[-1].startswith(b"n1 OK")
    raw.close()


def test_append_announces_only_the_selected_folder(mss):
    message_for_kit(mss)
    raw = RawImap(mss)
    raw.login()
    raw.command(b"s1 SELECT INBOX")
    draft = b"Subject: brouillon\r\n\r\ncorps\r\n"
    raw.send(b"a1 APPEND Sent (\\Seen) {%d}" % len(draft))
    assert raw.line().startswith(b"+ ")
    raw.send(draft)
    assert raw.until_tagged(b"a1") == [b"a1 OK APPEND completed"]  # Sent's count is not INBOX's EXISTS
    raw.send(b"a2 APPEND INBOX {%d}" % len(draft))
    assert raw.line().startswith(b"+ ")
    raw.send(draft)
    assert raw.until_tagged(b"a2") == [b"* 2 EXISTS", b"* 2 RECENT", b"a2 OK APPEND completed"]
    raw.send(b"a3 APPEND Nope {%d}" % len(draft))
    assert raw.line().startswith(b"+ ")
    raw.send(draft)
    assert raw.until_tagged(b"a3") == [b"a3 NO [TRYCREATE] No such mailbox"]
    assert raw.command(b"c1 COPY 1 Nope") == [b"c1 NO [TRYCREATE] No such mailbox"]
    assert raw.command(b"c2 COPY 1 Sent")[-1].startswith(b"c2 OK")
    assert raw.command(b"n1 NOOP") == [b"n1 OK NOOP No operation performed"]
    raw.close()
