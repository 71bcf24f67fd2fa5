"""Login with Pro Santé Connect (authorization code + PKCE) into the reference LGC: first-login link to a local
account, the professional information message, logout through PSC's end-session endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest
from lgc_harness import GP, Bench, Lgc


@pytest.fixture
def fresh(browser) -> Iterator[object]:
    ctx = browser.new_context(locale="fr-FR")
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    yield page
    ctx.close()


def test_first_login_links_the_local_account_and_asks_for_the_information_acknowledgement(
        fresh, lgc: Lgc, bench: Bench) -> None:
    page = fresh
    page.goto(lgc.url + "/patients")
    assert "/connexion" in page.url
    authorize: list[str] = []
    page.on("request", lambda r: authorize.append(r.url) if "/protocol/openid-connect/auth" in r.url else None)
    page.click("#connexion-psc")
    page.wait_for_selector("form#connexion")  # the PSC simulator's page (CPS / e-CPS)
    query = parse_qs(urlparse(authorize[0]).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
    assert query["acr_values"] == ["eidas1"] and "scope_all" in query["scope"][0] and query["nonce"]
    page.check(f"input[name=national_id][value='{GP}']")
    page.click("button[name=decision][value=approve]")
    page.wait_for_url("**/premiere-connexion")
    assert GP in page.locator("main").inner_text()
    assert "dr.doc0036624" in page.locator("#associer").inner_text()
    page.click("#associer button[type=submit]")
    page.wait_for_url("**/information**")
    assert "Toute consultation de ma part d'un DMP/MES" in page.locator("#message-information").inner_text()
    assert not page.locator("#compris").is_checked()  # unchecked by default
    page.click("#message-information button[type=submit]")
    assert "J'ai compris" in page.locator(".flash.error").inner_text()
    page.check("#compris")
    page.click("#message-information button[type=submit]")
    page.wait_for_url("**/patients")
    assert "DOC0036624" in page.locator("#utilisateur").inner_text()
    page.goto(lgc.url + "/a-propos")
    assert page.locator("#version").inner_text().split()[0] == page.locator("#version-technique").inner_text()[1:]
    # The PSC token exchange happened server-side: the token endpoint saw a PKCE verifier.
    tokens = [e for e in bench.journal("psc") if e["url"].endswith("/token")]
    assert tokens and "code_verifier=" in tokens[-1]["request"]["body"]

    # Logout ends the PSC session too, then comes back to the LGC's login page.
    page.click("header form button[type=submit]")
    page.wait_for_url("**/connexion**")
    assert any(e["url"].split("?")[0].endswith("/logout") for e in bench.journal("psc"))
    # Next login: no account link, no information message (acknowledged less than 180 days ago).
    page.click("#connexion-psc")
    page.check(f"input[name=national_id][value='{GP}']")
    page.click("button[name=decision][value=approve]")
    page.wait_for_url("**/patients")


def test_refusal_at_psc_comes_back_with_a_clear_message(fresh, lgc: Lgc) -> None:
    page = fresh
    page.goto(lgc.url + "/connexion")
    page.click("#connexion-psc")
    page.click("button[name=decision][value=refuse]")
    page.wait_for_url("**/connexion**")
    assert "refusée" in page.locator(".flash.error").inner_text()
