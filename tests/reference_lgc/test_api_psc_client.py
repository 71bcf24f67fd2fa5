"""The reference LGC's API Pro Santé Connectée client (services/api_psc.py) against the PSC simulator (token
exchange) and the INSi and ON simulators judging the API token (INSi in auth_mode "psc": token and assertion
required). The PSC access token comes from a CIBA login approved through PSC's control API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from sims_dmp import CLERICO, TEST_OID, running_dmp
from sims_dmp import KIT as DMP_KIT
from sims_identity import KIT, Sim, running

from reference_lgc.services import dmp, insi, on
from reference_lgc.services.api_psc import ApiPsc, access_for
from reference_lgc.services.context import CallContext, Endpoint, ServiceRefused, ServiceUnavailable, Software
from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.insi.app import SPEC as INSI
from simulators.on.app import SPEC as ON
from simulators.psc.app import SPEC as PSC

REALM = "/auth/realms/esante-wallet"
CLIENT = ("segur-bench-lgc", "segur-bench-lgc-secret")  # the PSC simulator's default client
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


@pytest.fixture(scope="module")
def psc_url() -> Iterator[str]:
    with serve_in_thread(build_simulator(PSC, SimConfig(settings={}))) as server:
        yield server.url


@pytest.fixture(scope="module")
def insi_sim(psc_url: str) -> Iterator[Sim]:
    with running(INSI, "/lps", auth_mode="psc", psc_issuer=psc_url + REALM,
                 psc_audience="api-pro-sante-connectee") as sim:
        yield sim


@pytest.fixture(scope="module")
def on_sim(psc_url: str) -> Iterator[Sim]:
    with running(ON, "/eprescription", psc_issuer=psc_url + REALM, psc_audience="api-pro-sante-connectee") as sim:
        yield sim


def psc_login(psc_url: str) -> str:
    """A PSC access token for KIT, by CIBA approved through the control API."""
    issuer = psc_url + REALM
    req = httpx.post(issuer + "/protocol/openid-connect/ext/ciba/auth", auth=CLIENT, data={
        "scope": "openid scope_all", "acr_values": "eidas1", "login_hint": KIT.national_id, "binding_message": "07"})
    assert req.status_code == 200, req.text
    auth_req_id = req.json()["auth_req_id"]
    httpx.post(psc_url + "/_bench/state", json={"ciba": {"auth_req_id": auth_req_id, "decision": "approve"}}
               ).raise_for_status()
    tok = httpx.post(issuer + "/protocol/openid-connect/token", auth=CLIENT,
                     data={"grant_type": "urn:openid:params:grant-type:ciba", "auth_req_id": auth_req_id})
    assert tok.status_code == 200, tok.text
    return tok.json()["access_token"]


def exchanges(psc_url: str) -> list[dict]:
    entries = httpx.get(psc_url + "/_bench/journal").json()["entries"]
    return [e for e in entries if e["operation"] == "token" and EXCHANGE.replace(":", "%3A") in
            (e["request"]["body"] or "")]


def api_ctx(sim: Sim, api: ApiPsc, subject: str | None, **extra: str) -> CallContext:
    endpoint = Endpoint(sim.url + sim.path, timeout=5, extra={"auth": "api_psc", **extra})
    return CallContext(Software(), KIT, endpoint, api=access_for(api, endpoint, KIT.national_id, lambda: subject))


def search(ctx: CallContext) -> insi.InsiResult:
    return insi.search_by_traits(ctx, birth_name="CLERICO", first_names=["COME"], sex="M",
                                 birth_date="1943-11-07")


def authorization_of(exchange: insi.Exchange, sim: Sim) -> str:
    """The Authorization header INSi received for this exchange, from its journal (by wsa:MessageID)."""
    for e in sim.control("GET", "/journal")["entries"]:
        if exchange.message_id in (e["request"]["body"] or ""):
            return dict((k.lower(), v) for k, v in e["request"]["headers"]).get("authorization", "")
    raise AssertionError(f"exchange {exchange.message_id} not in the INSi journal")


def test_one_exchange_then_the_api_token_is_reused(psc_url: str, insi_sim: Sim, on_sim: Sim) -> None:
    api = ApiPsc(psc_url + REALM + "/protocol/openid-connect/token", *CLIENT)
    subject = psc_login(psc_url)
    before = len(exchanges(psc_url))
    first = search(api_ctx(insi_sim, api, subject))
    second = search(api_ctx(insi_sim, api, subject))
    assert first.code == second.code == "00"
    assert len(exchanges(psc_url)) == before + 1  # the API token is kept, not exchanged at every call
    sent = exchanges(psc_url)[-1]["request"]["body"]
    assert "audience=api-pro-sante-connectee" in sent
    assert "subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token" in sent
    # INSi saw a bearer (masked in its journal, with the fingerprint of the API token), and still the assertion
    assert authorization_of(first.exchange, insi_sim).startswith("Bearer ***MASQUE:")
    assert b'NameQualifier="PSC"' in first.exchange.request
    # ON judges the same API token when sent (auth = "api_psc": the assertion as well)
    assert on.search_prescriptions(api_ctx(on_sim, api, subject), ins="143110095083713",
                                   oid="1.2.250.1.213.1.4.8") == []
    assert len(exchanges(psc_url)) == before + 1  # one audience, one API token for both services


def test_a_refused_api_token_is_exchanged_again_once(psc_url: str, insi_sim: Sim) -> None:
    api = ApiPsc(psc_url + REALM + "/protocol/openid-connect/token", *CLIENT)
    subject = psc_login(psc_url)
    # an API token for another API sits in the cache: INSi refuses it (401), the LGC exchanges anew
    other = httpx.post(api.token_endpoint, auth=CLIENT, data={
        "grant_type": EXCHANGE, "subject_token": subject,
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token", "audience": "api-dmp"}).json()
    api._cache[(KIT.national_id, "api-pro-sante-connectee")] = (other["access_token"], 2e9)
    seen: list[insi.Exchange] = []
    before = len(exchanges(psc_url))
    result = insi.search_by_traits(api_ctx(insi_sim, api, subject), birth_name="CLERICO", first_names=["COME"],
                                   sex="M", birth_date="1943-11-07", on_exchange=seen.append)
    assert result.code == "00"
    assert [e.http_status for e in seen] == [401, 200]  # both traced; no login in between
    assert len(exchanges(psc_url)) == before + 1


def test_a_dead_psc_session_asks_for_a_new_login(psc_url: str, insi_sim: Sim) -> None:
    api = ApiPsc(psc_url + REALM + "/protocol/openid-connect/token", *CLIENT)
    with pytest.raises(ServiceRefused) as refused:
        search(api_ctx(insi_sim, api, "not-a-psc-token"))
    assert refused.value.code == "psc_expire" and "reconnectez-vous" in refused.value.reason
    with pytest.raises(ServiceRefused) as none:
        search(api_ctx(insi_sim, api, None))
    assert none.value.code == "psc_expire"


def test_psc_unreachable_is_a_retryable_failure(insi_sim: Sim) -> None:
    api = ApiPsc("http://127.0.0.1:9/auth/realms/esante-wallet/protocol/openid-connect/token", *CLIENT, timeout=2)
    with pytest.raises(ServiceUnavailable, match="Pro Santé Connect"):
        search(api_ctx(insi_sim, api, "whatever"))


def test_other_modes_send_no_api_token(insi_sim: Sim) -> None:
    ctx = insi_sim.ctx()
    assert access_for(None, ctx.endpoint, KIT.national_id, lambda: None) is None
    with pytest.raises(ServiceRefused, match="n'est pas configuré"):
        access_for(None, replace(ctx.endpoint, extra={"auth": "api_psc"}), KIT.national_id, lambda: None)


def test_the_dmp_in_api_psc_mode_gets_the_api_token_with_the_vihf(psc_url: str) -> None:
    """The DMP in its "psc" mode checks the API token against the VIHF's NameID (SC.DMP/PSC.40's trust-space mode)."""
    api = ApiPsc(psc_url + REALM + "/protocol/openid-connect/token", *CLIENT)
    subject = psc_login(psc_url)
    with running_dmp(auth_mode="psc", psc_issuer=psc_url + REALM, psc_audience="api-pro-sante-connectee") as sim:
        plain = sim.ctx(professional=DMP_KIT)
        endpoint = replace(plain.endpoint, extra={"auth": "api_psc"})
        ctx = replace(plain, endpoint=endpoint,
                      api=access_for(api, endpoint, DMP_KIT.national_id, lambda: subject))
        assert dmp.test_existence(ctx, CLERICO, TEST_OID).exists
        # without the API token (the assertion alone), the DMP in this mode refuses
        with pytest.raises(ServiceRefused):
            dmp.test_existence(plain, CLERICO, TEST_OID)
        bearers = [dict((k.lower(), v) for k, v in e["request"]["headers"]).get("authorization", "")
                   for e in sim.control("GET", "/journal")["entries"]]
        assert bearers[0].startswith("Bearer ***MASQUE:") and bearers[-1] == ""
