"""Reference LGC: cross-site request forgery (issue 16). Every bench service listens on 127.0.0.1, so a page of any
of them is same-site with the LGC and the browser sends the doctor's SameSite=Lax cookie with a forged POST. The
LGC must refuse a POST without its form token, and a POST from another origin even with a valid token.

Requests are built here with Flask's test client, as a browser (or a hostile page) would send them; only the
login is set up directly in the base (a PSC session row), since it is not what is tested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import LGC
from flask import Flask
from flask.testing import FlaskClient

from reference_lgc.app import create_app
from reference_lgc.config import LgcConfig

OTHER_BENCH_PORT = "http://127.0.0.1:8104"  # the PSC simulator's port: same site, another origin
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
NEW_PATIENT = {"birth_name": "FORGE", "first_names": "ALICE", "sex": "F", "birth_date": "1980-02-03",
               "birthplace_cog": "75056"}
TEMPLATES = Path(__file__).resolve().parents[2] / "reference_lgc" / "templates"


def patients(app: Flask) -> int:
    return app.config["DB"].one("SELECT count(*) AS n FROM patients")["n"]


def form_token(client: FlaskClient, path: str) -> str:
    page = client.get(LGC + path)
    assert page.status_code == 200, page.status_code
    found = TOKEN.search(page.get_data(as_text=True))
    assert found, f"no csrf_token field in {path}"
    return found.group(1)


def test_a_post_without_token_is_refused_and_creates_no_patient(app: Flask, doctor: FlaskClient):
    before = patients(app)
    resp = doctor.post(LGC + "/patients/nouveau", data=NEW_PATIENT)
    assert resp.status_code == 403
    page = resp.get_data(as_text=True)
    assert "Action refusée par sécurité" in page and "jeton de sécurité" in page and "Rechargez la page" in page
    assert patients(app) == before


def test_a_post_with_the_forms_token_creates_the_patient(app: Flask, doctor: FlaskClient):
    before = patients(app)
    token = form_token(doctor, "/patients/nouveau")
    resp = doctor.post(LGC + "/patients/nouveau", data={**NEW_PATIENT, "csrf_token": token},
                       headers={"Origin": LGC})
    assert resp.status_code == 302 and re.search(r"/patients/\d+$", resp.headers["Location"])
    assert patients(app) == before + 1


def test_a_token_of_another_session_is_refused(app: Flask, doctor: FlaskClient):
    stranger = app.test_client()  # another browser: its token is bound to its own session
    token = form_token(stranger, "/connexion")
    before = patients(app)
    assert doctor.post(LGC + "/patients/nouveau", data={**NEW_PATIENT, "csrf_token": token}).status_code == 403
    assert doctor.post(LGC + "/patients/nouveau", data={**NEW_PATIENT, "csrf_token": "x" * 40}).status_code == 403
    assert patients(app) == before


@pytest.mark.parametrize("headers", [
    {"Origin": OTHER_BENCH_PORT},
    {"Origin": "http://localhost:8000"},  # same port, another host name: another origin
    {"Origin": "https://127.0.0.1:8000"},
    {"Origin": "null"},  # sandboxed frame, data: URL
    {"Referer": OTHER_BENCH_PORT + "/_bench/psc/ciba"},  # no Origin: the Referer decides
    {"Origin": OTHER_BENCH_PORT, "Referer": LGC + "/patients/nouveau"},  # Origin wins over a Referer
])
def test_a_foreign_origin_is_refused_even_with_a_valid_token(app: Flask, doctor: FlaskClient, headers):
    token = form_token(doctor, "/patients/nouveau")
    before = patients(app)
    resp = doctor.post(LGC + "/patients/nouveau", data={**NEW_PATIENT, "csrf_token": token}, headers=headers)
    assert resp.status_code == 403
    assert "une autre origine que le LGC" in resp.get_data(as_text=True)
    assert patients(app) == before


@pytest.mark.parametrize("headers", [{"Origin": LGC}, {"Origin": "HTTP://127.0.0.1:8000"},
                                     {"Referer": LGC + "/patients/nouveau"}, {}])
def test_the_lgcs_own_origin_is_accepted(app: Flask, doctor: FlaskClient, headers):
    token = form_token(doctor, "/patients/nouveau")
    resp = doctor.post(LGC + "/patients/nouveau", data={**NEW_PATIENT, "csrf_token": token}, headers=headers)
    assert resp.status_code == 302


def test_the_published_origin_is_accepted_behind_a_proxy(tmp_path: Path):
    """A proxy may reach the LGC under another name than the browser: `public_url` is the LGC's origin too."""
    app = create_app(LgcConfig(data_dir=tmp_path, public_url="https://lgc.cabinet.example"))
    client = app.test_client()
    token = form_token(client, "/connexion")
    # PSC is unreachable here: 503 after the checks passed (a refusal would be 403).
    resp = client.post(LGC + "/connexion", data={"csrf_token": token}, headers={"Origin": "https://lgc.cabinet.example"})
    assert resp.status_code == 503


def test_fetch_posts_send_the_pages_token_as_a_header(app: Flask, doctor: FlaskClient):
    """live.js posts the retry buttons with fetch(): the page's <meta> token in X-CSRFToken is accepted."""
    page = doctor.get(LGC + "/patients").get_data(as_text=True)
    token = META.search(page).group(1)
    before = patients(app)
    resp = doctor.post(LGC + "/patients/nouveau", data=NEW_PATIENT, headers={"X-CSRFToken": token})
    assert resp.status_code == 302 and patients(app) == before + 1
    live_js = (TEMPLATES.parent / "static" / "live.js").read_text(encoding="utf-8")
    assert '"X-CSRFToken": csrfToken()' in live_js


def test_every_post_route_wants_the_token(app: Flask, doctor: FlaskClient):
    """No POST endpoint of the LGC is exempt: the LGC receives no machine-to-machine callback (PSC CIBA is polled,
    the OAuth callback is a GET)."""
    posts = [r for r in app.url_map.iter_rules() if "POST" in (r.methods or ())]
    assert len(posts) >= 20
    for rule in posts:
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "suspendre" if m.group(1) == "action" else "1", rule.rule)
        resp = doctor.post(LGC + path, data={"mode": "create", "login": "x", "compris": "oui"})
        assert resp.status_code == 403, (rule.rule, resp.status_code)


def test_every_form_of_the_templates_carries_the_token():
    found = 0
    for template in sorted(TEMPLATES.glob("*.html")):
        html = template.read_text(encoding="utf-8")
        for form in re.finditer(r"<form\b([^>]*)>(.*?)</form>", html, flags=re.S | re.I):
            if re.search(r'method="post"', form.group(1), flags=re.I):
                found += 1
                assert '<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">' in form.group(2), \
                    f"{template.name}: <form{form.group(1)}> has no csrf_token field"
    assert found >= 20


def test_get_requests_and_the_psc_callback_need_no_token(app: Flask):
    """The OAuth callback is a redirect from PSC (GET, another origin): not a form post, not checked."""
    client = app.test_client()
    resp = client.get(LGC + "/auth/callback?error=access_denied", headers={"Origin": OTHER_BENCH_PORT})
    assert resp.status_code == 302 and "/connexion" in resp.headers["Location"]
    assert client.get(LGC + "/sante").status_code == 200
