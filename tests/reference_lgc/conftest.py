from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from lgc_harness import Bench, Lgc, start_bench, start_lgc, stop

from reference_lgc.app import create_app
from reference_lgc.config import LgcConfig


@pytest.fixture(scope="session")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    b = start_bench(tmp_path_factory.mktemp("bench"))
    try:
        yield b
    finally:
        stop(b.proc)


@pytest.fixture
def clean_bench(bench: Bench) -> Iterator[Bench]:
    bench.clear()
    yield bench
    bench.clear()


@pytest.fixture(scope="module")
def lgc(bench: Bench, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lgc]:
    bench.reset()  # a fresh LGC meets fresh simulators, whatever module ran before
    instance = start_lgc(bench, tmp_path_factory.mktemp("lgc"), timeouts={"insi": 8, "apcv": 8, "dmp": 8, "on": 4})
    try:
        yield instance
    finally:
        stop(instance.proc)


@pytest.fixture(scope="module")
def context(browser: object, lgc: Lgc) -> Iterator[object]:
    """One logged-in browser context per module (the first login links the demo account)."""
    from lgc_harness import login

    ctx = browser.new_context(locale="fr-FR", viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    login(page, lgc.url)
    page.close()
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: object, clean_bench: Bench) -> Iterator[object]:
    p = context.new_page()
    p.set_default_timeout(15_000)
    yield p
    p.close()


LGC = "http://127.0.0.1:8000"  # as the browser reaches the LGC of the `app` fixture: Host 127.0.0.1:8000


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app(LgcConfig(data_dir=tmp_path, public_url=LGC))


@pytest.fixture
def doctor(app: Flask) -> FlaskClient:
    """A browser where the demo physician is logged in (session row as the PSC callback writes it)."""
    db = app.config["DB"]
    db.execute("UPDATE users SET national_id='899700366240', info_ack_at='2999-01-01T00:00:00+00:00' "
               "WHERE login='dr.doc0036624'")
    user = db.one("SELECT id FROM users WHERE login='dr.doc0036624'")
    db.execute("INSERT INTO sessions (sid, user_id, national_id, userinfo, created_at) VALUES (?,?,?,?,?)",
               ("sid-test", user["id"], "899700366240", "{}", "2026-01-01T00:00:00+00:00"))
    client = app.test_client()
    with client.session_transaction(base_url=LGC) as session:
        session["sid"] = "sid-test"
    return client
