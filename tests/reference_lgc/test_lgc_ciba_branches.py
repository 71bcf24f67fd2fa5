"""The reference LGC's CIBA login (SC.PSC.13) on the branches a scenario does not reach: PSC asking it to slow
down, the request expiring with no answer, and a refusal. Browser requests are made with Flask's test client; PSC
is the simulator, its phone silent (no automatic answer), its clock and decisions steered by its control API."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import LGC
from flask import Flask
from flask.testing import FlaskClient

from reference_lgc.app import create_app
from reference_lgc.config import LgcConfig, PscSettings
from simulators.core.server import serve_in_thread
from simulators.core.service import SimConfig
from simulators.core.simulator import build_simulator
from simulators.psc.app import SPEC as PSC

REALM = "/auth/realms/esante-wallet"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def psc() -> Iterator[str]:
    with serve_in_thread(build_simulator(PSC, SimConfig(settings={"ciba_auto_approve_s": None}))) as server:
        yield server.url


@pytest.fixture
def browser(psc: str, tmp_path: Path) -> Iterator[tuple[Flask, FlaskClient]]:
    httpx.post(psc + "/_bench/reset").raise_for_status()
    app = create_app(LgcConfig(data_dir=tmp_path, public_url=LGC, psc=PscSettings(issuer=psc + REALM)))
    yield app, app.test_client()


def start(client: FlaskClient) -> str:
    page = client.get(LGC + "/connexion").get_data(as_text=True)
    resp = client.post(LGC + "/connexion/ciba", data={"national_id": "899700366240",
                                                       "csrf_token": TOKEN.search(page).group(1)},
                       headers={"Origin": LGC})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/connexion/ciba"), resp.get_data(True)
    with client.session_transaction(base_url=LGC) as s:
        return s["ciba"]["auth_req_id"]


def poll_now(client: FlaskClient) -> httpx.Response:
    """The waiting page, at a moment its next poll is due (as when the page reloads itself)."""
    with client.session_transaction(base_url=LGC) as s:
        s["ciba"] = {**s["ciba"], "next_poll": 0}
    return client.get(LGC + "/connexion/ciba")


def session_ciba(client: FlaskClient) -> dict | None:
    with client.session_transaction(base_url=LGC) as s:
        return s.get("ciba")


def flash_after(client: FlaskClient, resp) -> str:
    assert resp.status_code == 302 and "/connexion" in resp.headers["Location"]
    return " ".join(html.unescape(client.get(LGC + resp.headers["Location"]).get_data(as_text=True)).split())


def test_slow_down_lengthens_the_interval_for_good(browser) -> None:
    _app, client = browser
    start(client)
    interval = session_ciba(client)["interval"]
    assert poll_now(client).status_code == 200  # authorization_pending: the waiting page again
    assert session_ciba(client)["interval"] == interval
    assert poll_now(client).status_code == 200  # polled again at once: PSC says slow_down
    assert session_ciba(client)["interval"] == interval + 5
    assert poll_now(client).status_code == 200
    assert session_ciba(client)["interval"] == interval + 10  # and it never shrinks back


def test_an_expired_request_says_so_and_ends(browser, psc: str) -> None:
    _app, client = browser
    start(client)
    httpx.post(psc + "/_bench/clock", json={"advance": "PT10M"}).raise_for_status()
    page = flash_after(client, poll_now(client))
    assert "la demande a expiré sans réponse : recommencez" in page
    assert session_ciba(client) is None


def test_a_refusal_on_the_phone_says_so_and_opens_no_session(browser, psc: str) -> None:
    app, client = browser
    auth_req_id = start(client)
    httpx.post(psc + "/_bench/state", json={"ciba": {"auth_req_id": auth_req_id, "decision": "refuse"}}
               ).raise_for_status()
    page = flash_after(client, poll_now(client))
    assert "la connexion a été refusée sur le téléphone" in page
    assert session_ciba(client) is None and not app.config["DB"].all("SELECT 1 FROM sessions")
