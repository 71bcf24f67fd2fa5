"""The drive-by test: a page served from another origin, opened in Chromium, tries what a hostile page would — a
`fetch` in no-cors mode and an auto-submitted form, both POSTing /_bench/reset (and DELETE /_bench/faults) to the
simulator on 127.0.0.1. Neither may wipe the bench.

(In its own folder, collected after the core tests: Playwright's sync API keeps an event loop on the main thread
for the session, which `asyncio.run` in the core tests cannot share.)"""

from __future__ import annotations

import http.server
import threading

import httpx
import pytest


@pytest.fixture
def echo(echo_with_rule):
    return echo_with_rule


PAGE = """<!doctype html><html><body>
<form id="f" method="POST" action="{target}/_bench/reset" enctype="text/plain" target="sink">
  <input name='{{"keep": []' value='}}'>
</form>
<iframe name="sink"></iframe>
<script>
  fetch("{target}/_bench/reset", {{method: "POST", mode: "no-cors", body: "{{}}"}})
    .finally(() => fetch("{target}/_bench/faults", {{method: "DELETE", mode: "no-cors"}}))
    .finally(() => {{ document.getElementById("f").submit(); document.title = "sent"; }});
</script></body></html>"""


def test_a_page_from_another_origin_cannot_reset_the_bench(echo, browser):
    page_html = PAGE.format(target=echo.url).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page_html)))
            self.end_headers()
            self.wfile.write(page_html)

        def log_message(self, *args: object) -> None:
            pass

    hostile = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=hostile.serve_forever, daemon=True)
    thread.start()
    echo.sim.ctx.journal.clear()
    httpx.post(echo.url + "/echo", content=b"before")
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{hostile.server_address[1]}/")
        page.wait_for_function("document.title === 'sent'", timeout=10_000)
        page.wait_for_timeout(500)  # let the form's POST land
        page.close()
    finally:
        hostile.shutdown()
    assert len(echo.sim.ctx.faults.list()) == 1, "the fault rule survived"
    assert [e.operation for e in echo.sim.ctx.journal.query()] == ["POST /echo"], "the journal survived"
