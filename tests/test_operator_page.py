"""The guided driver's operator page, in a real Chromium and over plain HTTP: an operator shares the LGC's tab,
confirms steps and answers questions (pictures of the shared screen go with each answer), the recording arrives
in segments and ends when the run does; a refused share falls back to picture files; bad requests get problem JSON.
The "LGC" here is a static page of this test, with the reference LGC's header colour."""

from __future__ import annotations

import io
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat
from playwright.sync_api import expect

from scenarios.operator_channel import OperatorChannel
from scenarios.screen_share import ScreenShare
from segur_bench.browser import CHROMIUM_FLAGS, chromium_path

NAVY = (0, 0, 145)
LGC_PAGE = ("<!doctype html><html><head><meta charset='utf-8'><title>Dossier patient — segur-bench</title></head>"
            "<body style='margin:0'><header style='background:#000091;height:80px'></header><h1 id='n'>0</h1>"
            "<script>let n=0;setInterval(()=>{document.getElementById('n').textContent=n++},100)</script>"
            "</body></html>")


@pytest.fixture
def lgc_site() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = LGC_PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[OperatorChannel]:
    ch = OperatorChannel("essai-1", ScreenShare(tmp_path / "partage"))
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def sharing_browser(playwright_session: Any) -> Iterator[Any]:
    """Chromium that shares, without asking, the tab whose title holds "segur-bench" (the LGC's tab here)."""
    b = playwright_session.chromium.launch(
        executable_path=chromium_path(), headless=True,
        args=[*CHROMIUM_FLAGS, "--auto-select-tab-capture-source-by-title=segur-bench"])
    yield b
    b.close()


def ask_in_background(channel: OperatorChannel, *args: Any, **kwargs: Any) -> tuple[threading.Thread, dict]:
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["answer"] = channel.ask(*args, **kwargs)
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def top_colour(data: bytes) -> tuple[float, ...]:
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        return tuple(ImageStat.Stat(rgb.crop((0, 0, rgb.width, 60))).mean)


def test_an_operator_shares_the_lgc_confirms_and_answers(sharing_browser: Any, channel: OperatorChannel, lgc_site: str,
                                                         tmp_path: Path) -> None:
    context = sharing_browser.new_context(viewport={"width": 1000, "height": 700})
    lgc = context.new_page()
    lgc.goto(lgc_site)
    page = context.new_page()
    page.goto(channel.url)
    page.get_by_role("button", name="Partager l'écran du LGC").click()
    page.wait_for_function("() => window.segurEtat().enregistre", timeout=15_000)
    assert "Partage en cours" in page.locator("#etat-partage").inner_text()

    thread, result = ask_in_background(channel, "action", "open_patient", {}, "Ouvrez le dossier du patient.", step=1)
    page.get_by_text("Ouvrez le dossier du patient.").wait_for()
    page.get_by_role("button", name="Fait").click()
    thread.join(15)
    assert result == {"answer": "Fait"}

    thread, result = ask_in_background(channel, "question", "dmp_icon", {}, "L'icône DMP est-elle verte ?",
                                       ["Oui", "Non"], step=3)
    page.get_by_text("L'icône DMP est-elle verte ?").wait_for()
    page.get_by_role("button", name="Non").click()
    thread.join(15)
    assert result == {"answer": "Non"}
    # a question answered in words (no choices): a text box, the answer as typed
    thread, result = ask_in_background(channel, "question", "on_number", {}, "Quel numéro est affiché ?", [], step=4)
    page.get_by_text("Quel numéro est affiché ?").wait_for()
    assert page.get_by_role("button", name="Fait").count() == 0
    page.get_by_label("Votre réponse").fill("ON-2026-0042")
    page.get_by_role("button", name="Envoyer la réponse").click()
    thread.join(15)
    assert result == {"answer": "ON-2026-0042"}
    # the page lists a step once the bench has acknowledged its answer, after the channel saw it: wait for it
    expect(page.locator("#journal li")).to_have_count(3, timeout=10_000)

    share = channel.share
    assert [(p.step, p.source) for p in share.pictures] == [(1, "partage"), (3, "partage"), (4, "partage")]
    for picture in share.pictures:  # the LGC's tab, not the operator page (white)
        assert all(abs(a - b) < 40 for a, b in zip(top_colour(picture.path.read_bytes()), NAVY, strict=True))

    page.wait_for_function("() => window.segurEtat().segments >= 2", timeout=15_000)
    share.finish(wait_s=10)  # the page's next poll says "fin": it stops and sends the last segment
    (capture,) = share.captures
    assert capture.ended is not None and capture.end_reason == "fin de l'exécution"
    assert capture.surface == "browser" and capture.mime.startswith("video/webm")
    assert capture.covered_until - capture.started > 2
    assert [s["n"] for s in sorted(capture.segments, key=lambda s: s["n"])] == list(range(1, len(capture.segments) + 1))
    recording = share.capture_file(capture)
    assert recording is not None and recording.read_bytes()[:4] == b"\x1aE\xdf\xa3"  # EBML: a WebM file
    state = json.loads((share.dir / "etat.json").read_text(encoding="utf-8"))
    assert state["captures"][0]["end_reason"] == "fin de l'exécution" and len(state["pictures"]) == 3
    context.close()


