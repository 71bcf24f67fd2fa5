"""End to end with the Pro Santé Connect simulator: a CIBA access token (JWKS fetched over HTTP by the core
validator) opens KIT's mailbox over SMTP and IMAP; an expired one does not."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
from collections.abc import Iterator

import httpx
import pytest

from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.mss.app import SPEC as MSS
from simulators.psc.app import SPEC as PSC

from .conftest import CLERICO_BAL, KIT, KIT_BAL, mail, xdm_zip, xoauth2

BASE = "/auth/realms/esante-wallet"
AUTH = ("segur-bench-lgc", "segur-bench-lgc-secret")


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[str, object]]:
    with serve_in_thread(build_simulator(PSC, SimConfig())) as psc:
        settings = {"psc_issuer": psc.url + BASE, "smtp_port": 0, "imap_port": 0}
        with serve_in_thread(build_simulator(MSS, SimConfig(settings=settings))) as mss:
            yield psc.url, mss


def psc_token(psc_url: str) -> str:
    oidc = psc_url + BASE + "/protocol/openid-connect/"
    req = httpx.post(oidc + "ext/ciba/auth", auth=AUTH, data={
        "scope": "openid scope_all", "acr_values": "eidas1", "login_hint": KIT, "binding_message": "42"}).json()
    httpx.post(psc_url + "/_bench/state", json={"ciba": {"auth_req_id": req["auth_req_id"], "decision": "approve"}})
    resp = httpx.post(oidc + "token", auth=AUTH, data={"grant_type": "urn:openid:params:grant-type:ciba",
                                                       "auth_req_id": req["auth_req_id"]})
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def test_psc_token_opens_the_mailbox_over_smtp_and_imap(pair):
    psc_url, mss = pair
    ports = mss.sim.ctx.extras["mss_ports"]
    ca = httpx.get(mss.url + "/_bench/mss/ca.pem").text
    context = ssl.create_default_context(cadata=ca)
    tok = psc_token(psc_url)
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as client:
        client.starttls(context=context)
        client.ehlo("lgc.test")
        client.auth("XOAUTH2", lambda c=None: xoauth2(KIT_BAL, tok) if c is None else "")
        assert client.send_message(mail(xdm=xdm_zip())) == {}
    with imaplib.IMAP4("127.0.0.1", ports["imap"], timeout=10) as client:
        client.starttls(ssl_context=context)
        assert client.authenticate("XOAUTH2", lambda _: xoauth2(KIT_BAL, tok).encode())[0] == "OK"
        assert client.select("Sent") == ("OK", [b"1"])
    assert httpx.get(mss.url + f"/_bench/mss/mailboxes/{CLERICO_BAL}").json()["messages"][0]["x_mss"]

    httpx.post(mss.url + "/_bench/clock", json={"advance": "P1D"})  # the token is now expired for MSSanté
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as client:
        client.starttls(context=context)
        client.ehlo("lgc.test")
        with pytest.raises(smtplib.SMTPAuthenticationError, match="expir"):
            client.auth("XOAUTH2", lambda c=None: xoauth2(KIT_BAL, tok) if c is None else "")
