"""The console's own API is guarded like the control API: foreign Origin and rebinding Host refused (403), a token
beyond loopback (401 without it), an anti-forgery header on every change. Plain HTTP clients, no browser."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from console.app import CSRF_HEADER, Console, ConsoleSettings
from console.bench import Service, iso_duration

TOKEN = "jeton-de-test-0123456789"
# Nothing listens there: the guard answers before any control call, and the calls that pass it report the
# simulator as unreachable.
UNREACHABLE = [Service("insi", "INSi", "http://127.0.0.1:9", "http://127.0.0.1:9/lps")]


def run(settings: ConsoleSettings, base_url: str, scenario) -> None:
    async def main() -> None:
        app = Console(UNREACHABLE, settings)
        app.startup()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client:
                await scenario(client, app)
        finally:
            await app.shutdown()

    asyncio.run(main())


def is_problem(resp: httpx.Response, status: int) -> bool:
    return resp.status_code == status and resp.headers["content-type"].startswith("application/problem+json")


def test_on_loopback_foreign_origins_and_rebinding_hosts_are_refused() -> None:
    async def scenario(client: httpx.AsyncClient, app: Console) -> None:
        page = await client.get("/")
        assert page.status_code == 200
        csrf = re.search(r'name="console-csrf" content="([^"]+)"', page.text).group(1)
        assert csrf == app.csrf
        change = {CSRF_HEADER: csrf}
        # a page of another site open in the trainer's browser
        for method, path in (("GET", "/api/services"), ("GET", "/api/journal/stream"), ("DELETE", "/api/faults"),
                             ("POST", "/api/clock")):
            resp = await client.request(method, path, headers={"Origin": "http://evil.example", **change},
                                        json={"advance": "+1h"} if method == "POST" else None)
            assert is_problem(resp, 403), (method, path, resp.text)
        # DNS rebinding: the attacker's name resolves to 127.0.0.1, the browser sends it as Host (and Origin)
        rebound = await client.get("/api/clock", headers={"Host": "evil.example:8090",
                                                          "Origin": "http://evil.example:8090"})
        assert is_problem(rebound, 403)
        # the console's own page: its Origin, and the anti-forgery header on a change
        own = {"Origin": "http://127.0.0.1:8090"}
        assert (await client.get("/api/clock", headers=own)).status_code == 200
        assert is_problem(await client.delete("/api/faults", headers=own), 403)  # no header: a cross-site form
        assert is_problem(await client.delete("/api/faults", headers={**own, CSRF_HEADER: "forged"}), 403)
        cleared = await client.delete("/api/faults", headers={**own, **change})
        assert cleared.status_code == 502 and "insi" in cleared.json()["failed"]  # passed the guard, sim down

    run(ConsoleSettings(host="127.0.0.1"), "http://127.0.0.1:8090", scenario)


def test_beyond_loopback_the_bench_token_or_a_login_with_it_is_required() -> None:
    async def scenario(client: httpx.AsyncClient, app: Console) -> None:
        for path in ("/api/services", "/api/clock", "/api/journal/stream", "/api/ciba"):
            resp = await client.get(path)
            assert is_problem(resp, 401), path
            assert resp.headers["www-authenticate"].startswith("Bearer")
        assert is_problem(await client.get("/api/clock", headers={"Authorization": "Bearer wrong"}), 401)
        to_login = await client.get("/", follow_redirects=False)
        assert to_login.status_code == 303 and to_login.headers["location"] == "/connexion"
        assert (await client.get("/connexion")).status_code == 200  # the login page itself is open
        assert (await client.get("/static/console.css")).status_code == 200
        # a tool with the token
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/api/clock", headers=bearer)).status_code == 200
        assert (await client.delete("/api/faults", headers=bearer)).status_code == 502  # no CSRF header needed
        # a browser: log in with the token, then the session cookie (SameSite=Strict, HttpOnly)
        wrong = await client.post("/connexion", data={"jeton": "nope"})
        assert wrong.status_code == 401 and "pas celui du banc" in wrong.text
        login = await client.post("/connexion", data={"jeton": TOKEN}, headers={"Origin": "http://bench.lan:8090"})
        assert login.status_code == 303
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
        assert (await client.get("/api/clock")).status_code == 200
        page = await client.get("/")
        assert page.status_code == 200
        assert is_problem(await client.delete("/api/faults"), 403)  # the cookie alone does not make a change
        csrf = re.search(r'name="console-csrf" content="([^"]+)"', page.text).group(1)
        assert (await client.delete("/api/faults", headers={CSRF_HEADER: csrf})).status_code == 502
        # a login posted from another site
        foreign = await client.post("/connexion", data={"jeton": TOKEN}, headers={"Origin": "http://evil.example"})
        assert is_problem(foreign, 403)

    run(ConsoleSettings(host="0.0.0.0", token=TOKEN), "http://bench.lan:8090", scenario)


def test_a_console_beyond_loopback_without_a_token_does_not_start() -> None:
    with pytest.raises(ValueError, match="token"):
        Console(UNREACHABLE, ConsoleSettings(host="0.0.0.0"))


@pytest.mark.parametrize(("text", "iso"), [("+1h", "PT1H"), ("+30 j", "P30D"), ("6 mois", "P6M"), ("P6M", "P6M"),
                                           ("-1 an", "-P1Y"), ("+1 j 2h 30 min", "P1DT2H30M"), ("pt2h", "PT2H")])
def test_trainers_durations_become_iso_8601(text: str, iso: str) -> None:
    assert iso_duration(text) == iso


@pytest.mark.parametrize("text", ["", "+", "demain", "3 lunes", "1h et plus"])
def test_unreadable_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        iso_duration(text)