def test_a_refused_share_falls_back_to_a_picture_file_per_step(sharing_browser: Any, channel: OperatorChannel,
                                                               tmp_path: Path) -> None:
    context = sharing_browser.new_context()
    # What a browser does when the operator cancels the picker.
    context.add_init_script("navigator.mediaDevices.getDisplayMedia = () => "
                            "Promise.reject(new DOMException('Permission denied', 'NotAllowedError'))")
    page = context.new_page()
    page.goto(channel.url)
    page.get_by_role("button", name="Partager l'écran du LGC").click()
    page.get_by_text("Partage impossible").wait_for()
    assert page.locator("#televersement").is_visible()
    png = tmp_path / "capture.png"
    Image.new("RGB", (320, 200), (0, 128, 0)).save(png)

    thread, result = ask_in_background(channel, "action", "validate_prescription", {}, "Validez l'ordonnance.",
                                       step=2)
    page.get_by_text("Validez l'ordonnance.").wait_for()
    page.locator("#fichier").set_input_files(str(png))
    page.get_by_role("button", name="Fait").click()
    thread.join(15)
    assert result == {"answer": "Fait"}
    (picture,) = channel.share.pictures
    assert picture.source == "televersement" and picture.step == 2
    assert picture.path.read_bytes() == png.read_bytes()
    (refusal,) = channel.share.refusals
    assert "NotAllowedError" in refusal["raison"]
    assert channel.share.captures == []
    context.close()


