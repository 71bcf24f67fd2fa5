"""ScreenRecorder against Debian's Chromium: a two-site navigation recorded into a captioned MP4 H.264."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
from PIL import Image, ImageStat

from proofs_video import ScreenRecorder, VideoError, ffprobe_duration

WIDTH, HEIGHT = 640, 360
BANNER = 30  # bottom rows always inside the caption band at this height
COLORS = {"/one": "#0000ff", "/two": "#00c000"}


@pytest.fixture(scope="module")
def ffmpeg() -> None:
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        reason = f"{', '.join(missing)} missing: apt-get install -y ffmpeg"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    class Pages(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"<body style='margin:0;background:{COLORS.get(self.path, '#fff')}'><h1>{self.path}</h1>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    yield context.new_page()
    context.close()


def probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=codec_name,width,height,pix_fmt,avg_frame_rate", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return cast(dict[str, Any], json.loads(out)["streams"][0])


def frame_at(path: Path, seconds: float) -> Image.Image:
    png = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{seconds:.2f}", "-i", str(path), "-frames:v", "1",
                          "-f", "image2pipe", "-c:v", "png", "-"], capture_output=True, check=True).stdout
    return Image.open(io.BytesIO(png)).convert("RGB")


def bright_pixels(image: Image.Image) -> int:
    """White caption text pixels on the step line (first line of the band under the page, left of the clock)."""
    step_line = image.crop((0, HEIGHT + 2, WIDTH * 2 // 3, HEIGHT + 18)).convert("L")
    return sum(step_line.histogram()[181:])


def test_records_a_navigation_with_captions(ffmpeg: None, port: int, page: Any, tmp_path: Path) -> None:
    recorder = ScreenRecorder(page, tmp_path / "proof.mp4", fps=10)
    recorder.start()
    started = time.time()
    recorder.caption("1. Ouverture du dossier patient")
    recorder.condition("nominal")
    page.goto(f"http://127.0.0.1:{port}/one")
    one_shown = time.time() - started
    page.wait_for_timeout(1200)
    one_left = time.time() - started
    recorder.caption("2. Appel INSi")
    recorder.condition("latence 3 s")
    page.goto(f"http://localhost:{port}/two")  # another site: Chromium swaps the renderer process
    page.wait_for_timeout(1800)  # static screen: no new frame, the last one is repeated
    clean = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    wall = time.time() - started
    encoding = time.monotonic()
    path = recorder.stop()
    print(f"encoded {wall:.1f} s of video in {time.monotonic() - encoding:.2f} s")

    assert path == tmp_path / "proof.mp4" and path.is_file()
    assert not list(tmp_path.glob("*.part.mp4"))
    stream = probe(path)
    assert (stream["codec_name"], stream["pix_fmt"], stream["avg_frame_rate"]) == ("h264", "yuv420p", "10/1")
    # the page whole, the caption band in its own rows under it
    assert stream["width"] == WIDTH and HEIGHT + BANNER <= stream["height"] <= HEIGHT + 3 * BANNER
    assert stream["height"] % 2 == 0
    duration = ffprobe_duration(path)
    assert abs(duration - wall) <= 1.0, (duration, wall)

    first, last = frame_at(path, (one_shown + one_left) / 2), frame_at(path, duration - 0.3)
    middle = (WIDTH // 2, HEIGHT // 3, WIDTH - 20, HEIGHT // 2)
    blue, green = ImageStat.Stat(first.crop(middle)).mean, ImageStat.Stat(last.crop(middle)).mean
    assert blue[2] > 200 and blue[1] < 50, blue  # page one, before the cross-site navigation
    assert green[1] > 150 and green[2] < 50, green  # page two, after it
    bottom = (0, HEIGHT - BANNER, WIDTH, HEIGHT)
    assert max(ImageStat.Stat(clean.crop(bottom)).stddev) < 3  # the page is uniform at its bottom…
    assert max(ImageStat.Stat(last.crop(bottom)).stddev) < 8  # …and stays so in the video: nothing drawn over it
    band = (0, HEIGHT, WIDTH, stream["height"])
    assert max(ImageStat.Stat(last.crop(band)).stddev) > 20  # the captions are under the page
    short, long = bright_pixels(last), bright_pixels(first)
    assert short > 20 and long > short * 1.3, (long, short)  # the step text changed with caption()


def test_context_manager_keeps_the_video_of_a_failing_scenario(ffmpeg: None, page: Any, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "failed.mp4"
    with pytest.raises(AssertionError, match="scénario en échec"), ScreenRecorder(page, out, fps=5) as recorder:
        recorder.caption("étape unique")
        page.set_content("<h1>Échec</h1>")
        page.wait_for_timeout(600)
        raise AssertionError("scénario en échec")
    assert 0.4 <= ffprobe_duration(out) <= 1.6
    assert probe(out)["avg_frame_rate"] == "5/1"


def test_missing_ffmpeg_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(VideoError, match=r"introuvable.*apt-get install -y ffmpeg.*not found"):
        ScreenRecorder(cast(Any, object()), tmp_path / "x.mp4").start()  # fails before touching the page
    with pytest.raises(VideoError, match="ffprobe"):
        ffprobe_duration(tmp_path / "x.mp4")


def test_stop_before_start_and_bad_fps(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fps"):
        ScreenRecorder(cast(Any, object()), tmp_path / "x.mp4", fps=0)
    with pytest.raises(VideoError, match="not started"):
        ScreenRecorder(cast(Any, object()), tmp_path / "x.mp4").stop()
