"""Journal redaction (issue 16): a service's `redact` hook masks secrets in a copy of each exchange before the journal
records it, through both ways in (submit on the hot path, record); what a failing hook could not mask is never
journaled; `redact_http` leaves everything that is not a secret as it was."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from simulators.core.journal import Exchange, Journal, Message
from simulators.core.redact import MASK, journal_redactor, masked, redact_http
from simulators.core.store import Store
from simulators.core.testing import echo_spec

SECRETS, TOKENS = ("client_secret",), ("access_token", "code")


def _exchange() -> Exchange:
    basic = base64.b64encode(b"my-client:hunter2-secret").decode()
    return Exchange(
        id="id1", service="svc", protocol="http", operation="POST /token", received_at=1_800_000_000.0,
        responded_at=1_800_000_000.1, method="POST", url="http://h/token?code=c0de-in-url&state=s#frag", status=200,
        request=Message.of([("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", f"Basic {basic}"),
                            ("Cookie", "a=cookie-one; b=cookie-two")],
                           b"grant_type=authorization_code&code=c0de-in-body&client_secret=hunter2-secret&x=1"),
        response=Message.of([("Content-Type", "application/json"), ("Set-Cookie", "S=sess-value; Path=/; HttpOnly"),
                             ("Location", "http://rp/cb?code=c0de-in-location&state=s")],
                            b'{"access_token": "tok-value", "token_type":"Bearer", "expires_in": 300}'))


def _text(ex: Exchange) -> str:
    return repr(ex.as_dict())


def test_redact_http_masks_secrets_and_keeps_the_rest():
    original = _exchange()
    out = redact_http(original, secrets=SECRETS, tokens=TOKENS)
    text = _text(out)
    for value in ("hunter2-secret", "c0de-in-url", "c0de-in-body", "c0de-in-location", "tok-value", "cookie-one",
                  "cookie-two", "sess-value", base64.b64encode(b"my-client:hunter2-secret").decode()):
        assert value not in text, value
    assert out.url.startswith("http://h/token?code=***MASQUE:") and out.url.endswith("&state=s#frag")
    assert out.request.body.startswith("grant_type=authorization_code&code=***MASQUE:")
    assert f"&client_secret={MASK}&x=1" in out.request.body
    assert out.request.header("authorization") == f"Basic {MASK} (client_id my-client)"
    assert out.response.header("set-cookie").endswith("; Path=/; HttpOnly")
    assert out.response.body == ('{"access_token": "' + masked("tok-value", fingerprint=True)
                                 + '", "token_type":"Bearer", "expires_in": 300}')
    assert out.request.size == original.request.size  # what crossed the wire
    assert "hunter2-secret" in _text(original)  # the front end's own object is not changed


def test_binary_bodies_are_left_alone():
    ex = _exchange()
    ex.response = Message.of([("Content-Type", "application/pdf")], b"\xff\xfe%PDF code=1")
    assert redact_http(ex, secrets=SECRETS, tokens=TOKENS).response.data == b"\xff\xfe%PDF code=1"


@pytest.mark.parametrize("way", ["submit", "record"])
def test_the_journal_applies_the_hook_whichever_way_an_entry_comes_in(tmp_path: Path, way: str):
    journal = Journal(Store(tmp_path / "svc.sqlite3"), "svc",
                      redact=lambda ex: redact_http(ex, secrets=SECRETS, tokens=TOKENS))
    getattr(journal, way)(_exchange())
    [entry] = journal.query()
    assert "hunter2-secret" not in _text(entry) and "tok-value" not in _text(entry)
    assert "grant_type=authorization_code" in entry.request.body


def test_what_a_failing_hook_could_not_mask_is_not_journaled(tmp_path: Path):
    def broken(ex: Exchange) -> Exchange:
        raise RuntimeError("boom")

    journal = Journal(Store(tmp_path / "svc.sqlite3"), "svc", redact=broken)
    journal.submit(_exchange())
    [entry] = journal.query()
    assert "hunter2-secret" not in _text(entry) and "c0de" not in _text(entry)
    assert entry.status == 200 and "masquage des secrets en échec" in entry.error


def test_the_setting_chooses_the_hook():
    hook = echo_spec().redact or (lambda ex: ex)
    assert journal_redactor(hook, {}, "svc") is hook
    assert journal_redactor(hook, {"journal_secrets": "masque"}, "svc") is hook
    assert journal_redactor(hook, {"journal_secrets": "clair"}, "svc") is None
    with pytest.raises(ValueError, match="journal_secrets"):
        journal_redactor(hook, {"journal_secrets": True}, "svc")


@pytest.mark.parametrize(("mode", "kept"), [("masque", False), ("clair", True)])
def test_every_service_masks_credential_headers_by_default(serve, mode, kept):
    """A service without its own redactor (DMP, ON… receive PSC access tokens as Bearer headers) still masks the
    Authorization and cookie values, over the wire and through the journal's own API."""
    import httpx
    from core_support import make_sim

    server = serve(make_sim(settings={"journal_secrets": mode}))
    resp = httpx.post(f"{server.url}/echo", content=b"plain body stays",
                      headers={"Authorization": "Bearer live-token-123", "Cookie": "lgc_session=sess-456"})
    assert resp.status_code == 200
    entries = httpx.get(f"{server.url}/_bench/journal").json()["entries"]
    (entry,) = [e for e in entries if e["operation"] == "POST /echo"]
    text = repr(entry)
    assert ("live-token-123" in text) is kept and ("sess-456" in text) is kept
    assert "plain body stays" in text
    if not kept:
        assert "Bearer ***MASQUE:" in text
