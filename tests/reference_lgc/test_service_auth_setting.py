"""Reference LGC: the "À propos" page's choice of authentication to INSi, the DMP and ON (assertion, or API Pro
Santé Connectée), posted as a browser does, and what the calls then use."""

from __future__ import annotations

import html
import re

from conftest import LGC
from flask import Flask
from flask.testing import FlaskClient
from test_lgc_csrf import form_token

from reference_lgc import service_auth


def modes(page: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-service="(\w+)" data-mode="(\w+)">', page))


def test_the_page_shows_and_changes_the_mode(app: Flask, doctor: FlaskClient) -> None:
    config, db = app.config["LGC"], app.config["DB"]
    assert modes(doctor.get(LGC + "/a-propos").get_data(as_text=True)) == {
        "insi": "assertion", "dmp": "assertion", "on": "assertion"}
    token = form_token(doctor, "/a-propos")
    resp = doctor.post(LGC + "/a-propos/authentification", data={"mode": "api_psc", "csrf_token": token},
                       headers={"Origin": LGC}, follow_redirects=True)
    page = html.unescape(resp.get_data(as_text=True))
    assert modes(page) == {"insi": "api_psc", "dmp": "api_psc", "on": "api_psc"}
    assert "Mode d'authentification aux téléservices enregistré" in page
    dmp = service_auth.endpoint_for(db, "dmp", config.service("dmp").endpoint())
    assert dmp.extra["auth"] == "api_psc"
    mss = config.service("mss").endpoint()
    assert service_auth.endpoint_for(db, "mss", mss) == mss  # MSSanté has its own XOAUTH2 login
    doctor.post(LGC + "/a-propos/authentification", data={"mode": "assertion", "csrf_token": token},
                headers={"Origin": LGC})
    assert "auth" not in service_auth.endpoint_for(db, "on", config.service("on").endpoint()).extra


def test_an_unknown_mode_is_refused_with_a_message(app: Flask, doctor: FlaskClient) -> None:
    token = form_token(doctor, "/a-propos")
    resp = doctor.post(LGC + "/a-propos/authentification", data={"mode": "jeton-magique", "csrf_token": token},
                       headers={"Origin": LGC}, follow_redirects=True)
    assert resp.status_code == 200 and "mode d'authentification inconnu" in html.unescape(
        resp.get_data(as_text=True))
    assert service_auth.chosen(app.config["DB"]) is None
