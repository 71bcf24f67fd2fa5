"""TLS on the mail ports, with the stdlib clients: no bearer token in clear text on IMAP either (AUTHENTICATE before
STARTTLS is refused, as SMTP's AUTH is), and IMAP/SMTP over implicit TLS (993/465 style) beside STARTTLS. Journal
entries say what TLS established."""

from __future__ import annotations

import imaplib
import smtplib
import ssl

import pytest

from .conftest import KIT_BAL, Mss, mail, token, xdm_zip, xoauth2
from .test_imap import login
from .test_smtp import auth_xoauth2


def _port(mss: Mss, label: str) -> int:
    return mss.ctx.extras["mss_ports"][label]


def _last(mss: Mss, protocol: str) -> dict:
    entries = [e for e in mss.get("/_bench/journal")["entries"] if e["protocol"] == protocol]
    return entries[-1]


def test_imap_refuses_authenticate_before_starttls(mss):
    with imaplib.IMAP4("127.0.0.1", mss.imap_port, timeout=10) as client:
        assert "STARTTLS" in client.capabilities
        assert not any(c.startswith("AUTH=") for c in client.capabilities)  # nothing usable is advertised
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            client.authenticate("XOAUTH2", lambda _c: xoauth2(KIT_BAL, token()).encode())
        entry = _last(mss, "imap")
        assert entry["operation"] == "IMAP AUTHENTICATE" and entry["status"] == 400 and entry["tls"] is None
        client.starttls(ssl_context=mss.ca)
        assert "AUTH=XOAUTH2" in client.capabilities
        assert login(client)[0] == "OK"


def test_imap_over_implicit_tls(mss):
    with imaplib.IMAP4_SSL("127.0.0.1", _port(mss, "imaps"), ssl_context=mss.ca, timeout=10) as client:
        assert "STARTTLS" not in client.capabilities and "AUTH=XOAUTH2" in client.capabilities
        assert login(client)[0] == "OK"
        assert client.select("INBOX")[0] == "OK"
        with pytest.raises(imaplib.IMAP4.error):
            client._simple_command("STARTTLS")
    entry = _last(mss, "imap")
    assert entry["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert dict(entry["request"]["headers"])["tls"] == "oui"


def test_smtp_over_implicit_tls(mss):
    with smtplib.SMTP_SSL("127.0.0.1", _port(mss, "smtps"), context=mss.ca, timeout=10) as client:
        client.ehlo("lgc.test")
        assert not client.has_extn("starttls")
        assert client.esmtp_features["auth"].split() == ["OAUTHBEARER", "XOAUTH2"]
        assert auth_xoauth2(client, KIT_BAL, token())[0] == 235
        assert client.send_message(mail(xdm=xdm_zip())) == {}
    entry = _last(mss, "smtp")
    assert entry["tls"]["version"] in ("TLSv1.2", "TLSv1.3")


def test_starttls_sessions_are_journaled_with_their_tls_facts(mss):
    with smtplib.SMTP("127.0.0.1", mss.smtp_port, timeout=10) as client:
        client.ehlo("lgc.test")
        client.starttls(context=mss.ca)
        client.ehlo("lgc.test")
    entries = [e for e in mss.get("/_bench/journal")["entries"] if e["operation"] == "SMTP EHLO"]
    assert entries[-2]["tls"] is None and entries[-1]["tls"]["cipher"]  # before and after STARTTLS
    # the address the client connected to, so that a journal tells which port a mail client chose
    assert entries[-1]["url"] == f"smtp://127.0.0.1:{mss.smtp_port}"
    with imaplib.IMAP4("127.0.0.1", mss.imap_port, timeout=10) as client:
        client.starttls(ssl_context=mss.ca)
        client.noop()
    noop = [e for e in mss.get("/_bench/journal")["entries"] if e["operation"] == "IMAP NOOP"][-1]
    assert noop["url"] == f"imap://127.0.0.1:{mss.imap_port}" and noop["tls"]["cipher"]


def test_the_mail_ports_present_the_bench_pki_certificate(mss):
    pem = mss.http.get(mss.server.url + "/_bench/mss/ca.pem").content
    assert pem == mss.ctx.tls.pki.chain_path.read_bytes()
    ctx = ssl.create_default_context(cadata=pem.decode())
    with smtplib.SMTP_SSL("localhost", _port(mss, "smtps"), context=ctx, timeout=10) as client:
        assert client.noop()[0] == 250


def test_a_mail_client_is_attributed_to_the_run_its_certificate_is_bound_to(mss, tmp_path):
    """An LGC's mail client names no run: its client certificate, bound to a run, does (run_attribution.py). The
    run's fault rule applies to its SMTP and IMAP commands, and the journal stamps them, while a client without
    that certificate stays outside the run."""
    bundle = mss.ctx.tls.pki.issue_client("poste-mss", tmp_path, kind="structure")
    ctx = ssl.create_default_context(cafile=str(mss.ctx.tls.pki.chain_path))
    ctx.load_cert_chain(str(bundle.crt_path), str(bundle.key_path))
    pem = bundle.crt_path.read_text(encoding="ascii")
    assert mss.http.put(mss.server.url + "/_bench/runs/pipeline-mss", json={"client_certs": [pem]}).status_code == 200
    try:
        mss.fault({"service": "mss", "run": "pipeline-mss", "operation": "SMTP NOOP",
                   "effect": {"type": "outcome", "name": "mss.smtp-4xx"}})
        with smtplib.SMTP_SSL("127.0.0.1", _port(mss, "smtps"), context=ctx, timeout=10) as client:
            assert client.noop()[0] == 451  # the run's rule
        with smtplib.SMTP_SSL("127.0.0.1", _port(mss, "smtps"), context=mss.ca, timeout=10) as client:
            assert client.noop()[0] == 250  # no certificate: not that run
        with imaplib.IMAP4("127.0.0.1", mss.imap_port, timeout=10) as client:
            client.starttls(ssl_context=ctx)
            assert login(client)[0] == "OK"
        runs = [(e["operation"], e["run"]) for e in mss.get("/_bench/journal")["entries"]
                if e["operation"] in ("SMTP NOOP", "IMAP AUTHENTICATE")]
        assert runs == [("SMTP NOOP", "pipeline-mss"), ("SMTP NOOP", None), ("IMAP AUTHENTICATE", "pipeline-mss")]
    finally:
        mss.http.delete(mss.server.url + "/_bench/runs/pipeline-mss")
