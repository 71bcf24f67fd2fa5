"""Reference LGC web hardening (issue 16): the page after login is a path of the LGC, never another site
(next='/<tab>/evil.example' was answered Location: //evil.example, browsers dropping the tab); an id no row can
have is a 404, not the internal-error page."""

from __future__ import annotations

import re

import pytest

from reference_lgc.app import create_app
from reference_lgc.config import LgcConfig
from reference_lgc.web.auth import local_path
from reference_lgc.web.patients import spreadsheet_safe


@pytest.mark.parametrize("value", [
    "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "//evil.example", "/\\evil.example",
    "\\\\evil.example", "https://evil.example/", "http:/evil.example", "javascript:alert(1)", " /patients",
    "/%09/x\x7f", "evil.example", "",
])
def test_what_would_leave_the_site_is_refused(value):
    assert local_path(value) == ""


@pytest.mark.parametrize("value", ["/patients", "/patients/3?onglet=dmp#dmp", "/patients/%2F%2Fevil"])
def test_paths_of_the_site_are_kept(value):
    assert local_path(value) == value


def test_login_keeps_no_hostile_next_in_the_session(tmp_path):
    # PSC is unreachable here (nothing listens): the login fails with 503, after `next` was kept or dropped.
    app = create_app(LgcConfig(data_dir=tmp_path))
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/connexion").get_data(as_text=True))[1]
    for value, kept in (("/\t/evil.example", ""), ("/patients/1", "/patients/1")):
        assert client.post("/connexion", data={"next": value, "csrf_token": token}).status_code == 503
        with client.session_transaction() as session:
            assert session.get("next") == kept


def test_an_id_beyond_what_the_database_holds_is_not_found(tmp_path):
    """A 20-digit id in a URL is a page that does not exist (404), not an internal error (issue 16)."""
    client = create_app(LgcConfig(data_dir=tmp_path)).test_client()
    for path in ("/patients/99999999999999999999", "/patients/99999999999999999999/dmp",
                 "/appels/18446744073709551616"):
        assert client.get(path).status_code == 404, path
    assert client.get("/patients/9223372036854775807/dmp").status_code == 302  # in range: the login comes first


@pytest.mark.parametrize(("value", "cell"), [
    ("=HYPERLINK(\"http://evil.example\")", "'=HYPERLINK(\"http://evil.example\")"), ("+33 1", "'+33 1"),
    ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"),
    ("Dr KIT DOC0036624", "Dr KIT DOC0036624"), ('{"documents": []}', '{"documents": []}'), ("", ""),
])
def test_exported_trace_cells_are_never_spreadsheet_formulas(value, cell):
    """The traces export (CSV, SC.DMP/CONF.14) holds names and reasons users typed."""
    assert spreadsheet_safe(value) == cell