def call(url: str, *, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None,
         context: ssl.SSLContext | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def test_bad_requests_get_problem_json_and_change_nothing(channel: OperatorChannel) -> None:
    root = channel.url.rsplit("/", 2)[0]
    status, ctype, body = call(root + "/")  # no token
    assert status == 404 and ctype == "application/problem+json" and "jeton" in json.loads(body)["detail"]
    status, _, body = call(channel.url + "etape")
    assert status == 200 and json.loads(body) == {"run": "essai-1", "fin": False, "consigne": None}

    json_type = {"Content-Type": "application/json"}
    status, _, _ = call(channel.url + "partage/debut", method="POST", body=b'{"mime":"video/webm"}',
                        headers={**json_type, "Origin": "https://ailleurs.example"})
    assert status == 403  # another site's page, even with the token
    status, _, _ = call(channel.url + "partage/debut", method="POST", body=b"[1,2", headers=json_type)
    assert status == 400
    status, _, _ = call(channel.url + "partage/segment?partage=7&n=1", method="POST", body=b"x")
    assert status == 404  # no such capture
    status, _, body = call(channel.url + "partage/debut", method="POST", body=b'{"mime":"video/webm","debut":1}',
                           headers=json_type)
    assert status == 201 and json.loads(body) == {"partage": 1}
    assert channel.share.captures[0].clock_note  # a clock 56 years off is not believed

    thread, result = ask_in_background(channel, "action", "login", {}, "Connectez-vous.", step=1)
    time.sleep(0.2)
    gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
    status, _, body = call(channel.url + "partage/image?consigne=1&source=partage", method="POST", body=gif)
    assert status == 415 and "PNG ou JPEG" in json.loads(body)["detail"]
    status, _, _ = call(channel.url + "partage/image?consigne=99&source=partage", method="POST",
                        body=b"\x89PNG\r\n\x1a\n")
    assert status == 404  # not an instruction of this run
    status, _, _ = call(channel.url + "partage/image?consigne=1&source=partage", method="POST", body=b"\x89PNG",
                        headers={"Content-Length": str(10**9)})
    assert status == 413
    assert channel.share.pictures == []
    status, _, body = call(channel.url + "reponse", method="POST",
                           body=b'{"run": "essai-0", "id": 1, "answer": "Fait"}', headers=json_type)
    assert status == 409 and "essai-0" in json.loads(body)["detail"]  # the previous scenario's page
    status, _, _ = call(channel.url + "partage/segment?run=essai-0&partage=1&n=1", method="POST", body=b"x")
    assert status == 409 and channel.share.captures[0].segments == []
    status, _, body = call(channel.url + "reponse", method="POST", body=b'{"id": 5, "answer": "Fait"}',
                           headers=json_type)
    assert status == 409 and json.loads(body) == {"acceptee": False}  # a late click on an older instruction
    status, ctype, _ = call(channel.url + "reponse", method="POST", body=b"id=1&answer=Fait",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and ctype.startswith("text/html")  # a plain form (no JavaScript): 303 back to the page
    thread.join(5)
    assert result == {"answer": "Fait"}


def test_beyond_loopback_the_page_is_https_with_the_bench_pki(tmp_path: Path) -> None:
    from simulators.core.pki import BenchPki

    pki = BenchPki.open(tmp_path / "pki")
    material = pki.server_material("operateur", ["127.0.0.1", "localhost"])
    ch = OperatorChannel("essai-tls", ScreenShare(tmp_path / "partage"), certificate=material,
                         public_host="localhost")
    try:
        assert ch.url.startswith("https://localhost:")
        trust = ssl.create_default_context(cafile=str(pki.ca_path))
        trust.load_verify_locations(cafile=str(pki.root_path))
        status, ctype, body = call(ch.url, context=trust)
        assert status == 200 and ctype.startswith("text/html") and "Partager l'écran du LGC".encode() in body
        with pytest.raises(urllib.error.URLError):  # a client that does not trust the bench CA stops
            call(ch.url, context=ssl.create_default_context())
    finally:
        ch.close()


def test_one_page_and_one_share_serve_the_scenarios_of_a_run_in_turn(sharing_browser: Any, lgc_site: str,
                                                                     tmp_path: Path) -> None:
    """`segur-bench run` of several scenarios: each has its own channel on the same address and token; the
    operator's page keeps the shared screen and records each scenario on its own, without a new prompt."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    first = OperatorChannel("scenario-1", ScreenShare(tmp_path / "un"), port=port, token="jeton-de-test")
    context = sharing_browser.new_context()
    lgc = context.new_page()
    lgc.goto(lgc_site)
    page = context.new_page()
    page.goto(first.url)
    page.get_by_role("button", name="Partager l'écran du LGC").click()
    page.wait_for_function("() => window.segurEtat().enregistre && window.segurEtat().segments >= 1",
                           timeout=15_000)
    first.share.finish(wait_s=10)
    first.close()
    assert first.share.captures[0].end_reason == "fin de l'exécution"

    second = OperatorChannel("scenario-2", ScreenShare(tmp_path / "deux"), port=port, token="jeton-de-test")
    try:
        assert second.url == first.url
        deadline = time.time() + 20
        while time.time() < deadline and not (second.share.captures and second.share.captures[0].segments):
            page.wait_for_timeout(250)
        (capture,) = second.share.captures
        assert capture.segments and capture.surface == "browser"
        assert len(first.share.captures) == 1  # nothing of the second scenario went to the first
        recording = second.share.capture_file(capture)
        assert recording is not None and recording.read_bytes()[:4] == b"\x1aE\xdf\xa3"  # a WebM of its own
    finally:
        second.close()
        context.close()


def test_a_bench_on_the_network_gives_the_operator_an_https_page_under_its_lan_name(tmp_path: Path) -> None:
    """What `segur-bench run --driver guided` sets up when the bench listens beyond loopback (the vendor's LGC and
    browser on another computer): HTTPS with a bench-PKI certificate for the bench's LAN name, a token, the address
    the other computer uses. The client here connects to loopback but checks the certificate for that name, as the
    vendor's browser does."""
    import socket

    from scenarios.runtime import BenchEnv
    from segur_bench.config import BenchConfig
    from segur_bench.run import _operator_page
    from simulators.core.pki import BenchPki

    config = BenchConfig(host="0.0.0.0", data_dir=tmp_path / "data", tls_names=["bench.example.lan"])
    env = BenchEnv(sims={}, out_dir=str(tmp_path), driver="guided", operator="auto")
    said: list[str] = []
    _operator_page(config, env, "", said.append)
    assert env.operator_listen == "0.0.0.0:0" and env.operator_public_host == "bench.example.lan"
    assert env.operator_certificate and len(env.operator_token) >= 16 and said == []

    channel = OperatorChannel.for_run(env, "essai-lan", ScreenShare(tmp_path / "partage"))
    try:
        assert channel.url.startswith("https://bench.example.lan:") and env.operator_token in channel.url
        port = int(channel.url.split(":")[2].split("/")[0])
        pki = BenchPki.open(config.pki_dir)
        trust = ssl.create_default_context(cafile=str(pki.root_path))
        trust.load_verify_locations(cafile=str(pki.ca_path))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                trust.wrap_socket(raw, server_hostname="bench.example.lan") as tls:
            tls.sendall(f"GET /{env.operator_token}/etape HTTP/1.1\r\nHost: bench.example.lan\r\n"
                        "Connection: close\r\n\r\n".encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200")
        assert b'"run": "essai-lan"' in answer
    finally:
        channel.close()

    # Without TLS the browser would not offer screen sharing there: the run says so, and the page is plain HTTP.
    plain = BenchConfig(host="0.0.0.0", data_dir=tmp_path / "plain", tls=False, tls_names=["bench.example.lan"])
    env2 = BenchEnv(sims={}, out_dir=str(tmp_path), driver="guided", operator="auto")
    _operator_page(plain, env2, "", said.append)
    assert env2.operator_certificate is None and any("screen sharing" in line for line in said)
