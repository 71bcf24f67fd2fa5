"""The reference LGC's reading of an MSSanté auto-configuration document (SC.MSS/CONF.04): documents written here
by hand in the clientConfig 1.1 shape, and one read over HTTP from the MSSanté simulator."""

from __future__ import annotations

import pytest

from reference_lgc.services.context import Endpoint, ServiceRefused
from reference_lgc.services.mss_autoconfig import autoconfig_url, fetch, parse

DOC = b"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1"><emailProvider id="op.example">
  <incomingServer type="imap"><hostname>imap.op.example</hostname><port>993</port><socketType>SSL</socketType>
    <authentication>OAuth2</authentication></incomingServer>
  <incomingServer type="imap"><hostname>imap.op.example</hostname><port>143</port><socketType>STARTTLS</socketType>
    <authentication>password-cleartext</authentication><authentication>OAuth2</authentication></incomingServer>
  <outgoingServer type="smtp"><hostname>smtp.op.example</hostname><port>587</port><socketType>STARTTLS</socketType>
    <authentication>OAuth2</authentication></outgoingServer>
</emailProvider></clientConfig>"""


def test_the_starttls_oauth2_servers_are_taken() -> None:
    servers = parse(DOC, "https://op.example/.well-known/autoconfig/mail/config-v1.1.xml")
    assert servers.as_extra() == {"smtp_host": "smtp.op.example", "smtp_port": "587",
                                  "imap_host": "imap.op.example", "imap_port": "143"}


@pytest.mark.parametrize(("doc", "words"), [
    (DOC.replace(b"<socketType>STARTTLS</socketType>\n    <authentication>OAuth2", b"<socketType>SSL</socketType>"
                 b"\n    <authentication>OAuth2"), "SMTP"),
    (DOC.replace(b"<authentication>password-cleartext</authentication><authentication>OAuth2</authentication>",
                 b"<authentication>password-cleartext</authentication>"), "IMAP"),
    (b"<html><body>not found</body></html>", "<html>"),
    (b"<clientConfig", "illisible"),
    (b'<?xml version="1.0"?><!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]><clientConfig>&x;</clientConfig>',
     "n'offre pas"),
])
def test_documents_the_lgc_cannot_use_are_refused_in_words(doc: bytes, words: str) -> None:
    with pytest.raises(ServiceRefused) as refused:
        parse(doc)
    assert refused.value.code == "format" and words in refused.value.reason


def test_the_document_of_the_mss_simulator(tmp_path) -> None:
    from simulators.core.server import serve_in_thread
    from simulators.core.service import SimConfig
    from simulators.core.simulator import build_simulator
    from simulators.mss.app import SPEC

    config = SimConfig(settings={"smtp_port": 0, "imap_port": 0, "mailboxes_file": ""}, data_dir=tmp_path)
    with serve_in_thread(build_simulator(SPEC, config)) as server:
        endpoint = Endpoint(server.url, timeout=5)
        assert autoconfig_url(endpoint) == server.url + "/.well-known/autoconfig/mail/config-v1.1.xml"
        servers = fetch(endpoint)
        with pytest.raises(ServiceRefused, match="HTTP 404"):
            fetch(Endpoint(server.url, timeout=5, extra={"autoconfig_url": server.url + "/nulle-part.xml"}))
    assert servers.smtp_host == servers.imap_host == "127.0.0.1"
    assert servers.smtp_port > 0 and servers.imap_port > 0 and servers.smtp_port != servers.imap_port
